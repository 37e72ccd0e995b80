"""The precise timer: delayed jobs, retry back-offs and recurring ticks start on time, never early.

RQ's scheduled registries hold delayed jobs; vq stores their due time to the microsecond
(RQ rounds to whole seconds) and replaces RQ's once-a-second poller with one sleeper per
daemon that waits exactly until the next due time. Whoever schedules something publishes
its due time, so a sleeper waiting longer wakes at once. Every daemon's timer runs: the
move is one atomic script (`lua/due.lua`), so each job moves exactly once, and a daemon
that dies leaves no lock behind for the others to wait out.

Whoever schedules also lowers the queue's entry in `vq:scheduled:due` to the due time, so a
look reads that one key and only the registries whose time has come: an idle daemon's
timer costs Redis two commands a look instead of two per queue (61 a second with the
default 30 queues). Every FULL_LOOK_EVERY seconds a look reads every registry, for jobs
scheduled by something that wrote no entry (an older vq, RQ's own tools).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import redis
from redis import Redis
from redis.client import PubSub
from rq.registry import ScheduledJobRegistry
from rq.utils import now as rq_now
from rq.utils import utcformat

from vq import keys, lua
from vq.stopping import Stoppable

MOVE_BUDGET = 500  # jobs moved per call; a backlog is drained in a loop
FULL_LOOK_EVERY = 10.0  # seconds between looks at every queue's registry (see above)
log = logging.getLogger("vq.timer")


def schedule_in(pipe, queue_name: str, job_id: str, due: datetime) -> None:
    """Record a job's exact due time (RQ's registry, as fractional seconds) and wake timers."""
    due_ts = due.timestamp()
    pipe.zadd(f"{ScheduledJobRegistry.key_template.format(queue_name)}", {job_id: due_ts})
    due_entry_in(pipe, queue_name, due_ts)
    notify_in(pipe, due_ts)


def due_entry_in(pipe, queue_name: str, due_ts: float) -> None:
    """Lower the queue's entry in SCHEDULED_DUE to `due_ts` (after the registry's write):
    the timer looks in that registry once the entry's time comes."""
    pipe.zadd(keys.SCHEDULED_DUE, {queue_name: due_ts}, lt=True)


def notify_in(pipe, due_ts: float) -> None:
    """Tell every sleeping timer that something is due at `due_ts` (epoch seconds)."""
    pipe.publish(keys.TIMER_CHANNEL, repr(due_ts))


class DueMover:
    """The due-job move script bound to one connection and a set of queues."""

    def __init__(self, conn: Redis, queue_names: list[str]):
        self.conn = conn
        self.registries = [keys.rq_scheduled(name) for name in queue_names]
        self._script = lua.script(conn, "due.lua")

    def move(self, full: bool = False) -> tuple[int, float | None]:
        """Move what is due now: (jobs moved, the next due time in epoch seconds or None).
        `full`: look in every registry, not only those whose SCHEDULED_DUE entry has come."""
        moved_total = 0
        while True:
            moved, next_due = self._script(
                keys=self.registries, args=[repr(time.time()), utcformat(rq_now()), MOVE_BUDGET, int(full)]
            )
            moved_total += int(moved)
            if int(moved) < MOVE_BUDGET:
                return moved_total, float(next_due) if next_due else None


class Timer(Stoppable):
    """One daemon's sleeper. `tick()` callbacks (the recurring-job spawner) run on the same
    clock and return their own next due time (epoch seconds) or None."""

    def __init__(
        self,
        conn: Redis,
        queue_names: list[str],
        callbacks: Sequence[Callable[[], float | None]] = (),
        max_sleep: float = 1.0,
    ):
        self.conn = conn
        self.mover = DueMover(conn, queue_names)
        self.callbacks = list(callbacks)
        self.max_sleep = max_sleep
        self._pubsub: PubSub | None = None
        self._full_look_at = float("-inf")  # the first look is full

    def run_once(self) -> float:
        """Do everything due now; return the epoch time of the next thing due."""
        full = time.monotonic() >= self._full_look_at
        moved, next_due = self.mover.move(full)
        if full:
            self._full_look_at = time.monotonic() + FULL_LOOK_EVERY
        if moved:
            log.debug("timer: %d due job(s) moved to their queues", moved)
        candidates = [next_due] if next_due is not None else []
        for callback in self.callbacks:
            due = callback()
            if due is not None:
                candidates.append(due)
        return min(candidates, default=time.time() + self.max_sleep)

    def _wait(self, until: float) -> None:
        """Sleep until `until`, or until someone publishes an earlier due time."""
        pubsub = self._subscribe()
        deadline = min(until, time.time() + self.max_sleep)
        while not self.stopped:
            left = deadline - time.time()
            if left <= 0:
                return
            message = self.until_stopped(pubsub.get_message, timeout=left)  # SIGTERM ends it
            if message and message.get("type") == "message":
                try:
                    announced = float(message["data"])
                except ValueError:
                    continue
                deadline = min(deadline, announced)

    def run(self) -> None:
        """Until stopped. A lost Redis is waited out (said once, retried with backoff)."""
        backoff = 0.0
        while not self.stopped:
            try:
                self._subscribe()  # before looking, so nothing announced meanwhile is missed
                next_due = self.run_once()
                if backoff:
                    log.warning("timer: Redis is back")
                backoff = 0.0
                self._wait(next_due)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self._drop_pubsub()
                if not backoff:
                    log.warning("timer: Redis unreachable (%s); retrying", str(exc).splitlines()[0])
                backoff = min(5.0, backoff * 2 or 0.2)
                self.until_stopped(time.sleep, backoff)
        self._drop_pubsub()

    def _subscribe(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self.conn.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(keys.TIMER_CHANNEL)
        return self._pubsub

    def _drop_pubsub(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is discarded anyway
                pass
            self._pubsub = None
