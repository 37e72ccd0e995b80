"""Running under systemd: the notify protocol over a real socket (READY once workers, timer
and HTTP are up, WATCHDOG pings, RELOADING/READY on SIGHUP, STOPPING), SIGHUP reloading the
configuration under load without losing or repeating a job, and JSON logs."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

import yaml
from rq import Worker

from tests.conftest import _free_port
from vq.config import load_settings
from vq.submission import Submission, submit


def test_notify_protocol_over_a_real_socket(vq, redis_conn, tmp_path):
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(0.1)
    port = _free_port()
    vq.configure(http={"enabled": True, "listen": f"127.0.0.1:{port}", "jwt_secret": "x" * 40})
    env = dict(vq.env, NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "vq", "daemon", "--workers", "2"],
        env=env,
        stdout=open(tmp_path / "daemon.log", "w"),
        stderr=subprocess.STDOUT,
    )
    messages: list[tuple[float, str, dict]] = []

    def listen(seconds: float, until=None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                text = listener.recv(4096).decode()
            except TimeoutError:
                continue
            seen = {}
            if text.startswith("READY=1"):  # what is up at the moment systemd hears READY
                seen["workers"] = len(Worker.all(connection=redis_conn))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    seen["http"] = True
                except OSError:
                    seen["http"] = False
            messages.append((time.monotonic(), text, seen))
            if until and until(text):
                return

    try:
        listen(30, until=lambda text: text.startswith("READY=1"))
        ready = [m for m in messages if m[1].startswith("READY=1")]
        assert ready, messages
        assert ready[0][2] == {"workers": 2, "http": True}
        assert "STATUS=2 workers, scheduler" in ready[0][1] and f"HTTP on 127.0.0.1:{port}" in ready[0][1]
        listen(3.5)
        assert sum(1 for m in messages if m[1] == "WATCHDOG=1") >= 3  # every WatchdogSec / 2
        daemon.send_signal(signal.SIGHUP)
        listen(
            20, until=lambda text: text.startswith("READY=1") and any(m[1].startswith("RELOADING=1") for m in messages)
        )
        after = [m[1].split("\n")[0] for m in messages if m[1] != "WATCHDOG=1"]
        assert after[-2:] == ["RELOADING=1", "READY=1"]
        assert any("MONOTONIC_USEC=" in m[1] for m in messages if m[1].startswith("RELOADING=1"))
        daemon.send_signal(signal.SIGTERM)
        listen(10, until=lambda text: text.startswith("STOPPING=1"))
        assert messages[-1][1].startswith("STOPPING=1")
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        listener.close()


def test_sighup_reloads_under_load_without_losing_or_repeating_a_job(vq, redis_conn):
    settings = load_settings(vq.config_path)
    ids = [
        submit(
            redis_conn,
            settings,
            Submission("test-sleep", {"seconds": 0.15, "steps": 3}, user_id=f"u{i % 12}", subscription="enterprise"),
        )
        for i in range(80)
    ]
    daemon = vq.start_daemon(workers=2)
    time.sleep(1.5)

    def reload_and_wait(done: int) -> None:
        daemon.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while _reloads(vq.daemon_log()) < done and time.monotonic() < deadline:
            time.sleep(0.05)

    for round_ in range(6):
        vq.configure(concurrency={"type": {"test-sleep": 1 if round_ % 2 == 0 else 2}})
        reload_and_wait(round_ + 1)
        time.sleep(0.4)
    config = yaml.safe_load(vq.config_path.read_text())
    good = vq.config_path.read_text()
    vq.config_path.write_text(good + "\nqueue: {defaultJobOptions: {attempts: lots}}\n")  # refused, keeps running
    reload_and_wait(7)
    vq.config_path.write_text(good)
    deadline = time.monotonic() + 90
    while True:
        counts = _event_counts(redis_conn)
        if set(counts["finished"]) >= set(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(counts["finished"]) == set(ids), "every job finished"
    assert all(counts["started"][i] == 1 for i in ids), [i for i in ids if counts["started"][i] != 1]
    assert all(counts["finished"][i] == 1 for i in ids)
    log = vq.daemon_log()
    assert log.count("configuration reloaded") == 6, [line for line in log.splitlines() if "reload" in line]
    assert "reload refused, the running configuration stays: " in log and "queue.defaultJobOptions.attempts" in log
    assert daemon.poll() is None
    assert config["concurrency"]["type"]["test-sleep"] == 2
    in_force = {row["jobType"]: row["limit"] for row in vq.json("limits")["types"]}
    assert in_force["test-sleep"] == 2  # the last good reload's value is in force


def _reloads(log: str) -> int:
    return log.count("configuration reloaded") + log.count("reload refused")


def _event_counts(conn) -> dict[str, Counter]:
    counts = {"started": Counter(), "finished": Counter()}
    for _id, fields in conn.xrange("vq:events", count=1_000_000):
        event = fields[b"event"].decode()
        if event in counts:
            counts[event][fields[b"jobId"].decode()] += 1
    return counts


def test_json_log_lines(vq):
    """Every line is one JSON object, uvicorn's startup lines and vq's access lines as much
    as vq's and RQ's, with no colour codes (tests/test_logs.py checks the keys in detail)."""
    port = _free_port()
    daemon = vq.start_daemon("--log-format", "json", "--log-level", "DEBUG", "--http", f"127.0.0.1:{port}")
    job = vq.submit("test-noop", {}, "--user", "ann")
    vq.wait_for(job)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/jobs/types", timeout=1)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
            break
        except OSError:
            time.sleep(0.2)
    vq.stop_daemon(daemon)
    lines = [line for line in vq.daemon_log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "pid", "process"} <= set(r) for r in records)
    assert any(r["logger"] == "vq.events" and job in r["message"] and "finished" in r["message"] for r in records)
    assert any(r["logger"] == "uvicorn" and r["message"].startswith("Started server process") for r in records)
    assert any(
        r["logger"] == "vq.http.access" and r["path"] == "/api/jobs/types" and r["status"] == 401 and r["request_id"]
        for r in records
    )
    assert any(r["logger"] == "rq.worker" and r.get("job_id") == job and "Job OK" in r["message"] for r in records)
    assert not any("color_message" in r for r in records)
    assert not any("\x1b" in line or "\\u001b" in line for line in lines)
    bad = vq.run("daemon", "--log-format", "xml")
    assert bad.returncode == 2 and "--log-format: 'xml' is not text or json" in bad.stderr
