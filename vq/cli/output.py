"""Output in one place: data on stdout (a rich table for people, JSON for scripts),
messages and errors on stderr, and the mapping of known errors to exit codes.

rich is imported on first use (~30 ms of a command's start): `vq submit`, and any command with
--json, print without it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vq.jobdata import dumps_strict

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


class LazyConsole:
    """A rich Console made the first time something is printed through it."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def real(self) -> Console:
        """The Console itself (for rich objects that take one, such as a Progress)."""
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            # Piped output is not cut to 80 columns: a script or a log keeps whole lines.
            self._console = Console(stderr=self._stderr, width=None if stream.isatty() else 200)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


out = LazyConsole(stderr=False)
err = LazyConsole(stderr=True)


def escape(text: str) -> str:
    """rich's markup escape, imported when needed."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


STATUS_STYLE = {
    "queued": "cyan",
    "limited": "magenta",
    "started": "yellow",
    "finished": "green",
    "failed": "red",
    "deferred": "blue",
    "scheduled": "blue",
    "canceled": "dim",
    "stopped": "red",
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
    from rich.table import Table

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
