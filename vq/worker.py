"""The worker process, as the daemon starts it (vq/daemon_children.py `worker_main`): a long-lived
RQ worker that takes jobs from every queue it serves, high priority before normal before
low, skipping the types an operator paused, plus helper threads for I/O-bound types.

Its parts, one concept each:
- vq/rq_seam/worker.py: `VqWorker`, every override of RQ's Worker (the RQ seam);
- vq/worker_leases.py: the running job's fenced lease (`SHARED_DEADLINE`, set by the daemon);
- vq/worker_starts.py: jobs admission starts for the worker, held to run next;
- vq/job_outcomes.py: how an attempt ends (categories, requeue, events, one-trip finish);
- vq/worker_memory.py: resident memory, reported and limited;
- vq/worker_threads.py: the helper thread workers;
- vq/rq_seam/log_filters.py: RQ's log lines, said once (`SayOnce`) or kept (`LastError`).
"""

from __future__ import annotations

from vq.rq_seam.log_filters import LastError, SayOnce
from vq.rq_seam.worker import RequeueOnShutdown, ThreadWorker, VqWorker
from vq.worker_memory import resident_mb
from vq.worker_threads import start_thread_workers, stop_thread_workers

__all__ = [
    "LastError",
    "RequeueOnShutdown",
    "SayOnce",
    "ThreadWorker",
    "VqWorker",
    "resident_mb",
    "start_thread_workers",
    "stop_thread_workers",
]
