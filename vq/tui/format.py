"""Small text helpers the dashboard's screens share: colours, sparklines, ages, and the
one way anything from a job reaches the screen.

Job data, results, errors, tracebacks, user ids, names and progress messages are written
by handlers, submitters and other programs, so none of it is ever markup: it is shown as
`Text` (never interpolated into a markup string), with control characters spelt out
(an ESC would drive the operator's terminal), results and data as indented JSON (never a
Python repr), and cut only after it is rendered (`Text.truncate`, whole lines), so a cut
can neither split an escape nor leave a tag open.
"""

from __future__ import annotations

import json
import re
import time

from rich.highlighter import JSONHighlighter
from rich.text import Text

HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "error": "bold red"}
STATUS_STYLE = {
    "finished": "green",
    "failed": "red",
    "started": "cyan",
    "queued": "blue",
    "limited": "magenta",
    "scheduled": "yellow",
    "deferred": "yellow",
    "canceled": "dim",
    "stopped": "dim",
}
BARS = " ▁▂▃▄▅▆▇█"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1
LINE_CELLS = 1000  # a longer line of a block is cut (it would wrap over a dozen rows at 80 columns)


def literal(value: object, none: str = "-") -> str:
    """A value as the plain text to show: `none` for nothing, control characters as `\\x1b`."""
    if value is None:
        return none
    return CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", value if isinstance(value, str) else str(value))


def cell(value: object, width: int | None = None) -> Text:
    """A table cell: the value's first line (`…` when more follow), cut to `width` cells."""
    lines = literal(value).splitlines() or [""]
    text = Text(lines[0] + (" …" if len(lines) > 1 else ""), no_wrap=True, end="")
    if width is not None:
        text.truncate(width, overflow="ellipsis")
    return text


def fields(*pairs: tuple[str, object]) -> Text:
    """`name value  name value` on one line: the names bold, the values literal text."""
    line = Text()
    for name, value in pairs:
        if line:
            line.append("  ")
        line.append(name, style="bold")
        line.append(" ")
        line.append_text(value if isinstance(value, Text) else Text(literal(value)))
    return line


def block(text: str | Text, max_lines: int, keep: str = "head", more: str = "") -> Text:
    """Multi-line text cut after rendering: at most `max_lines` whole lines (the first, or
    the last with keep="tail"), each at most LINE_CELLS cells; a dim line says what was cut."""
    rendered = text if isinstance(text, Text) else Text(literal(text))
    lines = list(rendered.split("\n", allow_blank=True))
    cut = max(0, len(lines) - max_lines)
    lines = lines[cut:] if keep == "tail" else lines[:max_lines]
    for line in lines:
        line.truncate(LINE_CELLS, overflow="ellipsis")
    note = Text(f"… {cut} {'earlier' if keep == 'tail' else 'more'} line(s){more}", style="dim") if cut else None
    shown = [note, *lines] if note and keep == "tail" else [*lines, note] if note else lines
    return Text("\n").join(shown)


def as_json(value: object, max_lines: int, more: str = "") -> Text:
    """A result or a job's data as indented JSON, highlighted, cut after rendering."""
    dumped = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    text = Text(literal(dumped))
    JSONHighlighter().highlight(text)
    return block(text, max_lines, more=more)


def markup_literal(value: object) -> str:
    """A value for a place that only takes markup (Textual's command palette): literal text
    with every `[` escaped; rich's `escape` leaves a lone `[` that Textual reads as a tag."""
    return literal(value).replace("[", "\\[")


def health(status: str) -> Text:
    return Text(f"● {literal(status)}", style=HEALTH_STYLE.get(status, ""))


def queue_name(name: str, health_status: str, paused: bool) -> Text:
    """A job type's name in its health colour, marked when paused."""
    text = Text("⏸ " if paused else "", style="bold yellow")
    text.append(literal(name), style=HEALTH_STYLE.get(health_status, ""))
    return text


def status(name: str) -> Text:
    return Text(literal(name), style=STATUS_STYLE.get(name, ""))


def percent(value: object) -> str:
    """A progress percentage as `42%`; whatever else a record holds, as it is."""
    return f"{value:.0f}%" if isinstance(value, (int, float)) else literal(value)


def sparkline(values: list[int]) -> str:
    """One character per value, scaled to the largest: the last half hour at a glance."""
    top = max(values, default=0)
    if not top:
        return "▁" * len(values)
    return "".join(BARS[max(1, round(v / top * (len(BARS) - 1)))] if v else "▁" for v in values)


def age(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def until(epoch_ms: int | None) -> str:
    """'in 4m' for a time ahead (the next fire of a recurring job)."""
    if epoch_ms is None:
        return "-"
    return "in " + age(max(0, epoch_ms - int(time.time() * 1000)))


def short(job_id: str | None, width: int = 12) -> str:
    return (job_id or "-")[:width]


def deadline(view: dict) -> str:
    """Where a job stands against its deadline: `in 4m` while it waits, `passed` (it expires
    at the next look), `missed` (expired unstarted, or started late), `met`; `-`: it has none."""
    if not view.get("deadline"):
        return "-"
    if (view.get("error") or {}).get("category") == "expired":
        return "missed (expired)"
    left = view.get("timeToDeadlineMs")
    if left is not None:
        return "in " + age(left) if left > 0 else "passed"
    started = view.get("startedAt")
    if started:  # ISO 8601 UTC, the same shape: compared as text
        return "missed (started late)" if started > view["deadline"] else "met"
    return "-"
