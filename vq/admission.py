"""Admission: the step between "runnable" and "running" that enforces per-user, per-type
and limit-group (vq/groups.py) concurrency limits across every host, fairly, and gives a job
that needs resources (GPUs: vq/capacity.py) only to a worker whose free share covers it.

Every way a job becomes runnable (submission, a delay coming due, a retry, a dependency
finishing, a recurring tick) ends on its RQ queue list. Workers never pop those lists
directly: they call `admit()`, a Lua script that moves new arrivals into per-user
waiting lines and hands out the next job whose user, type and groups all have a free
slot, leasing them all in the same atomic step. Users take turns within a priority level;
a job that waited past the aging threshold moves up a level. A lease lapses unless the
running worker renews it, so a killed worker's slots come back by themselves. Each lease
carries a token (fenced leases: vq/fence.py), and only its holder's writes count.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import NamedTuple

from redis import Redis
from redis.exceptions import NoScriptError, ResponseError
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import now, utcparse

from vq import capacity, groups, keys, lua
from vq.job_end import JobEnd, encoded
from vq.model import job_type_of
from vq.replies import text, texts
from vq.rq_seam.job import format_rq_date

DRAIN_MAX = 200  # arrivals routed per call and queue: bounds the script's run time
SCAN_MAX = 100  # users looked at per ring and call before giving up for now
WAKE_TOKENS = 64


class Admission:
    """The admission scripts bound to one connection (scripts are loaded once)."""

    def __init__(self, conn: Redis, lease_ms: int):
        self.conn = conn
        self.lease_ms = lease_ms
        self._admit = lua.script(conn, "admit.lua")
        self._promote = lua.script(conn, "promote.lua")
        self._renew = lua.script(conn, "renew.lua")

    def admit(self, job_types: list[str], start: Start | None = None) -> Admitted | None:
        """Route arrivals and admit one job of these types, or None. The job's hash comes
        back in the same round trip, so the worker need not fetch it; with `start` the job
        is also started for that worker."""
        return self.admit_or_due(job_types, start)[0]

    def admit_or_due(
        self, job_types: list[str], start: Start | None = None, woken: str | None = None
    ) -> tuple[Admitted | None, float | None]:
        """`admit`, and when nothing was admitted because a limit group's rate held a job
        back, or a live lease held one from its slot, the seconds until it may start (the
        rate allows it; the lease lapses unless renewed, as a dead worker's does), None
        otherwise: neither comes with an event that wakes a worker, so the caller waits no
        longer. `woken`: the wake token the caller took (`wait_for_wake`); if nothing here is
        for it but something it does not serve may start (arrivals of other types, slots
        given back that a job of another type may use), the script passes the token on to
        another idle worker (vq/lua/admit_main.lua)."""
        asked_at = time.monotonic()  # before Redis sets the lease's deadline: the worker's own is earlier
        reply = self._admit(args=self._admit_args(job_types, start, woken=woken))
        admitted = parse_admitted(reply)
        if admitted is not None:
            return admitted._replace(asked_at=asked_at), None
        return None, (int(reply[1]) / 1000 if len(reply) == 2 else None)

    def admit_in(
        self,
        pipe,
        job_types: list[str],
        start: Start | None = None,
        give_back: tuple[str, str, str] | None = None,
        finish: JobEnd | str = "",
    ) -> None:
        """`admit` as part of a pipeline (its reply: `parse_admitted`). With `start` the
        admitted job is also started for that worker in the same step; with `give_back`
        (job id, type, user) a finished job's slots are given back first and an idle
        worker woken, as `release_in` does; with `finish` (a JobEnd, or its JSON: vq/worker.py
        `_finish_payload`) that job's end is written first. By SHA: the script is loaded by the first
        `admit`; a Redis that lost it answers NOSCRIPT, which `parse_admitted` reads as
        "nothing admitted" after loading it again and doing the rest the slow way."""
        self._admit.evalsha_in(pipe, args=self._admit_args(job_types, start, give_back, finish))

    def _admit_args(
        self,
        job_types: list[str],
        start: Start | None = None,
        give_back: tuple[str, str, str] | None = None,
        finish: JobEnd | str = "",
        woken: str | None = None,
    ) -> list[str]:
        """The script's ARGV: its options (vq/lua/admit_common.lua) and the finished job's end."""
        options = {
            "token": uuid.uuid4().hex,
            "lease_ms": self.lease_ms,
            "drain_max": DRAIN_MAX,
            "scan_max": SCAN_MAX,
            "types": job_types,
        }
        if capacity.THIS_WORKER is not None:  # its share: admission gives it only jobs that fit (vq/capacity.py)
            options["resources"] = capacity.THIS_WORKER.options()
        if woken is not None:
            options["woken"] = woken
        if give_back is not None and give_back[0]:
            options["give_back"] = dict(zip(("id", "type", "user"), give_back))
        if start is not None:
            started: dict[str, object] = {
                "worker": start.worker,
                "now": format_rq_date(now()),
                "default_ttl": start.default_ttl,
                "busy": start.busy,
            }
            if start.idle:
                started["idle"] = True
            options["start"] = started
        return [json.dumps(options, separators=(",", ":")), encoded(finish)]

    def parse_admitted(
        self, reply, give_back: tuple[str, str, str] | None = None, finish: JobEnd | str = ""
    ) -> tuple[bool, Admitted | None, bool]:
        """The reply of `admit_in`: (whether the finished job has dependents, the admitted
        job or None, whether the finished job's end was refused because its lease token was
        stale). `give_back` and `finish` as given to it, done here if the script did not run."""
        if isinstance(reply, ResponseError):
            if not isinstance(reply, NoScriptError) and "NOSCRIPT" not in str(reply):  # redis-py strips the word
                raise reply
            self.conn.script_load(self._admit.script)
            return _parse_reply(self._admit(args=self._admit_args([], None, give_back, finish)))
        return _parse_reply(reply)

    def promote_aged(self, job_types: list[str], threshold_ms: int, max_per_level: int = 500) -> int:
        now = int(time.time() * 1000)
        return int(self._promote(args=[now, threshold_ms, max_per_level, len(job_types), *job_types]))

    def renew(self, job_id: str, job_type: str, user_id: str, token: str, conn: Redis | None = None) -> int:
        """Extend a running job's leases, by their holder only (vq/lua/renew.lua): 1 renewed,
        2 renewed and `vq cancel --now` asks for the job to stop, 0 lost (lapsed, which is
        never revived, or taken over), -1 given back by the holder."""
        return int(
            self._renew(
                keys=[keys.rq_job(job_id), keys.running_type(job_type), keys.running_user(user_id)],
                args=[job_id, token, self.lease_ms],
                client=conn or self.conn,
            )
        )


class Start(NamedTuple):
    """Start the admitted job for this worker in the admission step."""

    worker: str
    execution_id: str  # of the Execution RQ's worker keeps in memory for the job (not written to Redis)
    default_ttl: int  # the heartbeat TTL for a job without a timeout
    busy: bool  # the worker's hash already says busy (it is finishing a job): not rewritten
    # its last admission call, in the same wait, found nothing and named it idle (vq:idle-workers):
    # not named again (every wait's first call names it, so a mark lost meanwhile comes back)
    idle: bool = False


class Admitted(NamedTuple):
    job_id: str
    queue_name: str
    user: str
    data: dict  # the job's hash, as HGETALL gives it
    started: bool  # started for the calling worker in the same step (admit_in with start)
    asked_at: float = 0.0  # monotonic time the admission call was sent (the lease's deadline is later)

    @property
    def token(self) -> str | None:
        """The token of the lease the job was admitted under (vq/fence.py)."""
        value = self.data.get(keys.LEASE_FIELD.encode())
        return value.decode() if value else None


def parse_admitted(result) -> Admitted | None:
    return _parse_reply(result)[1]


def _parse_reply(result) -> tuple[bool, Admitted | None, bool]:
    has_dependents, stale = result[0] == 1, result[0] == -1
    if len(result) < 3:  # nothing admitted (a second item: ms until a rate lets a job start)
        return has_dependents, None, stale
    flat = result[4]
    return (
        has_dependents,
        Admitted(
            result[1].decode(),
            result[2].decode(),
            result[3].decode(),
            dict(zip(flat[::2], flat[1::2])),
            bool(result[5]),
        ),
        stale,
    )


def release(conn: Redis, job_id: str, job_type: str, user_id: str) -> None:
    """Give back a job's slots and wake a waiting worker."""
    with conn.pipeline(transaction=False) as pipe:
        release_in(pipe, job_id, job_type, user_id)
        pipe.execute()


def release_in(pipe, job_id: str, job_type: str, user_id: str) -> None:
    """`release` as part of a pipeline the caller executes."""
    pipe.zrem(keys.running_type(job_type), job_id)
    pipe.zrem(keys.running_user(user_id), job_id)
    release_groups_in(pipe, job_id)
    wake_in(pipe)


def release_groups_in(pipe, job_id: str) -> None:
    """Give back the job's limit-group slots, which its hash names (vq/lua/release_groups.lua):
    by the script's text, as a pipeline cannot load a script Redis lacks."""
    names = lua.names("release_groups.lua")
    pipe.eval(lua.source("release_groups.lua"), len(names) + 1, *names, keys.rq_job(job_id), job_id)


def mark_arrivals_in(pipe, queue_names) -> None:
    """Tell admission these RQ lists got jobs (after the push, in the same pipeline)."""
    if queue_names:
        pipe.sadd(keys.INBOX, *queue_names)


def mark_nonempty_lists(conn: Redis, queue_names: list[str]) -> int:
    """The safety net for pushes that bypass vq's queue class (RQ's own registry clean-ups,
    `rq requeue`): mark every non-empty list. Run by a daemon chore every few seconds."""
    with conn.pipeline(transaction=False) as pipe:
        for name in queue_names:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        lengths = pipe.execute()
    found = [name for name, length in zip(queue_names, lengths) if length]
    if found:
        mark_arrivals(conn, found)
    return len(found)


def forget_idle_in(pipe, worker_name: str) -> None:
    """A stopping worker is no longer idle (admission wakes idle workers when it frees
    slots: vq/lua/admit_main.lua)."""
    pipe.srem(keys.IDLE_WORKERS, worker_name)


def forget_gone_idle_workers(conn: Redis) -> int:
    """Drop the idle marks of workers that died without saying so (their RQ worker key has
    expired); a stale mark only costs a wake token nobody needs. Run by a daemon chore."""
    names = texts(conn.smembers(keys.IDLE_WORKERS))
    if not names:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(keys.rq_worker(name))
        alive = pipe.execute()
    gone = [name for name, exists in zip(names, alive) if not exists]
    if gone:
        conn.srem(keys.IDLE_WORKERS, *gone)
    return len(gone)


def migrate_legacy_idle(conn: Redis) -> int:
    """vq up to 0.2.0 marked each idle worker in `vq:inbox`, which every admission call
    reads (its cost grew with idle workers): move such marks into `vq:idle-workers`, with the
    hint that it names some (at daemon start; admission moves any it meets as well, a worker
    of the older vq still running). Returns the number of marks moved."""
    marks = [m for m in texts(conn.smembers(keys.INBOX)) if m.startswith(keys.LEGACY_INBOX_IDLE)]
    if not marks:
        return 0
    with conn.pipeline() as pipe:
        pipe.sadd(keys.IDLE_WORKERS, *(m.removeprefix(keys.LEGACY_INBOX_IDLE) for m in marks))
        pipe.sadd(keys.INBOX, keys.INBOX_IDLE_HINT)
        pipe.srem(keys.INBOX, *marks)
        pipe.execute()
    return len(marks)


def mark_arrivals(conn: Redis, queue_names: list[str], jobs: int = 1) -> None:
    """Mark these lists for admission and wake a worker per job pushed (pushes made outside
    vq's pipelines)."""
    with conn.pipeline(transaction=False) as pipe:
        mark_arrivals_in(pipe, queue_names)
        wake_in(pipe, jobs)
        pipe.execute()


def wake(conn: Redis, count: int = 1) -> None:
    """Tell `count` idle workers (at most WAKE_TOKENS) that something may have become runnable."""
    with conn.pipeline(transaction=False) as pipe:
        wake_in(pipe, count)
        pipe.execute()


def wake_in(pipe, count: int = 1) -> None:
    """Queue wake tokens in a pipeline the caller executes: one per job an event may have
    made runnable, up to WAKE_TOKENS, as idle workers wait for a token alone (not a timer)."""
    pipe.lpush(keys.WAKE, *([0] * max(1, min(count, WAKE_TOKENS))))
    pipe.ltrim(keys.WAKE, 0, WAKE_TOKENS - 1)


def wait_for_wake(conn: Redis, timeout: float) -> str | None:
    """Wait for a wake token up to `timeout` seconds: the token, or None when none came. A
    token is its hop count (how many idle workers passed it on before), or, pushed by a
    finishing worker for the slots it gave back, JSON [hops, type, user, wide] naming them
    (vq/lua/admit_main.lua), so a worker that cannot use them passes it on."""
    reply = conn.blpop([keys.WAKE], timeout=max(0.01, timeout))
    if reply is None:
        return None
    return text(reply[1])


def forget(conn: Redis, job) -> None:
    """Take a waiting job out of its line and its limit groups' waiting sets (it was canceled,
    expired or is about to be deleted: its hash names its groups)."""
    job_type = job_type_of(job)
    user = job.meta.get("userId") or "_"
    in_groups = groups.decoded(conn.hget(keys.rq_job(job.id), keys.GROUPS_FIELD))
    with conn.pipeline(transaction=False) as pipe:
        for name, key in in_groups.items():
            pipe.zrem(keys.group_waiting(name, key), job.id)
        for priority in keys.PRIORITY_ORDER:
            pipe.lrem(keys.waiting_list(job_type, priority, user), 1, job.id)
            pipe.zrem(keys.deadline_line(job_type, priority, user), job.id)
            pipe.zrem(keys.wait_since(job_type, priority), job.id)
        pipe.hdel(keys.AGED, job.id)
        pipe.execute()


def in_line(conn: Redis, jobs) -> set[str]:
    """The ids of these jobs that wait in a user's line for a slot (routed by admission,
    not yet admitted): what vq shows as `limited`. A job of a paused type waits for the
    resume, not for a slot, and stays `queued`. One round trip; only `queued` jobs are
    looked up, at every priority level (aging moves a job up)."""
    queued = [job for job in jobs if job is not None and job.get_status(refresh=False) == JobStatus.QUEUED]
    if not queued:
        return set()
    with conn.pipeline(transaction=False) as pipe:
        pipe.smembers(keys.PAUSED)
        for job in queued:
            for key in keys.wait_since_all(job_type_of(job)):
                pipe.zscore(key, job.id)
        replies = pipe.execute()
    paused = {name.decode() for name in replies[0]}
    scores = iter(replies[1:])
    return {job.id for job in queued if waits_in_line(job, [next(scores) for _ in keys.PRIORITY_ORDER], paused)}


def waits_in_line(job, scores: list, paused: set[str]) -> bool:
    """`in_line` for one job, from what it read: the job's scores in its type's waiting
    lines (`keys.wait_since_all`, one per priority level) and the paused types' names."""
    return (
        job.get_status(refresh=False) == JobStatus.QUEUED
        and any(score is not None for score in scores)
        and job_type_of(job) not in paused
    )


def user_lines(conn: Redis, job_types: list[str], user_id: str, most: int) -> tuple[list[str], int]:
    """The jobs waiting in a user's lines (for a slot, a group, resources, or a paused type's
    resume): up to `most` ids, type by type, each priority first to last, jobs with a deadline
    before the rest as admission takes them; and how many wait in all. One round trip."""
    lines = [
        (keys.deadline_line(t, p, user_id), keys.waiting_list(t, p, user_id))
        for t in job_types
        for p in keys.PRIORITY_ORDER
    ]
    with conn.pipeline(transaction=False) as pipe:
        for dated, plain in lines:
            pipe.zrange(dated, 0, most - 1)
            pipe.lrange(plain, 0, most - 1)
            pipe.zcard(dated)
            pipe.llen(plain)
        replies = pipe.execute()
    ids = [i.decode() for n in range(len(lines)) for part in replies[4 * n : 4 * n + 2] for i in part]
    return ids[:most], sum(replies[4 * n + 2] + replies[4 * n + 3] for n in range(len(lines)))


def count_waiting(conn: Redis, job_type: str) -> int:
    """Jobs of the type waiting for a slot (routed, not admitted)."""
    with conn.pipeline(transaction=False) as pipe:
        for key in keys.wait_since_all(job_type):
            pipe.zcard(key)
        return sum(pipe.execute())


def migrate_legacy_waiting(conn: Redis, job_types: list[str]) -> int:
    """vq before 0.3 kept every waiting job in one zset per type as well, and left jobs
    aged to high out of the per-level ones: put those in high's and drop the old key (at
    daemon start). Returns the number of jobs moved."""
    moved = 0
    for name in job_types:
        legacy = keys.legacy_waiting(name)
        if not conn.exists(legacy):
            continue
        missing, high = legacy + ":missing", keys.wait_since(name, "high")
        with conn.pipeline() as pipe:
            pipe.zdiffstore(missing, [legacy, *keys.wait_since_all(name)])
            pipe.zunionstore(high, [high, missing], aggregate="MIN")
            pipe.unlink(missing, legacy)
            moved += pipe.execute()[0]
    return moved


def longest_waits(conn: Redis, job_types: list[str], now_ms: int) -> dict[str, int]:
    """Per type, how long (ms) the job first in line at some priority has waited since it
    was enqueued (RQ's enqueued_at), at most two reads whatever the backlog. An aged job
    is in line at its new level from the time it moved there, so one that moved behind
    younger jobs is not looked at: the figure can be short of the true longest wait by up
    to the aging threshold, never long."""
    with conn.pipeline(transaction=False) as pipe:
        for name in job_types:
            for key in keys.wait_since_all(name):
                pipe.zrange(key, 0, 0, withscores=True)
        firsts = iter(pipe.execute())
    heads = {name: [entry for _ in keys.PRIORITY_ORDER for entry in next(firsts)] for name in job_types}
    with conn.pipeline(transaction=False) as pipe:
        for entries in heads.values():
            for job_id, _since in entries:
                pipe.hget(Job.key_for(job_id.decode()), "enqueued_at")
        enqueued = iter(pipe.execute())
    out = {}
    for name, entries in heads.items():
        longest = 0
        for _job_id, since in entries:
            text = next(enqueued)
            start = _epoch_ms(text.decode()) if text else int(since)
            longest = max(longest, now_ms - min(start, int(since)))
        out[name] = longest
    return out


def _epoch_ms(text: str) -> int:
    try:
        return int(utcparse(text).timestamp() * 1000)
    except ValueError:
        return 1 << 62  # unreadable: the line's own clock counts
