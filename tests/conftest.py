"""Fixtures: a real redis-server on a private port and data dir, the vq CLI run as a
user runs it, and a real `vq daemon` with real worker processes."""

from __future__ import annotations

import codecs
import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis
import yaml

from vq.procutil import die_with_parent

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server the tests own: they may kill it and start it again."""

    def __init__(self, data_dir: Path):
        self.port = _free_port()
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--maxmemory-policy", "noeviction", "--logfile", str(self.data_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def redis_server():
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not on PATH: install it (apt-get install redis-server)")
    data_dir = Path(tempfile.mkdtemp(prefix="vq-redis-"))
    server = RedisServer(data_dir)
    server.start()
    yield server
    server.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def redis_conn(redis_server):
    if redis_server.proc.poll() is not None:
        redis_server.start()
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushall()
    yield conn
    conn.close()


TEST_JOB_TYPES = {
    "test-sleep": {"handler": "tests.plugins:sleeper", "timeout": 60000, "attempts": 1},
    "test-flaky": {"handler": "tests.plugins:flaky", "attempts": 3,
                   "backoff": {"type": "exponential", "delay": 1000}},
    "test-broken": {"handler": "tests.plugins:broken", "attempts": 3},
    "test-echo": {"handler": "tests.plugins:echo", "attempts": 1},
    "test-noop": {"handler": "tests.plugins:noop", "attempts": 1},
    "test-track": {"handler": "tests.plugins:tracked", "attempts": 1},
    "test-ratelimited": {"handler": "tests.plugins:rate_limited", "attempts": 1},
    "test-odd": {"handler": "tests.plugins:unknown_error", "attempts": 3, "unknownErrors": "permanent"},
    "test-hog": {"handler": "tests.plugins:hog", "attempts": 1},
    "test-crash": {"handler": "tests.plugins:crash", "attempts": 1, "isolation": "fork"},
    "test-forked": {"handler": "tests.plugins:sleeper", "attempts": 1, "isolation": "fork"},
}
# Hostile handlers (tests/test_hostile_input.py configures them where it needs them: the
# TUI snapshots draw every type of TEST_JOB_TYPES).
HOSTILE_JOB_TYPES = {
    "test-big-result": {"handler": "tests.plugins:big_result", "attempts": 3},
    "test-big-result-forked": {"handler": "tests.plugins:big_result", "attempts": 3, "isolation": "fork"},
    "test-nan-result": {"handler": "tests.plugins:not_a_number", "attempts": 3},
    "test-unprintable": {"handler": "tests.plugins:unprintable", "attempts": 1},
    "test-provider-down": {"handler": "tests.plugins:provider_down", "attempts": 1, "providers": ["listed"]},
}


class VQ:
    """Runs `vq` as a user would: a subprocess with its own config and environment."""

    def __init__(self, config_path: Path, env: dict[str, str], data_dir: Path):
        self.config_path = config_path
        self.env = env
        self.data_dir = data_dir
        self.daemons: list[subprocess.Popen] = []
        self.logs: list[Path] = []  # one per daemon started, in order (a killed one's stays)

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "vq", *args], input=input, capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def json(self, *args: str, input: str | None = None):
        proc = self.run(*args, "--json", input=input)
        assert proc.returncode == 0, f"vq {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        return json.loads(proc.stdout)

    def submit(self, job_type: str, data: dict | None = None, *extra: str) -> str:
        proc = self.run("submit", job_type, "--data", json.dumps(data or {}), *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def start_daemon(self, *extra: str, workers: int | None = 2, terminal: bool = False) -> subprocess.Popen:
        """workers=None: no --workers, so the config decides (daemon.workers, daemon.autoscale).
        terminal=True: its stdout and stderr are a pseudo-terminal, as in an operator's
        terminal or tmux pane (what it writes there is copied to its log file)."""
        path = self.data_dir / f"daemon-{len(self.logs)}.log"
        self.logs.append(path)
        log = open(path, "w")
        count = ["--workers", str(workers)] if workers is not None else []
        output = log
        if terminal:
            master, output = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "vq", "daemon", *count, *extra],
                                env=self.env, stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                                preexec_fn=lambda: die_with_parent(signal.SIGKILL))
        if terminal:
            os.close(output)
            threading.Thread(target=_copy_terminal, args=(master, log), daemon=True).start()
        proc.log_path = path
        self.daemons.append(proc)
        return proc

    def another_host(self, name: str) -> "VQ":
        """The same Redis and config, with its own data directory (its own history.db), as a
        second host has. Its daemons are stopped with this one's."""
        data_dir = self.data_dir.parent / name
        data_dir.mkdir()
        config = yaml.safe_load(self.config_path.read_text())
        config["data_dir"] = str(data_dir)
        config_path = self.config_path.with_name(f"config-{name}.yaml")
        config_path.write_text(yaml.safe_dump(config))
        other = VQ(config_path, {**self.env, "VQ_CONFIG": str(config_path)}, data_dir)
        other.daemons, other.logs = self.daemons, self.logs
        return other

    def stop_daemon(self, proc: subprocess.Popen, timeout: float = 30) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def configure(self, **blocks) -> None:
        """Change the test config (before starting daemons): configure(concurrency={...})."""
        config = yaml.safe_load(self.config_path.read_text())
        for name, value in blocks.items():
            config[name] = {**config.get(name, {}), **value} if isinstance(value, dict) else value
        self.config_path.write_text(yaml.safe_dump(config))

    def daemon_log(self, index: int = 0) -> str:
        return self.logs[index].read_text()

    def wait_for(self, job_id: str, statuses=("finished", "failed", "canceled", "stopped"), timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        view = {}
        while time.monotonic() < deadline:
            for index, proc in enumerate(self.daemons):
                if proc.poll() is not None and proc.returncode != 0:
                    raise AssertionError(f"daemon {proc.log_path.name} exited {proc.returncode}:\n"
                                         f"{proc.log_path.read_text()}")
            view = self.json("show", job_id)
            if view["status"] in statuses:
                return view
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {view.get('status')} after {timeout}s\n{self.log_tails()}")

    def log_tails(self, lines: int = 40) -> str:
        """The end of each daemon's log: what a timed-out wait needs to be diagnosed from CI."""
        return "\n".join(f"--- {path.name} (last {lines} lines)\n" + "\n".join(path.read_text().splitlines()[-lines:])
                         for path in self.logs if path.exists())


def _copy_terminal(master: int, log) -> None:
    """Read the terminal's output as it comes (so the daemon never blocks on a full
    terminal), into the log file, without the CR the terminal puts before each LF."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with log:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                break
            if not chunk:
                break
            log.write(decoder.decode(chunk).replace("\r", ""))
            log.flush()
    os.close(master)


def write_config(path: Path, settings: dict) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def vq(redis_conn, redis_server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(tmp_path / "config.yaml", {
        "redis": {"url": redis_server.url},
        "data_dir": str(data_dir),
        "job_types": TEST_JOB_TYPES,
        "daemon": {"shutdownGrace": 5000},
        "http": {"enabled": False},  # tests that use the API start it on a free port (tests/test_api.py)
    })
    # Each test runs `vq` many times: let its modules' bytecode be cached, as an install does.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "VQ_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(VQ_CONFIG=str(config), PYTHONPATH=str(ROOT), HOME=str(tmp_path), COLUMNS="200",
               VQ_TEST_REDIS=redis_server.url)
    runner = VQ(config, env, data_dir)
    yield runner
    for proc in runner.daemons:  # stop them all the way, so no worker outlives its test
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in runner.daemons:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
