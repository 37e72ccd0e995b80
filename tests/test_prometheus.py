"""The Prometheus exposition as a scraper sees it: what a real daemon serves after jobs of
several types and calls to a provider passes `promtool check metrics`; names, units and
labels follow the conventions; per-worker series; scraping with a metrics-only token or
the token-free metrics listener."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import _free_port
from tests.test_api import SECRET, serve
from tests.test_providers import FakeProvider
from vq import keys, metrics, worker_series

PROMTOOL = shutil.which("promtool")


@pytest.fixture
def fake():
    server = FakeProvider()
    yield server
    server.close()


def _scrape(url: str, token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def _wait_scrape(url: str) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            status, _, text = _scrape(url)
            if status == 200:
                return text
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"nothing served {url}"
        time.sleep(0.1)


def _samples(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples, name: str, **labels) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_a_daemons_metrics_after_several_job_types_and_provider_calls_pass_promtool(vq, fake):
    port = _free_port()
    vq.configure(
        daemon={"shutdownGrace": 5000, "metricsListen": f"127.0.0.1:{port}"},
        providers={"fake": {"kind": "http", "url": fake.url, "timeout": 2000}},
        job_types={"ai-processing": {"attempts": 1}},
    )
    vq.start_daemon()
    ids = [vq.submit("test-noop", {"i": i}, "--user", "secret-user-7") for i in range(3)]
    ids += [vq.submit("test-broken", {}, "--user", "secret-user-7", "--project", "secret-project-9")]
    ids += [vq.submit("test-flaky", {"succeed_on": 2}, "--user", "u")]
    ids += [
        vq.submit("ai-processing", {"provider": "fake", "task": "echo", "input": i}, "--user", "u") for i in range(2)
    ]
    for job_id in ids:
        vq.wait_for(job_id)
    fake.mode = "bad"
    vq.wait_for(vq.submit("ai-processing", {"provider": "fake", "task": "echo", "input": "x"}, "--user", "u"))
    assert vq.run("history", "--limit", "1").returncode == 0  # the archiver has counted every event

    text = _wait_scrape(f"http://127.0.0.1:{port}/metrics")  # the listener: no token
    ready = next(line for line in vq.daemon_log().splitlines() if "ready: " in line)
    assert f"metrics on 127.0.0.1:{port}" in ready, "the ready line says where to scrape, as it says HTTP's"
    assert "secret-user-7" not in text and "secret-project-9" not in text, "no label from user data"
    assert PROMTOOL or not os.environ.get("CI"), "CI installs promtool (.ci/run: Debian's prometheus)"
    if PROMTOOL:
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr
    families = _samples(text)
    for gone in ("vq_provider_calls_15m", "vq_provider_latency_ms"):
        assert gone not in families
    calls = families["vq_provider_calls"]
    assert _value(calls, "vq_provider_calls_total", provider="fake", outcome="ok") == 2
    assert _value(calls, "vq_provider_calls_total", provider="fake", outcome="client") == 1
    latency = families["vq_provider_latency_seconds"]
    assert _value(latency, "vq_provider_latency_seconds_count", provider="fake") == 3
    assert _value(latency, "vq_provider_latency_seconds_bucket", provider="fake", le="+Inf") == 3
    assert 0 < _value(latency, "vq_provider_latency_seconds_sum", provider="fake") < 6

    run = families["vq_job_run_seconds"]
    buckets = [s for s in run if s.name == "vq_job_run_seconds_bucket" and s.labels["job_type"] == "test-noop"]
    assert len(buckets) == len(metrics.PROM_BOUNDS["run"]) + 1 <= 20, "a few buckets fit to the range"
    assert _value(run, "vq_job_run_seconds_count", job_type="test-noop") == 3
    assert _value(run, "vq_job_run_seconds_count", job_type="test-flaky") == 2  # both attempts
    events = families["vq_jobs_events"]
    assert _value(events, "vq_jobs_events_total", job_type="test-broken", event="failed") == 1

    host = socket.gethostname()
    jobs = Counter()
    for s in families["vq_worker_jobs"]:
        assert s.name == "vq_worker_jobs_total" and s.labels["host"] == host and s.labels["worker"] in ("0", "1")
        jobs[s.labels["outcome"]] += s.value
    assert jobs == {"finished": 6, "failed": 2, "retried": 1, "canceled": 0}
    busy = [s for s in families["vq_worker_busy_seconds"] if s.name == "vq_worker_busy_seconds_total"]
    assert busy and all(s.value >= 0 for s in busy)

    status, _, body = _scrape(f"http://127.0.0.1:{port}/api/jobs/stats")
    assert status == 404 and "only /metrics" in body, "the listener serves nothing else"
    as_json = {f["name"]: f for f in vq.json("metrics")}
    assert set(as_json) == set(families)
    assert as_json["vq_provider_latency_seconds"]["type"] == "histogram"
    assert as_json["vq_provider_latency_seconds"]["unit"] == "seconds"
    if not PROMTOOL:
        pytest.skip("promtool is not installed here: everything but its check passed")


def test_a_metrics_token_reads_metrics_and_nothing_else(vq):
    api = serve(vq, jwt_secret=SECRET)
    scraper = api.token("prometheus", "metrics", "--ttl", "365d")
    reply = api.call("GET", "/metrics", scraper)
    assert reply.status == 200 and "vq_jobs{" in reply.body
    for method, path, body in (
        ("GET", "/api/jobs/stats", None),
        ("GET", "/api/jobs/health", None),
        ("POST", "/api/jobs/test-noop", {"data": {}}),
    ):
        refused = api.call(method, path, scraper, body=body)
        assert refused.status == 403 and "metrics token" in refused.body["error"]["message"], refused.body
    assert api.call("GET", "/metrics", api.token("alice")).status == 403, "a user's token may not scrape"
    assert api.call("GET", "/metrics").status == 401


def test_a_metrics_token_needs_no_user_and_every_other_role_does(vq):
    """A scrape-only token acts for no user: `vq token create --role metrics` alone makes one
    (subject `metrics`); a token of any other role still names its user."""
    api = serve(vq, jwt_secret=SECRET)
    made = vq.json("token", "create", "--role", "metrics")
    assert made["userId"] == "metrics"
    assert api.call("GET", "/metrics", made["token"]).status == 200
    assert api.call("GET", "/api/jobs/stats", made["token"]).status == 403
    for role in ("user", "operator", "admin"):
        proc = vq.run("token", "create", "--role", role)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "--user: missing" in proc.stderr and "Traceback" not in proc.stderr


def test_idle_workers_series_are_dropped(vq, redis_conn):
    vq.start_daemon()
    vq.wait_for(vq.submit("test-noop", {}, "--user", "u"))
    assert vq.run("history", "--limit", "1").returncode == 0
    host = socket.gethostname()
    assert any(s.labels.get("host") == host for s in _samples(vq.run("metrics").stdout)["vq_worker_jobs"])
    assert worker_series.prune(redis_conn, int(time.time() * 1000) - 3_600_000) == 0, "a worker busy just now stays"
    assert worker_series.prune(redis_conn, int(time.time() * 1000) + 1) >= 1
    assert _samples(vq.run("metrics").stdout)["vq_worker_jobs"] == []
    assert not redis_conn.exists(keys.METRICS_WORKERS, keys.METRICS_WORKERS_SEEN)


def test_an_older_vqs_fine_histogram_totals_become_the_few_buckets(vq, redis_conn):
    fine = {f"test-noop|run|{metrics.bucket_of(ms)}": 1 for ms in (3, 700, 4_000, 50_000_000)}
    redis_conn.hset(keys.METRICS_TOTALS, mapping={**fine, "test-noop|run_ms": 50_004_703, "test-noop|ran": 4})
    assert metrics.migrate_totals(redis_conn) == 4
    assert metrics.migrate_totals(redis_conn) == 0
    run = _samples(vq.run("metrics").stdout)["vq_job_run_seconds"]
    assert _value(run, "vq_job_run_seconds_count", job_type="test-noop") == 4
    assert _value(run, "vq_job_run_seconds_bucket", job_type="test-noop", le="0.01") == 1
    assert _value(run, "vq_job_run_seconds_bucket", job_type="test-noop", le="1.0") == 2
    assert _value(run, "vq_job_run_seconds_bucket", job_type="test-noop", le="5.0") == 3
    assert _value(run, "vq_job_run_seconds_bucket", job_type="test-noop", le="3600.0") == 3
    assert _value(run, "vq_job_run_seconds_sum", job_type="test-noop") == pytest.approx(50_004.703)


def test_a_metrics_listener_whose_address_is_taken_says_so_once_and_serves_once_it_is_free(vq):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    vq.configure(daemon={"shutdownGrace": 5000, "metricsListen": f"127.0.0.1:{port}"})
    daemon = vq.start_daemon()
    job_id = vq.submit("test-noop", {}, "--user", "u")
    assert vq.wait_for(job_id)["status"] == "finished", "the rest of the daemon runs"
    deadline = time.monotonic() + 10
    while "metrics listener not serving" not in vq.daemon_log():
        assert time.monotonic() < deadline, vq.daemon_log()
        time.sleep(0.1)
    time.sleep(2.5)  # a few more tries
    assert vq.daemon_log().count("metrics listener not serving") == 1
    assert f"127.0.0.1:{port} is already in use" in vq.daemon_log()
    holder.close()
    assert "vq_jobs{" in _wait_scrape(f"http://127.0.0.1:{port}/metrics")
    assert "metrics listener serving on" in vq.daemon_log()
    began = time.monotonic()
    assert vq.stop_daemon(daemon) == 0
    assert time.monotonic() - began < 10, "the listener stops with its daemon"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_figures_of_names_config_does_not_know_are_not_labels(vq, redis_conn):
    """A job type removed from config, a provider no config names: their counters stay in
    Redis but make no series (labels only from sets config bounds)."""
    redis_conn.hset(keys.METRICS_TOTALS, mapping={"removed-type|finished": 3, "test-noop|finished": 2})
    redis_conn.hset(keys.METRICS_PROVIDERS, mapping={"gone-provider|ok": 5, "local|ok": 1})
    text = vq.run("metrics").stdout
    assert "removed-type" not in text and "gone-provider" not in text
    families = _samples(text)
    assert _value(families["vq_jobs_events"], "vq_jobs_events_total", job_type="test-noop", event="finished") == 2
    assert _value(families["vq_provider_calls"], "vq_provider_calls_total", provider="local", outcome="ok") == 1


@pytest.mark.parametrize(
    "name, labels",
    [
        ("vq.gpu-box.3.41234", ("gpu-box", "3")),
        ("vq.render.example.com.0.77", ("render.example.com", "0")),  # a host name with dots
        ("vq.gpu-box.1.41234.image-generation.2", ("gpu-box", "1.image-generation.2")),  # a helper thread
        ("my-own-rq-worker", None),  # not one of vq's daemons: no series
        (None, None),
    ],
)
def test_a_worker_is_labelled_by_host_and_place_never_by_pid(name, labels):
    assert worker_series.labels_of(name) == labels
