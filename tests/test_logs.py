"""`vq daemon --log-format json`: every line the daemon and its processes write (supervisor,
workers and their forked children, scheduler, the HTTP child's uvicorn and access lines) is
one JSON object with the job's fields as top-level keys, redirected or in a terminal."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.conftest import _free_port
from tests.test_api import SECRET, Api

KEYS = {"time", "level", "logger", "message", "process", "pid"}
ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _serve(vq, terminal: bool):
    port = _free_port()
    vq.configure(
        http={
            "enabled": True,
            "listen": f"127.0.0.1:{port}",
            "jwt_secret": SECRET,
            "rateLimit": {"requests": 1000, "window": 60000},
        },
        job_types={"test-chatty": {"handler": "tests.plugins:chatty", "attempts": 1}},
    )
    daemon = vq.start_daemon("--log-format", "json", terminal=terminal)
    api = Api(vq, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if api.call("GET", "/livez").status == 200:
                return daemon, api
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the API did not come up:\n" + vq.daemon_log())


@pytest.mark.parametrize("terminal", [False, True], ids=["redirected", "terminal"])
def test_every_line_is_json_with_the_job_and_request_as_keys(vq, terminal):
    daemon, api = _serve(vq, terminal)
    chatty = vq.submit("test-chatty", {"word": "ahoy"}, "--user", "ann")
    broken = vq.submit("test-broken", {}, "--user", "bob")
    forked = vq.submit("test-forked", {"seconds": 0.1, "steps": 1}, "--user", "dan")
    token = api.token("carol")
    created = api.call(
        "POST", "/api/jobs/test-noop", token, {"userId": "carol"}, headers={"X-Request-Id": "req-from-the-proxy-42"}
    )
    assert created.status == 201, created.body
    assert created.headers["x-request-id"] == "req-from-the-proxy-42"
    made = api.call("GET", "/api/jobs/types", None, headers={"X-Request-Id": "bad id\twith spaces"})
    assert made.status == 401 and re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    for job in (chatty, broken, forked, created.body["id"]):
        vq.wait_for(job)
    assert vq.stop_daemon(daemon) == 0
    time.sleep(0.3)  # the terminal copier's last chunk
    lines = [line for line in vq.daemon_log().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON: {line!r}") from None
    for r in records:
        assert KEYS <= set(r), r
        assert ISO_UTC_MS.fullmatch(r["time"]), r
    assert not any("\x1b" in line or "\\u001b" in line for line in lines)
    processes = {r["process"] for r in records}
    assert {"supervisor", "http"} <= processes and any(p.startswith("worker-") for p in processes), processes

    def events(job):
        return {r["event"]: r for r in records if r.get("job_id") == job and "event" in r}

    assert {"started", "finished"} <= set(events(chatty))
    assert events(created.body["id"])["created"]["process"] == "http"  # the CLI's own `created` is not the daemon's
    assert events(chatty)["finished"]["job_type"] == "test-chatty" and events(chatty)["started"]["user_id"] == "ann"
    assert events(chatty)["started"]["attempt"] == 1 and events(chatty)["started"]["worker"]
    assert "failed" in events(broken) and events(broken)["failed"]["job_type"] == "test-broken"
    assert "finished" in events(forked)
    said = [r for r in records if "chatty handler says ahoy" in r["message"]]
    assert len(said) == 1 and said[0]["job_id"] == chatty and said[0]["user_id"] == "ann"
    assert said[0]["logger"] == "vq.handler.test-chatty" and said[0]["process"].startswith("worker-")
    library = [r for r in records if r["logger"] == "some.library"]
    assert len(library) == 1 and library[0]["job_id"] == chatty and library[0]["job_type"] == "test-chatty"
    access = [r for r in records if r["logger"] == "vq.http.access"]
    posted = [r for r in access if r.get("request_id") == "req-from-the-proxy-42"]
    assert len(posted) == 1 and posted[0]["method"] == "POST" and posted[0]["path"] == "/api/jobs/test-noop"
    assert posted[0]["status"] == 201 and posted[0]["duration_ms"] >= 0 and posted[0]["process"] == "http"
    assert any(r.get("request_id") == made.headers["x-request-id"] and r["status"] == 401 for r in access)
    assert any(r["logger"] == "uvicorn" and r["message"].startswith("Started server process") for r in records)
    assert not any(r["logger"] == "uvicorn.access" for r in records)  # vq's access line replaces it


def test_a_handlers_text_line_names_its_job(vq):
    vq.configure(job_types={"test-chatty": {"handler": "tests.plugins:chatty", "attempts": 1}})
    daemon = vq.start_daemon()
    job = vq.submit("test-chatty", {"word": "ahoy"}, "--user", "ann")
    vq.wait_for(job)
    vq.stop_daemon(daemon)
    log = vq.daemon_log()
    assert f"vq.handler.test-chatty: chatty handler says ahoy [job {job}]" in log
    assert f"some.library: a library inside the handler speaks [job {job}]" in log
    assert "\x1b" not in log


def test_a_record_that_cannot_be_formatted_is_still_one_json_line():
    import subprocess
    import sys

    code = (
        "import logging, vq.logs as l; l.configure('INFO', 'json'); "
        "logging.getLogger('x').info('bad %d', 'text'); logging.getLogger('x').info('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [r["message"] for r in records][1] == "ok" and "could not be written" in records[0]["message"]
    assert records[0]["level"] == "ERROR" and ISO_UTC_MS.fullmatch(records[0]["time"])
