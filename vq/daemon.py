"""`vq daemon`: supervises worker processes, the timer and housekeeping.

Launcher -> (embedded Redis when none is configured) -> N worker processes + 1 timer
process (delayed jobs, retries, recurring ticks: vq/timer.py), all restarted when they
die (vq/daemon_supervisor.py; what each child runs: vq/daemon_children.py), with back-off,
and a crash loop said once (vq/supervision.py). The HTTP port is bound here and handed to
the HTTP child (vq/http_listener.py). It says when every process is up and reports its
presence (vq/daemon_status.py). On SIGTERM/SIGINT it stops taking jobs, lets running ones
finish within the grace period, then requeues whatever is still running (vq/daemon_stop.py).
This module is the loop that ties them together, and reloads (SIGHUP).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vq import admission, chores, keys, limits, logs, metrics, systemd, telemetry
from vq.admission import Admission
from vq.autoscale import Autoscaler
from vq.config import Settings, load_settings
from vq.connection import connect
from vq.daemon_children import Child, worker_prefix
from vq.daemon_status import Readiness
from vq.daemon_stop import Shutdown
from vq.daemon_supervisor import ChildSupervision
from vq.errors import HistoryUnavailable, VqError, message_of
from vq.history import db as historydb
from vq.http_listener import HttpListener
from vq.jobtypes import job_types, load_handler
from vq.procutil import has_controlling_terminal, signal_child, stacks_on_signal
from vq.queues import worker_queue_names
from vq.recurring import store as recurring_store
from vq.stopping import Stoppable

if TYPE_CHECKING:
    from vq.embedded import EmbeddedRedis

log = logging.getLogger("vq.daemon")
SUPERVISE_EVERY = 0.5  # the longest the supervisor sleeps (it wakes earlier for a chore due sooner)


@dataclass
class DaemonOptions:
    workers: int
    queues: list[str] | None
    log_level: str = "INFO"
    grace_seconds: float = 30.0
    max_jobs_per_worker: int = 10_000
    http_listen: str | None = None  # None: no HTTP API
    log_format: str = "text"  # or json
    config_path: str | None = None  # re-read on SIGHUP
    autoscale: bool = False  # daemon.autoscale governs the worker count (no --workers given)
    stop_redis: bool = False  # stop the embedded Redis with the daemon (else it outlives it)
    resources: dict[str, float] | None = None  # --resources: split over the workers (vq/capacity.py)
    resources_per_worker: dict[str, float] | None = None  # --resources-per-worker: each worker's


@dataclass
class Daemon(ChildSupervision, Readiness, Shutdown):
    settings: Settings
    options: DaemonOptions
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    _hangup_stops: bool = False  # a SIGHUP without a controlling terminal stops it (_on_hangup)
    hurry: bool = False  # a second Ctrl-C while stopping: requeue the running jobs now
    embedded: EmbeddedRedis | None = None
    admission: Admission | None = None
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    reload_requested: bool = False
    awaiting_ready: bool = False  # READY=1 goes to systemd once every process is up
    autoscaler: Autoscaler | None = None
    listener: HttpListener | None = None  # the HTTP port, bound by the supervisor
    told: dict = field(default_factory=dict)  # errors whose crash-loop traceback is logged -> by whom
    history: object | None = None  # the history database, once it opens (_history)
    history_said: str = ""  # its problem, logged once when no archiver of this daemon says it
    mp_context: object = None  # how its processes are started (fork), for the autoscale chore
    conn: object = None  # its Redis client, once connected: a dead worker's registration is dropped with it
    waits: Stoppable = field(default_factory=Stoppable)  # its loop's sleep, which a stop signal ends

    def run(self) -> int:
        logs.configure(self.options.log_level, self.options.log_format)
        stacks_on_signal()  # `kill -TTIN <pid>`: every thread's stack in the log
        telemetry.configure(self.settings)  # traces, when asked for: its children inherit the plan
        os.umask(0o077)  # artifacts, history and secrets: readable by vq's user only
        if not self.settings.redis.configured:
            from vq.embedded import EmbeddedRedis

            self.embedded = EmbeddedRedis(self.settings.data_path)
            how = self.embedded.start()
            log.info(
                "embedded Redis at %s (pid %s): %s",
                self.embedded.url,
                self.embedded.pid,
                "started" if how == "started" else "already running, reused",
            )
        conn = self.conn = connect(self.settings)
        limits.publish_config_limits(conn, self.settings)
        conn.sadd(keys.JOB_TYPES_SEEN, *job_types(self.settings))  # `vq jobs` lists every type's index
        conn.unlink(keys.LEGACY_ALL_JOBS)  # an index older versions kept; nothing reads or trims it now
        admission.migrate_legacy_waiting(conn, list(job_types(self.settings)))
        admission.migrate_legacy_idle(conn)  # an older vq's idle marks in vq:inbox
        metrics.migrate_totals(conn)  # an older vq's 71-bucket histograms: Prometheus's few buckets
        self._history(conn)  # jobs run without it: the archiver says what is wrong and retries
        for jt in job_types(self.settings).values():
            load_handler(jt.handler)  # a handler that cannot import stops the daemon now, not mid-job
        ctx = mp.get_context("fork")
        if self.options.http_listen:
            self.listener = HttpListener(self.options.http_listen)
            self.listener.bind()
        self.children = self._plan()
        for child in self.children:
            if self._wanted(child):
                self._start(ctx, child)
        threading.Thread(target=self._watch_leases, daemon=True, name="vq-lease-deadlines").start()
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        # On a terminal, unless nohup ignores SIGHUP: its hangup stops the daemon (_on_hangup).
        self._hangup_stops = has_controlling_terminal() and signal.getsignal(signal.SIGHUP) != signal.SIG_IGN
        signal.signal(signal.SIGHUP, self._on_hangup)
        queue_names = worker_queue_names(self.settings, self.options.queues)
        scale = self.settings.daemon.autoscale if self.options.autoscale else None
        log.info(
            "vq daemon started: %s on %d queues (pid %d)",
            f"{scale.min} workers, autoscaling to {scale.max}" if scale else f"{self.options.workers} workers",
            len(queue_names),
            os.getpid(),
        )
        self.awaiting_ready = True
        watchdog = systemd.watchdog_interval()
        pinged = 0.0
        self.mp_context = ctx
        housekeeping = chores.for_daemon(self, conn, autoscaling=scale is not None)  # vq/chores.py
        while not self.stopping:
            if self.reload_requested:
                self.reload_requested = False
                self._reload(conn, ctx)
            self._supervise(ctx)
            if self.awaiting_ready and self._all_up(conn):
                self.awaiting_ready = False
                if self.listener is not None and self._http_serving():
                    self.listener.served()
                systemd.notify("READY=1", f"STATUS={self._status()}")
                log.info("ready: %s", self._status())
            elif not self.awaiting_ready and self.listener and self.listener.was_taken and self._http_answers():
                self.listener.served()  # the port came free after the ready line: say it once
                systemd.notify(f"STATUS={self._status()}")
                log.info("HTTP API serving on %s (the address was in use until now)", self.options.http_listen)
            if watchdog and time.monotonic() - pinged >= watchdog:
                systemd.notify("WATCHDOG=1")  # only a supervisor that still loops pings
                pinged = time.monotonic()
            for chore in housekeeping:
                chore.run_if_due()
            self.waits.until_stopped(time.sleep, min(SUPERVISE_EVERY, max(0.01, min(c.due_in() for c in housekeeping))))
        systemd.notify("STOPPING=1", "STATUS=finishing running jobs")
        self._shutdown()
        return 0

    def _history(self, conn):
        """The history database, opened (and recurring definitions a wiped Redis lost restored
        from it) the first time it can be; None while it cannot: jobs run on, and the archiver
        says once what is wrong and retries."""
        if self.history is None:
            try:
                db = historydb.open_db(self.settings)
            except HistoryUnavailable as exc:
                if not self.settings.history.enabled and self.history_said != exc.message:
                    self.history_said = exc.message
                    log.warning("%s", exc.message)  # no archiver here to say it
                return None
            restored = recurring_store.restore_if_wiped(conn, db)
            if restored:
                log.warning(
                    "Redis held no recurring jobs: restored %d from %s", restored, historydb.path_for(self.settings)
                )
            self.history = db
        return self.history

    def _copy_recurring(self, conn) -> None:
        db = self._history(conn)
        if db is None:
            return
        try:
            recurring_store.sync(conn, db)
        except Exception as exc:
            if not historydb.unusable(exc):
                raise
            db.conn.close()
            self.history = None  # opened again at the next pass

    def _on_hangup(self, signum, frame) -> None:
        """SIGHUP is a reload (`kill -HUP`, `systemctl reload`), but when the terminal the
        daemon runs in has gone (its window closed, the SSH session ended) it is a warm stop,
        as for any program in the foreground: the daemon ran on, reloaded, with its log going
        nowhere, holding the HTTP port and running jobs nobody watched. Under nohup, or
        systemd, or with the terminal still there, it reloads."""
        if self._hangup_stops and not has_controlling_terminal():
            self._hangup_stops = False  # the terminal is gone for good
            log.warning(
                "the terminal went away (SIGHUP): stopping; run vq daemon under systemd, tmux or nohup to outlive it"
            )
            self._request_stop(signal.SIGTERM, frame)
            return
        if not self.stopping:
            self.reload_requested = True

    def _reload(self, conn, ctx) -> None:
        """SIGHUP: re-read the configuration; every process finishes what it is doing (a
        worker its current job: nothing is dropped, nothing run twice) and comes back with
        it. A configuration that does not load is refused and the running one stays."""
        systemd.reloading()
        try:
            settings = load_settings(self.options.config_path)
            for jt in job_types(settings).values():
                load_handler(jt.handler)
        except Exception as exc:  # noqa: BLE001 - a bad file, or a handler that cannot import
            reason = exc.message if isinstance(exc, VqError) else f"handler: {message_of(exc)}"
            log.error("reload refused, the running configuration stays: %s", reason)
            systemd.notify("READY=1", f"STATUS=reload refused: {reason}")
            return
        self.settings = settings
        telemetry.configure(settings)  # the processes restarted below follow the new `telemetry:`
        limits.publish_config_limits(conn, settings)
        planned = {c.name: c for c in self._plan()}
        for child in self.children:
            if child.retired:
                continue
            if child.name in planned:
                child.args = planned.pop(child.name).args
            else:
                child.retired = True
            if child.parked or child.process is None:
                continue  # not running (parked, or HTTP waiting for its address): it starts with the new configuration
            child.reloading = True
            if child.process is not None and child.process.is_alive():
                signal_child(child.process, signal.SIGTERM)  # warm: finish the current job, then exit
        for child in planned.values():  # newly asked for (a feature turned on, a higher autoscale.max)
            self.children.append(child)
            if self._wanted(child):
                self._start(ctx, child)
        self.awaiting_ready = True
        log.info(
            "configuration reloaded from %s; processes restart as they finish their work",
            self.options.config_path or "the default path",
        )

    def _autoscale(self, conn, ctx):
        if self.autoscaler is None:
            host = socket.gethostname()

            def start(child: Child) -> None:
                child.parked = False
                self._start(ctx, child)

            def retire(child: Child) -> None:
                child.parked = True
                if child.process is not None and child.process.is_alive():
                    signal_child(child.process, signal.SIGTERM)  # warm: it finishes its job first

            self.autoscaler = Autoscaler(
                conn,
                self.settings,
                self.options.queues or list(job_types(self.settings)),
                lambda c: f"rq:worker:{worker_prefix(host, c.name.split('-')[1])}.{c.process.pid}",
                start,
                retire,
                log,
            )
        self.autoscaler.settings = self.settings  # a reload may change the bounds
        workers = [c for c in self.children if c.name.startswith("worker-") and not c.retired]
        return self.autoscaler.step(workers)

    def _admission(self, conn) -> Admission:
        if self.admission is None:
            self.admission = Admission(conn, self.settings.queue.settings.lockDuration)
        return self.admission


def default_worker_count(settings: Settings) -> int:
    return settings.daemon.workers or os.cpu_count() or 2
