"""`vq daemon`: supervises worker processes, the timer and housekeeping.

Launcher -> (embedded Redis when none is configured) -> N worker processes + 1 timer
process (delayed jobs, retries, recurring ticks: vq/timer.py), all restarted when they
die (what each child runs: vq/daemon_children.py), with back-off, and a crash loop said once (vq/supervision.py). The HTTP port is
bound here and handed to the HTTP child (vq/http_listener.py). On SIGTERM/SIGINT it stops
taking jobs, lets running ones finish within the grace period, then requeues whatever is
still running.
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

import redis

from vq import admission, chores, keys, limits, logs, presence, supervision, systemd
from vq.admission import Admission
from vq.autoscale import Autoscaler
from vq.config import Settings, load_settings
from vq.connection import connect, make_client
from vq.daemon_children import (
    EXIT_CRASHED,
    Child,
    archiver_main,
    http_main,
    scheduler_main,
    webhooks_main,
    worker_main,
    worker_prefix,
)
from vq.errors import HistoryUnavailable, VqError, message_of
from vq.history import db as historydb
from vq.http_listener import HttpListener
from vq.jobtypes import job_types, load_handler
from vq.protect import protector
from vq.queues import worker_queue_names
from vq.recurring import store as recurring_store

log = logging.getLogger("vq.daemon")
SUPERVISE_EVERY = 0.5  # the longest the supervisor sleeps (it wakes earlier for a chore due sooner)
FENCE_CHECK_EVERY = 0.05  # how often the daemon looks for a worker past its lease deadline (vq/fence.py)


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


@dataclass
class Daemon:
    settings: Settings
    options: DaemonOptions
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    hurry: bool = False  # a second Ctrl-C while stopping: requeue the running jobs now
    embedded: object | None = None
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

    def run(self) -> int:
        logs.configure(self.options.log_level, self.options.log_format)
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
        conn = connect(self.settings)
        limits.publish_config_limits(conn, self.settings)
        conn.sadd(keys.JOB_TYPES_SEEN, *job_types(self.settings))  # `vq jobs` lists every type's index
        conn.unlink(keys.LEGACY_ALL_JOBS)  # an index older versions kept; nothing reads or trims it now
        admission.migrate_legacy_waiting(conn, list(job_types(self.settings)))
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
        signal.signal(signal.SIGHUP, self._request_reload)
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
                if self._http_serving():
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
            time.sleep(min(SUPERVISE_EVERY, max(0.01, min(c.due_in() for c in housekeeping))))
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

    def _plan(self) -> list[Child]:
        """The processes this configuration asks for, by name."""
        settings, options = self.settings, self.options
        queue_names = worker_queue_names(settings, options.queues)
        host = socket.gethostname()
        scale = settings.daemon.autoscale if options.autoscale else None
        plan = [
            Child(
                f"worker-{i}",
                worker_main,
                (settings, queue_names, worker_prefix(host, i), options.max_jobs_per_worker, options.log_level),
                parked=scale is not None and i >= scale.min,
            )
            for i in range(scale.max if scale else options.workers)
        ]
        plan.append(
            Child(
                "scheduler",
                scheduler_main,
                (settings, queue_names, options.log_level, f"vq.{host}.{os.getpid()}.scheduler"),
            )
        )
        if options.http_listen:
            from vq.tokens import signing_secret

            signing_secret(settings)  # made once, here, before any request needs it
            plan.append(Child("http", http_main, (settings, self.listener, options.log_level)))
        if settings.history.enabled:
            plan.append(Child("archiver", archiver_main, (settings, options.log_level)))
        if settings.webhooks.enabled:
            plan.append(Child("webhooks", webhooks_main, (settings, options.log_level, f"{host}.{os.getpid()}")))
        return plan

    def _wanted(self, child: Child) -> bool:
        """Should be running: in the configuration, not parked, and for the HTTP child, its
        port bound."""
        return (
            not child.retired
            and not child.parked
            and (child.name != "http" or (self.listener is not None and self.listener.sock is not None))
        )

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
                if c.name.startswith("worker-")
            ]
            if names and conn.exists(*names) < len(names):
                return False
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        return not any(c.name == "http" for c in children) or self._http_answers()

    def _http_child(self) -> Child | None:
        return next((c for c in self.children if c.name == "http" and not c.retired), None)

    def _http_serving(self) -> bool:
        child = self._http_child()
        return bool(child and self._wanted(child) and child.process is not None and child.process.is_alive())

    def _http_answers(self) -> bool:
        return self._http_serving() and self.listener.answers()

    def _status(self) -> str:
        workers = self._active_workers()
        looping = [c.name for c in self.children if c.crashes.looping and not c.retired]
        extra = [
            c.name for c in self.children if not c.name.startswith("worker-") and not c.retired and c.name != "http"
        ]
        return (
            f"{workers} workers, {', '.join(extra)}"
            + (f", HTTP on {self.options.http_listen}" if self._http_serving() else "")
            + (f"; crash-looping: {', '.join(looping)}" if looping else "")
        )

    def _request_reload(self, signum, frame) -> None:
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
                os.kill(child.process.pid, signal.SIGTERM)  # warm: finish the current job, then exit
        for child in planned.values():  # newly asked for (a feature turned on, a higher autoscale.max)
            self.children.append(child)
            if self._wanted(child):
                self._start(ctx, child)
        self.awaiting_ready = True
        log.info(
            "configuration reloaded from %s; processes restart as they finish their work",
            self.options.config_path or "the default path",
        )

    def _start(self, ctx, child: Child) -> None:
        if child.channel is not None:
            child.channel.close()
        child.channel, words = ctx.Pipe(duplex=False)
        args = child.args
        if child.name.startswith("worker-"):
            child.deadline = ctx.Value("d", 0.0, lock=False)
            args = (*args, child.deadline)
        # Only the HTTP child keeps the listening socket: a worker holding it would keep the
        # port taken after its daemon let go of it.
        others = [self.listener.sock] if self.listener and self.listener.sock and child.name != "http" else []
        child.process = ctx.Process(
            target=supervision.entry, args=(words, child.target, args, others), name=f"vq-{child.name}", daemon=False
        )
        child.process.start()
        words.close()
        child.started_at = time.monotonic()

    def _supervise(self, ctx) -> None:
        now = time.monotonic()
        if self.listener is not None and self.listener.sock is None and not self.stopping and self.listener.bind():
            child = self._http_child()
            if child is not None and child.process is None:
                self._start(ctx, child)  # the address came free: the API starts on it
        for child in self.children:
            if child.process is None or self.stopping or child.retired or child.parked:
                continue
            if child.process.is_alive():
                said = child.crashes.running(now - child.started_at)
                if said:
                    self.told = {e: name for e, name in self.told.items() if name != child.name}
                    log.info("%s", said)
                continue
            if child.reloading:  # it finished its work and exited to take the new configuration
                child.reloading = False
                child.restart_at = 0.0
                self._start(ctx, child)
                continue
            if child.restart_at == 0.0:  # just noticed the death
                child.restart_at = now + self._died(child, now)
            if now >= child.restart_at:
                child.restart_at = 0.0
                child.restarts += 1
                self._start(ctx, child)
        if self.embedded is not None and self.embedded.ensure_running():
            log.warning("embedded Redis had stopped; restarted it")

    def _watch_leases(self) -> None:
        """Kill a worker that still holds a lease past the moment it had to be gone by
        (vq/fence.py): its job could not be stopped in the process (it was stopped with
        SIGSTOP, or its handler is stuck in native code), and the lease lapses in Redis
        soon after, when another job may take the slot. A thread of its own, so a slow
        chore cannot delay it; SIGKILL works on a stopped process too."""
        while True:
            time.sleep(FENCE_CHECK_EVERY)
            now = time.monotonic()
            for child in list(self.children):
                process, deadline = child.process, child.deadline
                if process is None or deadline is None or not deadline.value or now < deadline.value:
                    continue
                if process.is_alive():
                    log.warning(
                        "%s (pid %d) held a job's lease past its deadline (stopped, or stuck where "
                        "it cannot be interrupted): killed, so the lease can lapse with nothing running "
                        "under it",
                        child.name,
                        process.pid,
                    )
                    try:
                        os.kill(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline.value = 0.0

    def _died(self, child: Child, now: float) -> float:
        """Seconds until a dead child is restarted; logs what an operator needs to hear.
        An exit 0 is planned (max jobs, memory, a warm stop); an exit because Redis is away
        backs off quietly (the child said it once); anything else is a crash."""
        words = supervision.hear(child.channel) if child.channel is not None else {}
        child.channel = None
        code = child.process.exitcode
        up_for = now - child.started_at
        redis_away = bool(words.get("redisDown"))
        if code == 0 or redis_away:
            quick = (code != 0 or child.redis_down) and up_for < 10
            child.redis_down = redis_away
            child.quick_failures = child.quick_failures + 1 if quick else 0
            return min(30.0, 0.5 * 2 ** (child.quick_failures - 1)) if child.quick_failures else 0.0
        child.redis_down, child.quick_failures = False, 0
        error = words.get("error") or supervision.describe_exit(code)
        if words.get("error") and code != EXIT_CRASHED:
            error += f" ({supervision.describe_exit(code)})"
        delay, lines = child.crashes.crashed(now, up_for, error, words.get("traceback"), self.told)
        for level, text in lines:
            log.log(level, "%s", text)
        return delay

    def _report(self, conn) -> None:
        processes = {
            child.name: bool(child.process and child.process.is_alive())
            for child in self.children
            if self._wanted(child)
        }
        loops = {c.name: c.crashes.report() for c in self.children if c.crashes.looping and not c.retired}
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

    def _autoscale(self, conn, ctx):
        if self.autoscaler is None:
            host = socket.gethostname()

            def start(child: Child) -> None:
                child.parked = False
                self._start(ctx, child)

            def retire(child: Child) -> None:
                child.parked = True
                if child.process is not None and child.process.is_alive():
                    os.kill(child.process.pid, signal.SIGTERM)  # warm: it finishes its job first

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

    def _request_stop(self, signum, frame) -> None:
        if not self.stopping:
            again = " (Ctrl-C again to requeue them now)" if signum == signal.SIGINT else ""
            log.info(
                "received %s: finishing running jobs (grace %.0fs)%s",
                signal.Signals(signum).name,
                self.options.grace_seconds,
                again,
            )
        self.stopping = True

    def _hurry(self, signum, frame) -> None:
        """A second Ctrl-C while stopping, as in Celery and RQ: the running jobs are
        requeued now rather than at the end of the grace period."""
        self.hurry = True

    def _shutdown(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, self._hurry)
        alive = [c.process for c in self.children if c.process and c.process.is_alive()]
        for proc in alive:
            os.kill(proc.pid, signal.SIGTERM)  # warm: finish the current job, take no more
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
                os.kill(proc.pid, signal.SIGTERM)  # cold: the running job is requeued
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
                self.embedded.url,
                self.embedded.pid,
            )
            self.embedded.detach()
            return
        pid = self.embedded.shutdown()
        log.info("embedded Redis (pid %s) stopped: %s", pid, reason)


def default_worker_count(settings: Settings) -> int:
    return settings.daemon.workers or os.cpu_count() or 2
