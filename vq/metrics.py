"""Metrics: counters and latency histograms in Redis, per job type, in minute, hour and day
buckets, so every figure over any window is read from a bounded number of keys whatever
the number of jobs.

The archiver (vq/history/archiver.py) is the only writer: it folds each batch of events into one
set of increments, applied in the same transaction that records how far it got, so each
event counts exactly once. Workers pay nothing beyond the event they already append.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass

from redis import Redis

from vq import keys, worker_series
from vq.replies import members, text_hash

# Resolution of each bucket kind, and how long its keys live.
RESOLUTIONS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
TTL_SECONDS = {"m": 3 * 86_400, "h": 40 * 86_400, "d": 400 * 86_400}

# Latency histogram: bucket i holds values up to BOUNDS[i] ms (ratio 1.25: a percentile is
# known to within 12%); the last bucket is open-ended.
BOUNDS = [int(round(1.25**i)) for i in range(0, 80) if 1.25**i <= 4 * 3_600_000]
BOUNDS = sorted(set(BOUNDS))

# The Prometheus histograms (all-time totals only, vq/prometheus.py): a few buckets fit to each
# family's range, in ms, each bucket holding values up to its bound; the last is +Inf.
# Processing time: seconds to an hour (AI and video jobs); wait: milliseconds to hours.
PROM_BOUNDS = {
    "run": (
        10,
        50,
        100,
        500,
        1_000,
        2_500,
        5_000,
        10_000,
        30_000,
        60_000,
        120_000,
        300_000,
        600_000,
        1_800_000,
        3_600_000,
    ),
    "wait": (5, 25, 100, 500, 1_000, 5_000, 15_000, 60_000, 300_000, 900_000, 3_600_000, 14_400_000),
}

# Events counted per type and bucket. A name maps an event to the counter it bumps.
USER_COUNTERS = ("created", "finished", "failed", "canceled")  # kept per user, while the user is active
COUNTED = {
    "created": "created",
    "started": "started",
    "finished": "finished",
    "failed": "failed",
    "retrying": "retried",
    "canceled": "canceled",
    "stalled": "stalled",
    "rate-limited": "rateLimited",
    "removed": "removed",
}


def bucket_of(value_ms: float) -> int:
    """The index of the histogram bucket a latency falls in (len(BOUNDS): beyond the last)."""
    return bisect_left(BOUNDS, value_ms)


def prom_bucket_of(family: str, value_ms: float) -> int:
    """The index of the Prometheus bucket of `family` a value falls in (len: the +Inf one)."""
    return bisect_left(PROM_BOUNDS[family], value_ms)


def bucket_key(kind: str, ts_ms: int) -> str:
    return f"{keys.PREFIX}metrics:{kind}:{ts_ms // RESOLUTIONS[kind]}"


def fold(events: list[dict]) -> dict[str, Counter]:
    """The increments a batch of events makes: {redis hash key: Counter(field -> n)}."""
    out: dict[str, Counter] = {}

    def counter(key: str) -> Counter:
        found = out.get(key)
        if found is None:
            found = out[key] = Counter()
        return found

    for event in events:
        name = COUNTED.get(event["event"])
        if name is None or not event.get("jobType"):
            continue
        job_type = event["jobType"]
        fields = event.get("fields") or {}
        user = fields.get("userId")
        if user and name in USER_COUNTERS:
            counter(keys.METRICS_USERS)[f"{user}|{name}"] += 1
            seen = counter(keys.METRICS_USERS_SEEN)  # user -> their latest event's time (ms)
            seen[user] = max(seen[user], event["ts"])
        if name == "created" and fields.get("priority"):
            counter(keys.METRICS_TOTALS)[f"{job_type}|priority|{fields['priority']}"] += 1
        if name == "created" and fields.get("status") == "finished":  # born finished: a cached result
            counter(keys.METRICS_TOTALS)[f"{job_type}|cached"] += 1
        increments = [(f"{job_type}|{name}", 1)]
        fine, coarse = [], []  # histogram buckets: `vq perf`'s in the time buckets, Prometheus's in the totals
        miss = _deadline_miss(name, fields)
        if miss:  # `vq perf`: deadline misses per type, and per tier
            increments += [(f"{job_type}|{miss}", 1), (f"{job_type}|{miss}|{fields.get('subscription') or '?'}", 1)]
        if name == "started" and fields.get("waitMs") is not None:
            increments.append((f"{job_type}|wait_ms", int(fields["waitMs"])))
            fine.append((f"{job_type}|wait|{bucket_of(fields['waitMs'])}", 1))
            coarse.append((f"{job_type}|wait_le|{prom_bucket_of('wait', fields['waitMs'])}", 1))
        if name in ("finished", "failed", "retried") and fields.get("durationMs") is not None:
            increments += [(f"{job_type}|run_ms", int(fields["durationMs"])), (f"{job_type}|ran", 1)]
            fine.append((f"{job_type}|run|{bucket_of(fields['durationMs'])}", 1))
            coarse.append((f"{job_type}|run_le|{prom_bucket_of('run', fields['durationMs'])}", 1))
        # The all-time totals and each time bucket get the same counters and sums.
        for key, histogram in (
            (keys.METRICS_TOTALS, coarse),
            *((bucket_key(kind, event["ts"]), fine) for kind in RESOLUTIONS),
        ):
            target = counter(key)
            for fld, n in (*increments, *histogram):
                target[fld] += n
        worker_series.fold_into(counter, name, fields, event["ts"])
    return out


def _deadline_miss(name: str, fields: dict) -> str | None:
    """`expired` (canceled at its deadline) or `late` (finished after it), else None (vq/deadlines.py)."""
    if name == "canceled" and fields.get("category") == "expired":
        return "expired"
    if name == "finished" and fields.get("lateMs") is not None:
        return "late"
    return None


def apply_in(pipe, increments: dict[str, Counter]) -> None:
    for key, counter in increments.items():
        if key in (keys.METRICS_USERS_SEEN, keys.METRICS_WORKERS_SEEN):  # zsets of times, not counters
            pipe.zadd(key, dict(counter), gt=True)
            continue
        for fld, n in counter.items():
            pipe.hincrby(key, fld, n)
            if key == keys.METRICS_USERS and fld.endswith("|created"):  # the ranking of users `vq stats` reads
                pipe.zincrby(keys.METRICS_USERS_RANK, n, fld.rpartition("|")[0])
        kind = key.split(":")[2] if key.count(":") >= 3 else None
        if kind in TTL_SECONDS:
            pipe.expire(key, TTL_SECONDS[kind])


@dataclass
class Window:
    """Per-type sums over a time window, read from the coarsest buckets that fit it."""

    start_ms: int
    end_ms: int
    by_type: dict[str, Counter]

    def type(self, job_type: str) -> Counter:
        return self.by_type.get(job_type, Counter())


def read_window(conn: Redis, window_ms: int, end_ms: int | None = None) -> Window:
    """Sum every bucket overlapping [end - window, end]. Minute buckets up to 3 hours, hour
    buckets up to 7 days, day buckets beyond: at most ~180 keys read in one round trip."""
    end_ms = end_ms or int(time.time() * 1000)
    start_ms = end_ms - window_ms
    kind = "m" if window_ms <= 3 * 3_600_000 else "h" if window_ms <= 7 * 86_400_000 else "d"
    step = RESOLUTIONS[kind]
    buckets = read_buckets(conn, kind, start_ms, end_ms)
    by_type: dict[str, Counter] = {}
    for _start, counters in buckets:
        for name, counter in counters.items():
            by_type.setdefault(name, Counter()).update(counter)
    return Window(buckets[0][0], buckets[-1][0] + step, by_type)


def read_buckets(conn: Redis, kind: str, start_ms: int, end_ms: int) -> list[tuple[int, dict[str, Counter]]]:
    """Every bucket of a kind from the one holding `start_ms` to the one holding `end_ms`,
    oldest first, each (its start ms, per-type counters), in one round trip."""
    step = RESOLUTIONS[kind]
    indexes = range(start_ms // step, end_ms // step + 1)
    with conn.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.hgetall(bucket_key(kind, index * step))
        replies = pipe.execute()
    return [(index * step, by_name(reply)) for index, reply in zip(indexes, replies)]


def by_name(reply: dict, into: dict[str, Counter] | None = None, last_bar: bool = False) -> dict[str, Counter]:
    """A metrics hash ("<name>|<counter>" -> n) as {name: Counter}. User names may hold a
    '|', so user hashes split at the last one (`last_bar`)."""
    out = {} if into is None else into
    for raw_field, raw_value in reply.items():
        text = raw_field.decode()
        name, _, rest = text.rpartition("|") if last_bar else text.partition("|")
        out.setdefault(name, Counter())[rest] += int(raw_value)
    return out


def read_bucket(conn: Redis, kind: str, ts_ms: int) -> dict[str, Counter]:
    """One bucket's counters per type."""
    return read_buckets(conn, kind, ts_ms, ts_ms)[0][1]


def percentile(counts: Counter, prefix: str, q: float) -> float | None:
    """The q-th percentile (0..1) of a histogram stored as `prefix|<bucket>` counts: the upper
    bound of the bucket holding it (an overestimate of at most one bucket's width)."""
    histogram = sorted((int(f.split("|")[1]), n) for f, n in counts.items() if f.startswith(prefix + "|"))
    total = sum(n for _, n in histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, n in histogram:
        seen += n
        if seen >= rank:
            return float(BOUNDS[index]) if index < len(BOUNDS) else float(BOUNDS[-1])
    return float(BOUNDS[-1])


def totals(conn: Redis) -> dict[str, Counter]:
    """All-time counters per type (created, finished, failed, ..., priority|high ...)."""
    return by_name(conn.hgetall(keys.METRICS_TOTALS))


def migrate_totals(conn: Redis) -> int:
    """Totals an older vq kept with the fine histogram (`<type>|run|<i>`, 71 buckets) get
    Prometheus's buckets instead: each fine bucket is added to the first coarse bucket at or
    above its upper bound, and removed, so a histogram's `_count` still matches its `_sum`.
    Run once at the daemon's start. Returns how many fields it folded."""

    folded = [0]

    def fold_old(pipe) -> None:
        moves: Counter = Counter()
        old = []
        for raw, n in text_hash(pipe.hgetall(keys.METRICS_TOTALS)).items():
            job_type, _, rest = raw.partition("|")
            family, _, index = rest.partition("|")
            if family in PROM_BOUNDS and index.isdigit():
                upper = BOUNDS[int(index)] if int(index) < len(BOUNDS) else float("inf")
                moves[f"{job_type}|{family}_le|{prom_bucket_of(family, upper)}"] += int(n)
                old.append(raw)
        if old:
            pipe.multi()
            for fld, count in moves.items():
                pipe.hincrby(keys.METRICS_TOTALS, fld, count)
            pipe.hdel(keys.METRICS_TOTALS, *old)
        folded[0] = len(old)

    conn.transaction(fold_old, keys.METRICS_TOTALS)
    return folded[0]


def top_users(conn: Redis, n: int) -> list[tuple[str, Counter]]:
    """The n users who created the most jobs, with their counters: from the ranking, so the
    time does not grow with the number of users."""
    if not conn.exists(keys.METRICS_USERS_RANK) and conn.exists(keys.METRICS_USERS):
        _rank_existing_users(conn)  # counters written by a vq that kept no ranking
    top = members(conn.zrevrange(keys.METRICS_USERS_RANK, 0, n - 1))
    if not top:
        return []
    values = conn.hmget(keys.METRICS_USERS, [f"{user}|{name}" for user in top for name in USER_COUNTERS])
    out = []
    for index, user in enumerate(top):
        row = values[index * len(USER_COUNTERS) : (index + 1) * len(USER_COUNTERS)]
        out.append((user, Counter({name: int(v or 0) for name, v in zip(USER_COUNTERS, row)})))
    return out


def _rank_existing_users(conn: Redis) -> None:
    by_user = list(by_name(conn.hgetall(keys.METRICS_USERS), last_bar=True).items())
    now = int(time.time() * 1000)
    with conn.pipeline() as pipe:
        for chunk_start in range(0, len(by_user), 1000):
            chunk = by_user[chunk_start : chunk_start + 1000]
            pipe.zadd(keys.METRICS_USERS_RANK, {user: c["created"] for user, c in chunk})
            pipe.zadd(keys.METRICS_USERS_SEEN, {user: now for user, _ in chunk}, gt=True)
        pipe.execute()


def prune_users(conn: Redis, idle_before_ms: int) -> int:
    """Forget the counters of users with no counted event since `idle_before_ms`, so the
    per-user figures stay bounded by the active users. Returns how many were dropped."""
    dropped = 0
    while True:
        idle = members(conn.zrangebyscore(keys.METRICS_USERS_SEEN, "-inf", idle_before_ms, start=0, num=500))
        if not idle:
            return dropped
        with conn.pipeline() as pipe:
            pipe.hdel(keys.METRICS_USERS, *[f"{user}|{name}" for user in idle for name in USER_COUNTERS])
            pipe.zrem(keys.METRICS_USERS_RANK, *idle)
            pipe.zrem(keys.METRICS_USERS_SEEN, *idle)
            pipe.execute()
        dropped += len(idle)
