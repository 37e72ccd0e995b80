"""Batches newest first, a page at a time: `vq batch list`, GET /api/batches and the
dashboard's batches view all call `page_batches`.

Two sorted sets by creation time are the index, written in the pipeline that writes the
batch's record (the same round trip: two commands more per batch, none per job): every
batch's (member `<batch id>|<user id>`, so an entry can be dropped from both sets), and each
user's (`vq batch list --user`, a user's token). A complete batch's keys expire
batch_counts.KEEP_SECONDS after it completes (vq/lua/batch_sync.lua); its entries go at the
`sweep-batches` chore's next `trim`, or when a listing meets them first. An open batch, or
one whose jobs still run, never expires, so it stays listed however old.
"""

from __future__ import annotations

import time

from redis import Redis
from redis.client import Pipeline

from vq import keys
from vq.batch_counts import KEEP_SECONDS
from vq.batch_views import STATES, header, text_map
from vq.errors import Ambiguous, InvalidInput, NotFound

CHUNK = 200  # batches read per round trip when a status filter reads on past the page
TRIM_AT_MOST = 5000  # old entries checked per trim (the oldest first)
ID_LENGTH = 32
MIN_PREFIX = 8  # as for job ids (vq/job_ids.py): `vq tui` and `vq batch list`'s narrow columns show 12
HEX = frozenset("0123456789abcdef")


def index_in(pipe: Pipeline, batch_id: str, user_id: str, created_ms: int) -> None:
    """List a new batch (in the pipeline that writes its record)."""
    pipe.zadd(keys.BATCHES_INDEX, {f"{batch_id}|{user_id}": created_ms})
    pipe.zadd(keys.user_batches(user_id), {batch_id: created_ms})


def resolve_id(conn: Redis, text: str) -> str:
    """A batch id as people type it: the whole id, or a unique prefix of at least 8
    characters, found in the index (one ZSCAN MATCH over it; a batch older than the index is
    found by its whole id only). NotFound, or Ambiguous naming the first few."""
    if not isinstance(text, str) or not MIN_PREFIX <= len(text) <= ID_LENGTH or not set(text) <= HEX:
        raise NotFound(f"no such batch {text!r}")
    if len(text) == ID_LENGTH:
        return text
    found = sorted(
        {
            member.decode().split("|", 1)[0]
            for member, _ in conn.zscan_iter(keys.BATCHES_INDEX, match=f"{text}*", count=1000)
        }
    )
    if not found:
        raise NotFound(f"no such batch {text!r}")
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise Ambiguous(f"batch id prefix {text!r} is ambiguous: {shown} (give more characters)")
    return found[0]


def page_batches(
    conn: Redis, *, status: str | None = None, user: str | None = None, limit: int = 50, page: int = 1
) -> dict:
    """One page of batches, newest first, with how many match: `{"batches", "total",
    "offset", "page", "limit"}`. Without a status the total is the index's count (cheap);
    with one, every batch of the index is read to count the matches."""
    if status is not None and status not in STATES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATES)}", field="status")
    if page < 1 or limit < 1:
        raise InvalidInput("page and limit must be at least 1")
    offset = (page - 1) * limit
    index = keys.user_batches(user) if user else keys.BATCHES_INDEX
    gone: list[tuple[str, str]] = []
    if status is None:
        total = int(conn.zcard(index))
        views = _views(conn, _entries(conn.zrevrange(index, offset, offset + limit - 1), user), gone)
        total -= len(gone)
    else:
        views, total, start = [], 0, 0
        while entries := conn.zrevrange(index, start, start + CHUNK - 1):
            start += CHUNK
            for view in _views(conn, _entries(entries, user), gone):
                if view["state"] == status:
                    if offset <= total < offset + limit:
                        views.append(view)
                    total += 1
    _forget(conn, gone)
    if views:  # a page past the end says nothing of the total: its offset is no count
        total = max(total, offset + len(views))
    return {"batches": views, "total": total, "offset": offset, "page": page, "limit": limit}


def trim(conn: Redis, now_ms: int | None = None) -> int:
    """Drop the entries of batches whose keys expired (the `sweep-batches` chore); how many.
    Only entries older than a complete batch is kept can be gone: those are checked."""
    cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - KEEP_SECONDS * 1000
    gone: list[tuple[str, str]] = []
    for start in range(0, TRIM_AT_MOST, CHUNK):
        entries = _entries(conn.zrangebyscore(keys.BATCHES_INDEX, "-inf", cutoff, start=start, num=CHUNK), None)
        if not entries:
            break
        with conn.pipeline(transaction=False) as pipe:
            for batch_id, _user in entries:
                pipe.exists(keys.batch(batch_id))
            gone += [entry for entry, exists in zip(entries, pipe.execute()) if not exists]
    _forget(conn, gone)
    return len(gone)


def _entries(members: list, user: str | None) -> list[tuple[str, str]]:
    """(batch id, user id) of each member: of the user's set (`user` given), or of every batch's."""
    found = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else member
        found.append((text, user) if user is not None else (text[:ID_LENGTH], text[ID_LENGTH + 1 :]))
    return found


def _views(conn: Redis, entries: list[tuple[str, str]], gone: list[tuple[str, str]]) -> list[dict]:
    """The batches' views, in one round trip; the entries whose batch is gone added to `gone`."""
    with conn.pipeline(transaction=False) as pipe:
        for batch_id, _user in entries:
            pipe.hgetall(keys.batch(batch_id))
            pipe.scard(keys.batch_jobs(batch_id))
            pipe.hlen(keys.batch_ended(batch_id))
        replies = pipe.execute()
    views = []
    for i, entry in enumerate(entries):
        record, total, counted = text_map(replies[3 * i]), replies[3 * i + 1], replies[3 * i + 2]
        if record.get("id"):
            views.append(header(record, int(total), int(counted)))
        else:
            gone.append(entry)
    return views


def _forget(conn: Redis, gone: list[tuple[str, str]]) -> None:
    if not gone:
        return
    with conn.pipeline(transaction=False) as pipe:
        for batch_id, user in gone:
            pipe.zrem(keys.BATCHES_INDEX, f"{batch_id}|{user}")
            pipe.zrem(keys.user_batches(user), batch_id)
        pipe.execute()
