"""`vq daemon`: run workers, the scheduler and housekeeping in the foreground."""

from __future__ import annotations

import typer

from vq import capacity
from vq.cli.helptext import choices_metavar, example
from vq.cli.state import state
from vq.config import HttpSettings
from vq.errors import InvalidInput
from vq.jobtypes import get_job_type

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


def register(app: typer.Typer) -> None:
    @app.command(
        "daemon", epilog=example("vq daemon --workers 4 --queues image-generation,audio-synthesis --log-format json")
    )
    def daemon(
        ctx: typer.Context,
        workers: int | None = typer.Option(
            None, "--workers", "-w", help="Worker processes (default: config, else CPU count)."
        ),
        queues: str | None = typer.Option(None, "--queues", "-q", help="Only these job types, comma-separated."),
        log_level: str = typer.Option(
            "INFO",
            "--log-level",
            metavar=choices_metavar(LOG_LEVELS),
            help="The least severe messages logged (any case).",
        ),
        log_format: str = typer.Option(
            "text",
            "--log-format",
            metavar=choices_metavar(LOG_FORMATS),
            help="text (journald-friendly) or json (one object per line, for log shippers).",
        ),
        grace: float | None = typer.Option(None, "--grace", help="Seconds running jobs get to finish on stop."),
        http: str | None = typer.Option(None, "--http", help="Serve the HTTP API on HOST:PORT (default http.listen)."),
        no_http: bool = typer.Option(False, "--no-http", help="Run without the HTTP API."),
        resources: str | None = typer.Option(
            None,
            "--resources",
            metavar="NAME=N,...",
            help="This host's resources, split evenly over the workers (gpu=2,vram=80; default daemon.resources).",
        ),
        resources_per_worker: str | None = typer.Option(
            None,
            "--resources-per-worker",
            metavar="NAME=N,...",
            help="The resources each worker has (gpu=1,vram=24; default daemon.resourcesPerWorker).",
        ),
        stop_redis: bool = typer.Option(
            False,
            "--stop-redis",
            help="Stop the embedded Redis when the daemon stops "
            "(by default it keeps running for the CLI and "
            "the next daemon).",
        ),
    ) -> None:
        """Run the workers, the timer, the archiver and the HTTP API in the foreground.

        Runs until SIGTERM or SIGINT (running jobs get --grace seconds), or until the terminal
        it runs in goes away; SIGHUP reloads the configuration. Speaks systemd's notify
        protocol. With no Redis configured it starts the embedded one, or reuses it, and leaves
        it running when it stops (unless --stop-redis)."""
        from vq.daemon import Daemon, DaemonOptions, default_worker_count  # heavy: only for this command
        from vq.procutil import exit_skipping_teardown

        st = state(ctx)
        settings = st.settings
        if log_level.upper() not in LOG_LEVELS:
            raise InvalidInput(f"--log-level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if log_format not in LOG_FORMATS:
            raise InvalidInput(f"--log-format: {log_format!r} is not text or json")
        if workers is not None and workers < 1:
            raise InvalidInput("--workers: must be at least 1")
        only = [q.strip() for q in queues.split(",") if q.strip()] if queues else settings.daemon.queues
        for name in only or []:
            get_job_type(settings, name)
        if stop_redis and settings.redis.configured:
            raise InvalidInput(
                "--stop-redis: a Redis is configured; vq stops only the embedded one it runs when none is"
            )
        if http and no_http:
            raise InvalidInput("--http: give either --http HOST:PORT or --no-http")
        listen = None if no_http else http or (settings.http.listen if settings.http.enabled else None)
        if http:  # an explicit --http serves even where config says http.enabled: false
            try:
                HttpSettings(listen=http)
            except ValueError:
                raise InvalidInput(f"--http: {http!r} is not HOST:PORT") from None
        if resources and resources_per_worker:
            raise InvalidInput("--resources: give either --resources or --resources-per-worker")
        total = capacity.parse(resources, "--resources") if resources else None
        each = capacity.parse(resources_per_worker, "--resources-per-worker") if resources_per_worker else None
        options = DaemonOptions(
            workers=workers or default_worker_count(settings),
            queues=only,
            log_level=log_level.upper(),
            grace_seconds=grace if grace is not None else settings.daemon.shutdownGrace / 1000,
            max_jobs_per_worker=settings.daemon.maxJobsPerWorker,
            http_listen=listen,
            log_format=log_format,
            config_path=st.config_path,
            autoscale=workers is None and settings.daemon.autoscale is not None,
            stop_redis=stop_redis,
            resources=total,
            resources_per_worker=each,
        )
        code = Daemon(settings, options).run()
        exit_skipping_teardown(code)  # a stopped daemon exits now, not after freeing every module
