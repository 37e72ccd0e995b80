"""Folding a batch of events into the metric buckets in Redis (vq/metrics.py), each event
once: the increments and the new counted position go in one transaction, on the condition
that the position is still where this archiver read it."""

from __future__ import annotations

import redis
from redis import Redis

from vq import keys, metrics
from vq.replies import optional_text


def counted_id(conn: Redis) -> str:
    """The id of the last event counted ("0-0": none yet)."""
    return optional_text(conn.get(keys.ARCHIVER_APPLIED)) or "0-0"


def count(conn: Redis, counted: str, batch: list[dict]) -> None:
    """The batch's metric increments and the new position in one transaction, on the
    condition that the position is still `counted`: even an archiver that lost its lease
    without knowing it cannot count an event twice."""
    with conn.pipeline() as pipe:
        try:
            pipe.watch(keys.ARCHIVER_APPLIED)
            current = pipe.get(keys.ARCHIVER_APPLIED)
            if (optional_text(current) or "0-0") != counted:
                return
            pipe.multi()
            metrics.apply_in(pipe, metrics.fold(batch))
            pipe.set(keys.ARCHIVER_APPLIED, batch[-1]["id"])
            pipe.execute()
        except redis.WatchError:
            return  # another archiver moved on; the next step starts from its position
