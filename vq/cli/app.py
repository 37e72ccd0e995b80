"""The root `vq` command: global options, the command groups, and error -> exit code.

Exit codes: 0 ok; 1 the job failed (with --wait / --follow); 2 bad usage or input;
3 Redis unreachable; 4 no such job or type.
"""

from __future__ import annotations

import sys

import redis
import typer

from vq import __version__
from vq.cli import (artifacts_cmd, completion_cmd, daemon_cmd, dlq_cmd, doctor_cmd, job_cmds, limits_cmd, monitor_cmds,
                    providers_cmd, queue_cmds, recurring_cmd, redis_cmd, submit_cmd, token_cmd, tui_cmd, workers_cmd)
from vq.cli.output import error
from vq.cli.state import State
from vq.errors import VqError

app = typer.Typer(
    name="vq",
    help="vq: the job queue of the AI video-generation platform (RQ + Redis).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        print(f"vq {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: str = typer.Option(None, "--config", "-c", envvar="VQ_CONFIG", help="Path of the YAML config file."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    ctx.obj = State(config_path=config)


submit_cmd.register(app)
job_cmds.register(app)
queue_cmds.register(app)
limits_cmd.register(app)
dlq_cmd.register(app)
recurring_cmd.register(app)
monitor_cmds.register(app)
token_cmd.register(app)
providers_cmd.register(app)
artifacts_cmd.register(app)
workers_cmd.register(app)
daemon_cmd.register(app)
redis_cmd.register(app)
tui_cmd.register(app)
doctor_cmd.register(app)
completion_cmd.register(app)

# issue 22: `vq config example` (vq/cli/config_cmd.py)
from vq.cli import config_cmd  # noqa: E402

config_cmd.register(app)


def main() -> None:
    try:
        app()
    except VqError as exc:
        error(exc.message)
        sys.exit(exc.exit_code)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        error(f"lost the connection to Redis: {exc}")
        sys.exit(3)
    except KeyboardInterrupt:
        sys.exit(130)
