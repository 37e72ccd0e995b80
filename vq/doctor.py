"""`vq doctor`: check what a vq installation depends on and say how to fix each problem.

Each check gives a Finding (vq/doctor_findings.py): ok, warn or fail; the CLI's exit code is
the worst finding: 0 ok, 1 warn, 2 fail. This module runs every check in order and has the
ones on this host (handlers, the embedded Redis, SQLite); vq/doctor_redis.py checks the Redis
server, vq/doctor_daemons.py the daemons and the archiver, vq/doctor_resources.py the jobs
that need more resources (GPUs) than any live worker has. Checks never raise: an
unreachable Redis is itself a finding, and the checks that need Redis are then skipped with
it named as the reason.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from pathlib import Path

import redis

from vq import doctor_daemons, doctor_redis, doctor_resources, telemetry
from vq.config import Settings
from vq.connection import describe_address, make_client
from vq.doctor_findings import Finding
from vq.history import db as historydb


def run(settings: Settings) -> list[dict]:
    """Every check, in the order an operator would fix them."""
    findings = offline(settings)
    if not settings.redis.configured:
        findings.append(_embedded(settings))
    conn = make_client(settings, socket_timeout=5.0)
    try:
        info = conn.info()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        findings.append(
            Finding(
                "redis",
                "fail",
                f"cannot reach Redis at {describe_address(settings)}: {str(exc).splitlines()[0] if str(exc) else exc}",
                "start Redis, or fix redis.url / REDIS_URL"
                if settings.redis.configured
                else "`vq redis start` (jobs can be queued) or `vq daemon` starts the embedded one",
            )
        )
        findings.append(_sqlite(settings))
        return [asdict(f) for f in findings]
    findings.append(doctor_redis.version(info))
    findings.append(doctor_redis.persistence(conn, info))
    findings.append(doctor_redis.eviction(conn, info))
    findings += doctor_daemons.daemons(conn)
    findings += doctor_resources.resources(conn, settings)
    findings.append(doctor_daemons.archiver(conn, settings))
    findings.append(_sqlite(settings))
    return [asdict(f) for f in findings]


def offline(settings: Settings) -> list[Finding]:
    """The checks that need no Redis: what `vq config check` runs on a file before a reload
    or a deploy, and `vq doctor` first."""
    findings = [Finding("config", "ok", "valid (every key known, every value in range)")]
    findings += _handlers(settings)
    traces = telemetry.described(settings)  # only when traces are asked for (docs/tracing.md)
    if traces is not None:
        findings.append(Finding("traces", *traces))
    return findings


def _handlers(settings: Settings) -> list[Finding]:
    from vq.jobtypes import job_types, load_handler

    broken = []
    for jt in job_types(settings).values():
        try:
            load_handler(jt.handler)
        except Exception as exc:  # noqa: BLE001 - any import failure is the finding
            broken.append(f"{jt.name} ({jt.handler}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if broken:
        return [
            Finding(
                "handlers",
                "fail",
                "cannot import: " + "; ".join(broken),
                "install the handler's package on this host, or fix job_types.<type>.handler (module:function)",
            )
        ]
    return [Finding("handlers", "ok", f"{len(job_types(settings))} job types, every handler importable")]


def _embedded(settings: Settings) -> Finding:
    """No Redis configured: the embedded server, which outlives daemon restarts."""
    from vq import redis_admin

    view = redis_admin.status(settings)
    if view["answering"]:
        return Finding(
            "embedded",
            "ok",
            f"embedded redis-server pid {view['pid']} in {view['dir']} (unix socket "
            "only); it outlives daemon restarts, `vq redis stop` stops it",
        )
    if view["running"]:
        return Finding(
            "embedded",
            "fail",
            f"embedded redis-server pid {view['pid']} runs but does not answer on "
            f"{view['socket']} (loading its AOF, or hung)",
            f"wait for the AOF to load; if it hangs, see {view['log']} and kill {view['pid']}",
        )
    stale = (
        f"; a stale pid file {view['stalePidFile']} (a crash or a reboot) is replaced at the next start"
        if view["stalePidFile"]
        else ""
    )
    return Finding(
        "embedded",
        "fail",
        f"the embedded Redis is not running (no Redis is configured){stale}",
        "`vq redis start` (jobs can be queued) or `vq daemon` starts it",
    )


def _sqlite(settings: Settings) -> Finding:
    path = historydb.path_for(settings)
    target = path if path.exists() else path.parent
    if not path.exists():
        probe = _first_existing(path.parent)
        if probe is None or not _writable_dir(probe):
            return Finding("sqlite", "fail", f"cannot create {path}", f"make {path.parent} writable by vq's user")
        return Finding("sqlite", "ok", f"{path} will be created (its folder is writable)")
    try:
        db = sqlite3.connect(path, timeout=2)
        db.execute("BEGIN IMMEDIATE")  # takes the write lock, writes nothing
        db.rollback()
        db.close()
    except sqlite3.Error as exc:
        return Finding(
            "sqlite", "fail", f"{target} is not writable: {exc}", f"check the owner and mode of {path} and its folder"
        )
    return Finding("sqlite", "ok", f"{path} writable")


def _first_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _writable_dir(path: Path) -> bool:
    import os

    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
