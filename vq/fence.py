"""Fenced leases: what keeps a running job's slots, and what keeps a worker that lost them
from doing harm.

A job runs under a lease that admission grants in the same atomic step that takes the
slots (vq/lua/admit_choose.lua): the job's entries in its type's and its user's running sets,
with a deadline on Redis's clock, and a token in the job's hash (`vq_lease`). The worker
renews the lease every `renew_every` (vq/lua/renew.lua); a lapsed lease is never revived,
because admission counts only live leases and may already have given the slot away.

Three deadlines, earliest first, so that a slot is never held by two running jobs:
1. `stop_at`: the worker stops the job itself (LeaseLost raised into the handler; a forked
   child killed) when no renewal has succeeded for `lease - margin`, counted on its own
   monotonic clock from the moment the last successful renewal was *sent*, which is before
   Redis set that renewal's deadline: no clock offset between hosts enters.
2. `kill_at` (margin/2 later): the daemon that supervises the worker kills the whole
   process if it still holds the lease (it was stopped with SIGSTOP, or its handler is
   stuck in native code that no exception reaches; vq/daemon_supervisor.py).
3. Redis's deadline (`lease` after the renewal ran): only then does admission count the
   slot free, and stalled-job recovery requeue the job (vq/stalled.py), taking the token
   away.

Every write a worker makes for a job it runs carries the token and is refused unless it is
still the job's: progress and errors (vq/lua/fenced.lua), the end, the result and the
give-back of slots (vq/lua/admit_end.lua), and RQ's own end-of-job transactions
(`FencedRedis`: WATCH on the job, token checked, MULTI/EXEC). A worker that comes back
late (SIGCONT, a network pause) finds its token stale: its write is refused, counted in
`vq:fence:refused`, and logged. Redis is both the lock service and the store here, so the
check is an equality inside one atomic step, not the ordering of tokens a separate store
would need (Kleppmann, "How to do distributed locking"; BullMQ's lock tokens and its
"Missing lock for job" refusal work the same way).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.client import Pipeline

from vq import keys, lua
from vq.handler_stop import held_by_job
from vq.replies import optional_text
from vq.rq_seam import private

log = logging.getLogger("vq.fence")


class StaleLease(Exception):
    """A write was refused: the job no longer runs under this worker's lease token."""


def margin_s(lease_ms: int) -> float:
    """How long before Redis's deadline a worker stops a job it cannot renew: a quarter of
    the lease, at least half a second (at most half the lease)."""
    lease = lease_ms / 1000
    return min(max(lease * 0.25, 0.5), lease * 0.5)


def renew_every_s(lease_ms: int) -> float:
    """Renewals per lease: six, so a Redis that is away for a few of them costs nothing."""
    return max(0.1, lease_ms / 6000)


@dataclass(eq=False)
class Lease:
    job_id: str
    job_type: str
    user: str
    token: str
    renewed_at: float  # monotonic: when the last renewal that succeeded (or the admission) was sent
    stop: Callable[[], None]  # interrupts the handler
    lost: bool = False
    dropped: bool = False
    canceled: bool = False  # `vq cancel --now` asked for the job to be interrupted
    interrupt: Callable[[], None] | None = None  # how to, when not `stop` (a forked child: vq/cancel_now.py)
    raised: bool = False  # the handler was interrupted once already (a lost lease: never twice)
    thread: int = field(default_factory=threading.get_ident)


class Fence:
    """One per worker process: renews every lease the process holds (its main worker's and
    its thread workers') and stops a job whose lease it cannot keep. Publishes the moment
    the process must be gone by (`kill_at`) where its daemon reads it."""

    def __init__(self, conn: redis.Redis, lease_ms: int, shared_deadline=None):
        from vq.rq_seam.queue import admission_for

        self.lease_ms = lease_ms
        self.stop_after = lease_ms / 1000 - margin_s(lease_ms)
        self.kill_after = lease_ms / 1000 - margin_s(lease_ms) / 2
        self.renew_every = renew_every_s(lease_ms)
        self.admission = admission_for(conn)
        from vq.connection import make_client
        from vq.execution import runtime

        # Its own client with a short timeout (the configured Redis, by URL, socket or
        # Sentinel): a renewal that hangs gives up and tries again; the watchdog never waits.
        self.renewer_conn = make_client(runtime().settings, socket_timeout=self.renew_every)
        self.shared_deadline = shared_deadline
        self._leases: list[Lease] = []
        self._lock = threading.Lock()
        self._changed = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="vq-lease-watchdog").start()
        threading.Thread(target=self._renew_loop, daemon=True, name="vq-lease-renewer").start()
        from vq.cancel_now import start_listener
        from vq.connection import make_listener_client

        settings = runtime().settings
        start_listener(lambda: make_listener_client(settings), self.cancel)  # `vq cancel --now`

    def hold(
        self,
        job_id: str,
        job_type: str,
        user: str,
        token: str,
        asked_at: float,
        stop: Callable[[], None],
        interrupt: Callable[[], None] | None = None,
    ) -> Lease:
        lease = Lease(job_id, job_type, user, token, asked_at, stop, interrupt=interrupt)
        with self._lock:
            self._leases.append(lease)
            held_by_job[job_id] = lease
        self._publish()
        self._changed.set()
        return lease

    def drop(self, lease: Lease | None) -> None:
        """The job's handler has returned: no more renewals; the end is written by the
        holder (fenced) or, if the lease was lost, left to stalled-job recovery."""
        if lease is None:
            return
        lease.dropped = True
        with self._lock:
            if lease in self._leases:
                self._leases.remove(lease)
            if held_by_job.get(lease.job_id) is lease:
                del held_by_job[lease.job_id]
        self._publish()

    def _publish(self) -> None:
        if self.shared_deadline is None:
            return
        with self._lock:
            live = [lease.renewed_at for lease in self._leases if not lease.lost]
        self.shared_deadline.value = min(live) + self.kill_after if live else 0.0

    def _watch(self) -> None:
        """No I/O here: a renewal that hangs (Redis paused, a network partition) must not
        delay the stop."""
        while True:
            now = time.monotonic()
            with self._lock:
                due = [lease for lease in self._leases if not lease.lost and now >= lease.renewed_at + self.stop_after]
                pending = [lease.renewed_at + self.stop_after for lease in self._leases if not lease.lost]
            for lease in due:
                self._lose(
                    lease, f"no renewal succeeded for {now - lease.renewed_at:.1f}s (lease {self.lease_ms / 1000:g}s)"
                )
            wait = min(pending) - time.monotonic() if pending else 1.0
            self._changed.wait(max(0.01, min(wait, 1.0)))
            self._changed.clear()

    def _renew_loop(self) -> None:
        while True:
            time.sleep(self.renew_every)
            with self._lock:
                held = [lease for lease in self._leases if not lease.lost]
            for lease in held:
                sent = time.monotonic()
                try:
                    answer = self.admission.renew(
                        lease.job_id, lease.job_type, lease.user, lease.token, conn=self.renewer_conn
                    )
                except (redis.ConnectionError, redis.TimeoutError):
                    continue  # the watchdog stops the job if this goes on
                if lease.dropped or lease.lost:
                    continue
                if answer in (1, 2):
                    lease.renewed_at = sent
                    self._publish()
                    self._changed.set()
                    if answer == 2:  # a cancel --now whose message this process missed
                        self.cancel(lease.job_id)
                elif answer == 0:
                    self._lose(lease, "its lease lapsed or was taken over")
                else:
                    lease.dropped = True  # given back by the holder: nothing to renew

    def cancel(self, job_id: str) -> bool:
        """`vq cancel --now` for a job this process runs: interrupt its handler once (a forked
        child is told, and killed if that does not reach it: Lease.interrupt). False when
        this process does not hold the job's lease."""
        with self._lock:
            lease = held_by_job.get(job_id)
            if lease is None or lease.lost or lease.dropped or lease.canceled:
                return False
            lease.canceled = True
        log.warning("job %s (%s): canceled now: interrupting its handler", lease.job_id, lease.job_type)
        try:
            (lease.interrupt or lease.stop)()
        except Exception:
            log.exception("job %s: could not interrupt it; it stops at its next progress report", lease.job_id)
        if lease.interrupt is None:  # in this process: again while it runs on (a forked child: interrupt_child)
            from vq.cancel_now import keep_interrupting

            keep_interrupting(lease, lease.stop)
        return True

    def _lose(self, lease: Lease, why: str) -> None:
        if lease.lost or lease.dropped:
            return
        lease.lost = True
        self._publish()
        log.warning(
            "job %s (%s): lease lost, %s: stopping it before the lease can lapse; stalled-job "
            "recovery puts it back in line",
            lease.job_id,
            lease.job_type,
            why,
        )
        try:
            lease.stop()
        except Exception:
            log.exception("job %s: could not stop it; the daemon stops the worker", lease.job_id)


# --- fenced writes ---------------------------------------------------------------------


def write_meta(conn: redis.Redis, job, event: list[str] | None = None) -> bool:
    """Save a running job's meta (and append an event), only under its current lease
    token. Without a token (a job RQ's own code started) the write is plain. False when
    refused."""
    import json

    token = getattr(job, "_vq_lease", None)
    if token is None:
        with conn.pipeline(transaction=False) as pipe:
            pipe.hset(job.key, "meta", private.serialize_meta(job))
            if event:
                pipe.xadd(keys.EVENTS, dict(zip(event[::2], event[1::2])), maxlen=1_000_000, approximate=True)
            pipe.execute()
        return True
    script = lua.script(conn, "fenced.lua")
    written = script(keys=[job.key], args=[token, private.serialize_meta(job), json.dumps(event) if event else ""])
    if not written:
        refused(job.id, "meta")
    return bool(written)


def refused(job_id: str, what: str) -> None:
    log.warning(
        "job %s: stale write refused (%s): the job's lease passed to another worker; this "
        "attempt's outcome is discarded",
        job_id,
        what,
    )


def current_token(conn: redis.Redis, job) -> str | None:
    value = conn.hget(job.key, keys.LEASE_FIELD)
    return optional_text(value) or None


def is_stale(conn: redis.Redis, job) -> bool:
    """Whether the job has a token and it is no longer the one in Redis."""
    token = getattr(job, "_vq_lease", None)
    return token is not None and current_token(conn, job) != token


class FencedPipeline(Pipeline):
    """A transaction that applies only while the job still runs under `token`: WATCH on the
    job's hash, the token read, then MULTI/EXEC (aborted if the hash changed meanwhile)."""

    fence: tuple[str, str] = ("", "")

    def execute(self, raise_on_error=True):
        if self.command_stack and not self.watching and not self.explicit_transaction:  # else the caller's own
            key, token = self.fence
            self.watch(key)
            current = self.hget(key, keys.LEASE_FIELD)
            if (optional_text(current) or None) != token:
                self.reset()
                raise StaleLease(f"{key}: lease token is stale")
        return super().execute(raise_on_error)


class FencedRedis(redis.Redis):
    """The worker's connection while it writes a job's end through RQ's code: every
    pipeline RQ opens is a FencedPipeline for that job."""

    def __init__(self, base: redis.Redis, job_key: str, token: str):
        super().__init__(connection_pool=base.connection_pool)
        self._fence = (job_key, token)

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = FencedPipeline(self.connection_pool, self.response_callbacks, True, shard_hint)
        pipe.fence = self._fence
        return pipe
