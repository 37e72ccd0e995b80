"""Job events: one entry per state change, appended to a Redis stream.

History, live views and metrics read the stream; workers only ever append to it. Each
event is also logged as one line (the daemon's stderr), so an operator can follow what
happens without any other tool.
"""

from __future__ import annotations

import json
import logging
import time

from redis import Redis
from redis.client import Pipeline

from vq import keys

STREAM_MAXLEN = 1_000_000  # a cap for when no archiver runs; the archiver trims what it has written
log = logging.getLogger("vq.events")


def emit(conn: Redis | Pipeline, event: str, job_id: str, job_type: str | None = None, **fields) -> None:
    """Append an event (created, queued, scheduled, deferred, started, progress, finished,
    failed, retrying, canceled, removed) for a job. `fields` must be JSON-serialisable."""
    item, webhook_url, fields = entry(event, job_id, job_type, **fields)
    conn.xadd(keys.EVENTS, item, maxlen=STREAM_MAXLEN, approximate=True)
    if webhook_url:  # the notifiers read only these, not every event of every job
        conn.xadd(keys.WEBHOOK_EVENTS, {**item, "url": webhook_url}, maxlen=STREAM_MAXLEN, approximate=True)
    say(event, job_id, job_type, fields)


def entry(event: str, job_id: str, job_type: str | None = None, **fields) -> tuple[dict, str | None, dict]:
    """(the stream entry, the webhook URL if any, the fields that were set) of an event:
    `emit`'s, and the worker's for the `finished` event its admission script appends."""
    item = {"event": event, "jobId": job_id, "jobType": job_type or "", "ts": str(int(time.time() * 1000))}
    webhook_url = fields.pop("webhookUrl", None)
    fields = {k: v for k, v in fields.items() if v is not None}
    if fields:
        item["fields"] = json.dumps(fields, separators=(",", ":"), default=str)
    return item, webhook_url, fields


def say(event: str, job_id: str, job_type: str | None, fields: dict) -> None:
    """The event's log line (for an event appended elsewhere, e.g. by a Lua script)."""
    if event != "progress":
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
        log.info("job %s %s %s%s", job_id, job_type or "", event, f" {detail}" if detail else "")


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
