"""The embedded Redis as operators live with it: real daemons with no Redis configured, the
CLI run as a user runs it. The server outlives daemon restarts (and a daemon's kill -9), the
next daemon reuses it, it stops only on request, a reboot's stale files do not block it, and
`vq history` needs no Redis at all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_JOB_TYPES, VQ, _free_port, write_config
from vq.embedded import EmbeddedRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")


def _servers_in(folder: Path) -> list[int]:
    """Every redis-server process working in `folder`, whatever its pid file says."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == folder and b"redis-server" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


@pytest.fixture
def embedded(tmp_path):
    """`vq` with no Redis configured (its embedded one in a short data dir: socket paths are
    short); afterwards every daemon is stopped and every redis-server left in it killed."""
    data_dir = Path(tempfile.mkdtemp(prefix="vqe", dir="/tmp"))
    config = write_config(
        tmp_path / "config.yaml",
        {
            "data_dir": str(data_dir),
            "job_types": TEST_JOB_TYPES,
            "daemon": {"shutdownGrace": 5000},
            "http": {"enabled": False},
        },
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "VQ_", "SYSTEMD_", "NOTIFY_", "INVOCATION_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(VQ_CONFIG=str(config), PYTHONPATH=str(ROOT), HOME=str(tmp_path), COLUMNS="200")
    runner = VQ(config, env, data_dir)
    runner.folder = (data_dir / "redis").resolve()
    yield runner
    for proc in runner.daemons:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in runner.daemons:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in _servers_in(runner.folder):
        os.kill(pid, signal.SIGCONT)  # one a test stopped
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(data_dir, ignore_errors=True)


def _ready(vq: VQ, daemon, timeout: float = 30) -> str:
    """Wait until the daemon logs `ready:`; its log so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = daemon.log_path.read_text()
        if "ready:" in text:
            return text
        assert daemon.poll() is None, f"daemon exited {daemon.returncode}:\n{text}"
        time.sleep(0.05)
    raise AssertionError(f"daemon not ready after {timeout}s:\n{daemon.log_path.read_text()}")


def _redis_pid(vq: VQ) -> int:
    view = vq.json("redis", "status")
    assert view["answering"], view
    return view["pid"]


def _until(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not met after {timeout}s")


def test_every_submission_succeeds_through_a_daemon_restart(embedded):
    """A script submits a job every 100 ms while the daemon is stopped and started again:
    every `vq submit` exits 0 (also while no daemon runs), and every job finishes once the
    new daemon is up, on the same redis-server."""
    first = embedded.start_daemon(workers=1)
    _ready(embedded, first)
    redis_pid = int((embedded.folder / "redis.pid").read_text())
    done: list[subprocess.CompletedProcess] = []
    stop = threading.Event()

    def submit_every_100ms():
        n = 0
        while not stop.is_set():
            done.append(embedded.run("submit", "test-noop", "--user", "cron", "--data", json.dumps({"n": n})))
            n += 1
            stop.wait(0.1)

    script = threading.Thread(target=submit_every_100ms)
    script.start()
    try:
        _until(lambda: len(done) >= 2, what="2 submissions with the first daemon")
        assert embedded.stop_daemon(first) == 0
        gap = len(done)
        _until(lambda: len(done) >= gap + 3, what="3 submissions with no daemon running")
        second = embedded.start_daemon(workers=1)
        log = _ready(embedded, second)
        after = len(done)
        _until(lambda: len(done) >= after + 2, what="2 submissions with the second daemon")
    finally:
        stop.set()
        script.join(30)
    failed = [(p.returncode, p.stderr.strip()) for p in done if p.returncode != 0]
    assert not failed, f"{len(failed)} of {len(done)} submissions failed: {failed[:3]}"
    assert "left running" in embedded.daemon_log(0)
    assert f"(pid {redis_pid}): already running, reused" in log
    assert _running(redis_pid)
    ids = {p.stdout.strip() for p in done}
    assert len(ids) == len(done) >= 7

    def all_finished():
        rows = embedded.json("history", "--type", "test-noop", "--status", "finished", "--limit", "1000")
        return ids <= {r["id"] for r in rows}

    _until(all_finished, what="every submitted job finished")


def test_redis_survives_kill_9_of_the_daemon_and_the_next_daemon_reuses_it(embedded):
    first = embedded.start_daemon(workers=1)
    _ready(embedded, first)
    redis_pid = _redis_pid(embedded)
    before = embedded.submit("test-echo", {"x": 1}, "--user", "u")
    embedded.wait_for(before)
    first.kill()  # SIGKILL: no clean-up of any kind
    first.wait()
    embedded.daemons.remove(first)  # wait_for would report its exit code
    during = embedded.submit("test-echo", {"x": 2}, "--user", "u")
    status = embedded.json("redis", "status")
    assert status["pid"] == redis_pid and status["persistence"]["aof"] is True
    assert embedded.json("show", before)["status"] == "finished"
    second = embedded.start_daemon(workers=1)
    assert f"(pid {redis_pid}): already running, reused" in _ready(embedded, second)
    assert embedded.wait_for(during)["result"]["echo"] == {"x": 2}
    assert embedded.stop_daemon(second) == 0
    assert _running(redis_pid)
    stopped = embedded.run("redis", "stop")
    assert stopped.returncode == 0 and f"stopped (pid {redis_pid})" in stopped.stdout
    assert not _running(redis_pid) and not (embedded.folder / "redis.sock").exists()
    refused = embedded.run("submit", "test-echo", "--data", "{}")
    assert refused.returncode == 3 and "`vq redis start`" in refused.stderr


def test_redis_stops_only_on_request(embedded):
    """`vq redis start` before any daemon (jobs queue), `vq redis stop` refused while a
    daemon uses it and a Redis restart with --force, `vq daemon --stop-redis`."""
    started = embedded.json("redis", "start")
    assert started["started"] is True
    early = embedded.submit("test-noop", {}, "--user", "cron")  # before any daemon runs
    daemon = embedded.start_daemon("--stop-redis", workers=1)
    assert f"(pid {started['pid']}): already running, reused" in _ready(embedded, daemon)
    assert embedded.wait_for(early)["status"] == "finished"

    refused = embedded.run("redis", "stop")
    assert refused.returncode == 2, refused.stderr
    assert f"vq daemon (pid {daemon.pid}) uses the embedded Redis" in refused.stderr
    assert _running(started["pid"])

    forced = embedded.run("redis", "stop", "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["pid"] == started["pid"]
    assert "starts the embedded Redis again" in forced.stderr
    assert not _running(started["pid"])
    again = _until(
        lambda: (v := json.loads(embedded.run("redis", "status", "--json").stdout))["answering"] and v,
        what="the daemon to start Redis again",
    )
    assert again["pid"] != started["pid"]
    later = embedded.submit("test-noop", {}, "--user", "cron")
    assert embedded.wait_for(later)["status"] == "finished"

    assert embedded.stop_daemon(daemon) == 0
    assert "stopped: --stop-redis" in embedded.daemon_log(0)
    assert not _running(again["pid"]) and _servers_in(embedded.folder) == []
    down = embedded.run("redis", "status")
    assert down.returncode == 3 and "not running" in down.stdout


def test_a_daemon_run_by_systemd_stops_the_embedded_redis_with_it(embedded):
    """As a systemd unit's main process the daemon's cgroup is killed when it exits, so it
    stops the embedded Redis itself, gracefully (SIGTERM, AOF flushed)."""
    log = embedded.data_dir / "systemd.log"
    daemon = subprocess.Popen(
        ["sh", "-c", f'SYSTEMD_EXEC_PID=$$ exec "{sys.executable}" -m vq daemon --workers 1'],
        env=embedded.env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    daemon.log_path = log
    embedded.daemons.append(daemon)
    _ready(embedded, daemon)
    redis_pid = _redis_pid(embedded)
    assert embedded.stop_daemon(daemon) == 0
    assert "under systemd it is in this unit's cgroup" in log.read_text()
    assert not _running(redis_pid) and _servers_in(embedded.folder) == []


def test_a_stale_pid_file_and_socket_after_a_reboot_do_not_block_a_start(embedded):
    started = embedded.json("redis", "start")
    job = embedded.submit("test-noop", {}, "--user", "u")
    os.kill(started["pid"], signal.SIGKILL)  # power cut: the pid file and the socket stay behind
    _until(lambda: not _running(started["pid"]), what="redis-server gone")
    squatter = subprocess.Popen(["sleep", "60"])  # the reboot gave the old pid to another process
    try:
        (embedded.folder / "redis.pid").write_text(f"{squatter.pid}\n")
        assert (embedded.folder / "redis.sock").exists()
        status = embedded.run("redis", "status", "--json")
        assert status.returncode == 3
        view = json.loads(status.stdout)
        assert view["running"] is False and view["stalePidFile"] == str(embedded.folder / "redis.pid")
        again = embedded.json("redis", "start")
        assert again["started"] is True and again["pid"] not in (started["pid"], squatter.pid)
        assert squatter.poll() is None  # not touched
    finally:
        squatter.kill()
        squatter.wait()
    assert embedded.json("show", job)["status"] == "queued"  # the AOF kept it through the kill -9
    assert embedded.run("redis", "stop").returncode == 0


def test_history_audit_and_export_need_no_redis(embedded):
    """They read SQLite: with the embedded Redis stopped, or a configured one down, they answer
    (exit 0) from the file, with a note that the latest events may be missing."""
    server = EmbeddedRedis(embedded.data_dir)
    server.start()
    job = embedded.submit("test-echo", {"x": 1}, "--user", "alice")
    embedded.json("history", job)  # no archiver runs: this catch-up archives the job's creation
    server.stop()
    assert _servers_in(embedded.folder) == []  # no Redis at all now
    timeline = embedded.run("history", job, "--json")
    assert timeline.returncode == 0, timeline.stderr
    assert [t["to_status"] for t in json.loads(timeline.stdout)["transitions"]] == ["queued"]
    assert "cannot reach Redis at embedded unix://" in timeline.stderr
    assert "may miss the latest events" in timeline.stderr
    listed = embedded.run("history", "--user", "alice")
    assert listed.returncode == 0 and job[:12] in listed.stdout, listed.stderr
    exported = embedded.run("history", "export", "--format", "json")
    assert exported.returncode == 0 and json.loads(exported.stdout.splitlines()[0])["id"] == job
    audit = embedded.run("audit", "--json")
    assert audit.returncode == 0 and any(r["target"] == job for r in json.loads(audit.stdout)), audit.stderr
    embedded.env["REDIS_URL"] = f"redis://127.0.0.1:{_free_port()}/0"  # a configured Redis that is down
    configured = embedded.run("history", job, "--json")
    assert configured.returncode == 0 and json.loads(configured.stdout)["job"]["id"] == job, configured.stderr
    assert "cannot reach Redis at redis://127.0.0.1:" in configured.stderr
