"""A worker process's helper threads: extra workers (vq.rq_seam.worker.ThreadWorker) for
the job types configured with `concurrencyPerWorker` above 1, started beside the process's
main worker and stopped with it."""

from __future__ import annotations

import threading
import time

from rq.serializers import JSONSerializer

from vq import job_logs
from vq.rq_seam.private import request_stop
from vq.rq_seam.worker import ThreadWorker


def start_thread_workers(
    settings, queue_names: list[str], conn, name: str
) -> list[tuple[ThreadWorker, threading.Thread]]:
    """Start `concurrencyPerWorker - 1` thread workers per such type (the main worker is
    the first of each type's share), each serving only that type's queues."""
    from vq.jobtypes import job_types
    from vq.keys import split_queue_name

    started = []
    for job_type in job_types(settings).values():
        own = [q for q in queue_names if split_queue_name(q)[0] == job_type.name]
        for index in range(1, job_type.concurrency_per_worker if own else 1):
            worker = ThreadWorker(
                own, connection=conn, serializer=JSONSerializer, name=f"{name}.{job_type.name}.{index}"
            )
            thread = threading.Thread(
                target=worker.work, kwargs={"logging_level": "WARNING"}, daemon=True, name=f"vq-{job_type.name}-{index}"
            )
            thread.start()
            started.append((worker, thread))
    if started:  # several jobs at once here: a job's log takes only its own threads' lines (vq/job_logs.py)
        job_logs.several_jobs_at_once()
    return started


def stop_thread_workers(started: list[tuple[ThreadWorker, threading.Thread]], grace: float) -> None:
    """Warm stop: each finishes its current job (within `grace`) and takes no more."""
    for worker, _thread in started:
        request_stop(worker)
    deadline = time.monotonic() + grace
    for _worker, thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
