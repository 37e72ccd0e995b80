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
    """Count one request of `user_id`; RateLimited (429, Retry-After) when the window is spent.

    Called on the event loop for every authenticated request (vq/api/context.py), not through
    the thread pool: it is one Redis round trip (the library's Lua, ~0.2 ms), while the hop
    to a pool thread and back cost more CPU than the check (0.45 against 0.18 ms per
    request) and needs a free thread (docs/benchmarks.md, HTTP submit). The price is `Context.create`'s: while it waits on
    Redis the child's other requests wait too, as long as Redis does when it stalls."""
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
