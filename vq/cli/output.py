"""Output in one place: data on stdout (a rich table for people, JSON for scripts),
messages and errors on stderr, and the mapping of known errors to exit codes."""

from __future__ import annotations

import sys
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vq.jobdata import dumps_strict

# Piped output is not cut to 80 columns: a script or a log keeps whole lines.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

STATUS_STYLE = {
    "queued": "cyan", "limited": "magenta", "started": "yellow", "finished": "green", "failed": "red",
    "deferred": "blue", "scheduled": "blue", "canceled": "dim", "stopped": "red",
}


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps_strict(obj, indent=2, default=str) + "\n")  # strict JSON, whatever is stored
    sys.stdout.flush()


def emit(obj: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `obj` as JSON for scripts, or through `render` for people."""
    if as_json:
        print_json(obj)
    else:
        render(obj)


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> Table:
    t = Table(title=title, header_style="bold", show_lines=False)
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*["" if v is None else str(v) for v in row])
    return t


def error(message: str) -> None:
    err.print(f"[bold red]vq: error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def note(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True)
