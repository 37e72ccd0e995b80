"""Parsing of the durations and instants people type: '90s', '5m', '300000ms', ISO 8601."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from vq.errors import InvalidInput

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


MAX_MS = 100 * 365 * 86_400_000  # a century: any longer is a typo, and beyond what dates can hold


def looks_like_duration(text: object) -> bool:
    """A number with an optional unit (so its errors are about the duration, not the format)."""
    return isinstance(text, (int, float)) and not isinstance(text, bool) or bool(_DURATION.match(str(text)))


def parse_duration_ms(text: str | int | float, field: str = "delay", unit_required: bool = False) -> int:
    """'90s' -> 90000; a bare number is milliseconds, as in the spec's API (with
    `unit_required`, refused: for lifetimes, where a bare number is most likely seconds)."""
    if isinstance(text, bool):
        raise InvalidInput(f"{field}: expected a duration such as 90s, 5m or 300000ms", field=field)
    if isinstance(text, (int, float)):
        value, unit = float(text), "ms"
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise InvalidInput(f"{field}: {text!r} is not a duration (use e.g. 90s, 5m, 2h or 300000ms)", field=field)
        if unit_required and not match.group(2):
            raise InvalidInput(f"{field}: {text!r} has no unit (use s, m, h or d: e.g. 15m, 1h, 30d)", field=field)
        value, unit = float(match.group(1)), match.group(2) or "ms"
    if not math.isfinite(value):
        raise InvalidInput(f"{field}: not a finite number", field=field)
    if value < 0:
        raise InvalidInput(f"{field}: must not be negative", field=field)
    ms = value * _UNITS_MS[unit]
    if ms > MAX_MS:
        shown = str(text) if len(str(text)) <= 24 else f"{str(text)[:20]}..."
        raise InvalidInput(f"{field}: {shown} is longer than 100 years", field=field)
    return int(round(ms))


def parse_instant(text: str, field: str = "at") -> datetime:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{field}: {text!r} is not an ISO 8601 time (e.g. 2026-12-01T09:30:00Z)", field=field
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
