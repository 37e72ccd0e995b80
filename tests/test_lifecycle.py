"""A job's life through the CLI and a real daemon: submit, run, progress, result, retry."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime


def test_submit_prints_id_and_job_waits_until_a_daemon_runs_it(vq):
    job_id = vq.submit("test-echo", {"hello": "world"}, "--user", "alice", "--project", "p1")
    assert len(job_id) == 32 and job_id.isalnum()
    view = vq.json("show", job_id)
    assert view["status"] == "queued"
    assert view["userId"] == "alice" and view["projectId"] == "p1"
    assert view["data"] == {"hello": "world"}
    vq.start_daemon()
    done = vq.wait_for(job_id)
    assert done["status"] == "finished"
    assert done["result"]["echo"] == {"hello": "world"}
    assert done["attempts"] == 1
    for stamp in ("createdAt", "enqueuedAt", "startedAt", "finishedAt"):
        assert done[stamp].endswith("Z") and "." in done[stamp], stamp
    assert vq.json("result", job_id)["result"]["echo"] == {"hello": "world"}


def test_a_result_is_kept_with_its_job_and_goes_with_it(vq, redis_conn):
    """One key per finished job: the result is in the job's hash (no result stream beside
    it), expires with the job, and leaves with it."""
    job_id = vq.submit("test-echo", {"n": 7}, "--user", "alice")
    vq.start_daemon()
    assert vq.wait_for(job_id)["result"]["echo"] == {"n": 7}
    key = f"rq:job:{job_id}"
    assert json.loads(redis_conn.hget(key, "result"))["echo"] == {"n": 7}
    assert not redis_conn.exists(f"rq:results:{job_id}")
    assert 0 < redis_conn.ttl(key) <= 7 * 24 * 3600, "kept as long as removeOnComplete says, then gone"
    listed = vq.json("jobs", "--user", "alice")
    assert [j["result"]["echo"] for j in listed] == [{"n": 7}], "vq jobs --json has the result as vq show does"
    running = [r for r in vq.json("queues") if r["jobType"] == "test-echo"][0]
    assert (running["started"], running["finished"]) == (0, 1)
    assert vq.run("rm", job_id).returncode == 0
    assert vq.run("result", job_id).returncode != 0 and not redis_conn.exists(key)


def test_wait_prints_final_state_and_exit_code_reflects_failure(vq):
    vq.start_daemon()
    ok = vq.run("submit", "test-noop", "--user", "u", "--wait", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "finished"
    bad = vq.run("submit", "test-broken", "--user", "u", "--wait", "--json")
    assert bad.returncode == 1
    view = json.loads(bad.stdout)
    assert view["status"] == "failed"
    assert view["error"]["category"] == "permanent"
    assert view["attempts"] == 1, "a permanent error is not retried"


def test_temporary_failures_are_retried_with_backoff(vq):
    vq.start_daemon()
    job_id = vq.submit("test-flaky", {"succeed_on": 3}, "--user", "u")
    done = vq.wait_for(job_id, timeout=30)
    assert done["status"] == "finished"
    assert done["attempts"] == 3
    started = time.monotonic()
    job_id = vq.submit("test-flaky", {"succeed_on": 9}, "--user", "u")
    failed = vq.wait_for(job_id, timeout=30)
    assert failed["status"] == "failed"
    assert failed["attempts"] == 3
    assert "flaky failure on attempt 3" in failed["error"]["message"]
    assert time.monotonic() - started >= 3.0, "backoff of 1 s then 2 s between the three attempts"


def test_a_retry_waiting_out_its_backoff_shows_when_it_starts(vq, redis_conn):
    """`vq show` (and the API, the dashboards) of a job scheduled for its next attempt
    names the time: scheduledFor was only ever set for a delayed submission."""
    vq.start_daemon()
    job_id = vq.submit("test-flaky", {"succeed_on": 2}, "--user", "u")
    view = vq.wait_for(job_id, statuses=("scheduled",), timeout=20)
    failed_at = time.time()
    assert view["attempts"] == 1 and view["scheduledFor"], view
    due = datetime.fromisoformat(view["scheduledFor"].replace("Z", "+00:00")).timestamp()
    assert failed_at - 1.5 < due <= failed_at + 1.5, "the 1 s back-off after the first attempt"
    assert f"scheduled for  {view['scheduledFor']}" in vq.run("show", job_id).stdout
    assert vq.wait_for(job_id, timeout=20)["status"] == "finished"


def test_progress_is_visible_while_running(vq):
    vq.start_daemon()
    job_id = vq.submit("test-sleep", {"seconds": 2, "steps": 4}, "--user", "u")
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        view = vq.json("progress", job_id)
        seen.add(view["percent"])
        if view["status"] == "finished":
            break
        time.sleep(0.1)
    assert {25.0, 50.0, 75.0} & seen, seen
    assert view["percent"] == 100.0


def test_progress_follow_streams_until_the_end(vq):
    vq.start_daemon()
    job_id = vq.submit("test-sleep", {"seconds": 1, "steps": 4}, "--user", "u")
    proc = vq.run("progress", job_id, "--follow", "--json")
    assert proc.returncode == 0
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[-1]["status"] == "finished" and lines[-1]["percent"] == 100.0
    percents = [line["percent"] for line in lines]
    assert percents == sorted(percents)


def test_progress_follow_draws_on_the_terminal_and_leaves_the_final_state_on_stdout(vq, tmp_path):
    """`vq progress ID --follow > out`: the live bar (with elapsed time and an ETA) goes to the
    terminal on stderr, and `out` holds just the final state."""
    import os
    import pty
    import subprocess
    import sys

    vq.start_daemon()
    job_id = vq.submit("test-sleep", {"seconds": 2, "steps": 4}, "--user", "u")
    master, slave = pty.openpty()
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vq", "progress", job_id, "--follow"],
            stdout=out,
            stderr=slave,
            env={**vq.env, "COLUMNS": "160"},
        )
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    assert proc.wait(timeout=30) == 0
    os.close(master)
    screen = drawn.decode(errors="replace")
    assert "elapsed" in screen and "eta" in screen and "test-sleep" in screen, screen
    final = (tmp_path / "out").read_text()
    assert final == "finished 100% step 4/4\n", repr(final)
    piped = vq.run("progress", job_id, "--follow")
    assert piped.returncode == 0 and piped.stdout == "finished 100% step 4/4\n" and "eta" not in piped.stderr
    failed = vq.submit("test-broken", {}, "--user", "u")
    assert vq.run("progress", failed, "--follow").returncode == 1


def test_priorities_high_runs_before_low(vq):
    ids = {}
    for priority in ("low", "normal", "high"):
        ids[priority] = vq.submit("test-sleep", {"seconds": 0.05, "steps": 1}, "--user", "u", "--priority", priority)
    vq.start_daemon(workers=1)
    views = {p: vq.wait_for(i) for p, i in ids.items()}
    order = sorted(views, key=lambda p: views[p]["startedAt"])
    assert order == ["high", "normal", "low"]


def test_priority_defaults_from_subscription_tier(vq):
    free = vq.json("submit", "test-noop", "--user", "u", "--subscription", "free")
    ent = vq.json("submit", "test-noop", "--user", "u", "--subscription", "enterprise")
    basic = vq.json("submit", "test-noop", "--user", "u", "--subscription", "basic")
    assert (free["priority"], basic["priority"], ent["priority"]) == ("low", "normal", "high")
    assert free["queue"] == "test-noop.low"


def test_retry_reruns_a_failed_job(vq):
    vq.start_daemon()
    job_id = vq.submit("test-broken", {}, "--user", "u")
    assert vq.wait_for(job_id)["status"] == "failed"
    again = vq.json("retry", job_id)
    assert again["status"] in ("queued", "started", "failed")
    assert vq.wait_for(job_id)["status"] == "failed"
    assert vq.run("retry", "does-not-exist").returncode == 4


def test_an_idle_daemon_stops_promptly_on_sigterm(vq):
    """With no job running there is nothing to wait for: every process (workers, the timer,
    the archiver, the webhook notifier) wakes from its wait on the stop and exits, so
    `systemctl stop` or a deploy does not hang on sleeps."""
    daemon = vq.start_daemon(workers=2, cold=True)
    deadline = time.monotonic() + 60
    while "ready:" not in vq.daemon_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "ready:" in vq.daemon_log(), vq.daemon_log()
    time.sleep(1)  # idle: every loop is in its wait
    sent = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    took = time.monotonic() - sent
    assert took < 1.5, f"stopped {took:.2f} s after SIGTERM\n{vq.daemon_log()}"
