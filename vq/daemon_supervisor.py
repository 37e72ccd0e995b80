"""The daemon's child processes: which ones the configuration asks for, starting them,
restarting the ones that die (with back-off, a crash loop said once: vq/supervision.py), and
killing a worker that holds a job's lease past its deadline (vq/fence.py). What each child
runs is in vq/daemon_children.py; `ChildSupervision` is a part of `Daemon` (vq/daemon.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING

import redis

from vq import capacity, keys, supervision
from vq.config import Settings
from vq.daemon_children import (
    EXIT_CRASHED,
    Child,
    archiver_main,
    http_main,
    http_names,
    is_http,
    metrics_main,
    scheduler_main,
    webhooks_main,
    worker_main,
    worker_prefix,
)
from vq.http_listener import HttpListener
from vq.procutil import signal_child
from vq.queues import worker_queue_names
from vq.workers import WORKERS_SET

if TYPE_CHECKING:
    from vq.daemon import DaemonOptions
    from vq.embedded import EmbeddedRedis

log = logging.getLogger("vq.daemon")


def daemon_shares(settings: Settings, options: DaemonOptions, workers: int) -> list[capacity.WorkerShare] | None:
    """Each worker's resources: the command line's (--resources, --resources-per-worker), else
    the config's (daemon.resources, daemon.resourcesPerWorker); None: none advertised."""
    if options.resources or options.resources_per_worker:
        return capacity.shares_for(options.resources, options.resources_per_worker, workers)
    return capacity.shares_for(settings.daemon.resources, settings.daemon.resourcesPerWorker, workers)


FENCE_CHECK_EVERY = 0.05  # how often the daemon looks for a worker past its lease deadline (vq/fence.py)


class ChildSupervision:
    """Starting, watching and restarting the daemon's children."""

    settings: Settings
    options: DaemonOptions
    children: list[Child]
    stopping: bool
    embedded: EmbeddedRedis | None
    listener: HttpListener | None
    told: dict
    conn: object

    if TYPE_CHECKING:

        def _http_children(self) -> list[Child]: ...  # Readiness's (vq/daemon_status.py)

    def _plan(self) -> list[Child]:
        """The processes this configuration asks for, by name."""
        settings, options = self.settings, self.options
        queue_names = worker_queue_names(settings, options.queues)
        host = socket.gethostname()
        scale = settings.daemon.autoscale if options.autoscale else None
        count = scale.max if scale else options.workers
        shares = daemon_shares(settings, options, count)
        plan = [
            Child(
                f"worker-{i}",
                worker_main,
                (
                    settings,
                    queue_names,
                    worker_prefix(host, i),
                    options.max_jobs_per_worker,
                    options.log_level,
                    shares[i] if shares else None,
                ),
                parked=scale is not None and i >= scale.min,
            )
            for i in range(count)
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
            plan.extend(
                Child(name, http_main, (settings, self.listener, options.log_level))
                for name in http_names(settings.daemon.httpWorkers)  # all on the one socket
            )
        if settings.history.enabled:
            plan.append(Child("archiver", archiver_main, (settings, options.log_level)))
        if settings.daemon.metricsListen:
            plan.append(Child("metrics", metrics_main, (settings, options.log_level)))
        if settings.webhooks.enabled:
            plan.append(Child("webhooks", webhooks_main, (settings, options.log_level, f"{host}.{os.getpid()}")))
        return plan

    def _wanted(self, child: Child) -> bool:
        """Should be running: in the configuration, not parked, and for an HTTP child, its
        port bound."""
        return (
            not child.retired
            and not child.parked
            and (not is_http(child.name) or (self.listener is not None and self.listener.sock is not None))
        )

    def _start(self, ctx, child: Child) -> None:
        if child.channel is not None:
            child.channel.close()
        child.channel, words = ctx.Pipe(duplex=False)
        args = child.args
        if child.name.startswith("worker-"):
            child.deadline = ctx.Value("d", 0.0, lock=False)
            args = (*args, child.deadline, child.redis_down)
        # Only the HTTP children keep the listening socket: a worker holding it would keep the
        # port taken after its daemon let go of it.
        others = [self.listener.sock] if self.listener and self.listener.sock and not is_http(child.name) else []
        child.process = ctx.Process(
            target=supervision.entry, args=(words, child.target, args, others), name=f"vq-{child.name}", daemon=False
        )
        child.process.start()
        words.close()
        child.started_at = time.monotonic()

    def _supervise(self, ctx) -> None:
        now = time.monotonic()
        if self.listener is not None and self.listener.sock is None and not self.stopping and self.listener.bind():
            for child in self._http_children():
                if child.process is None:
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
                        signal_child(process, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline.value = 0.0

    def _forget_worker(self, child: Child) -> None:
        """Drop a crashed or killed worker's RQ registration, as RQ's own clean exit does
        (register_death): nothing else would until its key's TTL ran out minutes later, and
        until then `vq workers`, the TUI, the web dashboard and `vq health` counted a process
        its daemon knew was dead (`2/3 alive`) beside the one that replaced it."""
        if not child.name.startswith("worker-") or child.process is None or self.conn is None:
            return
        name = f"{worker_prefix(socket.gethostname(), child.name.split('-')[1])}.{child.process.pid}"
        key = keys.rq_worker(name)
        try:
            with self.conn.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
                capacity.withdraw_in(pipe, name)
                pipe.srem(WORKERS_SET, key)
                for queue in child.args[1]:  # its queues (the plan's worker_main arguments)
                    pipe.srem(f"{WORKERS_SET}:{queue}", key)
                pipe.delete(key)
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            pass  # Redis is away: the key's TTL drops it, as before

    def _died(self, child: Child, now: float) -> float:
        """Seconds until a dead child is restarted; logs what an operator needs to hear.
        An exit 0 is planned (max jobs, memory, a warm stop); an exit because Redis is away
        backs off quietly (the child said it once); anything else is a crash."""
        words = supervision.hear(child.channel) if child.channel is not None else {}
        child.channel = None
        code = child.process.exitcode if child.process is not None else None
        up_for = now - child.started_at
        redis_away = bool(words.get("redisDown"))
        if code == 0 or redis_away:
            quick = (code != 0 or child.redis_down) and up_for < 10
            child.redis_down = redis_away
            child.quick_failures = child.quick_failures + 1 if quick else 0
            return min(30.0, 0.5 * 2 ** (child.quick_failures - 1)) if child.quick_failures else 0.0
        child.redis_down, child.quick_failures = False, 0
        self._forget_worker(child)
        error = words.get("error") or supervision.describe_exit(code)
        if words.get("error") and code != EXIT_CRASHED:
            error += f" ({supervision.describe_exit(code)})"
        delay, lines = child.crashes.crashed(now, up_for, error, words.get("traceback"), self.told)
        for level, text in lines:
            log.log(level, "%s", text)
        return delay
