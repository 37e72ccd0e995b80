"""Cron expressions and time zones: validation that names the bad field, and fire times.

croniter does the arithmetic. Its rules for daylight-saving changes are vq's rules: a
local time that does not exist (skipped by a spring-forward) fires at the first instant
after the gap; a local time that happens twice (a fall-back) fires both times.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

from vq.errors import InvalidInput

# croniter's column order: five standard fields and an optional sixth for seconds. croniter
# also reads a seventh (the year), which vq refuses: README promises 5 or 6 fields, and a
# seven-field '* * * * * * *' would fire every second.
FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 or sun-sat"),
    ("second", "0-59"),
)


def validate_cron(expression: object, field: str = "cron") -> str:
    """Return the normalized expression, or raise InvalidInput naming the bad column."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput(f"{field}: expected a cron expression such as '0 0 * * *'", field=field)
    parts = expression.split()
    if len(parts) not in (5, 6):
        raise InvalidInput(
            f"{field}: {expression!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week), or 6 with seconds last",
            field=field,
        )
    for index, part in enumerate(parts):
        probe = ["*"] * len(parts)
        probe[index] = part
        try:
            croniter(" ".join(probe))
        except CroniterError:
            name, allowed = FIELDS[index]
            raise InvalidInput(
                f"{field}: field {index + 1} ({name}) {part!r} is not valid (allowed: {allowed}, "
                "*, lists a,b, ranges a-b, steps */n)",
                field=field,
            ) from None
    normalized = " ".join(parts)
    try:
        croniter(normalized)
    except CroniterError as exc:
        raise InvalidInput(f"{field}: {expression!r} is not valid ({exc})", field=field) from None
    try:
        croniter(normalized, datetime.now(UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidInput(f"{field}: {expression!r} never matches a real date", field=field) from None
    return normalized


def validate_timezone(name: object, field: str = "tz") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{field}: expected an IANA time zone such as Europe/Berlin or UTC", field=field)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"{field}: {name!r} is not a known time zone (use an IANA name such as Europe/Berlin)", field=field
        ) from None
    return name


def next_after(expression: str, tz: str, after_ms: int) -> int:
    """The first fire time strictly after `after_ms` (epoch ms), in epoch ms."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(tz))
    return int(round(croniter(expression, start).get_next(float) * 1000))


def next_times(expression: str, tz: str, after_ms: int, count: int) -> list[datetime]:
    """The next `count` fire times after `after_ms`, as aware datetimes in the job's zone."""
    zone = ZoneInfo(tz)
    iterator = croniter(expression, datetime.fromtimestamp(after_ms / 1000, zone))
    return [iterator.get_next(datetime).astimezone(zone) for _ in range(count)]


def due_ticks(expression: str, tz: str, first_ms: int, now_ms: int, limit: int) -> tuple[list[int], int]:
    """The fire times from `first_ms` up to `now_ms` (oldest first, at most the latest `limit`)
    and how many older ones that limit left out. Walks back from now, so a long outage
    costs `limit` steps, not one per missed tick."""
    zone = ZoneInfo(tz)
    iterator = croniter(expression, datetime.fromtimestamp((now_ms + 1) / 1000, zone))
    ticks: list[int] = []
    left_out = 0
    while True:
        tick = int(round(iterator.get_prev(float) * 1000))
        if tick < first_ms:
            break
        if len(ticks) == limit:
            left_out = 1  # at least one more; the caller only says "more than"
            break
        ticks.append(tick)
    ticks.reverse()
    return ticks, left_out
