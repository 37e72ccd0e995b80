"""Redis Sentinel: vq finds the master through the sentinels, and after a failover (the
master killed, its replica promoted) the CLI and a running daemon carry on with the new
master, losing no job that was replicated."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis
import yaml

from tests.conftest import _free_port


class Servers:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.folder = Path(tempfile.mkdtemp(prefix="vq-sentinel-"))

    def start(self, name: str, *options: str, conf: Path | None = None) -> int:
        port = _free_port()
        folder = self.folder / name
        folder.mkdir()
        self.procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    *([str(conf)] if conf else []),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(folder),
                    *options,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                return port
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"{name} did not start")

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def servers():
    s = Servers()
    yield s
    s.stop()


def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except redis.RedisError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s")


def test_vq_follows_a_sentinel_failover(vq, servers):
    master = servers.start("master", "--appendonly", "yes", "--maxmemory-policy", "noeviction")
    replica = servers.start("replica", "--appendonly", "yes", "--replicaof", "127.0.0.1", str(master))
    conf = servers.folder / "sentinel.conf"
    conf.write_text(
        f"sentinel monitor mymaster 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
    )
    sentinel = servers.start("sentinel", "--sentinel", conf=conf)
    watch = redis.Redis(port=sentinel)
    _until(lambda: watch.sentinel_get_master_addr_by_name("mymaster"), 10, "the sentinel knows the master")

    config = yaml.safe_load(vq.config_path.read_text())
    config["redis"] = {"sentinel": {"hosts": [f"127.0.0.1:{sentinel}"], "service": "mymaster"}}
    vq.config_path.write_text(yaml.safe_dump(config))
    vq.start_daemon()
    before = vq.submit("test-noop", {}, "--user", "ann")
    assert vq.wait_for(before, timeout=30)["status"] == "finished"
    found = {f["check"]: f for f in json.loads(vq.run("doctor", "--json").stdout)}
    assert found["redis"]["status"] == "ok" and found["persistence"]["status"] == "ok"  # through the sentinel
    _until(
        lambda: redis.Redis(port=replica).info("replication").get("master_link_status") == "up",
        15,
        "the replica in sync",
    )
    time.sleep(1.5)  # the last writes replicated

    servers.procs[0].kill()  # the master dies; the sentinel promotes the replica
    _until(lambda: watch.sentinel_get_master_addr_by_name("mymaster")[1] == replica, 30, "the failover")

    after = _until(
        lambda: (lambda p: p.stdout.strip() if p.returncode == 0 else None)(
            vq.run("submit", "test-noop", "--data", "{}", "--user", "bob")
        ),
        20,
        "a submit to the new master",
    )
    assert vq.wait_for(after, timeout=60)["status"] == "finished"  # the running daemon followed
    assert vq.json("show", before)["status"] == "finished"  # replicated before the failover: kept
