"""`vq tui`: the live dashboard (vq/tui)."""

from __future__ import annotations

import os
import time
import traceback

import typer

from vq.cli.helptext import example
from vq.cli.state import state
from vq.config import Settings
from vq.errors import InvalidInput, VqError
from vq.private import private_dir

CRASH_LOG = "tui-crash.log"  # in the data directory; the last crash's traceback


def register(app: typer.Typer) -> None:
    @app.command("tui", epilog=example("vq tui --refresh 5 --theme light"))
    def tui(
        ctx: typer.Context,
        refresh: float = typer.Option(1.0, "--refresh", help="Seconds between refreshes (0.2 to 60)."),
        theme: str = typer.Option(
            "dark", "--theme", metavar="<dark|light>", help="Colours (ctrl+p switches at any time)."
        ),
    ) -> None:
        """A live dashboard of queues, workers, breakers and recurring jobs, with actions.

        Drill into a queue, a job, a user or the dead letters; pause, resume, clear, retry, cancel, remove."""
        if not 0.2 <= refresh <= 60:
            raise InvalidInput(f"--refresh: {refresh:g} is not between 0.2 and 60 seconds")
        if theme not in ("dark", "light"):
            raise InvalidInput(f"--theme: {theme!r} is not dark or light")
        from vq.connection import make_client
        from vq.tui.app import VqDashboard
        from vq.tui.services import Services

        settings = state(ctx).settings
        # Short timeouts: a slow Redis shows as a banner within seconds; it never blocks the UI.
        services = Services(make_client(settings, socket_timeout=2.0), settings)
        dashboard = VqDashboard(services, refresh_every=refresh, theme=f"textual-{theme}")
        dashboard.run()
        if dashboard.crash is not None:
            raise VqError(crashed(settings, dashboard.crash))
        if dashboard.return_code:
            raise typer.Exit(dashboard.return_code)


def crashed(settings: Settings, error: BaseException) -> str:
    """The one line `vq tui` ends with when the app crashed; the traceback goes to a file."""
    said = (str(error).strip().splitlines() or [""])[0]
    line = f"the dashboard crashed: {type(error).__name__}" + (f": {said}" if said else "")
    path = settings.data_path / CRASH_LOG
    try:
        private_dir(path.parent)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(f"vq tui crashed at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
            out.writelines(traceback.format_exception(error))
    except OSError as exc:
        return f"{line} (the traceback could not be written to {path}: {exc.strerror or exc})"
    return f"{line} (traceback in {path})"
