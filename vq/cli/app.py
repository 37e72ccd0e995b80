"""The root `vq` command: global options, the command groups, and error -> exit code.

Exit codes: 0 ok; 1 the job failed (with --wait / --follow); 2 bad usage or input;
3 Redis unreachable; 4 no such job or type.

Start-up speed (issue 22): `vq --version` answers before typer is imported, and a command
line naming one command imports only that command's module (COMMANDS maps each top-level
command or group to the module that registers it). The root help, shell completion and
unknown names still register every module, so their output is unchanged; the root --help
is replayed from a cache (vq/cli/help_cache.py) after the first time.
"""

import importlib
import os
import sys
from typing import TYPE_CHECKING

from vq import __version__

if TYPE_CHECKING:
    import typer

# Built on first use by __getattr__ below (declared, not bound, so the lookup still reaches it).
app: "typer.Typer"

# name -> module under vq.cli that registers it (tests/test_cli_startup.py checks this is complete).
COMMANDS: dict[str, str] = {
    "submit": "submit_cmd",
    "logs": "logs_cmd",
    **{name: "job_cmds" for name in ("show", "jobs", "progress", "result", "retry", "cancel", "rm")},
    **{name: "queue_cmds" for name in ("queues", "pause", "resume", "clear", "types")},
    "limits": "limits_cmd",
    "dlq": "dlq_cmd",
    "recurring": "recurring_cmd",
    "batch": "batch_cmd",
    **{name: "monitor_cmds" for name in ("history", "audit", "stats", "health", "perf", "metrics")},
    "token": "token_cmd",
    **{name: "providers_cmd" for name in ("providers", "costs")},
    "artifacts": "artifacts_cmd",
    "workers": "workers_cmd",
    "daemon": "daemon_cmd",
    "redis": "redis_cmd",
    "tui": "tui_cmd",
    "doctor": "doctor_cmd",
    "completion": "completion_cmd",
    "config": "config_cmd",
}

# Registration order of the full app (the root help lists commands in this order).
MODULES = [
    "submit_cmd",
    "job_cmds",
    "logs_cmd",
    "queue_cmds",
    "limits_cmd",
    "dlq_cmd",
    "recurring_cmd",
    "batch_cmd",
    "monitor_cmds",
    "token_cmd",
    "providers_cmd",
    "artifacts_cmd",
    "workers_cmd",
    "daemon_cmd",
    "redis_cmd",
    "tui_cmd",
    "doctor_cmd",
    "completion_cmd",
    "config_cmd",
]

_GLOBAL_WITH_VALUE = {"--config", "-c"}


def command_name(argv: list[str]) -> str | None:
    """The top-level command named on this command line (after the global options), if any."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def build_app(modules: list[str]):
    """A typer app with the root options and the commands of `modules` registered."""
    import typer

    from vq.cli import helptext, plain_params
    from vq.cli.state import State

    helptext.fix_typer_rendering()
    plain_params.install()
    app = typer.Typer(
        name="vq",
        help="vq: the job queue of the AI video-generation platform (RQ + Redis).",
        epilog=helptext.example("vq submit image-generation --user alice --data '{\"prompt\": \"a sunset\"}'"),
        cls=helptext.grouped_commands(),
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        add_completion=True,
    )

    def _version(ctx: typer.Context, value: bool) -> None:
        if value and not ctx.resilient_parsing:  # not while completing `vq --version <TAB>`
            print(f"vq {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(
        ctx: typer.Context,
        config: str = typer.Option(None, "--config", "-c", envvar="VQ_CONFIG", help="Path of the YAML config file."),
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    ) -> None:
        ctx.obj = State(config_path=config)

    for module in modules:
        importlib.import_module(f"vq.cli.{module}").register(app)
    helptext.polish(app)
    return app


def modules_for(argv: list[str]) -> list[str]:
    """Only the module a named command needs; every module for help, completion or an unknown name."""
    if any(key.startswith("_VQ_COMPLETE") for key in os.environ):
        return MODULES
    name = command_name(argv)
    if name in COMMANDS and "--help" not in argv[: argv.index(name)] and "-h" not in argv[: argv.index(name)]:
        return [COMMANDS[name]]
    return MODULES


def __getattr__(attr: str):
    # `from vq.cli.app import app` (tests, docs generators) still gets the full app.
    if attr == "app":
        global app
        app = build_app(MODULES)
        return app
    raise AttributeError(attr)


# Commands that add or remove jobs or recurring jobs: after them, the next TAB asks Redis afresh.
_CHANGE_COMPLETIONS = {"submit", "rm", "clear", "dlq", "recurring"}


def _complete() -> None:
    """A shell's TAB: from the cached tables (vq/cli/completion_cache.py) without importing typer
    or any command, else the full app with the completers of vq/cli/completers.py attached,
    which writes those tables for the next TAB."""
    from vq.cli import completion_cache

    code = completion_cache.answer()
    if code is not None:
        sys.exit(code)
    import typer

    from vq.cli import completers

    command = typer.main.get_command(build_app(MODULES))
    try:  # both read typer's internals (typer 0.29's own click): another typer completes names only
        completers.attach(command)
        completion_cache.save_tree(completers.describe(command))
    except Exception:  # noqa: BLE001 -- no cache: the next TAB takes this path again
        pass
    command.main(complete_var=completion_cache.COMPLETE_VAR)


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] == "--version":
        print(f"vq {__version__}")
        return
    if os.environ.get("_VQ_COMPLETE"):
        _complete()
        return
    root_help = argv in (["--help"], ["-h"]) and not any(key.startswith("_VQ_COMPLETE") for key in os.environ)
    if root_help:
        from vq.cli import help_cache

        if help_cache.replay():
            return
    from vq.cli.output import error
    from vq.errors import VqError

    try:
        if root_help:
            help_cache.record(build_app(MODULES))
        else:
            try:
                build_app(modules_for(argv))()
            finally:
                if command_name(argv) in _CHANGE_COMPLETIONS:
                    from vq.cli.complete_files import forget_redis_values

                    forget_redis_values()
    except VqError as exc:
        error(exc.message)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        redis = sys.modules.get("redis")
        if redis is not None and isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            error(f"lost the connection to Redis: {exc}")
            sys.exit(3)
        raise
