"""The worker that vq's worker mixins are part of, as the type checker sees it.

`VqWorker` (vq/rq_seam/worker.py) is RQ's `Worker` plus four mixins (vq/worker_leases.py,
vq/worker_starts.py, vq/job_outcomes.py, vq/worker_memory.py) that call RQ's worker and
one another. Each mixin derives from `WorkerHost`: while type checking, RQ's `Worker` with
the attributes and methods the mixins share; at run time plain `object`, so VqWorker's
classes and their order are its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from datetime import timedelta

    from redis.client import Pipeline
    from rq.executions import Execution
    from rq.job import Job
    from rq.queue import Queue
    from rq.worker import Worker, WorkerStatus

    from vq.admission import Admitted
    from vq.rq_seam.queue import VqQueue

    class WorkerHost(Worker):
        queue_class: type[VqQueue]
        redis_lost: bool  # RQ's loop ended on a lost Redis (VqWorker.heartbeat)
        _forking: bool  # the current job runs in a child process
        _written_state: WorkerStatus | None  # the state last written to Redis
        _beat_at: float  # when the last heartbeat was written (time.monotonic)

        # VqWorker's override also takes no pipeline: the time is written with its next heartbeat.
        def increment_total_working_time(self, job_execution_time: timedelta, pipeline: Pipeline | None) -> None: ...
        def _release(self, job: Job) -> None: ...  # vq/worker_leases.py
        def _fenced_writes(self, job: Job) -> AbstractContextManager[None]: ...  # vq/worker_leases.py
        def _canceled_now(self, job: Job) -> bool: ...  # vq/worker_leases.py
        def _requeue(self, job: Job, queue: Queue, execution: Execution, reason: str = ...) -> None: ...
        def _will_take_another(self) -> bool: ...  # vq/worker_starts.py
        def _take_started(self, admitted: Admitted, execution_id: str) -> None: ...  # vq/worker_starts.py

else:
    WorkerHost = object
