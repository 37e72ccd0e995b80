"""Autoscaling a daemon's worker processes between `daemon.autoscale.min` and `max`.

Workers are added when jobs that could start now (a free slot for their type and their
user, the queue not paused) outnumber the idle workers of every host on two looks in a
row (one look can fall between a job's end and its worker's next pick); never more than
that, since a worker beyond the free slots would only wait. A worker is retired (it
finishes its job first) after it did no work for `scaleDownAfter`, down to `min`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redis import Redis

from vq import keys, limits
from vq.config import Settings
from vq.replies import texts
from vq.workers import WORKERS_SET

USERS_LOOKED_AT = 500  # per type and priority: enough to see the headroom of a busy queue


@dataclass
class Demand:
    startable: int  # jobs that could start now
    backlog: int  # jobs waiting (queued or limited)
    room: int  # free type slots over the types served


def demand(conn: Redis, settings: Settings, job_types: list[str]) -> Demand:
    """How many waiting jobs of these types could start now, from the same limits admission
    applies: a type's free slots bound its jobs; a limited job counts only when its user has
    a free slot (new arrivals, not yet routed, count in full)."""
    in_force = limits.effective(conn, settings)
    now = int(time.time() * 1000)
    paused = set(texts(conn.smembers(keys.PAUSED)))
    with conn.pipeline(transaction=False) as pipe:
        for name in job_types:
            pipe.zcount(keys.running_type(name), now, "+inf")
            for priority in keys.PRIORITY_ORDER:
                pipe.llen(f"rq:queue:{keys.queue_name(name, priority)}")
                pipe.lrange(keys.ring(name, priority), 0, USERS_LOOKED_AT - 1)
        replies = iter(pipe.execute())
    startable = backlog = room_total = 0
    for name in job_types:
        running = next(replies)
        arrivals, lines = 0, []
        for priority in keys.PRIORITY_ORDER:
            arrivals += next(replies)
            lines += [(priority, user.decode()) for user in next(replies)]
        waiting = _waiting_per_user(conn, name, lines)
        room = max(0, limits.type_limit(conn, settings, name, in_force) - running)
        backlog += arrivals + sum(waiting.values())
        if name in paused:
            continue
        users = sorted(waiting)
        headroom = dict(zip(users, _user_headroom(conn, settings, users, in_force, now)))
        ready = arrivals + sum(min(n, headroom[u]) for u, n in waiting.items())
        startable += min(room, ready)
        room_total += room
    return Demand(startable, backlog, room_total)


def _waiting_per_user(conn: Redis, job_type: str, lines: list[tuple[str, str]]) -> dict[str, int]:
    with conn.pipeline(transaction=False) as pipe:
        for priority, user in lines:
            pipe.llen(keys.waiting_list(job_type, priority, user))
            pipe.zcard(keys.deadline_line(job_type, priority, user))  # those with a deadline
        counts = pipe.execute()
    out: dict[str, int] = {}
    for (_priority, user), plain, dated in zip(lines, counts[::2], counts[1::2]):
        out[user] = out.get(user, 0) + plain + dated
    return out


def _user_headroom(conn: Redis, settings: Settings, users: list[str], in_force: dict, now: int) -> list[int]:
    if not users:
        return []
    caps = limits.user_limits(conn, settings, users, in_force)
    with conn.pipeline(transaction=False) as pipe:
        for user in users:
            pipe.zcount(keys.running_user(user), now, "+inf")
        running = pipe.execute()
    return [max(0, cap - n) for cap, n in zip(caps, running)]


@dataclass
class Decision:
    target: int
    reason: str


def decide(
    current: int,
    idle_here: int,
    idle_elsewhere: int,
    long_idle: int,
    want: Demand,
    low: int,
    high: int,
    share: float = 1.0,
) -> Decision:
    """The number of workers this host should run, and why (for the log). `share`: this
    host's weight over that of every autoscaling host (each adds its share of workers)."""
    unserved = want.startable - idle_here - idle_elsewhere
    if unserved > 0 and current < high:
        target = min(high, current + max(1, math.ceil(unserved * share)))
        return Decision(
            target,
            f"{want.startable} job(s) could start now (backlog {want.backlog}, "
            f"{want.room} free type slot(s)) and only {idle_here + idle_elsewhere} "
            f"worker(s) are idle",
        )
    if want.startable == 0 and long_idle and current > low:
        target = max(low, current - long_idle)
        return Decision(
            target, f"{long_idle} worker(s) idle past daemon.autoscale.scaleDownAfter and no waiting job could start"
        )
    return Decision(max(low, min(high, current)), "")


class Autoscaler:
    """One daemon's scaling loop over its worker children (vq/daemon_children.py `Child`): looks at
    what each did since the last look, at the demand, and starts or retires workers."""

    def __init__(self, conn: Redis, settings: Settings, job_types: list[str], worker_key, start, retire, log):
        self.conn, self.settings, self.job_types = conn, settings, job_types
        self.worker_key, self.start, self.retire, self.log = worker_key, start, retire, log
        self._done: dict[str, int] = {}
        self._idle_since: dict[str, float] = {}
        self._short_before = False  # the last look also found jobs with no worker for them

    def step(self, workers: list) -> Decision:
        a = self.settings.daemon.autoscale
        if a is None:  # the daemon makes an Autoscaler only when daemon.autoscale is set
            raise ValueError("daemon.autoscale is not configured")
        active = [w for w in workers if not w.parked]
        now = time.monotonic()
        idle_here, long_idle = 0, []
        running = [w for w in active if w.process is not None and w.process.is_alive()]
        mine = {self.worker_key(w) for w in running}
        with self.conn.pipeline(transaction=False) as pipe:
            for w in running:
                pipe.hmget(self.worker_key(w), "state", "successful_job_count", "failed_job_count")
            records = pipe.execute()
        for w, (state, ok, failed) in zip(running, records):
            done = int(ok or 0) + int(failed or 0)
            if state != b"busy":
                idle_here += 1  # free for the next job, even if it just finished one
            if state != b"busy" and done == self._done.get(w.name, -1):
                since = self._idle_since.setdefault(w.name, now)
                if now - since >= a.scaleDownAfter / 1000:
                    long_idle.append(w)
            else:
                self._idle_since.pop(w.name, None)
            self._done[w.name] = done
        want = demand(self.conn, self.settings, self.job_types)
        decision = decide(
            len(active), idle_here, self._idle_elsewhere(mine), len(long_idle), want, a.min, a.max, self._share()
        )
        short = decision.target > len(active)
        confirmed, self._short_before = short and self._short_before, short
        if short and not confirmed:
            # A job that just ended leaves its slot free an instant before its worker
            # reads as idle; growing only on a second look in a row ignores that gap.
            return Decision(len(active), "")
        if decision.target > len(active):
            for w in [w for w in workers if w.parked][: decision.target - len(active)]:
                self.start(w)
            self.log.info("autoscale: %d -> %d workers: %s", len(active), decision.target, decision.reason)
        elif decision.target < len(active):
            for w in sorted(long_idle, key=lambda w: -int(w.name.split("-")[1]))[: len(active) - decision.target]:
                self._idle_since.pop(w.name, None)
                self.retire(w)
            self.log.info("autoscale: %d -> %d workers: %s", len(active), decision.target, decision.reason)
        return decision

    def _share(self) -> float:
        """This daemon's weight over the live daemons' (daemon.weight, from their presence)."""
        from vq import presence

        weights = [d.get("weight", 1.0) for d in presence.daemons(self.conn) if d["live"]]
        mine = self.settings.daemon.weight
        return min(1.0, mine / max(mine, sum(weights)))

    def _idle_elsewhere(self, mine: set[str]) -> int:
        """Idle, live workers of other daemons (they will take waiting jobs too)."""
        names = texts(self.conn.smembers(WORKERS_SET))
        others = [n for n in names if n not in mine]
        if not others:
            return 0
        with self.conn.pipeline(transaction=False) as pipe:
            for name in others:
                pipe.hget(name, "state")
            states = pipe.execute()
        return sum(1 for s in states if s == b"idle")
