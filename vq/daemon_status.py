"""What the daemon says about itself: whether every process is up (READY=1 to systemd and
the `ready:` line wait for it), its one-line status, and its presence in Redis, which
`vq workers`, `vq health` and the HTTP API read (vq/presence.py). `Readiness` is a part of
`Daemon` (vq/daemon.py).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import redis

from vq import presence
from vq.config import Settings
from vq.daemon_children import Child, is_http, worker_prefix
from vq.http_listener import HttpListener
from vq.protect import protector

if TYPE_CHECKING:
    from vq.daemon import DaemonOptions


class Readiness:
    """The daemon's readiness, status line and presence report."""

    settings: Settings
    options: DaemonOptions
    children: list[Child]
    listener: HttpListener | None
    started_ms: int

    if TYPE_CHECKING:

        def _wanted(self, child: Child) -> bool: ...  # ChildSupervision's (vq/daemon_supervisor.py)

    def _all_up(self, conn) -> bool:
        """Every process alive, every worker registered with RQ, the HTTP API answering on
        its port; a crash-looping process, or HTTP whose address is taken, is not waited for."""
        children = [c for c in self.children if self._wanted(c) and not c.crashes.looping]
        if not all(c.process is not None and c.process.is_alive() and not c.reloading for c in children):
            return False
        host = socket.gethostname()
        try:
            names = [
                f"rq:worker:{worker_prefix(host, c.name.split('-')[1])}.{c.process.pid}"
                for c in children
                if c.name.startswith("worker-") and c.process is not None
            ]
            if names and conn.exists(*names) < len(names):
                return False
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        return not any(is_http(c.name) for c in children) or self._http_answers()

    def _http_children(self) -> list[Child]:
        """The HTTP API's processes (daemon.httpWorkers of them, on one socket)."""
        return [c for c in self.children if is_http(c.name) and not c.retired]

    def _http_serving(self) -> bool:
        """At least one HTTP process is up: the port answers (the others restart behind it)."""
        return any(self._wanted(c) and c.process is not None and c.process.is_alive() for c in self._http_children())

    def _http_answers(self) -> bool:
        return self.listener is not None and self._http_serving() and self.listener.answers()

    def _status(self) -> str:
        workers = self._active_workers()
        looping = [c.name for c in self.children if c.crashes.looping and not c.retired]
        extra = [
            f"metrics on {self.settings.daemon.metricsListen}" if c.name == "metrics" else c.name
            for c in self.children
            if not c.name.startswith("worker-") and not c.retired and not is_http(c.name)
        ]
        return (
            f"{workers} workers, {', '.join(extra)}"
            + (f", HTTP on {self.options.http_listen}{self._http_processes()}" if self._http_serving() else "")
            + (f"; crash-looping: {', '.join(looping)}" if looping else "")
        )

    def _http_processes(self) -> str:
        count = len(self._http_children())
        return f" ({count} processes)" if count > 1 else ""

    def _report(self, conn) -> None:
        processes = {
            child.name: bool(child.process and child.process.is_alive())
            for child in self.children
            if self._wanted(child)
        }
        loops = {
            c.name: report
            for c in self.children
            if c.crashes.looping and not c.retired and (report := c.crashes.report()) is not None
        }
        presence.report(
            conn,
            os.getpid(),
            self.started_ms,
            processes,
            self._active_workers(),
            self.settings.daemon.weight,
            crash_loops=loops,
            http=self.listener.state(self._http_serving()) if self.listener else None,
            encryption=protector(self.settings).published(),
        )

    def _active_workers(self) -> int:
        return sum(1 for c in self.children if c.name.startswith("worker-") and not c.retired and not c.parked)
