"""The processes a daemon supervises, each a function run in a child: workers, the timer,
the archiver, the webhook notifier, the HTTP API and the metrics listener; and `Child`, the supervisor's record of
one. Each child dies with its parent and reports how it ended (vq/supervision.py)."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import redis
from rq.serializers import JSONSerializer

from vq import capacity, events, log_batching, logs, supervision, telemetry
from vq.config import Settings
from vq.connection import make_client
from vq.errors import message_of
from vq.http_listener import HttpListener
from vq.procutil import die_with_parent

log = logging.getLogger("vq.daemon")
EXIT_REDIS_DOWN = 3  # a child's exit code when it lost Redis (it says so too: supervision.say)
EXIT_CRASHED = 1  # a worker whose RQ loop quit on an exception


def worker_prefix(host: str, index) -> str:
    """A worker's RQ name without its pid (the pid is added by the process itself)."""
    return f"vq.{host}.{index}"


def worker_main(
    settings: Settings,
    queue_names: list[str],
    name_prefix: str,
    max_jobs: int,
    log_level: str,
    share: capacity.WorkerShare | None = None,
    deadline=None,
    outage_said: bool = False,
) -> None:
    """One worker process. `outage_said`: its predecessor exited because Redis was away and
    said so; this one keeps quiet about the same outage (the daemon restarts it with back-off)."""
    from vq import job_logs
    from vq import worker_leases as worker_module
    from vq.execution import install_runtime
    from vq.worker import LastError, VqWorker, start_thread_workers, stop_thread_workers

    die_with_parent()
    worker_module.SHARED_DEADLINE = deadline  # where its fence says when it must be gone (watch_leases)
    logs.configure(log_level)
    # Its jobs' `started` and `finished` lines leave the job loop, written every 0.5 s; every
    # other line at once, after them (vq/log_batching.py). The `finally` below writes the rest.
    log_batching.start(events.LOGGER)
    install_runtime(settings)
    telemetry.warm()  # the exporter built now, not in its first job
    conn = make_client(settings, socket_timeout=None)
    # The pid makes the name unique: a replaced worker must not clash with its predecessor's record.
    helpers = []
    last_error = LastError()
    worker = None
    try:
        worker = VqWorker(queue_names, connection=conn, serializer=JSONSerializer, name=f"{name_prefix}.{os.getpid()}")
        worker.max_memory_mb = settings.daemon.maxMemoryPerWorker
        worker.log.addFilter(last_error)
        if share is not None:  # admission gives this process only jobs its free share covers (vq/capacity.py)
            capacity.THIS_WORKER = worker.resource_share = capacity.named(share, worker.name)
            log.info(
                "%s: resources %s%s",
                worker.name,
                capacity.text_of(share.amounts) or "none",
                f", GPU devices {','.join(map(str, share.devices))}" if share.devices else "",
            )
        helpers = start_thread_workers(settings, queue_names, conn, worker.name)
        worker.work(max_jobs=max_jobs, logging_level="WARNING" if log_level.upper() != "DEBUG" else "DEBUG")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        said = outage_said or (worker is not None and worker._say_once().down)  # once per outage, not per process
        log.log(
            logging.DEBUG if said else logging.WARNING,
            "worker: Redis unreachable (%s); the daemon restarts this worker with backoff",
            first_line(exc),
        )
        supervision.say(redisDown=True, error=supervision.error_line(exc))
        sys.exit(EXIT_REDIS_DOWN)
    finally:
        stop_thread_workers(helpers, settings.daemon.shutdownGrace / 1000)
        job_logs.flush_all()  # jobs still running in thread workers: their last lines (vq/job_logs.py)
        # The event lines still waiting, whatever ended the loop: a multiprocessing child
        # leaves through os._exit, so atexit would not (the finalizer registered does too).
        log_batching.stop()
    if worker.redis_lost:
        supervision.say(redisDown=True, error="Redis unreachable")
        sys.exit(EXIT_REDIS_DOWN)
    if last_error.exc is not None:  # RQ's loop quit on it: the daemon reports it, and restarts with back-off
        supervision.say_exception(last_error.exc)
        sys.exit(EXIT_CRASHED)


def scheduler_main(settings: Settings, queue_names: list[str], log_level: str, name: str) -> None:
    die_with_parent()
    logs.configure(log_level)
    conn = make_client(settings, socket_timeout=None)
    try:
        run_scheduler(settings, conn, queue_names, log_level, name)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("scheduler: Redis unreachable (%s); the daemon restarts it with backoff", first_line(exc))
        supervision.say(redisDown=True, error=supervision.error_line(exc))
        sys.exit(EXIT_REDIS_DOWN)


def first_line(exc: Exception) -> str:
    text = message_of(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_scheduler(settings: Settings, conn, queue_names: list[str], log_level: str, name: str) -> None:
    """This daemon's timer: due delayed jobs and retries, and recurring ticks."""
    from vq.execution import install_runtime
    from vq.recurring.firing import Spawner
    from vq.timer import Timer

    install_runtime(settings)
    timer = Timer(
        conn, queue_names, callbacks=[Spawner(conn, settings)], max_sleep=settings.daemon.schedulerInterval / 1000
    )
    signal.signal(signal.SIGTERM, timer.stop)
    signal.signal(signal.SIGINT, timer.stop)
    timer.run()


def archiver_main(settings: Settings, log_level: str) -> None:
    from vq.history.archiver import Archiver

    die_with_parent()
    logs.configure(log_level)
    run_until_signalled(Archiver(make_client(settings, socket_timeout=None), settings, open_now=False))


def webhooks_main(settings: Settings, log_level: str, consumer: str) -> None:
    from vq.webhooks import Notifier

    die_with_parent()
    logs.configure(log_level)
    run_until_signalled(Notifier(make_client(settings, socket_timeout=None), settings, consumer))


def metrics_main(settings: Settings, log_level: str) -> None:
    """The metrics listener (daemon.metricsListen): only GET /metrics, no token."""
    from vq.metrics_listener import MetricsServer

    die_with_parent()
    logs.configure(log_level)
    assert settings.daemon.metricsListen is not None
    run_until_signalled(MetricsServer(make_client(settings), settings, settings.daemon.metricsListen))


def run_until_signalled(service) -> None:
    """Run a loop until SIGTERM/SIGINT stops it (archiver, notifier: vq/stopping.py)."""
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run()


HTTP = "http"  # the HTTP children's names: http, then http-2, http-3... (daemon.httpWorkers)


def http_names(count: int) -> list[str]:
    return [HTTP if i == 1 else f"{HTTP}-{i}" for i in range(1, count + 1)]


def is_http(name: str) -> bool:
    return name == HTTP or name.startswith(HTTP + "-")


def http_main(settings: Settings, listener: HttpListener, log_level: str) -> None:
    """The HTTP API under uvicorn: asyncio (uvloop, httptools' parser), keep-alive, many
    clients, on the socket the supervisor bound. `daemon.httpWorkers` of these processes
    share that one listening socket: each accepts from it, so each connection is served by
    one of them, and one Python's GIL no longer caps the API (sessions, rate limits and
    event streams are in Redis, shared by all). Without a logging config of uvicorn's own, its records
    (startup, errors) go through vq's handler and format; the access lines are vq's own,
    with a request id (vq/api/request_id.py), written in batches off the event loop
    (vq/api/access_log.py)."""
    import uvicorn

    from vq.api import access_log
    from vq.api.app import create_app

    die_with_parent()
    logs.configure(log_level)
    telemetry.warm()
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        timeout_keep_alive=30,
        lifespan="off",  # vq/api/request_id.py logs
        limit_concurrency=1000,
        timeout_graceful_shutdown=5,
    )
    if listener.sock is None:  # the supervisor starts this child once the port is bound
        raise RuntimeError("the HTTP port is not bound")

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            """The access lines still waiting are written once the last answer is sent, before
            uvicorn re-raises the stopping signal (SIGTERM's default action ends the process)."""
            try:
                await super().shutdown(sockets)
            finally:
                access_log.stop()

    access_log.start()  # the lines leave the event loop, written every 0.5 s (vq/api/access_log.py)
    try:
        Server(config).run(sockets=[listener.sock])
    finally:
        access_log.stop()


@dataclass
class Child:
    name: str
    target: Callable[..., object]
    args: tuple
    process: mp.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    quick_failures: int = 0  # consecutive exits soon after start while Redis is away: restarts back off
    redis_down: bool = False
    restart_at: float = 0.0
    reloading: bool = False  # stopped to come back with a new configuration
    retired: bool = False  # no longer in the configuration: not restarted
    parked: bool = False  # a worker autoscaling has not started, or retired: not restarted
    channel: Connection | None = None  # the supervisor's end of the pipe the process says its last words on
    crashes: supervision.Restarts = field(init=False)  # (set from the name, __post_init__)
    deadline: ctypes.c_double | None = (
        None  # a worker's: shared memory, monotonic time by which it must be gone (vq/fence.py)
    )

    def __post_init__(self):
        self.crashes = supervision.Restarts(self.name)
