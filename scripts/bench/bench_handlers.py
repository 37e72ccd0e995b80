"""Job functions for the benchmarks in scripts/bench/.

`noop` serves both sides of drain.py and admission.py: vq calls handlers as
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
