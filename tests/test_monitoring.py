"""stats, perf, health (each status reached by a real scenario), alerts and the Prometheus
exposition, checked against known workloads with a real daemon."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins import handler_pid


def _drain(vq, ids):
    for job_id in ids:
        vq.wait_for(job_id)
    assert vq.run("history", "--limit", "1").returncode == 0  # waits for the archiver to catch up


def test_stats_match_a_known_workload(vq):
    vq.start_daemon()
    ok = [vq.submit("test-noop", {"i": i}, "--user", "ann") for i in range(5)]
    bad = [vq.submit("test-broken", {"i": i}, "--user", "bob", "--priority", "high") for i in range(3)]
    _drain(vq, ok + bad)
    view = vq.json("stats")
    rows = {r["jobType"]: r for r in view["byType"]}
    assert rows["test-noop"]["totals"]["created"] == 5 and rows["test-noop"]["totals"]["finished"] == 5
    assert rows["test-broken"]["totals"]["created"] == 3 and rows["test-broken"]["totals"]["failed"] == 3
    assert rows["test-broken"]["now"]["failed"] == 3
    users = {u["userId"]: u for u in view["users"]}
    assert (users["ann"]["created"], users["ann"]["finished"]) == (5, 5)
    assert (users["bob"]["created"], users["bob"]["failed"]) == (3, 3)
    assert view["priorities"]["high"]["created"] == 3 and view["priorities"]["low"]["created"] == 5
    assert sum(h["created"] for h in view["trends"]["hourly"]) == 8
    assert sum(d["finished"] for d in view["trends"]["daily"]) == 5
    human = vq.run("stats").stdout
    assert "ann" in human and "users (the 2 most active)" in human
    assert "last 24 hours" in human and "last 14 days" in human and "day (UTC)" in human
    timeline = vq.run("history", ok[0]).stdout
    assert "at (UTC)" in timeline and "finished" in timeline, "times say their zone"
    assert "created (UTC)" in vq.run("history", "--user", "ann").stdout


def test_per_user_figures_forget_users_idle_past_the_retention(vq, redis_conn):
    """`vq stats` ranks users without scanning them all, and the hourly prune drops the
    counters of users with no job for history.retentionDays: they stay bounded."""
    from vq.config import load_settings
    from vq.history.archiver import Archiver

    vq.configure(history={"retentionDays": 30})
    old_ms = int((time.time() - 40 * 86400) * 1000)
    redis_conn.xadd(
        "vq:events",
        {
            "event": "created",
            "jobId": "old-job",
            "jobType": "test-noop",
            "ts": str(old_ms),
            "fields": json.dumps({"userId": "gone", "status": "queued"}),
        },
        id=f"{old_ms}-1",
    )
    for i in range(3):
        vq.submit("test-noop", {"i": i}, "--user", "busy")
    vq.submit("test-noop", {}, "--user", "quiet")
    archiver = Archiver(redis_conn, load_settings(vq.config_path, env={}))
    while archiver.step(block_ms=None):
        pass
    ranked = [(u["userId"], u["created"]) for u in vq.json("stats")["users"]]
    assert ranked == [("busy", 3), ("gone", 1), ("quiet", 1)] or ranked == [("busy", 3), ("quiet", 1), ("gone", 1)]
    archiver.prune()
    assert [(u["userId"], u["created"]) for u in vq.json("stats")["users"]] == [("busy", 3), ("quiet", 1)]
    assert not any(f.startswith(b"gone|") for f in redis_conn.hkeys("vq:metrics:users"))


def test_perf_percentiles_and_throughput(vq):
    vq.start_daemon(workers=2)
    ids = [vq.submit("test-sleep", {"seconds": 0.3, "steps": 1}, "--user", f"u{i}") for i in range(6)]
    ids += [vq.submit("test-noop", {}, "--user", "z")]
    _drain(vq, ids)
    view = vq.json("perf", "--window", "15m")
    rows = {r["jobType"]: r for r in view["types"]}
    sleep = rows["test-sleep"]
    assert sleep["finished"] == 6 and sleep["errorRate"] == 0.0
    assert 300 <= sleep["p50RunMs"] <= 450 and 300 <= sleep["p99RunMs"] <= 600  # buckets are within 25%
    assert 300 <= sleep["avgRunMs"] < 450
    assert sleep["p50WaitMs"] is not None and sleep["utilization"] > 0
    assert sleep["throughputPerMin"] > 0
    bad = vq.run("perf", "--window", "soon")
    assert bad.returncode == 2 and "--window" in bad.stderr


def _health(vq):
    proc = vq.run("health", "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_health_healthy_then_degraded_then_unhealthy_by_failure_rate(vq):
    vq.start_daemon()
    ok = [vq.submit("test-noop", {"i": i}, "--user", f"u{i}") for i in range(8)]
    _drain(vq, ok)
    code, report = _health(vq)
    assert (code, report["status"]) == (0, "healthy")
    bad = [vq.submit("test-broken", {"i": i}, "--user", f"u{i}") for i in range(2)]
    more = [vq.submit("test-broken", {"i": i + 10}, "--user", f"u{i}") for i in range(4)]
    _drain(vq, bad + more)
    code, report = _health(vq)
    broken = next(r for r in report["queues"] if r["jobType"] == "test-broken")
    assert broken["status"] == "unhealthy" and broken["failureRate"] == 1.0
    assert (code, report["status"]) == (2, "unhealthy")
    assert any("failure rate 100%" in reason for reason in report["reasons"])


def test_health_thresholds_are_configurable(vq):
    vq.configure(health={"minEnded": 5})
    vq.start_daemon()
    ids = [vq.submit("test-noop", {"i": i}, "--user", f"u{i}") for i in range(8)]
    ids += [vq.submit("test-odd", {"i": 1}, "--user", "x")]  # one permanent failure
    _drain(vq, ids)
    code, report = _health(vq)
    odd = next(r for r in report["queues"] if r["jobType"] == "test-odd")
    assert odd["status"] == "healthy"  # under minEnded for its own type
    vq.configure(health={"minEnded": 1})
    code, report = _health(vq)
    odd = next(r for r in report["queues"] if r["jobType"] == "test-odd")
    assert odd["status"] == "unhealthy" and code == 2
    vq.configure(health={"minEnded": 1, "failureRate": {"degraded": 0.5, "unhealthy": 2.0}})
    code, report = _health(vq)
    assert (code, report["status"]) == (1, "degraded")


def test_health_unhealthy_when_work_waits_and_no_worker_serves_it(vq):
    vq.submit("test-noop", {}, "--user", "u")
    code, report = _health(vq)
    row = next(r for r in report["queues"] if r["jobType"] == "test-noop")
    assert (code, row["status"]) == (2, "unhealthy")
    assert "no live worker serves this type" in row["reasons"][0]
    assert report["workers"]["alive"] == 0


def test_health_degraded_by_backlog_age_and_open_breaker(vq, redis_conn):
    from vq.config import load_settings
    from vq.providers.breaker import Breakers

    vq.configure(
        health={"backlogAge": {"degraded": 1000, "unhealthy": 600000}},
        providers={"pix": {"kind": "local", "breaker": {"failureThreshold": 1, "cooldown": 60000}}},
        job_types={"test-noop": {"handler": "tests.plugins:noop", "attempts": 1, "providers": ["pix"]}},
    )
    vq.start_daemon()
    vq.run("pause", "test-echo")
    vq.submit("test-echo", {}, "--user", "u")
    time.sleep(1.5)
    code, report = _health(vq)
    echo = next(r for r in report["queues"] if r["jobType"] == "test-echo")
    assert echo["status"] == "degraded" and "oldest waiting job has waited" in echo["reasons"][0]
    assert code == 1
    Breakers(redis_conn, load_settings(vq.config_path, env={})).failure("pix")
    code, report = _health(vq)
    noop = next(r for r in report["queues"] if r["jobType"] == "test-noop")
    assert noop["status"] == "degraded" and "circuit breaker open: pix" in noop["reasons"]
    assert report["breakers"] == ["pix"]


def _kill_running(vq, redis_conn, job_id: str) -> None:
    """SIGKILL the worker running the job and wait until the stalled-job recovery runs it again."""
    import os
    import signal

    vq.wait_for(job_id, statuses=("started",))
    pid = handler_pid(redis_conn, job_id)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while int(redis_conn.get(f"test:pid:{job_id}")) == pid:
        assert time.monotonic() < deadline, "the stalled job was not run again"
        time.sleep(0.2)


def test_health_degraded_by_a_stalled_job_and_unhealthy_by_more(vq, redis_conn):
    vq.configure(
        queue={"settings": {"lockDuration": 1500, "stalledInterval": 1000}},
        health={"stalled": {"degraded": 1, "unhealthy": 2}},
    )
    vq.start_daemon(workers=2)
    for killed, expected in ((1, "degraded"), (2, "unhealthy")):
        job_id = vq.submit("test-track", {"seconds": 30}, "--user", "u", "--subscription", "pro")
        _kill_running(vq, redis_conn, job_id)
        vq.json("cancel", job_id)
        _drain(vq, [job_id])
        code, report = _health(vq)
        row = next(r for r in report["queues"] if r["jobType"] == "test-track")
        assert (row["status"], row["stalled"]) == (expected, killed), row
        assert f"{killed} stalled job(s) recovered in the window" in row["reasons"]
        assert code == (1 if expected == "degraded" else 2)


def _past_events(redis_conn, seconds_ago: float, failed: int, finished: int, start_seq: int = 0) -> None:
    """Jobs of test-noop that ended `seconds_ago`, as the workers' events record them."""
    ts = int((time.time() - seconds_ago) * 1000)
    for seq in range(failed + finished):
        name = "failed" if seq < failed else "finished"
        redis_conn.xadd(
            "vq:events",
            {
                "event": name,
                "jobId": f"past-{ts}-{seq}",
                "jobType": "test-noop",
                "ts": str(ts),
                "fields": json.dumps({"userId": "u", "durationMs": 5}),
            },
            id=f"{ts}-{start_seq + seq}",
        )


@pytest.mark.parametrize("failed_before, expected", [(2, "degraded"), (3, "healthy")])
def test_health_degraded_when_failures_rise_against_the_window_before(vq, redis_conn, failed_before, expected):
    """5 failures in 100 (a 5% rate: healthy by rate) after `failed_before` the window
    before: rising by errorTrend (2x) or more is degraded."""
    from vq.config import load_settings
    from vq.history.archiver import Archiver

    _past_events(redis_conn, 450, failed=failed_before, finished=100 - failed_before)  # the 5 min before
    _past_events(redis_conn, 60, failed=5, finished=95)  # this window
    archiver = Archiver(redis_conn, load_settings(vq.config_path, env={}))
    while archiver.step(block_ms=None):
        pass
    _, report = _health(vq)
    row = next(r for r in report["queues"] if r["jobType"] == "test-noop")
    assert (row["failed"], row["failedBefore"], row["failureRate"]) == (5, failed_before, 0.05)
    assert row["status"] == expected
    assert (f"failures rising: 5 vs {failed_before} the window before" in row["reasons"]) == (expected == "degraded")


def test_health_unhealthy_when_redis_memory_is_nearly_full(vq, redis_conn):
    used = int(redis_conn.info("memory")["used_memory"])
    redis_conn.config_set("maxmemory", int(used * 1.02))
    try:
        code, report = _health(vq)
    finally:
        redis_conn.config_set("maxmemory", 0)
    assert report["redis"]["status"] == "unhealthy" and code == 2


def test_health_error_when_redis_is_unreachable(vq, tmp_path):
    from tests.conftest import write_config

    config = write_config(tmp_path / "dead.yaml", {"redis": {"url": "redis://127.0.0.1:1/0"}})
    proc = vq.run("--config", str(config), "health")
    assert proc.returncode == 3 and "127.0.0.1:1" in proc.stderr


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Hook.received
    server.shutdown()


def test_a_change_of_health_is_logged_and_posted_to_webhooks(vq, webhook):
    url, received = webhook
    vq.configure(health={"checkInterval": 1000, "webhooks": [url]})
    vq.start_daemon()
    time.sleep(2.5)
    assert all(r["to"] != "unhealthy" for r in received)
    ids = [vq.submit("test-broken", {"i": i}, "--user", f"u{i}") for i in range(6)]
    _drain(vq, ids)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not received:
        time.sleep(0.2)
    alert = next((r for r in received if r["to"] == "unhealthy"), None)
    assert alert is not None and alert["from"] in ("healthy", "degraded")
    assert alert["event"] == "health.changed" and alert["health"]["queues"]
    assert any("failure rate" in reason for reason in alert["reasons"])
    deadline = time.monotonic() + 5  # the line is written as the alert goes out: give it a moment
    while f"health changed: {alert['from']} -> unhealthy" not in vq.daemon_log():
        assert time.monotonic() < deadline, vq.daemon_log()[-2000:]
        time.sleep(0.1)


def test_prometheus_exposition(vq):
    vq.start_daemon()
    ids = [vq.submit("test-noop", {"i": i}, "--user", "u") for i in range(3)]
    _drain(vq, ids)
    text = vq.run("metrics").stdout
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "vq_jobs",
        "vq_jobs_events",
        "vq_job_run_seconds",
        "vq_job_wait_seconds",
        "vq_health",
        "vq_workers_alive",
        "vq_type_limit",
    } <= set(families)
    finished = [
        s.value
        for s in families["vq_jobs_events"].samples
        if s.labels == {"job_type": "test-noop", "event": "finished"} and s.name.endswith("_total")
    ]
    assert finished == [3.0]
    count = [
        s.value
        for s in families["vq_job_run_seconds"].samples
        if s.name == "vq_job_run_seconds_count" and s.labels["job_type"] == "test-noop"
    ]
    assert count == [3.0]
    as_json = {f["name"]: f for f in vq.json("metrics")}
    assert set(as_json) == set(families), "--json has the same metric families as the exposition"
    assert as_json["vq_jobs_events"]["type"] == "counter"
    assert [
        s["value"]
        for s in as_json["vq_jobs_events"]["samples"]
        if s["labels"] == {"job_type": "test-noop", "event": "finished"}
    ] == [3.0]
