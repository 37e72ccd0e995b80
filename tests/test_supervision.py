"""The daemon's supervision of its processes as an operator sees it: a worker that keeps
dying is reported once, with its last error, restarted with back-off and shown by
`vq health` and `vq doctor`; an HTTP port another process holds is said once, the rest of
the daemon runs, and the API starts by itself when the port comes free."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request

from tests.conftest import TEST_JOB_TYPES, _free_port
from vq.config import load_settings
from vq.submission import Submission, submit

VQ_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.-]+: ")
UVICORN_LINE = re.compile(r"^(INFO|WARNING|ERROR|DEBUG|CRITICAL):\s+")


def _wait(what, predicate, timeout: float, log=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} after {timeout}s\n{log()}")


def _findings(vq) -> tuple[int, dict]:
    proc = vq.run("doctor", "--json")
    return proc.returncode, {f["check"]: f for f in json.loads(proc.stdout)}


def test_a_crash_looping_worker_is_reported_once_backs_off_and_shows_in_health_and_doctor(vq, redis_conn):
    # A handler that takes its worker process down (as a segfault in a native library would),
    # run in the worker itself, and a job RQ cannot read: each kills the worker that takes it.
    vq.configure(
        job_types={**TEST_JOB_TYPES, "test-kill": {"handler": "tests.plugins:crash", "attempts": 1}},
        concurrency={"type": {"test-kill": 10}},
    )
    settings = load_settings(vq.config_path)
    # One user's line, so they are taken in this order; enough slots, as a killed job keeps its
    # slot until its lease lapses.
    jobs = [
        submit(
            redis_conn,
            settings,
            Submission("test-kill", {"n": i}, user_id="u", subscription="enterprise", skip_cache=True),
        )
        for i in range(4)
    ]
    redis_conn.hset(f"rq:job:{jobs[2]}", "created_at", "not a date")
    vq.start_daemon(workers=1)

    def loop():
        for entry in redis_conn.hvals("vq:daemons"):
            loops = json.loads(entry).get("crashLoops") or {}
            if loops.get("worker-0", {}).get("deaths", 0) >= 4:
                return loops["worker-0"]
        return None

    reported = _wait("no crash loop of 4 deaths reported", loop, 30, vq.daemon_log)
    assert "ValueError" in reported["lastError"] or "exited with code 3" in reported["lastError"]
    assert reported["restartDelaySeconds"] == 4.0  # 0.5, 1, 2, 4: doubled at each death
    log = vq.daemon_log()
    lines = log.splitlines()
    assert [line.split("vq.daemon: ")[1] for line in lines if "worker-0 died" in line] == [
        "worker-0 died: exited with code 3; restarting in 0.5s",
        "worker-0 died again: exited with code 3; restarting in 1.0s",
    ]
    [looping] = [line for line in lines if "vq.daemon: worker-0 is crash-looping" in line]
    assert " ERROR vq.daemon: worker-0 is crash-looping: died 3 times in " in looping
    assert "last: ValueError: time data 'not a date' does not match format" in looping
    assert log.count(", in _restore_admitted\n") == 1  # its traceback, with the crash-loop line only
    assert "unhandled exception" not in log  # RQ's traceback per death is not repeated

    proc = vq.run("health", "--json")
    health = json.loads(proc.stdout)
    assert proc.returncode == 2 and health["status"] == "unhealthy"  # its one worker does no work
    assert any(
        r.startswith("worker-0 of daemon ") and "is crash-looping: died 4 times" in r for r in health["reasons"]
    ), health["reasons"]
    assert [(c["process"], c["deaths"]) for c in health["crashLoops"]] == [("worker-0", 4)]
    code, found = _findings(vq)
    assert code == 2 and found["crash loop"]["status"] == "fail", found
    assert "worker-0 of " in found["crash loop"]["detail"] and "died 4 times" in found["crash loop"]["detail"]
    assert "traceback" in found["crash loop"]["fix"]
    assert "0 workers" in found["daemons"]["detail"] and "1 process(es) crash-looping" in found["daemons"]["detail"]
    human = vq.run("health")
    assert "worker-0 of daemon" in human.stdout and "crash-looping" in human.stdout


def test_a_taken_http_port_is_said_once_the_rest_runs_and_the_api_starts_when_it_frees(vq):
    port = _free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        vq.start_daemon("--http", f"127.0.0.1:{port}", workers=1)
        _wait("no ready line", lambda: "ready: " in vq.daemon_log(), 30, vq.daemon_log)
        job = vq.submit("test-noop", {}, "--user", "u")
        assert vq.wait_for(job)["status"] == "finished"  # the workers run without the HTTP API
        code, found = _wait(
            "doctor does not report the HTTP API", lambda: (lambda f: f if "http" in f[1] else None)(_findings(vq)), 10
        )
        assert found["http"]["status"] == "warn" and code == 1
        assert (
            f"is not serving the HTTP API: 127.0.0.1:{port} is already in use (by pid {os.getpid()}"
            in found["http"]["detail"]
        )
        assert "--http HOST:PORT" in found["http"]["fix"]
    finally:
        holder.close()
    _wait("the API does not answer once the port is free", lambda: _answers(port), 20, vq.daemon_log)
    _wait("no serving line", lambda: "HTTP API serving on" in vq.daemon_log(), 5, vq.daemon_log)
    lines = [line for line in vq.daemon_log().splitlines() if line.strip()]
    taken = [line for line in lines if "already in use" in line]
    assert len(taken) == 1 and VQ_LINE.match(taken[0]), taken  # said once: the tries at 1, 3, 7 s... are quiet
    assert (
        f"ERROR vq.daemon: HTTP API not serving: 127.0.0.1:{port} is already in use (by pid {os.getpid()}" in taken[0]
    )
    [ready] = [line for line in lines if "ready: " in line]
    assert "ready: 1 workers, scheduler" in ready and "HTTP" not in ready
    serving = [line for line in lines if "HTTP API serving on" in line]
    assert (
        len(serving) == 1 and f"HTTP API serving on 127.0.0.1:{port} (the address was in use until now)" in serving[0]
    )
    assert not [line for line in lines if UVICORN_LINE.match(line)]
    assert all(VQ_LINE.match(line) for line in lines), [line for line in lines if not VQ_LINE.match(line)]
    code, found = _wait(
        "doctor does not see the API serve",
        lambda: (lambda f: f if f[1].get("http", {}).get("status") == "ok" else None)(_findings(vq)),
        10,
    )
    assert f"127.0.0.1:{port}" in found["http"]["detail"]


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/jobs/types", timeout=1)
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # the API, asking for a token
    except OSError:
        return False
    return True
