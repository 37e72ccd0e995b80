"""Parsing of the durations and instants people type: '90s', '5m', '300000ms', ISO 8601."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from vq.errors import InvalidInput

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration_ms(text: str | int | float, field: str = "delay") -> int:
    """'90s' -> 90000; a bare number is milliseconds, as in the spec's API."""
    if isinstance(text, bool):
        raise InvalidInput(f"{field}: expected a duration such as 90s, 5m or 300000ms", field=field)
    if isinstance(text, (int, float)):
        if text < 0:
            raise InvalidInput(f"{field}: must not be negative", field=field)
        return int(text)
    match = _DURATION.match(str(text))
    if not match:
        raise InvalidInput(f"{field}: {text!r} is not a duration (use e.g. 90s, 5m, 2h or 300000ms)", field=field)
    value, unit = float(match.group(1)), match.group(2) or "ms"
    return int(round(value * _UNITS_MS[unit]))


def parse_instant(text: str, field: str = "at") -> datetime:
    """An ISO 8601 time; without a zone it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{field}: {text!r} is not an ISO 8601 time (e.g. 2026-12-01T09:30:00Z)", field=field) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
