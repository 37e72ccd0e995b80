"""Per-user request rate limits for the HTTP API, counted in Redis so every daemon's server
shares them: a fixed window per user (`http.rateLimit`), 429 with Retry-After when spent."""

from __future__ import annotations

import math

from redis import Redis

from vq import keys
from vq.config import Settings
from vq.errors import VqError

_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('PTTL', KEYS[1])}
"""


class RateLimited(VqError):
    http_status = 429
    code = "rate_limited"
    exit_code = 2

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


def check_rate(conn: Redis, settings: Settings, user_id: str) -> None:
    limit = settings.http.rateLimit
    if limit.requests <= 0:
        return
    count, ttl_ms = conn.eval(_COUNT, 1, keys.api_rate(user_id), limit.window)
    if int(count) > limit.requests:
        wait = max(1, math.ceil(int(ttl_ms) / 1000))
        raise RateLimited(f"rate limit: {limit.requests} requests per {limit.window // 1000}s; "
                          f"retry in {wait}s", retry_after=wait)
