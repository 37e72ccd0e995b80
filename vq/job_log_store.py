"""Per-job logs, the reader's side: a job's lines from Redis while it has them, else from
the history database, where the archiver copies them when the job ends (`vq logs`, the
HTTP routes and the TUI's job screen call `read`). The worker's side is vq/job_logs.py.

Each line has a sequence number; a jump between two lines is where lines were dropped
(limits.maxLogLines, limits.maxLogBytes): `with_gaps` turns it into a `{"dropped": N}` item.
"""

from __future__ import annotations

import json
import time

from redis import Redis

from vq import keys
from vq.config import Settings
from vq.model import TERMINAL

ARCHIVE_BATCH = 200  # ended jobs' logs copied per archiver step
ENDING_EVENTS = frozenset({"finished", "failed", "canceled", "removed"})  # after these a job's log is whole
TABLE = "job_logs"
COLUMNS = {"job_id": str, "seq": int, "at": float, "level": str, "message": str, "attempt": int}


def entry(raw: bytes | str) -> dict:
    """A stored line as the API gives it: seq, time (epoch seconds), level, message, attempt."""
    item = json.loads(raw)
    return {
        "seq": int(item["seq"]),
        "time": float(item["t"]),
        "level": str(item["level"]),
        "message": str(item["msg"]),
        "attempt": int(item.get("attempt") or 0),
    }


def with_gaps(lines: list[dict], after: int = 0) -> list[dict]:
    """The lines with a `{"dropped": N}` item wherever their sequence jumps."""
    out: list[dict] = []
    previous = after
    for line in lines:
        if line["seq"] > previous + 1:
            out.append({"dropped": line["seq"] - previous - 1})
        out.append(line)
        previous = line["seq"]
    return out


def from_redis(conn: Redis, job_id: str, after: int = 0) -> list[dict] | None:
    """The job's lines after `after` in Redis; None when Redis holds no log for it."""
    raw = conn.lrange(keys.job_log(job_id), 0, -1)
    if not raw:
        return None
    return [line for line in map(entry, raw) if line["seq"] > after]


def from_history(settings: Settings | None, job_id: str, after: int = 0) -> list[dict]:
    """The job's archived lines after `after` ([] without a history database)."""
    from vq.errors import HistoryUnavailable
    from vq.history import db as historydb

    if settings is None or not historydb.path_for(settings).exists():
        return []
    try:
        db = historydb.open_db(settings, create=False)
    except HistoryUnavailable:
        return []
    try:
        if TABLE not in db.table_names():
            return []
        rows = db.query(
            f"SELECT seq, at, level, message, attempt FROM {TABLE} WHERE job_id = ? AND seq > ? ORDER BY seq",
            [job_id, after],
        )
        return [
            {"seq": r["seq"], "time": r["at"], "level": r["level"], "message": r["message"], "attempt": r["attempt"]}
            for r in rows
        ]
    finally:
        db.conn.close()


def read(
    conn: Redis, settings: Settings | None, job_id: str, status: str, after: int = 0, trimmed: bool = False
) -> dict:
    """A job's log after line `after`: {id, status, ended, lines (with dropped items)}.
    `job_id` is a whole id the caller found (and may see); the history database is read
    only for a job Redis no longer has (`trimmed`): while the job is in Redis, so is its log."""
    lines = from_redis(conn, job_id, after)
    if lines is None:
        lines = from_history(settings, job_id, after) if trimmed else []
    return {"id": job_id, "status": status, "ended": status in TERMINAL, "lines": with_gaps(lines, after)}


def last_seq(lines: list[dict], after: int) -> int:
    """Where the next read starts: the last line's sequence number."""
    seqs = [line["seq"] for line in lines if "seq" in line]
    return max(seqs) if seqs else after


def ensure_table(db) -> None:
    """The history database's table of archived lines (vq/history/db.py ensure_schema)."""
    table = db.table(TABLE)
    table.create(COLUMNS, pk=("job_id", "seq"), if_not_exists=True)
    table.create_index(["at"], if_not_exists=True)


def archive_ended(conn: Redis, db, due: list[str]) -> int:
    """Copy the logs of jobs that have ended into the history database, then let their
    keys expire with the job (a job kept for ever keeps them; a job gone takes them).
    `due`: jobs the archiver saw end (their `finished`, `failed`, `canceled` or `removed`
    event; vq/history/log_copies.py), at most ARCHIVE_BATCH: one SMISMEMBER keeps
    those that logged. So the copy costs nothing while no job ends, however many running
    jobs have logs; `sweep` finds the ends the archiver did not see."""
    if not due:
        return 0
    held = conn.smismember(keys.JOB_LOGS_PENDING, due)
    return _archive(conn, db, [job_id for job_id, logged in zip(due, held, strict=True) if logged])


def sweep(conn: Redis, db, cursor: int = 0, count: int = ARCHIVE_BATCH) -> tuple[int, int]:
    """The backstop for jobs whose end the archiver did not see (it started after it, or
    the event was lost): the pending set's members from `cursor` on, `count` or so at a
    time (SSCAN: every member is visited in turn); returns (the next cursor, 0 when
    the round is done; how many jobs' logs it copied)."""
    cursor, members = conn.sscan(keys.JOB_LOGS_PENDING, cursor, count=count)
    copied = _archive(conn, db, [m.decode() if isinstance(m, bytes) else str(m) for m in members])
    return int(cursor), copied


def _archive(conn: Redis, db, ids: list[str]) -> int:
    """Copy the logs of those of `ids` that have ended (or are gone); returns how many."""
    if not ids:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(keys.rq_job(job_id), "status")
            pipe.pttl(keys.rq_job(job_id))
        answers = pipe.execute()
    ended = []
    for index, job_id in enumerate(ids):
        status, ttl = answers[2 * index], answers[2 * index + 1]
        status = status.decode() if isinstance(status, bytes) else status
        if status is None or status in TERMINAL:
            ended.append((job_id, ttl))
    if not ended:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for job_id, _ttl in ended:
            pipe.lrange(keys.job_log(job_id), 0, -1)
        lists = pipe.execute()
    rows = [
        {"job_id": job_id, **_row(entry(raw))}
        for (job_id, _ttl), raws in zip(ended, lists, strict=True)
        for raw in raws
    ]
    if rows:
        ensure_table(db)  # a database made before per-job logs gains its table here
        with db.conn:  # one statement for all (sqlite-utils' upsert_all took six times as long)
            db.conn.executemany(
                f"INSERT OR REPLACE INTO {TABLE} (job_id, seq, at, level, message, attempt) "
                "VALUES (:job_id, :seq, :at, :level, :message, :attempt)",
                rows,
            )
    with conn.pipeline(transaction=False) as pipe:
        for job_id, ttl in ended:
            names = (keys.job_log(job_id), keys.job_log_meta(job_id))
            for name in names:
                if ttl is None or ttl == -2:
                    pipe.delete(name)
                elif ttl == -1:
                    pipe.persist(name)
                else:
                    pipe.pexpire(name, ttl)
            pipe.srem(keys.JOB_LOGS_PENDING, job_id)
        pipe.execute()
    return len(ended)


def _row(line: dict) -> dict:
    return {
        "seq": line["seq"],
        "at": line["time"],
        "level": line["level"],
        "message": line["message"],
        "attempt": line["attempt"],
    }


def prune(db, cutoff_epoch: float) -> None:
    """Lines older than the history's retention go, as the job rows do."""
    if TABLE in db.table_names():
        db.conn.execute(f"DELETE FROM {TABLE} WHERE at < ?", (cutoff_epoch,))


def show(conn: Redis, settings: Settings | None, job_id: str, after: int = 0, visible=None) -> dict:
    """The log of the job `job_id` names (a whole id or a unique prefix; NotFound when there
    is no such job), after line `after`."""
    from vq import jobs

    view = jobs.show(conn, job_id, settings, explain=False, visible=visible)
    return read(conn, settings, view["id"], view["status"], after, bool(view.get("trimmed")))


def follow(conn: Redis, settings: Settings | None, job_id: str, after: int = 0, every: float = 0.5):
    """Each new part of the job's log, polled every `every` seconds, until the job has
    ended (the last part has `ended`: true). The job is read before its lines, so the
    lines of a job seen ended are all there (its handler's last lines are written before
    its end)."""
    while True:
        part = show(conn, settings, job_id, after)
        yield part
        if part["ended"]:
            return
        job_id, after = part["id"], last_seq(part["lines"], after)
        time.sleep(every)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c != 0x09}


def printable(message: str) -> str:
    """The message safe for a terminal: control characters (ANSI escapes, carriage
    returns, newlines) written out as `\\x1b` and the like, never acted on. Rich markup is
    left as text for the caller to show literally (rich's Text, not a markup string)."""
    return message.translate(_CONTROL)
