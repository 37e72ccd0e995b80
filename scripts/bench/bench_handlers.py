"""No-op job functions for scripts/bench/drain.py.

`noop` serves both sides: vq calls handlers as `handler(ctx, data)`, plain RQ calls the
enqueued function with no arguments. It does nothing and returns an empty result.
"""


def noop(*_args, **_kwargs) -> dict:
    return {}
