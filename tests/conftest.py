"""Fixtures: a real redis-server on a private port and data dir, the vq CLI run as a
user runs it (each call a process of its own, forked from a warm CLI: tests/cli_server.py),
a real `vq daemon` with real worker processes, and waits that block on a job's events."""

from __future__ import annotations

import codecs
import inspect
import json
import os
import pty
import re
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

from tests.cli_server import CliServer
from vq import keys
from vq.procutil import die_with_parent

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CLI_SERVER: CliServer | None = None


def cli_server() -> CliServer:
    """The warm `vq` every VQ.run forks from (tests/cli_server.py), started on first use."""
    global _CLI_SERVER
    if _CLI_SERVER is None or _CLI_SERVER.proc.poll() is not None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_"))}
        _CLI_SERVER = CliServer({**env, "PYTHONPATH": str(ROOT)})
    return _CLI_SERVER


@pytest.fixture(scope="session", autouse=True)
def _stop_cli_server():
    yield
    if _CLI_SERVER is not None:
        _CLI_SERVER.close()


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
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
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
    "test-flaky": {"handler": "tests.plugins:flaky", "attempts": 3, "backoff": {"type": "exponential", "delay": 1000}},
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
    """Runs `vq` as a user would: a process with its own config and environment, forked
    from a warm `python -m vq` (tests/cli_server.py) so a call costs milliseconds."""

    def __init__(self, config_path: Path, env: dict[str, str], data_dir: Path):
        self.config_path = config_path
        self.env = env
        self.data_dir = data_dir
        self.daemons: list[subprocess.Popen] = []
        self.logs: list[Path] = []  # one per daemon started, in order (a killed one's stays)
        self._events: tuple[str, redis.Redis] | None = None  # (url, client): wait_for blocks on the events

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """`python -m vq *args` with this config and environment: a process of its own,
        forked from a warm one (tests/cli_server.py), or a new interpreter when the
        environment changes how one starts (CliServer.serves) or with VQ_TEST_COLD_CLI=1."""
        if os.environ.get("VQ_TEST_COLD_CLI") or not cli_server().serves(self.env):
            return subprocess.run(
                [sys.executable, "-m", "vq", *args],
                input=input,
                capture_output=True,
                text=True,
                env=self.env,
                timeout=timeout,
            )
        return cli_server().run(list(args), self.env, input=input, timeout=timeout)

    def json(self, *args: str, input: str | None = None):
        proc = self.run(*args, "--json", input=input)
        assert proc.returncode == 0, f"vq {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
        return json.loads(proc.stdout)

    def submit(self, job_type: str, data: dict | None = None, *extra: str) -> str:
        proc = self.run("submit", job_type, "--data", json.dumps(data or {}), *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def start_daemon(
        self, *extra: str, workers: int | None = 2, terminal: bool = False, cold: bool = False
    ) -> subprocess.Popen:
        """workers=None: no --workers, so the config decides (daemon.workers, daemon.autoscale).
        terminal=True: its stdout and stderr are a pseudo-terminal, as in an operator's
        terminal or tmux pane (what it writes there is copied to its log file).
        The daemon is forked from the warm `vq` (tests/cli_server.py; a Popen-like handle),
        but with terminal=True, cold=True, VQ_TEST_COLD_CLI=1 or an environment that changes
        how an interpreter starts, it is a new one (a subprocess.Popen), as systemd or a
        shell starts it."""
        path = self.data_dir / f"daemon-{len(self.logs)}.log"
        self.logs.append(path)
        log = open(path, "w")
        count = ["--workers", str(workers)] if workers is not None else []
        output = log
        if terminal:
            master, output = pty.openpty()
        if terminal or cold or os.environ.get("VQ_TEST_COLD_CLI") or not cli_server().serves(self.env):
            proc = subprocess.Popen(
                [sys.executable, "-m", "vq", "daemon", *count, *extra],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            )
        else:
            with open(os.devnull, "rb") as stdin:
                proc = cli_server().spawn(
                    ["daemon", *count, *extra], self.env, stdin.fileno(), log.fileno(), log.fileno()
                )
        if terminal:
            os.close(output)
            threading.Thread(target=_copy_terminal, args=(master, log), daemon=True).start()
        else:
            log.close()  # the daemon has its own copy
        proc.log_path = path
        self.daemons.append(proc)
        return proc

    def another_host(self, name: str) -> VQ:
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

    def wait_for(
        self, job_id: str, statuses=("finished", "failed", "canceled", "stopped"), timeout: float = 30
    ) -> dict:
        """The job's view (`vq show --json`) once its status is one of `statuses`. Between
        looks it blocks on the job's events (XREAD BLOCK on the events stream), so it returns
        as soon as the job gets there, not at the next poll; it still looks every half second
        (a Redis it cannot read, a status no event announces)."""
        deadline = time.monotonic() + timeout
        events = self._events_client()
        since = _last_event_id(events)
        status = None
        while time.monotonic() < deadline:
            self.check_daemons()
            possible = _view_statuses(events, job_id)
            if possible is None or possible & set(statuses):
                view = self.json("show", job_id)
                if view["status"] in statuses:
                    return view
                status = view["status"]
            else:  # its hash rules every status out: no `vq show` (a forked CLI call) until it changes
                status = "/".join(sorted(possible))
            since = _next_event_of(events, job_id, since, min(deadline, time.monotonic() + 0.5))
        raise AssertionError(f"job {job_id} still {status} after {timeout}s\n{self.log_tails()}")

    def wait_reason(self, job_id: str, reason: str, timeout: float = 20) -> dict:
        """The job's view once `vq show` gives `reason` as what it waits for. Admission
        names it when it next looks at the job, which a loaded machine delays: a fixed sleep
        before reading it failed there."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_daemons()
            view = self.json("show", job_id)
            if view.get("waitReason") == reason or time.monotonic() > deadline:
                assert view.get("waitReason") == reason, (view, self.log_tails())
                return view
            time.sleep(0.1)

    def open_gate(self, gate: str) -> None:
        """Let every job holding at `gate` (data {"gate": gate}, tests/plugins.py wait_at_gate)
        finish, and any that reaches it later pass."""
        events = self._events_client()
        events.rpush(f"test:gate:{gate}", "open")

    def wait_done(self, job_id: str, timeout: float = 30) -> dict:
        """The job's view once it has ended (finished, failed, canceled or stopped)."""
        return self.wait_for(job_id, timeout=timeout)

    def check_daemons(self) -> None:
        """Fail now, with its log, if a daemon of this test exited with an error."""
        for proc in self.daemons:
            if proc.poll() is not None and proc.returncode != 0:
                raise AssertionError(
                    f"daemon {proc.log_path.name} exited {proc.returncode}:\n{proc.log_path.read_text()}"
                )

    def _events_client(self) -> redis.Redis | None:
        """A client of the configured Redis, to block on its events; None when the config names
        no URL (sentinel, embedded): then wait_for polls."""
        url = (yaml.safe_load(self.config_path.read_text()) or {}).get("redis", {}).get("url")
        if not url:
            return None
        if self._events is None or self._events[0] != url:
            self._events = (url, redis.Redis.from_url(url, socket_timeout=5))
        return self._events[1]

    def log_tails(self, lines: int = 40) -> str:
        """The end of each daemon's log: what a timed-out wait needs to be diagnosed from CI."""
        return "\n".join(
            f"--- {path.name} (last {lines} lines)\n" + "\n".join(path.read_text().splitlines()[-lines:])
            for path in self.logs
            if path.exists()
        )


# The statuses `vq show` can give a job whose hash holds a waiting or running status
# (vq/model.py status_of: a queued job is limited while it is in its user's line). A status
# not here (an ended one, one unknown) and a missing hash (a prefix, a trimmed job) are
# read with `vq show` itself.
_SHOWN_AS = {
    b"started": {"started"},
    b"deferred": {"deferred"},
    b"scheduled": {"scheduled"},
    b"queued": {"queued", "limited"},
    b"rate_limited": {"limited"},
    b"created": {"queued"},
    b"ready_to_enqueue": {"queued"},
}


def _view_statuses(conn: redis.Redis | None, job_id: str) -> set[str] | None:
    """What `vq show` may say of the job's status by its hash alone; None when only `vq show`
    can tell (no client of its Redis, no hash under that id, an ended or unknown status)."""
    if conn is None:
        return None
    try:
        raw = conn.hget(f"rq:job:{job_id}", "status")
    except redis.RedisError:
        return None
    return _SHOWN_AS.get(raw) if raw is not None else None


def _last_event_id(conn: redis.Redis | None) -> str:
    """The id of the newest event (what to read after), "0-0" for none or no Redis."""
    if conn is None:
        return "0-0"
    try:
        newest = conn.xrevrange(keys.EVENTS, count=1)
    except redis.RedisError:
        return "0-0"
    return newest[0][0].decode() if newest else "0-0"


def _next_event_of(conn: redis.Redis | None, job_id: str, since: str, until: float) -> str:
    """Block until an event of the job (other than progress) comes after `since`, or until
    `until` (monotonic); the id read up to. Without a client of the Redis, a short sleep."""
    if conn is None:
        time.sleep(max(0.0, min(0.1, until - time.monotonic())))
        return since
    while (left := until - time.monotonic()) > 0:
        try:
            reply = conn.xread({keys.EVENTS: since}, count=500, block=max(1, int(left * 1000)))
        except redis.RedisError:  # Redis stopped by the test, or restarted: poll instead
            time.sleep(max(0.0, min(0.1, left)))
            return since
        for _stream, entries in reply or []:
            mine = False
            for entry_id, fields in entries:
                since = entry_id.decode()
                mine = mine or (
                    fields.get(b"jobId", b"").decode().startswith(job_id) and fields.get(b"event") != b"progress"
                )
            if mine:
                time.sleep(0.01)  # the job's hash and the event are not written as one step everywhere
                return since
    return since


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
    config = write_config(
        tmp_path / "config.yaml",
        {
            "redis": {"url": redis_server.url},
            "data_dir": str(data_dir),
            "job_types": TEST_JOB_TYPES,
            "daemon": {"shutdownGrace": 5000},
            "http": {"enabled": False},  # tests that use the API start it on a free port (tests/test_api.py)
        },
    )
    # Each test runs `vq` many times: let its modules' bytecode be cached, as an install does.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        VQ_CONFIG=str(config), PYTHONPATH=str(ROOT), HOME=str(tmp_path), COLUMNS="200", VQ_TEST_REDIS=redis_server.url
    )
    runner = VQ(config, env, data_dir)
    yield runner
    for proc in runner.daemons:  # gone all the way, workers too, so nothing outlives its test
        if proc.poll() is None:
            _kill_tree(proc)
    for proc in runner.daemons:
        proc.wait(20)


def _kill_tree(proc) -> None:
    """SIGKILL a daemon and every process under it (workers, a job's forked process; not an
    embedded redis-server, which outlives daemons by design), and wait until they are gone.
    A test's end needs no graceful stop: the tests of stopping stop their daemon themselves,
    and a warm stop of each daemon cost the suite 1-2 s per test."""
    parents: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(")")
        parents.setdefault(int(rest.split()[1]), []).append(int(entry.name))
        names[int(entry.name)] = name
    tree, todo = [], [proc.pid]
    while todo:
        pid = todo.pop()
        for child in parents.get(pid, []):
            if names.get(child) != "redis-server":
                tree.append(child)
                todo.append(child)
    for pid in [proc.pid, *tree]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    for pid in tree:
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.01)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed child waits there for its reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


# Modules slow for what they run besides daemons: a wheel build, the OpenAPI client generator,
# systemd-analyze, Redis killed under load, a terminal session typed into.
SLOW_MODULES = {
    "test_wheel",
    "test_api_client",
    "test_systemd_unit",
    "test_chaos",
    "test_pipelines_under_load",
    "test_first_session",
    "test_sentinel",
    "test_fencing",
}
# The longest tests (15-50 s each), by module or module::test, started first so that when
# the suite runs several tests at once (scripts/test.sh, pytest-xdist) none of them is left
# running alone at the end.
LONGEST_FIRST = (
    "test_pipelines_under_load",
    "test_chaos",
    "test_tui_content",  # one xdist group (--dist loadgroup): its module fixture and four tests
    "test_api::test_schemathesis_finds_no_server_error_and_no_response_off_the_document",
    "test_fencing",
    "test_first_session",
    "test_wheel",
)
_SLOW_CODE = re.compile(r"start_daemon\(|time\.sleep\((?:[1-9]|0\.[5-9])|wait_for\(|--wait\b|\"--follow\"")


def _source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def _slow_helpers(module) -> re.Pattern | None:
    """A pattern of calls to the module's own functions (helpers, fixtures) that start a
    daemon, wait or sleep (one level deep)."""
    names = [
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value)
        and value.__module__ == module.__name__
        and not name.startswith("test_")
        and _SLOW_CODE.search(_source(getattr(value, "__wrapped__", value)))
    ]
    return re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b") if names else None


def pytest_collection_modifyitems(config, items):
    """Mark `slow` the tests that start a daemon, wait for jobs or sleep half a second or more
    (in their own source, a helper of their module they call, or a fixture they use), and
    those of SLOW_MODULES: `-m "not slow"` keeps the quick checks of the CLI, the config and
    the libraries against a real Redis."""
    helpers: dict[object, re.Pattern | None] = {}
    for item in items:
        function = getattr(item, "function", None)
        if function is None:
            continue
        module = item.module
        if module not in helpers:
            helpers[module] = _slow_helpers(module)
        text = _source(function)
        for name in item.fixturenames:
            for fixturedef in item._fixtureinfo.name2fixturedefs.get(name, ()):
                if fixturedef.func.__module__ == module.__name__:
                    text += _source(fixturedef.func)
        if (
            module.__name__.rpartition(".")[2] in SLOW_MODULES
            or _SLOW_CODE.search(text)
            or (helpers[module] is not None and helpers[module].search(text))
        ):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def order(item) -> int:
        module = item.module.__name__.rpartition(".")[2]
        return min(rank.get(f"{module}::{item.originalname}", len(rank)), rank.get(module, len(rank)))

    items.sort(key=order)


_RERUNS: list[tuple[str, str]] = []  # (test, why its first run failed), for the summary


def pytest_runtest_logreport(report):
    """A test that failed and is run again (scripts/test.sh: --reruns 1) keeps its failure
    text, which pytest-rerunfailures shows nowhere: a flake is a lead (docs/tests.md)."""
    if report.outcome == "rerun" and report.longrepr is not None:
        _RERUNS.append((report.nodeid, str(report.longreprtext)))


def pytest_terminal_summary(terminalreporter):
    if _RERUNS:
        terminalreporter.section("why each rerun test failed first")
        for nodeid, text in _RERUNS:
            terminalreporter.write_line(f"--- {nodeid}")
            for line in text.splitlines()[-40:]:
                terminalreporter.write_line(line)
