"""vq's RQ queue class: RQ's Queue with pausing and never-early scheduling.

Every vq code path that builds an RQ queue uses `rq_queue()`, so these rules hold for
new jobs, retries and the scheduler alike.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from redis import Redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.serializers import JSONSerializer

from vq import keys


def ceil_to_second(moment: datetime) -> datetime:
    """RQ's scheduled registry stores whole seconds (truncating); rounding up first means a
    delayed job or a retry never starts before its time."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


PAUSED_CACHE_SECONDS = 0.5
_paused_cache: tuple[float, set[str]] = (0.0, set())


def paused_types(connection: Redis) -> set[str]:
    """The paused job types, read at most twice a second per process (one fewer round
    trip per job); a pause takes effect within a second."""
    global _paused_cache
    read_at, paused = _paused_cache
    if time.monotonic() - read_at >= PAUSED_CACHE_SECONDS:
        paused = {p.decode() for p in connection.smembers(keys.PAUSED)}
        _paused_cache = (time.monotonic(), paused)
    return paused


class VqQueue(Queue):
    @classmethod
    def dequeue_any(cls, queues, timeout, connection, **kwargs):
        """Skip the queues of paused job types."""
        paused = paused_types(connection)
        active = [q for q in queues if keys.split_queue_name(q.name)[0] not in paused] if paused else list(queues)
        if not active:
            if timeout is None:
                return None
            time.sleep(min(timeout, 1))
            raise DequeueTimeout(timeout, [q.key for q in queues])
        return super().dequeue_any(active, timeout, connection, **kwargs)

    def schedule_job(self, job, datetime, pipeline=None, unique=False):  # noqa: A002 - RQ's name
        return super().schedule_job(job, ceil_to_second(datetime), pipeline=pipeline, unique=unique)


def rq_queue(conn: Redis, name: str) -> VqQueue:
    return VqQueue(name, connection=conn, serializer=JSONSerializer)
