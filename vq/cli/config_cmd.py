"""`vq config example`: print the documented example configuration that came with this vq
(vq/shipped.py finds it in a checkout or an installed wheel), to start a config from."""

from __future__ import annotations

import sys

import typer

from vq.cli.helptext import example
from vq.shipped import shipped_file


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The configuration file.",
        no_args_is_help=True,
        epilog=example("vq config example > ~/.config/vq/config.yaml"),
    )

    @group.command("example", epilog=example("vq config example > ~/.config/vq/config.yaml"))
    def print_example() -> None:
        """Print config.example.yaml: every key with its default and what it does."""
        sys.stdout.write(shipped_file("config.example.yaml").read_text())

    app.add_typer(group, name="config")
