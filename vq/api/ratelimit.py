"""Per-user request rate limits for the HTTP API, counted in Redis so every daemon's server
shares them: at most `http.rateLimit.requests` in any window of `window` ms per user (a
moving window, vq/windows.py), 429 with Retry-After when spent."""

from __future__ import annotations

import math

from redis import Redis

from vq import keys
from vq.config import Settings
from vq.errors import VqError
from vq.windows import Window


class RateLimited(VqError):
    http_status = 429
    code = "rate_limited"
    exit_code = 2

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


_WINDOWS: dict[int, tuple[Redis, Window]] = {}


def _window(conn: Redis) -> Window:
    made = _WINDOWS.get(id(conn))
    if made is None or made[0] is not conn:
        made = _WINDOWS[id(conn)] = (conn, Window(conn, keys.API_RATE_PREFIX))
    return made[1]


def check_rate(conn: Redis, settings: Settings, user_id: str) -> None:
    limit = settings.http.rateLimit
    if limit.requests <= 0:
        return
    wait = _window(conn).hit(limit.requests, limit.window, user_id)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"rate limit: {limit.requests} requests per {math.ceil(limit.window / 1000)}s; retry in {seconds}s",
            retry_after=seconds,
        )
