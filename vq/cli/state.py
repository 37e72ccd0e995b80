"""What every command needs: the settings and a Redis connection, loaded on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import typer
from redis import Redis

from vq import telemetry
from vq.cli.helptext import choices_metavar, one_of
from vq.config import PRIORITIES, TIERS, Settings, load_settings
from vq.connection import connect

JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")
YES_OPTION = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
# A job's priority and its user's tier, as `vq submit` and `vq recurring add` take them.
PRIORITY_OPTION = typer.Option(
    None,
    "--priority",
    metavar=choices_metavar(PRIORITIES),
    callback=one_of("--priority", PRIORITIES),
    help="Priority (default: from the subscription tier).",
)
SUBSCRIPTION_OPTION = typer.Option(
    None,
    "--subscription",
    "-s",
    metavar=choices_metavar(TIERS),
    callback=one_of("--subscription", TIERS),
    help="The user's subscription tier (default: from config).",
)


@dataclass
class State:
    config_path: str | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings(self.config_path)
        telemetry.configure(settings)  # `vq submit` starts a trace when tracing is asked for (docs/tracing.md)
        return settings

    @cached_property
    def conn(self) -> Redis:
        return connect(self.settings)


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj
