"""`vq tui`: the live dashboard (vq/tui)."""

from __future__ import annotations

import typer

from vq.cli.state import state
from vq.errors import InvalidInput


def register(app: typer.Typer) -> None:
    @app.command("tui")
    def tui(ctx: typer.Context,
            refresh: float = typer.Option(1.0, "--refresh", help="Seconds between refreshes (0.2 to 60)."),
            theme: str = typer.Option("dark", "--theme", help="dark or light (ctrl+p switches at any time).")) -> None:
        """A live dashboard of queue health, workers, breakers and recurring jobs, with actions."""
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
        VqDashboard(services, refresh_every=refresh, theme=f"textual-{theme}").run()
