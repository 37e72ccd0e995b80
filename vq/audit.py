"""The audit trail: who changed what. Each write through the HTTP API or the CLI (create,
delete, cancel, retry, pause, resume, clear, recurring changes) appends an `audit` event
naming the acting user; the archiver files it in the history database's `audit_log`."""

from __future__ import annotations

import getpass

from redis import Redis

from vq import events


def cli_actor(tool: str = "cli") -> str:
    """The operator at a shell (or at the dashboard, `tool="tui"`): their login name."""
    try:
        return f"{tool}:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"{tool}:unknown"


def record(
    conn: Redis, actor: str, role: str, action: str, job_type: str | None = None, target: str = "-", **detail
) -> None:
    events.emit(conn, "audit", target, job_type, actor=actor, role=role, action=action, **detail)
