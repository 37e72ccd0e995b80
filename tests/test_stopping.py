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
