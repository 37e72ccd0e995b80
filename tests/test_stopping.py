"""vq/stopping.py: a stop signal ends the wait a loop is in, and nothing but a wait."""

from __future__ import annotations

import signal
import time

import pytest

from vq.stopping import Stoppable


@pytest.fixture
def alarm():
    """Deliver SIGALRM to this process after `seconds`, handled by `handler`."""
    previous = signal.getsignal(signal.SIGALRM)

    def arm(handler, seconds: float) -> None:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_the_stop_signal_ends_a_sleep_in_progress(alarm):
    loop = Stoppable()
    alarm(loop.stop, 0.1)
    began = time.monotonic()
    assert loop.until_stopped(time.sleep, 5) is None
    assert time.monotonic() - began < 1 and loop.stopped
    began = time.monotonic()
    assert loop.until_stopped(time.sleep, 5) is None  # stopped: no further wait starts
    assert time.monotonic() - began < 0.1


def test_the_stop_signal_outside_a_wait_only_sets_the_flag(alarm):
    loop = Stoppable()
    alarm(loop.stop, 0.05)
    deadline = time.monotonic() + 0.3
    spins = 0
    while time.monotonic() < deadline:  # work, not a wait: nothing is raised into it
        spins += 1
    assert loop.stopped and spins


def test_the_stop_signal_ends_a_blocking_redis_read_and_the_client_works_after(alarm, redis_conn):
    loop = Stoppable()
    alarm(loop.stop, 0.2)
    began = time.monotonic()
    assert loop.until_stopped(redis_conn.xread, {"vq:test:nothing": "$"}, block=5000) is None
    assert time.monotonic() - began < 1
    assert redis_conn.ping()  # the connection left mid-reply was closed, a new one is used
    redis_conn.xadd("vq:test:nothing", {"a": "1"})
    assert redis_conn.xread({"vq:test:nothing": "0"}, count=1)[0][1][0][1] == {b"a": b"1"}


def test_a_stop_that_comes_as_the_wait_returns_does_not_escape_it():
    """The signal handler runs between any two bytecodes: one that comes after the call
    returned but before the flag is cleared must not raise out of `until_stopped` (into the
    daemon's loop, which then died with a traceback instead of stopping). A tracer stops the
    loop at exactly that line, as the handler would."""
    import sys

    loop = Stoppable()
    code = Stoppable.until_stopped.__code__

    def tracer(frame, event, arg):
        if frame.f_code is not code:
            return None
        if event == "line" and "_in_wait = False" in _line(frame) and loop._in_wait:
            loop.stop()  # raises Interrupted here, as the handler would
        return tracer

    sys.settrace(tracer)
    try:
        assert loop.until_stopped(lambda: "read") is None  # what came just as the stop did is dropped
    finally:
        sys.settrace(None)
    assert loop.stopped and not loop._in_wait


def _line(frame) -> str:
    import linecache

    return linecache.getline(frame.f_code.co_filename, frame.f_lineno)
