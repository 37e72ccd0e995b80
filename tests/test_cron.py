"""Fire times across daylight-saving changes follow croniter's rules, which the README states:
a local time skipped by spring-forward fires at the first instant after the gap, and a local
time that happens twice at fall-back fires both times."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from vq.recurring.cron import due_ticks, next_after, next_times

BERLIN = ZoneInfo("Europe/Berlin")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m-%d %H:%M")


def test_a_skipped_local_time_fires_right_after_the_gap():
    # 2026-03-29: Berlin clocks jump from 02:00 to 03:00, so 02:30 does not exist that day.
    runs = next_times("30 2 * * *", "Europe/Berlin", _ms(datetime(2026, 3, 27, 12, tzinfo=BERLIN)), 4)
    assert [(r.day, r.hour, r.minute) for r in runs] == [(28, 2, 30), (29, 3, 0), (30, 2, 30), (31, 2, 30)]
    assert [r.utcoffset().total_seconds() / 3600 for r in runs] == [1, 2, 2, 2]


def test_a_repeated_local_time_fires_both_times():
    # 2026-10-25: Berlin clocks go back from 03:00 to 02:00, so 02:30 happens twice.
    runs = next_times("30 2 * * *", "Europe/Berlin", _ms(datetime(2026, 10, 24, 12, tzinfo=BERLIN)), 3)
    assert [(r.day, r.hour, r.minute, r.utcoffset().total_seconds() / 3600) for r in runs] == [
        (25, 2, 30, 2),
        (25, 2, 30, 1),
        (26, 2, 30, 1),
    ]
    assert [_utc(_ms(r)) for r in runs] == ["10-25 00:30", "10-25 01:30", "10-26 01:30"]


def test_a_time_zone_moves_the_utc_fire_time_with_the_season():
    winter = next_after("0 9 * * *", "Europe/Berlin", _ms(datetime(2026, 1, 10, tzinfo=UTC)))
    summer = next_after("0 9 * * *", "Europe/Berlin", _ms(datetime(2026, 7, 10, tzinfo=UTC)))
    assert _utc(winter) == "01-10 08:00" and _utc(summer) == "07-10 07:00"


def test_due_ticks_walks_a_long_outage_in_bounded_steps():
    first = _ms(datetime(2026, 1, 1, tzinfo=UTC))
    now = _ms(datetime(2026, 1, 1, 5, 30, tzinfo=UTC))
    ticks, more = due_ticks("0 * * * *", "UTC", first, now, 100)
    assert [_utc(t) for t in ticks] == [
        "01-01 00:00",
        "01-01 01:00",
        "01-01 02:00",
        "01-01 03:00",
        "01-01 04:00",
        "01-01 05:00",
    ] and not more
    latest, more = due_ticks("0 * * * *", "UTC", first, now, 2)
    assert [_utc(t) for t in latest] == ["01-01 04:00", "01-01 05:00"] and more
    year_of_seconds, more = due_ticks("* * * * * *", "UTC", first - 365 * 86_400_000, now, 3)
    assert len(year_of_seconds) == 3 and more and year_of_seconds[-1] == now
