"""`vq daemon` in a terminal, as the README's first command runs it: stdout and stderr a
pseudo-terminal, so RQ believes it may colour its log lines. Every built-in job type runs
to the end there, and no worker dies (RQ's colourizing of a job's description used to
kill the worker that took it: `blue(None)`)."""

from __future__ import annotations

import time

from tests.test_builtin_types import JOBS
from vq import queues
from vq.config import load_settings
from vq.submission import Submission, submit

BUILT_IN = {
    "script-generation",
    "image-generation",
    "audio-synthesis",
    "world-building",
    "content-analysis",
    "personalization",
    "ai-processing",
    "video-generation",
    "scene-creation",
    "video-composition",
}


def test_a_daemon_in_a_terminal_runs_every_built_in_type(vq, redis_conn):
    settings = load_settings(vq.config_path)
    ids = {t: submit(redis_conn, settings, Submission(t, data, user_id="alice")) for t, data in JOBS.items()}
    video = submit(
        redis_conn,
        settings,
        Submission("video-generation", {"prompt": "A video about AI. It is bright.", "sceneCount": 1}, user_id="bob"),
    )
    assert redis_conn.hget(f"rq:job:{ids['content-analysis']}", "description") == b"content-analysis for alice"
    vq.start_daemon(workers=2, terminal=True)
    jobs = [*ids.values(), *vq.json("show", video)["children"], video]
    _wait_ended(vq, redis_conn, jobs)
    # A job an older vq stored without a description, taken by an idle worker (RQ's own dequeue,
    # which logs the description): RQ's log line must not take the worker down either.
    queues.pause(redis_conn, settings, "content-analysis")
    older = submit(
        redis_conn,
        settings,
        Submission("content-analysis", {"content": "Stored before descriptions.", "type": "text"}, user_id="carol"),
    )
    redis_conn.hdel(f"rq:job:{older}", "description")
    queues.resume(redis_conn, settings, "content-analysis")
    jobs.append(older)
    _wait_ended(vq, redis_conn, [older])
    listed = vq.json("jobs", "--limit", "100")
    assert len(listed) == len(jobs)
    ran = {}
    for view in listed:
        ran.setdefault(view["jobType"], set()).add(view["status"])
    assert set(ran) == BUILT_IN and all(s == {"finished"} for s in ran.values()), f"{ran}\n{vq.daemon_log()[-4000:]}"
    # The jobs can all end before the supervisor, still starting its other children on a loaded
    # machine, says it is ready: the line must come, not necessarily first.
    deadline = time.monotonic() + 15
    while "ready: 2 workers" not in vq.daemon_log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = vq.daemon_log()
    assert "ready: 2 workers" in log
    assert "Traceback" not in log and "unhandled exception" not in log and "died" not in log
    assert "\x1b[" not in log  # no colour codes, terminal or not


def _wait_ended(vq, redis_conn, jobs: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = vq.daemon_log()
        assert "Traceback" not in log and "died" not in log, f"a worker died in the terminal:\n{log[-4000:]}"
        statuses = {(redis_conn.hget(f"rq:job:{j}", "status") or b"gone").decode() for j in jobs}
        if statuses <= {"finished", "failed", "canceled", "gone"}:
            return
        time.sleep(0.2)
    raise AssertionError(f"jobs still running after {timeout}s:\n{vq.daemon_log()[-4000:]}")
