"""`vq logs ID`: what a job's handler logged (vq/job_logs.py), from Redis or the history
database; --follow streams it until the job ends."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from vq import job_log_store
from vq.cli.helptext import example
from vq.cli.output import out
from vq.cli.state import state

LEVEL_STYLE = {"DEBUG": "dim", "INFO": "cyan", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


def register(app: typer.Typer) -> None:
    @app.command("logs", epilog=example("vq logs 3f2a9c1e7d20 --follow"))
    def logs(
        ctx: typer.Context,
        job_id: str = typer.Argument(..., metavar="ID", help="A job id, or a unique prefix of at least 8 characters."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Print lines as they come until the job ends."),
        as_json: bool = typer.Option(
            False, "--json", help="Print one JSON object per log line, for scripts, instead of text lines."
        ),
    ) -> None:
        """Show what a job's handler logged (ctx.log or logging): time, level, message.

        Kept as long as the job's history: limits.maxLogLines and limits.maxLogBytes, the
        first and the last lines, with how many were dropped between. --json prints one
        object per line ({"seq", "time", "level", "message", "attempt"}, or {"dropped": N}).
        Exit 0 (with --follow: once the job has ended, whatever its outcome); 4 no such job."""
        st = state(ctx)
        if not follow:
            _print(job_log_store.show(st.conn, st.settings, job_id)["lines"], as_json)
            return
        for part in job_log_store.follow(st.conn, st.settings, job_id):
            _print(part["lines"], as_json)


def _print(lines: list[dict], as_json: bool) -> None:
    for line in lines:
        if as_json:
            print(json.dumps(line, ensure_ascii=False), flush=True)
        else:
            out.print(text_of(line), soft_wrap=True)


def text_of(line: dict):
    """One line for a person: its message shown literally (never markup, never escape codes)."""
    from rich.text import Text

    if "dropped" in line:
        return Text(f"… {line['dropped']} lines dropped (limits.maxLogLines / limits.maxLogBytes) …", style="dim")
    at = datetime.fromtimestamp(line["time"], UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    text = Text(f"{at} ", style="dim")
    text.append(f"{line['level']:<8}", style=LEVEL_STYLE.get(line["level"], ""))
    text.append(" ")
    text.append(job_log_store.printable(line["message"]))
    return text
