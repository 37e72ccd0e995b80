"""Job ids as people type them: the whole id, or a unique prefix of at least 8 characters
(`vq show` and `--tree` print 12).

The exact id is always tried first, by the caller's own read of the job (one read: the hot
path stays as it was). Only when that finds nothing is the text taken as a prefix: first in
the history database, by a range on its primary key (`id >= p AND id < p || U+FFFF`, which
the index answers without a scan), then, when the history has none (a job not archived
yet, history kept on another host or off), by a SCAN of Redis's job keys that looks at no
more than SCAN_BUDGET keys, and last in the history again once the archiver has caught up
(a job trimmed before it was archived).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from rq.job import JOB_ID_PATTERN, Job

from vq.config import Settings
from vq.errors import Ambiguous, NotFound
from vq.replies import text

MIN_PREFIX = 8
WHOLE = 32  # vq's ids are 32 hex characters (uuid4, or uuid5 for recurring ticks and fixed graphs)
SCAN_BUDGET = 100_000  # Redis keys looked at, at most, for a prefix the history database does not know
SCAN_COUNT = 1000
MOST = 20  # candidates gathered; an ambiguous answer names the first few
SHOWN = 5
JOB_KEY_PREFIX = Job.redis_job_namespace_prefix  # rq:job:


@dataclass(frozen=True)
class Candidate:
    """A job an id prefix matches, with what decides who may see it."""

    id: str
    job_type: str | None
    user_id: str | None
    project_id: str | None
    in_history: bool  # found in the history database (it may be gone from Redis)


Visible = Callable[[Candidate], bool]


def check(text: object) -> str:
    """The text as an id to look up; a text no job id can be answers `no such job`."""
    if not isinstance(text, str) or not JOB_ID_PATTERN.fullmatch(text):
        raise NotFound(f"no such job {text!r}")
    return text


def resolve_prefix(conn: Redis, settings: Settings | None, text: str, visible: Visible | None = None) -> Candidate:
    """The one job whose id starts with `text` (the caller found no job with exactly that id).
    `visible` filters the candidates (the HTTP API: the caller's own jobs of the route's type),
    so an ambiguity never names a job the caller may not see."""
    check(text)
    if len(text) < MIN_PREFIX:
        raise NotFound(f"no such job {text!r} (an id prefix needs at least {MIN_PREFIX} characters)")
    keep = visible or (lambda _c: True)
    found = [c for c in in_history(settings, text) if keep(c)]
    cut = False
    if not found and len(text) < WHOLE:  # a whole id the caller's read did not find is not in Redis
        in_redis, cut = in_redis_keys(conn, text)
        found = [c for c in in_redis if keep(c)]
    if not found:
        from vq import trimmed

        if trimmed.catch_up(conn, settings):  # a job trimmed before the archiver wrote it down
            found = [c for c in in_history(settings, text) if keep(c)]
    if not found:
        raise NotFound(
            f"no such job {text!r}"
            + (
                f" (the history database has none, and no job key among the first {SCAN_BUDGET} of Redis "
                "starts with it: give the whole id)"
                if cut
                else ""
            )
        )
    if len(found) > 1:
        raise ambiguous(text, [c.id for c in found])
    return found[0]


def in_history(settings: Settings | None, prefix: str) -> list[Candidate]:
    """Jobs of this host's history database whose id starts with `prefix` (not removed ones)."""
    if settings is None:
        return []
    from vq.errors import HistoryUnavailable
    from vq.history import db as historydb

    if not historydb.path_for(settings).exists():
        return []
    try:
        db = historydb.open_db(settings, create=False)
    except HistoryUnavailable:
        return []  # a fallback; `vq history` and the archiver say what is wrong with the file
    try:
        return prefix_rows(db, prefix)
    finally:
        db.conn.close()


def prefix_rows(db, prefix: str, removed: bool = False) -> list[Candidate]:
    """Rows of a history database whose id starts with `prefix`: a range on the primary key
    (BINARY order: U+FFFF sorts after every character an id may have). Removed jobs only
    when asked (`vq history` still has theirs; `vq show` does not answer for them)."""
    rows = db.execute(
        "SELECT id, job_type, user_id, project_id FROM render_jobs WHERE id >= ? AND id < ?"
        + ("" if removed else " AND status IS NOT 'removed'")
        + " ORDER BY id LIMIT ?",
        [prefix, prefix + "\uffff", MOST],
    )
    return [Candidate(row[0], row[1], row[2], row[3], True) for row in rows.fetchall()]


def ambiguous(text: str, ids: list[str]) -> Ambiguous:
    """The error for a prefix several jobs start with: one line naming some of them."""
    ids = sorted(ids)
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return Ambiguous(
        f"job id {text!r} is ambiguous: {len(ids)}{'+' if len(ids) >= MOST else ''} jobs start "
        f"with it: {', '.join(ids[:SHOWN])}{more}; give more characters",
        field="jobId",
    )


def in_redis_keys(conn: Redis, prefix: str) -> tuple[list[Candidate], bool]:
    """Jobs in Redis whose id starts with `prefix`, by SCAN (ids hold no glob characters), and
    whether the SCAN stopped at its budget before the end of the keyspace."""
    ids: list[str] = []
    cursor, looked = 0, 0
    while True:
        cursor, found = conn.scan(cursor, match=f"{JOB_KEY_PREFIX}{prefix}*", count=SCAN_COUNT)
        for key in found:
            rest = text(key)[len(JOB_KEY_PREFIX) :]
            if ":" not in rest and rest not in ids:  # not a job's dependents / dependencies set
                ids.append(rest)
        looked += SCAN_COUNT
        if cursor == 0 or len(ids) >= MOST:
            break
        if looked >= SCAN_BUDGET:
            return _with_owners(conn, ids), True
    return _with_owners(conn, ids), False


def _with_owners(conn: Redis, ids: list[str]) -> list[Candidate]:
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Job.key_for(job_id), "meta")
        metas = pipe.execute() if ids else []
    out = []
    for job_id, raw in zip(ids, metas):
        if raw is None:
            continue
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = {}
        out.append(Candidate(job_id, meta.get("jobType"), meta.get("userId"), meta.get("projectId"), False))
    return out
