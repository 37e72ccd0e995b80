"""`vq doctor` on real set-ups: a healthy one with a daemon, and seeded bad ones (an
evicting Redis without persistence, RDB only, an unreachable Redis, a handler that does
not import, a broken config). Each problem is found, explained, given a fix, and sets the
exit code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
import yaml

from tests.conftest import _free_port


def _findings(vq, config: Path | None = None) -> tuple[int, dict[str, dict]]:
    proc = vq.run(*(["--config", str(config)] if config else []), "doctor", "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    import json

    found = json.loads(proc.stdout)
    by_check: dict[str, dict] = {}
    for f in found:
        by_check.setdefault(
            f["check"], f if f["status"] != "ok" or f["check"] not in by_check else by_check[f["check"]]
        )
    return proc.returncode, by_check


@pytest.fixture
def seeded_redis():
    """A redis-server started with the options a test asks for; stopped afterwards."""
    servers = []

    def start(*options: str) -> str:
        folder = Path(tempfile.mkdtemp(prefix="vq-doctor-"))
        port = _free_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        servers.append((proc, folder))
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                return f"redis://127.0.0.1:{port}/0"
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    yield start
    for proc, folder in servers:
        proc.kill()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_healthy_installation_passes(vq):
    vq.start_daemon()
    deadline = time.monotonic() + 20
    while True:  # the daemon reports itself every 2 s; the archiver takes its lease at start
        code, found = _findings(vq)
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 0, found
    assert found["persistence"]["detail"].startswith("AOF on (appendfsync always)")
    assert "1 daemon(s) on 1 host(s): 2 workers, 1 timer(s) alive" in found["daemons"]["detail"]
    assert found["archiver"]["detail"].startswith("leader: ")
    table = vq.run("doctor")
    assert table.returncode == 0 and "✔ ok" in table.stdout


def test_an_evicting_redis_without_persistence_fails_with_fixes(vq, seeded_redis):
    url = seeded_redis("--appendonly", "no", "--save", "", "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru")
    code, found = _findings(vq, _config(vq, url))
    assert code == 2
    assert found["persistence"]["status"] == "fail" and "appendonly yes" in found["persistence"]["fix"]
    assert found["eviction"]["status"] == "fail" and "allkeys-lru" in found["eviction"]["detail"]
    assert "noeviction" in found["eviction"]["fix"]
    assert found["daemons"]["status"] == "fail" and "vq daemon" in found["daemons"]["fix"]


def test_rdb_snapshots_only_is_a_warning(vq, seeded_redis):
    url = seeded_redis("--appendonly", "no", "--save", "60 1", "--maxmemory-policy", "noeviction")
    _code, found = _findings(vq, _config(vq, url))
    assert found["persistence"]["status"] == "warn" and "since the last snapshot" in found["persistence"]["detail"]
    assert found["eviction"]["status"] == "ok"


def test_unreachable_redis_and_a_broken_handler_are_findings_not_tracebacks(vq):
    config = _config(
        vq, f"redis://127.0.0.1:{_free_port()}/0", job_types={"my-type": {"handler": "no_such_module:handle"}}
    )
    code, found = _findings(vq, config)
    assert code == 2
    assert found["redis"]["status"] == "fail" and "cannot reach Redis at redis://127.0.0.1:" in found["redis"]["detail"]
    assert found["handlers"]["status"] == "fail" and "my-type (no_such_module:handle)" in found["handlers"]["detail"]
    assert "sqlite" in found  # checks that need no Redis still run


def test_a_broken_config_is_a_finding(vq, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("queue:\n  defaultJobOptions:\n    attempts: lots\n")
    code, found = _findings(vq, bad)
    assert code == 2 and found["config"]["status"] == "fail"
    assert "queue.defaultJobOptions.attempts" in found["config"]["detail"]


def test_config_check_reads_a_file_before_a_reload_without_redis(vq, tmp_path):
    """`vq config check FILE` as an operator runs it before `systemctl reload vq`: the
    answer names the file, exits 0 or 2, and needs no Redis (this config's is unreachable)."""
    good = _config(vq, f"redis://127.0.0.1:{_free_port()}/0")
    ok = vq.run("config", "check", str(good))
    assert ok.returncode == 0 and f"{good}: valid" in ok.stdout, ok.stdout + ok.stderr
    assert re.search(r"handlers: \d+ job types, every handler importable", ok.stdout), ok.stdout
    broken = _config(vq, f"redis://127.0.0.1:{_free_port()}/1", job_types={"my-type": {"handler": "no_such_module:f"}})
    report = vq.run("config", "check", str(broken), "--json")
    assert report.returncode == 2, report.stderr
    body = json.loads(report.stdout)
    assert (body["file"], body["exists"], body["valid"]) == (str(broken), True, False)
    assert [f["check"] for f in body["findings"] if f["status"] == "fail"] == ["handlers"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("queue:\n  defaultJobOptions:\n    attempts: lots\n")
    refused = vq.run("config", "check", str(bad))
    assert refused.returncode == 2 and refused.stdout == "", refused.stdout
    assert refused.stderr.startswith(f"vq: error: {bad}: queue.defaultJobOptions.attempts"), refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    missing = vq.run("config", "check", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "config file not found" in missing.stderr


def _config(vq, url: str, **extra) -> Path:
    config = yaml.safe_load(vq.config_path.read_text())
    config["redis"] = {"url": url}
    config.update(extra)
    path = vq.config_path.parent / f"doctor-{abs(hash(url)) % 10_000}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_clock_skew_between_hosts_and_a_vanished_daemon_are_reported(vq, redis_conn):
    import json as json_lib

    now = int(time.time() * 1000)
    # Another host's daemon as it reports itself (vq/presence.py): its clock 8 s ahead of Redis,
    # and one more that stopped reporting a minute ago (crashed, or lost its network).
    for field, seen, offset in (("far-host:4242", now, 8000.0), ("gone-host:7", now - 60_000, 0.0)):
        redis_conn.hset(
            "vq:daemons",
            field,
            json_lib.dumps(
                {
                    "host": field.split(":")[0],
                    "pid": int(field.split(":")[1]),
                    "startedMs": now - 3_600_000,
                    "seenMs": seen,
                    "clockOffsetMs": offset,
                    "processes": {"worker-0": True, "scheduler": True},
                    "workers": 1,
                }
            ),
        )
    code, found = _findings(vq)
    assert code == 2
    assert found["clock"]["status"] == "fail" and "far-host +8000 ms" in found["clock"]["detail"]
    assert "NTP" in found["clock"]["fix"]
    gone = [f for f in json_lib.loads(vq.run("doctor", "--json").stdout) if "gone without stopping" in f["detail"]]
    assert gone and re.search(r"gone-host:7 \(6[0-9]s ago\)", gone[0]["detail"]), gone  # 60 s, plus the CLI's time


@pytest.mark.parametrize("offset, shown", [(-0.3, "+0"), (0.2, "+0"), (-3.6, "-4"), (12.0, "+12")])
def test_a_clock_offset_below_half_a_millisecond_reads_plus_0_not_minus_0(offset, shown):
    """`vq doctor` said "this host -0 ms" for a clock 0.3 ms behind Redis's."""
    from vq.doctor_daemons import signed_ms

    assert signed_ms(offset) == shown
