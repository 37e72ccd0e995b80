"""Small text helpers the dashboard's screens share: colours, sparklines, ages."""

from __future__ import annotations

import time

from rich.text import Text

HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "error": "bold red"}
STATUS_STYLE = {"finished": "green", "failed": "red", "started": "cyan", "queued": "blue", "limited": "magenta",
                "scheduled": "yellow", "deferred": "yellow", "canceled": "dim", "stopped": "dim"}
BARS = " ▁▂▃▄▅▆▇█"


def health(status: str) -> Text:
    return Text(f"● {status}", style=HEALTH_STYLE.get(status, ""))


def queue_name(name: str, health_status: str, paused: bool) -> Text:
    """A job type's name in its health colour, marked when paused."""
    text = Text("⏸ " if paused else "", style="bold yellow")
    text.append(name, style=HEALTH_STYLE.get(health_status, ""))
    return text


def status(name: str) -> Text:
    return Text(name, style=STATUS_STYLE.get(name, ""))


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
