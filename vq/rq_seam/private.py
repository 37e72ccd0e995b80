"""RQ's private attributes and methods that vq uses outside its overrides, each behind a
function named for what it does: the rest of vq calls these, never `obj._name` on an RQ
object, so tests/test_rq_contract.py checks every one of them against the RQ installed.
"""

from __future__ import annotations


def serialize_meta(job) -> bytes:
    """The job's meta as RQ stores it in the job hash's `meta` field."""
    return job._serialize_meta()


def enqueue_job(queue, job, pipeline=None, at_front: bool = False):
    """RQ's enqueue of an existing job (status, origin, registries and list) without
    creating a new one: how vq puts a job back in line."""
    return queue._enqueue_job(job, pipeline=pipeline, at_front=at_front)


def result(job):
    """The job's return value as RQ restored it from the hash's `result` field (None if none)."""
    return job._result


def set_result(job, value) -> None:
    job._result = value


def end_as_finished(job, result_ttl, pipeline) -> None:
    """RQ's write of a finished job (status, result, finished registry)."""
    job._handle_success(result_ttl, pipeline=pipeline)


def set_status_locally(job, status) -> None:
    """The job object's status, without writing it (the caller's write carries it)."""
    job._status = status


def dependency_ids(job) -> list[str]:
    return job._dependency_ids


def stop_requested(worker) -> bool:
    """Whether RQ's worker loop will stop after its current job (a warm stop)."""
    return worker._stop_requested


def request_stop(worker) -> None:
    """A warm stop: RQ's loop ends after the current job, as on SIGTERM."""
    worker._stop_requested = True


def set_state_locally(worker, state) -> None:
    """The worker object's state, without writing it (the caller's write carries it)."""
    worker._state = state


def ordered_queues(worker) -> list:
    """The worker's queues in the order its next dequeue asks them (RQ rotates it)."""
    return worker._ordered_queues


def exception_handlers(worker) -> list:
    return worker._exc_handlers


def stopped_job_id(worker) -> str | None:
    """The job an `rq` stop-job command stopped on this worker, if any."""
    return worker._stopped_job_id


def no_log_colours() -> None:
    """RQ's colorizer told stdout is not a terminal: its `blue(x)` returns x unchanged."""
    from rq import logutils

    logutils.colorizer.notty = True
