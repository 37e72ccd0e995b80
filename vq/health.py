"""`vq health`: healthy / degraded / unhealthy / error, per queue and overall, from the
thresholds in config `health:` (README: Health). Reads counters, registries and metric
buckets only. `check_and_alert` (run by one daemon every `health.checkInterval`) logs a
change of the overall status and POSTs it to the configured webhooks.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import redis
from redis import Redis

from vq import admission, keys, metrics, presence, queues
from vq.config import Settings, Thresholds
from vq.execution import providers_of
from vq.jobtypes import job_types
from vq.model import iso
from vq.providers import breaker
from vq.replies import optional_text
from vq.webhooks import post_json, secret_of
from vq.workers import listing as worker_listing

LEVELS = ("healthy", "degraded", "unhealthy", "error")
EXIT_CODES = {"healthy": 0, "degraded": 1, "unhealthy": 2, "error": 3}  # as Nagios/Icinga plugins do
log = logging.getLogger("vq.health")


def _worst(*statuses: str) -> str:
    return max(statuses, key=LEVELS.index, default="healthy")


def _grade(value: float, limits: Thresholds) -> str:
    if value >= limits.unhealthy:
        return "unhealthy"
    if value >= limits.degraded:
        return "degraded"
    return "healthy"


def _redis(conn: Redis, settings: Settings) -> dict:
    info = conn.info("memory")
    used, cap = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
    ratio = used / cap if cap else None
    return {
        "reachable": True,
        "usedMemory": used,
        "maxMemory": cap or None,
        "memoryRatio": round(ratio, 4) if ratio is not None else None,
        "status": _grade(ratio, settings.health.redisMemory) if ratio is not None else "healthy",
    }


def check(
    conn: Redis, settings: Settings, counts: list[dict] | None = None, breakers: list[dict] | None = None
) -> dict:
    """The health report (from `queues.counts` and `breaker.states` when the caller has them
    already). Never raises for an unreachable Redis: that is status `error`."""
    checked = iso(datetime.now(UTC))
    try:
        return _check(conn, settings, checked, counts, breakers)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return {
            "status": "error",
            "checkedAt": checked,
            "reasons": [f"Redis unreachable: {str(exc).splitlines()[0]}"],
            "redis": {"reachable": False},
            "queues": [],
            "workers": {"alive": 0, "total": 0},
            "breakers": [],
            "crashLoops": [],
            "problems": [],
        }


def _check(
    conn: Redis, settings: Settings, checked: str, known_counts: list[dict] | None, known_breakers: list[dict] | None
) -> dict:
    h = settings.health
    now = int(time.time() * 1000)
    current = metrics.read_window(conn, h.window, end_ms=now)
    previous = metrics.read_window(conn, h.window, end_ms=now - h.window)
    counts = {row["jobType"]: row for row in (known_counts or queues.counts(conn, settings))}
    workers = worker_listing(conn, h.heartbeatAge)
    alive = [w for w in workers if w["alive"]]
    states = known_breakers if known_breakers is not None else breaker.states(conn, settings)
    open_breakers = [b["provider"] for b in states if b["state"] == "open"]
    types = job_types(settings)
    waited = admission.longest_waits(conn, list(types), now)
    rows = []
    for name, jt in types.items():
        c, before = current.type(name), previous.type(name)
        row = counts[name]
        ended = c["finished"] + c["failed"]
        failure_rate = c["failed"] / ended if ended else 0.0
        backlog_ms = waited[name]
        backlog = row["queued"] + row["limited"]
        serving = [w for w in alive if any(q.rpartition(".")[0] == name for q in w["queues"])]
        reasons: list[tuple[str, str]] = []
        if ended >= h.minEnded:
            grade = _grade(failure_rate, h.failureRate)
            if grade != "healthy":
                reasons.append((grade, f"failure rate {failure_rate:.0%} over the last {h.window // 1000}s"))
        if c["failed"] >= h.minEnded and c["failed"] >= h.errorTrend * max(1, before["failed"]):
            reasons.append(("degraded", f"failures rising: {c['failed']} vs {before['failed']} the window before"))
        grade = _grade(backlog_ms, h.backlogAge)
        if grade != "healthy":
            reasons.append((grade, f"oldest waiting job has waited {backlog_ms // 1000}s"))
        grade = _grade(c["stalled"], h.stalled)
        if grade != "healthy":
            reasons.append((grade, f"{c['stalled']} stalled job(s) recovered in the window"))
        if backlog and not serving and not row["paused"]:
            reasons.append(("unhealthy", f"{backlog} job(s) waiting and no live worker serves this type"))
        blocked = [p for p in providers_of(jt, {}) if p in open_breakers]
        if blocked:
            reasons.append(("degraded", f"circuit breaker open: {', '.join(blocked)}"))
        rows.append(
            {
                "jobType": name,
                "status": _worst(*(g for g, _ in reasons)),
                "reasons": [text for _, text in reasons],
                "failureRate": round(failure_rate, 4),
                "failed": c["failed"],
                "failedBefore": before["failed"],
                "backlog": backlog,
                "backlogAgeMs": backlog_ms,
                "stalled": c["stalled"],
                "workers": len(serving),
                "paused": row["paused"],
            }
        )
    redis_report = _redis(conn, settings)
    loops, loops_grade = crash_loops(conn, now)
    problems = process_problems(conn, now)
    overall_reasons = []
    if redis_report["status"] != "healthy":
        overall_reasons.append(f"Redis memory at {redis_report['memoryRatio']:.0%} of maxmemory")
    if not alive:
        overall_reasons.append("no live worker")
    if open_breakers:
        overall_reasons.append(f"circuit breaker open: {', '.join(open_breakers)}")
    overall_reasons += [loop["reason"] for loop in loops]
    overall_reasons += [p["reason"] for p in problems]
    status = _worst(
        redis_report["status"],
        *(r["status"] for r in rows),
        loops_grade,
        "degraded" if not alive or open_breakers or problems else "healthy",
    )
    overall_reasons += [f"{r['jobType']}: {text}" for r in rows for text in r["reasons"]]
    return {
        "status": status,
        "checkedAt": checked,
        "reasons": overall_reasons,
        "redis": redis_report,
        "workers": {"alive": len(alive), "total": len(workers), "list": workers},
        "breakers": open_breakers,
        "queues": rows,
        "crashLoops": loops,
        "problems": problems,
    }


def process_problems(conn: Redis, now_ms: int) -> list[dict]:
    """What keeps a live daemon's process from working, as it says itself (the archiver
    when the history database cannot be used: jobs run, history waits): degraded."""
    out = []
    for p in presence.problems(conn):
        since = max(0, now_ms - p["sinceMs"]) // 1000
        out.append({**p, "reason": f"{p['process']} of daemon {p['daemon']} for {since}s: {p['line']}"})
    return out


def crash_loops(conn: Redis, now_ms: int) -> tuple[list[dict], str]:
    """The processes the live daemons report crash-looping (vq/supervision.py), each with
    a reason, and their grade: degraded, unhealthy when every worker process of every live
    daemon is in one (no job can run)."""
    live = [d for d in presence.daemons(conn) if d["live"]]
    loops = []
    for d in live:
        for name, loop in sorted((d.get("crashLoops") or {}).items()):
            since = max(0, now_ms - (loop.get("sinceMs") or now_ms)) // 1000
            loops.append(
                {
                    "daemon": f"{d['host']}:{d['pid']}",
                    "process": name,
                    **loop,
                    "reason": f"{name} of daemon {d['host']}:{d['pid']} is crash-looping: died {loop['deaths']} "
                    f"times, looping for {since}s, last: {loop['lastError']}",
                }
            )
    if not loops:
        return [], "healthy"
    workers = {(d["host"], d["pid"], n) for d in live for n in d.get("processes", {}) if n.startswith("worker-")}
    looping = {(d["host"], d["pid"], n) for d in live for n in (d.get("crashLoops") or {}) if n.startswith("worker-")}
    return loops, "unhealthy" if workers and workers <= looping else "degraded"


def check_and_alert(conn: Redis, settings: Settings) -> None:
    """Check; when the overall status differs from the last check's, log it (a warning when
    worse) and POST the report to each webhook. Logs itself, so returns nothing for the
    daemon's chore to log."""
    report = check(conn, settings)
    previous = optional_text(conn.getset(keys.HEALTH_LAST, report["status"])) or "healthy"
    if previous == report["status"]:
        return
    payload = {
        "event": "health.changed",
        "from": previous,
        "to": report["status"],
        "at": report["checkedAt"],
        "reasons": report["reasons"],
        "health": report,
    }
    for url in settings.health.webhooks:
        problem = post_json(url, payload, timeout=5, secret=secret_of(settings), agent="vq-health")
        if problem:
            log.warning("health alert to %s failed: %s", url, problem)
    line = f"health changed: {previous} -> {report['status']}" + (
        f" ({'; '.join(report['reasons'][:3])})" if report["reasons"] else ""
    )
    (log.warning if LEVELS.index(report["status"]) > LEVELS.index(previous) else log.info)(line)
