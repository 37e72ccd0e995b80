"""A canceled job has an end time (`finishedAt`), however it was canceled: waiting, running
(stopped at a cancel request, or interrupted with --now), or expired at its deadline. RQ's
own cancel sets none; real daemon, real Redis."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.plugins import handler_pid

CANCELABLE = {"handler": "tests.plugins:cancelable", "attempts": 1, "timeout": 60000}


def _ended_recently(view: dict, before: datetime) -> None:
    assert view["status"] == "canceled"
    assert view["finishedAt"] is not None, "a canceled job shows when it ended"
    ended = datetime.fromisoformat(view["finishedAt"].replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= ended <= datetime.now(UTC)


def test_a_canceled_waiting_job_and_its_dependent_have_an_end_time(vq):
    waiting = vq.submit("test-noop", {}, "--user", "ann", "--delay", "1h")
    dependent = vq.submit("test-noop", {}, "--user", "ann", "--depends-on", waiting)
    before = datetime.now(UTC)
    vq.run("cancel", waiting)
    _ended_recently(vq.json("show", waiting), before)
    _ended_recently(vq.json("show", dependent), before)


def test_a_canceled_running_job_has_an_end_time_stopped_or_interrupted(vq, redis_conn):
    vq.configure(job_types={"test-cancelable": CANCELABLE})
    vq.start_daemon(workers=2)
    polite = vq.submit("test-sleep", {"seconds": 60, "steps": 300}, "--user", "ann")  # stops at a progress report
    rude = vq.submit("test-cancelable", {"seconds": 60}, "--user", "bob")
    handler_pid(redis_conn, rude)
    vq.wait_for(polite, ("started",))
    before = datetime.now(UTC)
    vq.run("cancel", polite)
    _ended_recently(vq.wait_for(polite, timeout=15), before)
    vq.run("cancel", rude, "--now")
    _ended_recently(vq.json("show", rude), before)
