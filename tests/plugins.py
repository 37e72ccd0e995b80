"""Operator-style custom handlers used by the tests (loaded by dotted path from config)."""

from __future__ import annotations

import os
import time

from vq.errors import PermanentError


def sleeper(ctx, data):
    """Sleeps in steps, reporting progress; used for shutdown, cancel and progress tests."""
    steps = int(data.get("steps", 5))
    for i in range(steps):
        time.sleep(float(data.get("seconds", 1.0)) / steps)
        ctx.progress((i + 1) * 100 / steps, f"step {i + 1}/{steps}")
    return {"slept": data.get("seconds", 1.0), "pid": os.getpid()}


def flaky(ctx, data):
    """Fails until the given attempt, then succeeds."""
    if ctx.attempt < int(data.get("succeed_on", 2)):
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


def broken(ctx, data):
    raise PermanentError("input can never work")


def echo(ctx, data):
    return {"echo": data, "upstream": [u.result for u in ctx.upstream()]}


def noop(ctx, data):
    return {}
