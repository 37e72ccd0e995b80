"""Jobs admission starts for a worker: an idle worker's admission call, and a busy
worker's finishing round trip, also start the job it gets (one round trip less from
arrival to handler). The worker holds that job ("prestarted") and runs it next; a warm
stop that arrives meanwhile waits for it, and a job it will not run goes back in line.

VqQueue.dequeue_any (vq/rq_seam/queue.py) calls `starting`, `start_for_admission` and
`take_started` on the worker it dequeues for.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from rq.defaults import DEFAULT_WORKER_TTL
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from vq import events
from vq.admission import Admitted, Start
from vq.execution import BEGUN
from vq.rq_seam.host import WorkerHost
from vq.rq_seam.private import set_state_locally, stop_requested

STARTED_BY_ADMISSION = "_vq_started_by_admission"  # on a Job: its start was written with its admission


class AdmissionStarts(WorkerHost):
    """VqWorker's side of admission starting its jobs (a mixin: RQ calls none of these)."""

    _prestarted: tuple[Job, Queue, Execution] | None = (
        None  # (job, queue, execution) taken and started in the last job's finishing round trip
    )
    _starting = False  # inside an idle worker's admission call, which may start a job for it
    _stop_pending = False  # a warm stop that waits for the job being (or already) started for this worker
    _max_jobs = None
    _executed = 0

    def start_for_admission(self) -> Start | None:
        """An idle worker's admission call also starts the job it gets (one round trip
        less from arrival to handler), unless this worker is about to stop."""
        if stop_requested(self) or self._stop_pending or self.redis_lost or self.is_horse:
            return None
        return Start(self.name, uuid.uuid4().hex, DEFAULT_WORKER_TTL, busy=self._written_state == WorkerStatus.BUSY)

    def take_started(self, admitted: Admitted, execution_id: str) -> tuple[Job, Queue] | None:
        """(job, queue) of a job admission started for this idle worker (see _take_started)."""
        self._take_started(admitted, execution_id)
        return None if self._prestarted is None else self._prestarted[:2]

    @contextmanager
    def starting(self) -> Iterator[None]:
        """Around an idle worker's admission call: a stop that arrives meanwhile waits for it
        (`_shutdown`), and comes right after it when nothing was started."""
        self._starting = True
        try:
            yield
        finally:
            self._starting = False
        if self._stop_pending and self._prestarted is None:
            raise StopRequested()

    def _will_take_another(self) -> bool:
        return not (
            stop_requested(self)
            or self._stop_pending
            or self.redis_lost
            or self.is_horse
            or (self._max_jobs is not None and self._executed + 1 >= self._max_jobs)
        )

    def _take_started(self, admitted: Admitted, execution_id: str) -> None:
        """Hold the job admission started for this worker, to run next."""
        taken = self.queue_class.take_admitted(
            self.connection,
            admitted,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )
        if taken is None:
            return
        job, queue = taken
        job.redis_server_version = self.get_redis_server_version()
        setattr(job, STARTED_BY_ADMISSION, True)
        setattr(job, BEGUN, True)
        set_state_locally(self, WorkerStatus.BUSY)
        self._written_state = WorkerStatus.BUSY
        self._beat_at = time.monotonic()
        self._prestarted = (job, queue, Execution(execution_id, job.id, self.connection, worker_name=self.name))
        events.say(
            "started",
            job.id,
            job.meta.get("jobType"),
            {"attempt": job.meta.get("attempts"), "worker": self.name, "userId": job.meta.get("userId")},
        )

    def _requeue_prestarted(self) -> None:
        """A job started for this worker that it will not run now (it is stopping, RQ is
        suspended): back at the front of its queue, its attempt not charged."""
        held, self._prestarted = self._prestarted, None
        if held is not None:
            job, queue, execution = held
            with self._fenced_writes(job):
                self._requeue(job, queue, execution, reason="worker stopping")
                self._release(job)
