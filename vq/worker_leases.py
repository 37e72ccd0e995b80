"""A running job's fenced lease, from its worker's side (vq/fence.py keeps it renewed).

The worker arms the lease when the handler starts and disarms it when the handler returns;
every write that ends the job is fenced by the lease's token, so a worker that lost its
lease (paused, cut off, taken over) writes nothing for the job and counts the refusal.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import redis
from rq.job import Job

from vq import fence, handler_stop, keys
from vq.admission import release
from vq.cancel_now import cleanup_budget_s, interrupt_child
from vq.execution import runtime
from vq.rq_seam.host import WorkerHost
from vq.rq_seam.queue import admission_for

SHARED_DEADLINE = None  # set by the daemon's worker entry: where this process's fence says when it must be gone
_process_fence: fence.Fence | None = None


def process_fence(conn) -> fence.Fence:
    """The process's one Fence (vq/fence.py), shared by its main worker and thread workers."""
    global _process_fence
    if _process_fence is None:
        _process_fence = fence.Fence(conn, admission_for(conn).lease_ms, SHARED_DEADLINE)
    return _process_fence


class JobLeases(WorkerHost):
    """VqWorker's part in keeping a job's lease (a mixin: RQ calls none of these)."""

    _lease: fence.Lease | None = None  # the running job's (vq/fence.py)

    def _arm(self, job: Job) -> None:
        token = getattr(job, "_vq_lease", None)
        if token is None:  # started by an older vq: no token to renew under; recovery handles it
            return
        interrupt = None
        if self._forking:
            stop = handler_stop.kill_child(lambda: self.horse_pid)
            interrupt = interrupt_child(  # vq cancel --now; killed if still there a second after its clean-up
                lambda: self.horse_pid, handler_stop.INTERRUPT_SIGNAL, cleanup_budget_s(runtime().settings) + 1.0
            )
        else:
            stop = handler_stop.interrupter(threading.get_ident())
        self._lease = process_fence(self.connection).hold(
            job.id,
            job.meta.get("jobType", ""),
            job.meta.get("userId", "_"),
            token,
            getattr(job, "_vq_asked_at", None) or time.monotonic(),
            stop,
            interrupt,
        )

    def _disarm(self) -> None:
        lease = self._lease
        if lease is not None and not lease.dropped:
            process_fence(self.connection).drop(lease)

    def _lease_lost(self, job: Job) -> bool:
        """The job was stopped because its lease could not be kept: its worker writes
        nothing for it (stalled-job recovery puts it back in line once the lease lapses)."""
        lease = self._lease
        if lease is None or lease.job_id != job.id or not lease.lost:
            return False
        self.log.warning("Worker %s: job %s stopped (lease lost); nothing written for this attempt", self.name, job.id)
        try:
            self.connection.incr(keys.LEASES_LOST)
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        return True

    def _canceled_now(self, job: Job) -> bool:
        """`vq cancel --now` reached this worker for the job it runs (its handler was
        interrupted, its forked child told or killed): the attempt ends canceled, whatever it raised."""
        lease = self._lease
        return lease is not None and lease.job_id == job.id and lease.canceled

    def _refused_if_stale(self, job: Job, what: str) -> bool:
        """Whether the job's lease token is no longer its own (taken over while this worker
        was paused or cut off): then the write is refused, counted and logged."""
        try:
            stale = fence.is_stale(self.connection, job)
        except (redis.ConnectionError, redis.TimeoutError):
            return False  # the write itself will fail, or be fenced
        if stale:
            self.connection.incr(keys.STALE_REFUSED)
            fence.refused(job.id, what)
        return stale

    @contextmanager
    def _fenced_writes(self, job: Job):
        """While RQ's code writes the job's end: every transaction it opens applies only
        under the job's lease token (fence.FencedRedis)."""
        token = getattr(job, "_vq_lease", None)
        if token is None:
            yield
            return
        plain = self.connection
        self.connection = fence.FencedRedis(plain, job.key, token)
        try:
            yield
        except fence.StaleLease:
            plain.incr(keys.STALE_REFUSED)
            fence.refused(job.id, "end of job")
        finally:
            self.connection = plain

    def _release(self, job: Job) -> None:
        try:
            release(self.connection, job.id, job.meta.get("jobType", ""), job.meta.get("userId", "_"))
        except Exception:  # the lease lapses by itself within lockDuration
            self.log.exception("Worker %s: could not release the slots of job %s", self.name, job.id)
