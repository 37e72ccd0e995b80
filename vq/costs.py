"""What the AI providers cost: each call's units priced with its provider's cost model,
kept exactly (integer millionths of the currency) per job, and per user, project and
provider per UTC day; budgets that hold a user's or project's further provider jobs.

Redis keeps one hash per day (vq:costs:<day>), written in the same step as the job's own
total, so budgets see spend at once; the archiver copies the recent days into the history
database's daily_costs table, which answers for days Redis no longer holds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from redis import Redis

from vq import events, keys
from vq.config import Budget, ProviderSettings, Settings
from vq.errors import InvalidInput
from vq.replies import text
from vq.rq_seam import private

MICROS = 1_000_000
KEEP_DAYS_S = 400 * 86_400  # a year of days and a month to spare
BY = ("user", "project", "provider")


def price_micros(provider: ProviderSettings, units: dict[str, float]) -> int:
    """The call's price in millionths of the currency (decimal arithmetic: no float drift)."""
    total = sum(
        (Decimal(str(units.get(unit, 0))) * Decimal(str(price)) for unit, price in provider.cost.items()), Decimal(0)
    )
    return int((total * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def charge(conn: Redis, settings: Settings, job, provider_name: str, units: dict[str, float]) -> int:
    """Price a call the job made and record it: the job's running total (meta), the day's
    counters, and a `charged` event for the history. Returns the call's micros."""
    provider = settings.providers[provider_name]
    micros = price_micros(provider, units)
    user, project = job.meta.get("userId") or "_", job.meta.get("projectId")
    job.meta["costMicros"] = int(job.meta.get("costMicros", 0)) + micros
    job.meta["provider"] = provider_name
    used = job.meta.setdefault("units", {})
    for unit, amount in units.items():
        used[unit] = used.get(unit, 0) + amount
    day = keys.costs_day(today())
    with conn.pipeline() as pipe:
        pipe.hset(job.key, "meta", private.serialize_meta(job))
        pipe.hincrby(day, f"user:{user}", micros)
        if project:
            pipe.hincrby(day, f"project:{project}", micros)
        pipe.hincrby(day, f"provider:{provider_name}", micros)
        pipe.hincrby(day, f"calls:provider:{provider_name}", 1)
        pipe.expire(day, KEEP_DAYS_S)
        events.emit(
            pipe,
            "charged",
            job.id,
            job.meta.get("jobType"),
            provider=provider_name,
            units=units,
            amountMicros=micros,
            totalMicros=job.meta["costMicros"],
            currency=settings.costs.currency,
            userId=user,
            projectId=project,
        )
        pipe.execute()
    return micros


def budget_for(settings: Settings, kind: str, name: str, tier: str | None = None) -> tuple[Budget | None, str]:
    """The budget that applies and the config key it came from."""
    b = settings.costs.budgets
    if kind == "user":
        if name in b.users:
            return b.users[name], f"costs.budgets.users.{name}"
        if tier and tier in b.tiers:
            return b.tiers[tier], f"costs.budgets.tiers.{tier}"
        return None, ""
    return b.projects.get(name), f"costs.budgets.projects.{name}"


def spent(conn: Redis, kind: str, name: str, days: list[str]) -> int:
    with conn.pipeline(transaction=False) as pipe:
        for day in days:
            pipe.hget(keys.costs_day(day), f"{kind}:{name}")
        return sum(int(v) for v in pipe.execute() if v)


def hold_reason(conn: Redis, settings: Settings, user: str, tier: str | None, project: str | None) -> str | None:
    """Why a provider job of this user and project must wait for budget, or None."""
    if not (settings.costs.budgets.users or settings.costs.budgets.tiers or settings.costs.budgets.projects):
        return None
    now = datetime.now(UTC).date()
    month = [(now.replace(day=1) + timedelta(days=i)).isoformat() for i in range(now.day)]
    for kind, name in (("user", user), ("project", project)):
        if not name:
            continue
        budget, source = budget_for(settings, kind, name, tier)
        if budget is None:
            continue
        for period, limit, days in (("today", budget.daily, month[-1:]), ("this month", budget.monthly, month)):
            if limit is None:
                continue
            used = spent(conn, kind, name, days)
            if used >= round(limit * MICROS):
                return (
                    f"budget: {kind} {name} has spent {format_amount(used)} of {limit:g} "
                    f"{settings.costs.currency} {period} ({source}.{'daily' if period == 'today' else 'monthly'})"
                )
    return None


def format_amount(micros: int) -> str:
    text = f"{Decimal(micros) / MICROS:.6f}".rstrip("0")
    return text + "00" if text.endswith(".") else text if len(text.split(".")[1]) >= 2 else text + "0"


def days_between(since: date, until: date) -> list[str]:
    if since > until:
        raise InvalidInput("--since: is after --until", field="since")
    if (until - since).days > 3660:
        raise InvalidInput("--since: at most ten years at once", field="since")
    return [(since + timedelta(days=i)).isoformat() for i in range((until - since).days + 1)]


def parse_day(text: str, field: str) -> date:
    """A day: YYYY-MM-DD, `today`, or a duration back from today (7d, 24h)."""
    from vq.durations import looks_like_duration, parse_duration_ms

    text = (text or "").strip()
    if text == "today":
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        back_ms = parse_duration_ms(text, field)
    except InvalidInput:
        if looks_like_duration(text):
            raise
        raise InvalidInput(
            f"{field}: {text!r} is not a day (YYYY-MM-DD, today) or a duration (7d)", field=field
        ) from None
    return (datetime.now(UTC) - timedelta(milliseconds=back_ms)).date()


def query(conn: Redis, settings: Settings, by: str, since: str, until: str = "today", only: str | None = None) -> dict:
    """`vq costs` and GET /api/costs: spend per `by` over [since, until]; `only` limits it
    to one name (a user asking about themselves)."""
    from vq.errors import HistoryUnavailable, NotFound
    from vq.history import db as historydb

    try:
        db = historydb.open_db(settings, create=False)
    except (NotFound, HistoryUnavailable):
        db = None  # no (usable) archive on this host: Redis's days answer alone
    result = report(conn, db, by, parse_day(since, "since"), parse_day(until, "until"))
    if only is not None:
        result["items"] = [i for i in result["items"] if i[by] == only]
        result["totalMicros"] = sum(i["amountMicros"] for i in result["items"])
        result["total"] = format_amount(result["totalMicros"])
    result["currency"] = settings.costs.currency
    return result


def report(conn: Redis, db, by: str, since: date, until: date) -> dict:
    """Spend per user, project or provider over whole UTC days, newest data first: Redis's
    day hashes, else the history database's copy of that day."""
    if by not in BY:
        raise InvalidInput(f"--by: {by!r} is not one of {', '.join(BY)}", field="by")
    days = days_between(since, until)
    with conn.pipeline(transaction=False) as pipe:
        for day in days:
            pipe.hgetall(keys.costs_day(day))
        held = pipe.execute()
    totals: dict[str, int] = {}
    calls: dict[str, int] = {}
    for day, fields in zip(days, held):
        rows = {k.decode(): int(v) for k, v in fields.items()} if fields else _archived_day(db, day)
        for key, micros in rows.items():
            kind, _, name = key.partition(":")
            if kind == by:
                totals[name] = totals.get(name, 0) + micros
            elif kind == "calls" and by == "provider" and name.startswith("provider:"):
                calls[name[len("provider:") :]] = calls.get(name[len("provider:") :], 0) + micros
    items = [
        {
            by: name,
            "amount": format_amount(m),
            "amountMicros": m,
            **({"calls": calls.get(name, 0)} if by == "provider" else {}),
        }
        for name, m in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    total = sum(totals.values())
    return {
        "by": by,
        "since": days[0],
        "until": days[-1],
        "items": items,
        "total": format_amount(total),
        "totalMicros": total,
    }


def _archived_day(db, day: str) -> dict[str, int]:
    if db is None or "daily_costs" not in db.table_names():
        return {}
    return {
        f"{kind}:{name}": micros
        for kind, name, micros in db.execute(
            "SELECT kind, name, amount_micros FROM daily_costs WHERE day = ?", (day,)
        ).fetchall()
    }


def copy_days(conn: Redis, db, days: list[str]) -> int:
    """The archiver's copy of Redis's day hashes into daily_costs (idempotent)."""
    rows = []
    for day in days:
        for key, value in conn.hgetall(keys.costs_day(day)).items():
            kind, _, name = text(key).partition(":")
            rows.append({"day": day, "kind": kind, "name": name, "amount_micros": int(value)})
    if rows:
        with db.conn:
            db["daily_costs"].upsert_all(rows, pk=("day", "kind", "name"))
    return len(rows)
