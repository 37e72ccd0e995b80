"""`vq config example`: print the documented example configuration that came with this vq
(vq/shipped.py finds it in a checkout or an installed wheel), to start a config from.
`vq config check [FILE]`: whether a file would load, and its handlers import, before a
reload or a deploy (`nginx -t`): the daemon refuses a bad file at SIGHUP, but says so only
in its log."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import typer
from rich.text import Text

from vq.cli.helptext import example
from vq.cli.output import emit, out
from vq.cli.state import JSON_OPTION, state
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

    @group.command(
        "check",
        epilog=example("vq config check /etc/vq/config.yaml && systemctl reload vq"),
    )
    def check(
        ctx: typer.Context,
        path: Path | None = typer.Argument(None, help="The file (default: --config, $VQ_CONFIG, or the default path)."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Check a config file without Redis: every key known, every value in range, every
        handler importable. Exit 0 valid, 2 not."""
        from vq import doctor
        from vq.config.loader import config_source, load_settings
        from vq.doctor_findings import exit_code

        where = path or state(ctx).config_path
        findings = doctor.offline(load_settings(where))  # a file that does not load: exit 2, one line
        source = config_source(where)  # named in the answer
        code = exit_code(findings)
        report = {"file": str(source), "exists": source.exists(), "valid": code < 2}
        emit({**report, "findings": [asdict(f) for f in findings]}, as_json, _render)
        raise typer.Exit(2 if code >= 2 else 0)

    app.add_typer(group, name="config")


def _render(report: dict) -> None:
    from vq.cli.doctor_cmd import MARKS

    for f in report["findings"]:
        mark, style = MARKS[f["status"]]
        line = Text.assemble((f"{mark:7}", style), f" {f['check']}: {f['detail']}")
        if f["fix"]:
            line.append(f" ({f['fix']})", style="cyan")
        out.print(line)
    absent = "" if report["exists"] else " (no such file: the defaults)"
    out.print(f"{report['file']}{absent}: {'valid' if report['valid'] else 'not valid'}")
