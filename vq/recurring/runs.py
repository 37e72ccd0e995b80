"""A recurring definition's run bookkeeping: each spawned job counted when it is created
and again when it ends, for `vq recurring show` and the history.

Kept apart from vq/recurring/definitions.py and firing.py so that job creation
(vq/submission/creation.py) can record a tick's run without importing the firing side,
which itself submits through vq.submission.
"""

from __future__ import annotations

import time

from redis.client import Pipeline
from rq.job import JobStatus

from vq import keys, lua

OUTCOMES = {"finished": "succeeded", "failed": "failed", "canceled": "canceled"}


def record_created_in(pipe: Pipeline, origin: dict, job_id: str, status: JobStatus | None) -> None:
    """A spawned job's run: in the definition's runs (by its tick) and counted; a job born
    finished (a cached result) is also its run's success, as no worker will report it."""
    recurring_id = origin["recurringId"]
    pipe.zadd(keys.recurring_runs(recurring_id), {job_id: origin.get("tickMs", int(time.time() * 1000))})
    pipe.hincrby(keys.recurring_stats(recurring_id), "runs", 1)
    if status == JobStatus.FINISHED:
        pipe.hincrby(keys.recurring_stats(recurring_id), "succeeded", 1)
        pipe.hset(keys.recurring_outcomes(recurring_id), job_id, "finished")


def record_outcome_in(pipe, job) -> None:
    """Count a spawned job's end (called by the worker in its own pipeline)."""
    recurring_id = job.meta.get("recurringId")
    status = job.get_status(refresh=False)
    outcome = OUTCOMES.get(status.value if status else "")
    if not recurring_id or outcome is None:
        return
    # Counted once even when the pipeline is sent again after a lost reply (the script's text:
    # a pipeline cannot load a script Redis lacks).
    pipe.eval(
        lua.source("recurring_outcome.lua"),
        2,
        keys.recurring_outcomes(recurring_id),
        keys.recurring_stats(recurring_id),
        job.id,
        status.value,
        outcome,
    )
