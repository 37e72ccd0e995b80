"""Job events: one entry per state change, appended to a Redis stream.

History, live views and metrics read the stream; workers only ever append to it. Each
event is also logged as one line (the daemon's stderr), so an operator can follow what
happens without any other tool. A worker process writes these lines in batches, every half
second (vq/log_batching.py): the stream, not the log, is the record of what happened.
"""

from __future__ import annotations

import json
import logging
import time

from redis import Redis
from redis.client import Pipeline

from vq import keys, lua

STREAM_MAXLEN = 1_000_000  # a cap for when no archiver runs; the archiver trims what it has written
MARK_MS = 60_000  # how long an appended event's mark is kept: longer than redis-py's retries take (10 s timeouts, two retries)
LOGGER = "vq.events"  # a worker process writes its lines in batches (vq/log_batching.py)
log = logging.getLogger(LOGGER)


def emit(conn: Redis | Pipeline, event: str, job_id: str, job_type: str | None = None, **fields) -> None:
    """Append an event (created, queued, scheduled, deferred, started, progress, finished,
    failed, retrying, canceled, removed) for a job, and log its line: `append`, then `say`."""
    say(event, job_id, job_type, append(conn, event, job_id, job_type, **fields))


def append(
    conn: Redis | Pipeline,
    event: str,
    job_id: str,
    job_type: str | None = None,
    *,
    result: str | None = None,
    data: str | None = None,
    **fields,
) -> dict:
    """Append an event for a job, without its log line; returns the fields set, for `say`.
    `fields` must be JSON-serialisable; `result` is a finished job's result as JSON text (see
    `entry`). For a transaction that may not apply (WATCH): the event lands with the change
    it tells of, in the same step, so no other client's event about the job can come between
    them in the stream, and the caller says the line only once the transaction has applied."""
    item, webhook_url, fields = entry(event, job_id, job_type, result=result, data=data, **fields)
    # Once, even when redis-py sends it again after a lost reply (vq/lua/event_once.lua); the
    # webhook notifiers' copy in the same step (they read only those, not every event).
    # By its text: a pipeline cannot load a script Redis lacks.
    names = lua.names("event_once.lua")
    conn.eval(
        lua.source("event_once.lua"),
        len(names) + 1,
        *names,
        keys.event_mark(job_id, event, item["ts"]),
        MARK_MS,
        STREAM_MAXLEN,
        webhook_url or "",
        *(part for pair in item.items() for part in pair),
    )
    return fields


def entry(
    event: str,
    job_id: str,
    job_type: str | None = None,
    *,
    result: str | None = None,
    data: str | None = None,
    **fields,
) -> tuple[dict, str | None, dict]:
    """(the stream entry, the webhook URL if any, the fields that were set) of an event:
    `emit`'s, and the worker's for the `finished` event its admission script appends.

    A finished job's `result` (JSON text, already serialized for the job's hash) rides in an
    entry field of its own, not in `fields` (no second encoding, not in the log line): the
    archiver copies it to the history database, which answers for the job once it is trimmed.
    So does a `created` (or `debounced`) event's `data`: the job's data as JSON text, sealed as
    in Redis, for `--where` on data fields (vq/history/search.py)."""
    item = {"event": event, "jobId": job_id, "jobType": job_type or "", "ts": str(int(time.time() * 1000))}
    webhook_url = fields.pop("webhookUrl", None)
    fields = {k: v for k, v in fields.items() if v is not None}
    if fields:
        item["fields"] = json.dumps(fields, separators=(",", ":"), default=str)
    if result is not None:
        item["result"] = result
    if data is not None:
        item["data"] = data
    return item, webhook_url, fields


def result_for_history(result_json: str | None, max_bytes: int) -> str | None:
    """The result text a `finished` event carries: itself when at most `max_bytes` long
    (history.maxResultBytes), else none (the history then has no result for the job)."""
    if result_json is None or max_bytes <= 0 or len(result_json) > max_bytes or len(result_json.encode()) > max_bytes:
        return None
    return result_json


def say(event: str, job_id: str, job_type: str | None, fields: dict) -> None:
    """The event's log line (for an event appended elsewhere, e.g. by a Lua script)."""
    if event != "progress":
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
        extra = {
            "event": event,
            "job_id": job_id,
            "job_type": job_type or None,
            "user_id": fields.get("userId"),
            "attempt": fields.get("attempt"),
            "worker": fields.get("worker"),
        }
        log.info(
            "job %s %s %s%s",
            job_id,
            job_type or "",
            event,
            f" {detail}" if detail else "",
            extra={k: v for k, v in extra.items() if v not in (None, "")},
        )


def is_stream_id(text: str) -> bool:
    """A Redis stream id, `<ms>-<seq>`, each part a 64-bit unsigned number as Redis takes it."""
    ms, dash, seq = text.partition("-")
    parts = (ms, seq)
    return bool(dash) and all(p.isascii() and p.isdigit() and int(p) < 2**64 for p in parts)


def read(conn: Redis, since: str = "0-0", count: int = 1000, block_ms: int | None = None) -> list[dict]:
    """Events after `since` (a stream id), oldest first, each a dict with an `id`."""
    return parse(conn.xread({keys.EVENTS: since}, count=count, block=block_ms))


async def read_async(conn, since: str, count: int = 1000, block_ms: int | None = None) -> list[dict]:
    """`read` on an asyncio client."""
    return parse(await conn.xread({keys.EVENTS: since}, count=count, block=block_ms))


def parse(response) -> list[dict]:
    """XREAD's reply as event dicts."""
    out = []
    for _stream, entries in response or []:
        for entry_id, raw in entries:
            item = {k.decode(): v.decode() for k, v in raw.items()}
            item["id"] = entry_id.decode()
            item["ts"] = int(item["ts"])
            item["fields"] = json.loads(item["fields"]) if "fields" in item else {}
            out.append(item)
    return out
