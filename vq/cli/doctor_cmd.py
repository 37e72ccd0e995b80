"""`vq doctor`: check the installation and say how to fix each problem (vq/doctor.py)."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.text import Text

from vq.cli.helptext import example
from vq.cli.output import emit, out, table
from vq.cli.state import JSON_OPTION, state
from vq.errors import ConfigError

MARKS = {"ok": ("✔ ok", "green"), "warn": ("! warn", "yellow"), "fail": ("✘ fail", "bold red")}


def register(app: typer.Typer) -> None:
    @app.command("doctor", epilog=example("vq --config /etc/vq/config.yaml doctor"))
    def doctor(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Check the installation and say how to fix each problem found.

        Redis (reachable, version, persistence, eviction), the daemons, clocks, the archiver, SQLite,
        the config and the handlers. Exit 0 ok, 1 warnings, 2 problems."""
        from vq import doctor as checks
        from vq.doctor_findings import Finding, exit_code

        try:
            findings = checks.run(state(ctx).settings)
        except ConfigError as exc:
            findings = [
                asdict(
                    Finding("config", "fail", exc.message, "fix the file; `vq doctor` checks the rest once it loads")
                )
            ]
        emit(findings, as_json, _render)
        raise typer.Exit(exit_code([Finding(**f) for f in findings]))


def _render(findings: list[dict]) -> None:
    rows = []
    for f in findings:
        mark, style = MARKS[f["status"]]
        rows.append([f["check"], Text(mark, style=style), f["detail"], Text(f["fix"] or "", style="cyan")])
    out.print(table(["check", "status", "finding", "fix"], rows, title="vq doctor"))
