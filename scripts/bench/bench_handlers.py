"""Job functions for the benchmarks in scripts/bench/.

`noop` serves both sides of throughput.py and admission.py: vq calls handlers as
`handler(ctx, data)`, plain RQ calls the enqueued function with no arguments. It does
nothing and returns an empty result.

`sleep` (fairness.py) holds its slot for a fixed time: `data["ms"]` milliseconds.
"""

import time


def noop(*_args, **_kwargs) -> dict:
    return {}


def sleep(_ctx=None, data: dict | None = None, **_kwargs) -> dict:
    time.sleep(float((data or {}).get("ms", 20)) / 1000)
    return {}


STARTS_KEY = "bench:starts"  # hash job id -> time.time() at the handler's start (first run)
RUNS_KEY = "bench:runs"  # hash job id -> how many times the handler ran


def stamp_start(*_args, **_kwargs) -> dict:
    """scheduling.py: record when the job started, first thing, in the bench's Redis.

    Serves vq (`handler(ctx, data)`) and plain RQ (no arguments) alike: the connection and
    the job id come from RQ's current job, which both run under."""
    started = time.time()
    from rq import get_current_job

    job = get_current_job()
    with job.connection.pipeline(transaction=False) as pipe:
        pipe.hsetnx(STARTS_KEY, job.id, repr(started))
        pipe.hincrby(RUNS_KEY, job.id, 1)
        pipe.execute()
    return {}
