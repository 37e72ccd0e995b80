"""Submission: the one way a job is created, whatever asked for it (CLI, HTTP, batch, plan).

`submit()` validates a `Submission`, resolves its priority from the subscription tier,
expands a job type's plan into child jobs, and hands each job to RQ: onto its type's
queue for that priority, into RQ's scheduled registry when delayed, or deferred on its
dependencies. RQ then does what it does natively; vq watches the rest.

  validation.py  the Submission, its checks and what it resolves to (nothing written)
  creation.py    one submission made into RQ jobs: submit()
  spec.py        a job's RQ arguments and the template hashes of new jobs
  unique.py      one job per uniqueKey: simple, throttle, debounce
  batch.py       many at once, each accepted or refused on its own: submit_each()
"""

from vq.submission.batch import BATCH_CHUNK, submit_each
from vq.submission.creation import submit, submit_outcome
from vq.submission.unique import Submitted
from vq.submission.validation import CONTROL_FIELDS, Submission, check_data, data_text, validate

__all__ = [
    "BATCH_CHUNK",
    "CONTROL_FIELDS",
    "Submission",
    "check_data",
    "data_text",
    "Submitted",
    "submit",
    "submit_each",
    "submit_outcome",
    "validate",
]
