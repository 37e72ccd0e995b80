"""How the daemon stops: SIGTERM or SIGINT ends its loop at once (vq/stopping.py); its
children are asked to finish their running jobs within the grace period, and whatever still
runs after it (or at a second Ctrl-C) is requeued. The embedded Redis is left running for the
CLI and the next daemon unless it must stop too. `Shutdown` is a part of `Daemon` (vq/daemon.py).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import redis

from vq import presence, systemd
from vq.config import Settings
from vq.connection import make_client
from vq.daemon_children import Child
from vq.http_listener import HttpListener
from vq.procutil import signal_child
from vq.stopping import Stoppable

if TYPE_CHECKING:
    from vq.daemon import DaemonOptions
    from vq.embedded import EmbeddedRedis

log = logging.getLogger("vq.daemon")


class Shutdown:
    """The stop signals and the shutdown they lead to."""

    settings: Settings
    options: DaemonOptions
    children: list[Child]
    stopping: bool
    hurry: bool
    embedded: EmbeddedRedis | None
    listener: HttpListener | None
    waits: Stoppable

    def _request_stop(self, signum, frame) -> None:
        if not self.stopping:
            types = self.settings.job_types.values()
            at_checkpoint = self.settings.daemon.stopAtCheckpoint or any(t.stopAtCheckpoint for t in types)
            log.info(
                "received %s: finishing running jobs (grace %.0fs)%s%s",
                signal.Signals(signum).name,
                self.options.grace_seconds,
                "; those that checkpoint stop at their next checkpoint, to resume there" if at_checkpoint else "",
                " (Ctrl-C again to requeue them now)" if signum == signal.SIGINT else "",
            )
        self.stopping = True
        self.waits.stop()  # ends the loop's sleep now (vq/stopping.py)

    def _hurry(self, signum, frame) -> None:
        """A second Ctrl-C while stopping, as in Celery and RQ: the running jobs are
        requeued now rather than at the end of the grace period."""
        self.hurry = True

    def _shutdown(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, self._hurry)
        alive = [c.process for c in self.children if c.process and c.process.is_alive()]
        for proc in alive:
            signal_child(proc, signal.SIGTERM)  # warm: finish the current job, take no more
        warned = time.monotonic()
        deadline = warned + self.options.grace_seconds
        while any(p.is_alive() for p in alive) and time.monotonic() < deadline and not self.hurry:
            time.sleep(0.1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        late = [p for p in alive if p.is_alive()]
        if late:
            log.warning(
                "%s: requeueing jobs of %d workers", "Ctrl-C again" if self.hurry else "grace period over", len(late)
            )
            time.sleep(max(0.0, warned + 1.1 - time.monotonic()))  # RQ ignores a second signal within 1 s
            for proc in late:
                signal_child(proc, signal.SIGTERM)  # cold: the running job is requeued
            for proc in late:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
        for proc in alive:
            proc.join(1)
        if self.listener is not None:
            self.listener.close()
        try:
            presence.forget(make_client(self.settings), os.getpid())
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # stale after 30 s anyway
        if self.embedded is not None:
            self._release_embedded()
        log.info("vq daemon stopped")

    def _release_embedded(self) -> None:
        """Leave the embedded Redis running for the CLI and the next daemon, unless told to
        stop it, or when systemd would kill it anyway (it is in this unit's cgroup, which
        KillMode=mixed SIGKILLs once the daemon exits): then stop it gracefully first."""
        embedded = self.embedded
        if embedded is None:
            return
        reason = (
            "--stop-redis"
            if self.options.stop_redis
            else "under systemd it is in this unit's cgroup, which is killed once the daemon exits "
            "(configure a Redis for one that outlives vq restarts)"
            if systemd.is_main_process()
            else None
        )
        if reason is None:
            log.info(
                "embedded Redis left running at %s (pid %s) for the CLI and the next daemon; `vq redis stop` stops it",
                embedded.url,
                embedded.pid,
            )
            embedded.detach()
            return
        pid = embedded.shutdown()
        log.info("embedded Redis (pid %s) stopped: %s", pid, reason)
