"""Job functions for the benchmarks in scripts/bench/.

`noop` serves both sides of throughput.py and admission.py: vq calls handlers as
`handler(ctx, data)`, plain RQ calls the enqueued function with no arguments. It does
nothing and returns an empty result.

`sleep` (fairness.py) holds its slot for a fixed time: `data["ms"]` milliseconds.
`provider_call` (bullmq.py) waits on a stub provider's answer, as an I/O-bound handler does.
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


def provider_call(_ctx=None, data: dict | None = None, **_kwargs) -> dict:
    """bullmq.py's I/O-bound drain: POST to the stub provider at `data["url"]` through vq's
    pooled httpx client (vq/providers/pool.py, what `ctx.call_provider` sends with) and
    wait for its answer; the stub answers after its delay (50 ms)."""
    from vq.config import ProviderSettings
    from vq.providers.http import call_http

    url = (data or {})["url"]
    return call_http("bench-stub", ProviderSettings(url=url, timeout=10_000), {"prompt": "a short prompt"})


def fail(*_args, **_kwargs) -> dict:
    """webui.py: a job that fails at once, so a status filter has a few failed jobs to find."""
    raise RuntimeError("bench: failed on purpose")
