"""The archiver lease, bound to the history's home: the one SQLite file history is written to.

With several hosts, each daemon has its own `history.db` unless `history.path` is shared.
If the lease could move freely, history would be split between the files, and a file that
takes over would start from its own, older position: a gap. So the lease belongs to one
file, the home (`vq:archiver:home`: its id, host and path). Only archivers writing that file
take the lease; others stand by. The home moves only when

- Redis holds none (new or wiped): the daemons announce their files' positions for a few
  seconds and the file with the newest history claims it; or
- its archiver has not held the lease for `history.handoverAfter` seconds (the host is
  gone): another file takes over, and the log names the file that holds the earlier history.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from redis import Redis

from vq import keys, lua
from vq.replies import text_hash

SETTLE_MS = 6_000  # how long daemons announce their files before a new home is chosen


@dataclass(frozen=True)
class Outcome:
    held: bool
    how: str  # held: kept, home, claimed, took-over; not held: busy, elsewhere, waiting
    host: str | None = None  # elsewhere: the home's host; took-over: the previous home's
    path: str | None = None
    previous_db: str | None = None


def file_id(db) -> str:
    """The history file's identity, made once and kept in the file itself."""
    import uuid

    row = db.execute("SELECT value FROM archiver_state WHERE name = 'db_id'").fetchone()
    if row:
        return row[0]
    with db.conn:
        db.conn.execute("INSERT OR IGNORE INTO archiver_state (name, value) VALUES ('db_id', ?)", (uuid.uuid4().hex,))
    return db.execute("SELECT value FROM archiver_state WHERE name = 'db_id'").fetchone()[0]


def hold(
    conn: Redis,
    *,
    owner: str,
    lease_ms: int,
    db_id: str,
    path: str,
    position: str,
    now_ms: int,
    handover_ms: int,
    settle_ms: int = SETTLE_MS,
) -> Outcome:
    """Take or keep the lease for the file `db_id` (at `position`), if it is the home or may
    become it; one atomic script."""
    reply = lua.script(conn, "archiver_lease.lua")(
        keys=[keys.ARCHIVER_LEADER, keys.ARCHIVER_HOME, keys.ARCHIVER_CANDIDATES],
        args=[owner, lease_ms, db_id, now_ms, handover_ms, socket.gethostname(), path, position, settle_ms],
    )
    held, how, *rest = [part.decode() if isinstance(part, bytes) else part for part in reply]
    if how == "elsewhere":
        return Outcome(False, how, host=rest[0], path=rest[1])
    if how == "took-over":
        return Outcome(True, how, previous_db=rest[0], host=rest[1], path=rest[2])
    return Outcome(bool(held), how)


def home(conn: Redis) -> dict[str, str]:
    """The home as Redis records it: db, host, path, claimed and at (ms); {} when none."""
    return text_hash(conn.hgetall(keys.ARCHIVER_HOME))


def release(conn: Redis, owner: str, now_ms: int) -> None:
    """Give the lease up (a stopping daemon), noting when the home's archiver last ran: the
    hand-over wait counts from then."""
    script = (
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end "
        "redis.call('HSET', KEYS[2], 'at', ARGV[2]) return redis.call('DEL', KEYS[1])"
    )
    conn.eval(script, 2, keys.ARCHIVER_LEADER, keys.ARCHIVER_HOME, owner, now_ms)
