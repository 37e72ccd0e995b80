"""daemon.httpWorkers: several HTTP API processes on the one socket the daemon bound. Each
serves requests, a killed one is restarted (the others serve meanwhile), and SIGTERM stops
them all. A real daemon, real uvicorn children, requests over TCP."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import _free_port
from vq.config import load_settings
from vq.tokens import TokenRequest, create


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _http_pids(daemon_pid: int, port: int) -> set[int]:
    """The daemon's children holding the socket listening on `port` (the daemon itself holds
    it too, for restarts: not counted)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rpartition(":")[2], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    held = set()
    for pid in _children(daemon_pid):
        try:
            if any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                held.add(pid)
        except OSError:
            continue
    return held


def _get(base: str, token: str, timeout: float = 5) -> int:
    """GET /api/jobs/types on a new connection (urllib closes it): any process may take it."""
    request = urllib.request.Request(base + "/api/jobs/types", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            json.loads(reply.read())
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _two(daemon_pid: int, port: int, without: int | None = None) -> set[int] | None:
    found = _http_pids(daemon_pid, port)
    return found if len(found) == 2 and without not in found else None


def _until(what, timeout: float = 30, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_http_workers_serve_restart_and_stop_together(vq):
    port = _free_port()
    vq.configure(
        http={"enabled": True, "listen": f"127.0.0.1:{port}", "jwt_secret": "h" * 40},
        daemon={"httpWorkers": 2},
    )
    token = create(load_settings(vq.config_path, env={}), TokenRequest(user_id="u1", role="operator"))
    base = f"http://127.0.0.1:{port}"
    daemon = vq.start_daemon(workers=1)
    _until(lambda: "ready:" in vq.daemon_log())
    assert "(2 processes)" in vq.daemon_log()
    pids = _until(lambda: _two(daemon.pid, port))

    # each serves: with one stopped (SIGSTOP: it accepts nothing), the other answers, both ways
    for paused in sorted(pids):
        os.kill(paused, signal.SIGSTOP)
        try:
            assert all(_get(base, token) == 200 for _ in range(5))
        finally:
            os.kill(paused, signal.SIGCONT)

    # a killed one is restarted; the other answers meanwhile
    killed, kept = sorted(pids)
    os.kill(killed, signal.SIGKILL)
    assert _get(base, token) == 200
    now = _until(lambda: _two(daemon.pid, port, without=killed))
    assert kept in now
    assert _get(base, token) == 200

    # SIGTERM stops them all, and the port is free again
    assert vq.stop_daemon(daemon) == 0
    for pid in now:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    with socket.socket() as probe:  # nothing listens there (closed connections may linger in TIME_WAIT)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
