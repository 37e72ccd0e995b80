"""Pages from the Jinja2 templates beside this module (autoescaped), with the headers every
dashboard answer carries: a Content-Security-Policy that allows only this server's own
scripts, styles and media (no inline script, no CDN), and no caching of pages that show
jobs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from vq.webui.views import media_kind

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TERMINAL = ("finished", "failed", "canceled", "stopped")
SPARK_W, SPARK_H = 120, 28  # an inline SVG sparkline's box, in CSS pixels
PRETTY_MAX = 100_000


def _ago(value: str | int | float | None) -> str:
    """'12s ago', '3m ago', 'in 5m' from an ISO time or epoch milliseconds."""
    if value in (None, ""):
        return "-"
    try:
        if isinstance(value, int | float):
            moment = float(value) / 1000
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return str(value)
    delta = time.time() - moment
    ahead, delta = delta < 0, abs(delta)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if delta >= size or unit == "s":
            text = f"{int(delta // size)}{unit}"
            return f"in {text}" if ahead else f"{text} ago"
    return "-"


def _points(values: list[int]) -> str:
    """A polyline's points in the data's own units (minute, -jobs: SVG's y grows downwards);
    the viewBox maps them onto the box, so drawing a line costs no arithmetic here."""
    return " ".join(f"{i},{-v}" for i, v in enumerate(values))


def _spark_svg(series: dict[str, list[int]], label: str = "") -> Markup:
    """An inline SVG sparkline of jobs finished and failed a minute (one line each, on one
    scale, so a failed line near the top means most jobs fail), drawn server-side: no
    script, nothing for the Content-Security-Policy to allow, and cheap (60 numbers)."""
    done, failed = series.get("finished", []), series.get("failed", [])
    top = max([*done, *failed, 1])
    title = f"{label}{sum(done)} finished, {sum(failed)} failed in {len(done)} min (peak {top}/min)"
    return Markup(
        f'<svg class="sparkline" viewBox="0 {-top} {max(1, len(done) - 1)} {top}" preserveAspectRatio="none" '
        f'width="{SPARK_W}" height="{SPARK_H}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<polyline class="failed{_idle(failed)}" points="{_points(failed)}"/>'
        f'<polyline class="done{_idle(done)}" points="{_points(done)}"/></svg>'
    )


def _idle(values: list[int]) -> str:
    """A line at zero throughout is drawn in the rule's colour: a flat red line reads as failures."""
    return "" if any(values) else " idle"


def _rate(value: float) -> str:
    """Jobs a minute: 0, 0.2, 12, 1,250."""
    return f"{value:,.1f}".removesuffix(".0")


def _pretty(value: object) -> str:
    """JSON, indented; cut at PRETTY_MAX characters, so a huge result cannot make a page of
    megabytes (`vq result ID` and the API give it whole)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > PRETTY_MAX:
        return f"{text[:PRETTY_MAX]}\n… ({len(text):,} characters in all: `vq result`, or the API, gives it whole)"
    return text


ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
ENV.filters.update(ago=_ago, sparkline=_spark_svg, rate=_rate, pretty=_pretty, media=media_kind)
ENV.globals.update(TERMINAL=TERMINAL)


def page(request: Request, template: str, code: int = 200, headers: dict | None = None, **context) -> HTMLResponse:
    """Render `template` with the request and whatever the route passes (`session`, data)."""
    html = ENV.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=code, headers={**PAGE_HEADERS, **(headers or {})})
