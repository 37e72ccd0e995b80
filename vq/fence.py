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

import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.client import Pipeline

from vq import keys, lua
from vq.replies import optional_text
from vq.rq_seam import private

log = logging.getLogger("vq.fence")
INTERRUPT_SIGNAL = signal.SIGUSR2  # raised in a worker's main thread to stop a job whose lease is lost


class LeaseLost(BaseException):
    """Raised into a handler whose lease could not be kept. A BaseException, as
    KeyboardInterrupt is, so that a handler's own `except Exception` cannot swallow it."""


class CanceledNow(BaseException):
    """Raised into a handler that `vq cancel --now` interrupts (vq/cancel_now.py); a
    BaseException for the same reason as LeaseLost. run_job turns it into JobCanceled."""


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
    raised: bool = False  # the handler was interrupted once already: never twice
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
            _held_by_job[job_id] = lease
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
            if _held_by_job.get(lease.job_id) is lease:
                del _held_by_job[lease.job_id]
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
            lease = _held_by_job.get(job_id)
            if lease is None or lease.lost or lease.dropped or lease.canceled:
                return False
            lease.canceled = True
        log.warning("job %s (%s): canceled now: interrupting its handler", lease.job_id, lease.job_type)
        try:
            (lease.interrupt or lease.stop)()
        except Exception:
            log.exception("job %s: could not interrupt it; it stops at its next progress report", lease.job_id)
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


# --- stopping a handler -------------------------------------------------------------

_held_by_job: dict[str, Lease] = {}  # job id -> the lease this process holds for it
_interruptible: dict[int, Lease] = {}  # thread ident -> the lease its handler runs under


_interrupt_lock = threading.Lock()  # orders a thread's interruption against its handler's end


class interruptible:
    """Around a handler call (vq/execution.py run_job): while it runs, a lost lease
    (LeaseLost) or `vq cancel --now` (CanceledNow) interrupts it. Only there: RQ's code and
    vq's bookkeeping around it are not written to be interrupted. The fence: the main
    thread's signal handler raises only while the handler's entry is here, and at most once
    per lease; another thread's asynchronous exception is set only under the lock, and one
    still pending when the handler returned is cleared on the way out."""

    def __init__(self, job_id: str):
        self.lease = _held_by_job.get(job_id)
        self.thread = threading.get_ident()

    def __enter__(self):
        lease = self.lease
        if lease is not None:
            with _interrupt_lock:
                _interruptible[self.thread] = lease
                if lease.lost or lease.canceled:  # before the handler started (a late reply, an early cancel)
                    del _interruptible[self.thread]
                    if not lease.raised:
                        lease.raised = True
                        if lease.lost:
                            raise LeaseLost(f"job {lease.job_id}: its lease was lost before its handler started")
                        raise CanceledNow(f"job {lease.job_id}: canceled before its handler started")
        return self

    def __exit__(self, *exc):
        settle(self.thread)
        return False


def settle(thread: int) -> None:
    """The handler in `thread` has returned (or was interrupted): no interruption lands after this."""
    with _interrupt_lock:
        _interruptible.pop(thread, None)
        if thread != threading.main_thread().ident:  # clear an exception set but not yet raised
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)


def cancel_asked(job_id: str) -> bool:
    """Whether `vq cancel --now` reached this process for a job it runs (ctx.canceled: no I/O)."""
    lease = _held_by_job.get(job_id)
    return lease is not None and lease.canceled


def interrupter(lease_thread: int) -> Callable[[], None]:
    """How to stop the handler running in this thread: a signal for the main thread (it
    interrupts a blocking call too), an asynchronous exception for another thread (taken at
    its next bytecode; one stuck in native code is ended with its process by the daemon)."""
    if lease_thread == threading.main_thread().ident:
        return lambda: signal.pthread_kill(lease_thread, INTERRUPT_SIGNAL)

    def raise_in_thread() -> None:
        with _interrupt_lock:
            lease = _interruptible.get(lease_thread)
            if lease is None or lease.raised:
                return
            lease.raised = True
            kind = LeaseLost if lease.lost else CanceledNow
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(lease_thread), ctypes.py_object(kind))

    return raise_in_thread


_forked_child = False  # this process is a job's forked child (`isolation: fork`)


def in_forked_child() -> None:
    """Called first in a job's forked child: the interrupt signal now means `vq cancel --now`
    (its worker kills it for a lost lease); the copied lease says canceled, so the child's
    own run_job and end (vq/job_outcomes.py) end the job canceled after its clean-up."""
    global _forked_child
    _forked_child = True


def install_interrupt_handler() -> None:
    """In a worker's main thread: the signal `interrupter` sends raises LeaseLost (or
    CanceledNow) in the handler, if one runs under a lost (or canceled) lease, once; else
    it is ignored (the handler has returned: the end is fenced). No lock here: the handler
    runs in the main thread, which may hold it."""

    def on_signal(signum, frame):
        if _forked_child:  # only its worker signals a job's child, and only for `vq cancel --now`
            for held in _held_by_job.values():
                held.canceled = True
        main = threading.main_thread().ident  # set: the main thread has started
        lease = _interruptible.get(main) if main is not None else None
        if lease is None or lease.raised or not (lease.lost or lease.canceled):
            return
        lease.raised = True
        if lease.lost:
            raise LeaseLost(f"job {lease.job_id}: lease lost")
        raise CanceledNow(f"job {lease.job_id}: canceled now")

    signal.signal(INTERRUPT_SIGNAL, on_signal)


def kill_child(pid_of: Callable[[], int]) -> Callable[[], None]:
    """How to stop a job that runs in a forked child: kill the child."""

    def kill() -> None:
        pid = pid_of()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    return kill


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
