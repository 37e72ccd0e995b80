"""An unusable history database (it cannot be opened or written: a full disk, a bad path),
as the archiver reports it: one line per distinct problem, never a traceback per try,
published for `vq health` and `vq doctor`, and said once when it recovers. Jobs run on
meanwhile; their events wait in the stream."""

from __future__ import annotations

import logging
import time

import redis
from redis import Redis

from vq import keys, presence

log = logging.getLogger("vq.archiver")
RETRY_MAX = 10.0  # s between tries at most while the history database cannot be used


class Unusable:
    """The problem said (None: the database works), as published, and the back-off."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problem: str | None = None  # why the history database cannot be used, said once
        self.published: str | None = None  # the problem as published for health and doctor
        self.since_ms = 0
        self.retry_in = 0.0  # seconds between tries while the database cannot be used

    def said(self, conn: Redis, line: str) -> float:
        """Report `line` (once per distinct problem) and publish it; returns how long to wait
        before the next try, longer each time up to RETRY_MAX."""
        if line != self.problem:
            if self.problem is None:
                self.since_ms = int(time.time() * 1000)
            self.problem = line
            log.warning(
                "archiver: %s; jobs run on, their events wait in Redis (%s) and the archiver retries "
                "(every %d s at most), catching up once it can write",
                line,
                keys.EVENTS,
                RETRY_MAX,
            )
        if self.published != line:
            try:
                presence.say_problem(conn, "archiver", line, self.since_ms)
                self.published = line
            except redis.RedisError:
                pass  # Redis is away too: published at a later try
        self.retry_in = min(RETRY_MAX, self.retry_in * 2 or 0.5)
        return self.retry_in

    def usable(self, conn: Redis) -> None:
        """The database worked (it opened, or took a write): if it had not,
        say once that it recovered and withdraw the published problem."""
        self.retry_in = 0.0
        if self.published is not None:
            presence.say_problem(conn, "archiver", None)  # Redis away: the outer loop retries
            self.published = None
        if self.problem is not None:
            self.problem = None
            log.warning(
                "archiver: history database %s usable again; catching up with the events that waited", self.path
            )
