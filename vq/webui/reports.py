"""What the dashboard's operational pages read (workers, providers, limits, recurring jobs,
a user, history and audit search): each the service function the matching CLI command and
HTTP route call, with the API's visibility rule for a user-role viewer."""

from __future__ import annotations

from redis import Redis

from vq import costs, dashboard, job_lists, limits, workers
from vq.config import Settings
from vq.errors import NotFound
from vq.history import queries as history
from vq.history import search
from vq.providers import stats as provider_stats
from vq.recurring import definitions as recurring
from vq.tokens import Principal
from vq.webui.views import PAGE


def workers_view(conn: Redis, settings: Settings) -> dict:
    """Every worker process of every host (`vq workers`), grouped by host."""
    rows = workers.listing(conn, settings.health.heartbeatAge)
    return {"workers": rows, "hosts": workers.hosts(rows)}


def limits_view(conn: Redis, settings: Settings) -> dict:
    """Concurrency limits in force and their use (`vq limits`, GET /api/limits)."""
    return limits.overview(conn, settings)


def providers_view(conn: Redis, settings: Settings) -> list[dict]:
    """Each AI provider's breaker, limits in use, latency and error rate (`vq providers`)."""
    return provider_stats.overview(conn, settings, dashboard.DASHBOARD_PROVIDER_WINDOW_MS)


def recurring_view(conn: Redis, settings: Settings, principal: Principal) -> list[dict]:
    """The recurring definitions the viewer may see, soonest next run first (`vq recurring list`)."""
    rows = [recurring.describe(conn, d) for d in recurring.list_all(conn) if principal.may_see(d.userId, d.projectId)]
    rows.sort(key=lambda r: (not r["nextRuns"], r["nextRuns"][0] if r["nextRuns"] else ""))
    return rows


def visible_recurring(conn: Redis, principal: Principal, ref: str):
    definition = recurring.get(conn, ref)
    if not principal.may_see(definition.userId, definition.projectId):
        raise NotFound(f"recurring job {ref!r} not found")
    return definition


def user_page(conn: Redis, settings: Settings, principal: Principal, user_id: str) -> dict:
    """A user: running jobs against their limit, waiting jobs with why, recent jobs and
    spend over 30 days. A user-role viewer may open only their own."""
    if not principal.is_operator and user_id != principal.user_id:
        raise NotFound(f"no such user {user_id!r}")
    view = dashboard.user_view(conn, settings, user_id)
    view["recent"] = job_lists.list_jobs(conn, user=user_id, limit=PAGE)
    view["spend"] = costs.query(conn, settings, "user", "30d", "today", user_id)
    return view


def audit_view(conn: Redis, settings: Settings, actor: str | None, action: str | None, since: str | None) -> dict:
    """The audit trail from the history database (`vq audit`), newest first, once caught up."""
    db, note = history.fresh(conn, settings)
    rows = history.audit_rows(db, actor=actor or None, action=action or None, since=since or None, limit=200)
    return {"rows": rows, "note": note}


def history_view(
    conn: Redis,
    settings: Settings,
    principal: Principal,
    job_type: str | None,
    status: str | None,
    since: str | None,
    where: list[str],
    page: int,
) -> dict:
    """A search of the history database (`vq history`, GET /api/jobs/history): an operator's
    over everyone's jobs, a user's over their own."""
    indexed = settings.history.indexedFields
    search.clauses(where, indexed)  # a bad term: refused before the catch-up
    db, note = history.fresh(conn, settings)
    rows = history.jobs(
        db,
        user=None if principal.is_operator else principal.user_id,
        since=since or None,
        job_type=job_type or None,
        status=status or None,
        where=where,
        indexed=indexed,
        limit=PAGE + 1,
        offset=(page - 1) * PAGE,
    )
    if principal.projects is not None and not principal.is_operator:
        rows = [r for r in rows if r["project_id"] in principal.projects]
    return {"rows": rows[:PAGE], "more": len(rows) > PAGE, "page": page, "note": note, "indexed": indexed}
