"""Moving-window rate limits kept in Redis by the `limits` library (the one behind
Flask-Limiter), so every host counts against the same window: at most N hits in any
window of W seconds, atomically, in its own Lua. Used for AI providers' request rates
(vq/providers/gate.py) and the HTTP API's per-user limit (vq/api/ratelimit.py)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis


class Window:
    """`requests` per `window_ms` (rounded up to whole seconds, the library's unit) for any
    key, counted in Redis under `prefix`."""

    def __init__(self, conn: Redis, prefix: str):
        storage = RedisStorage("redis://", connection_pool=conn.connection_pool, key_prefix=prefix)
        self.limiter = MovingWindowRateLimiter(storage)

    @staticmethod
    def item(requests: int, window_ms: int) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(requests, max(1, math.ceil(window_ms / 1000)))

    def hit(self, requests: int, window_ms: int, key: str) -> float | None:
        """None when the hit is counted; else the seconds until the window lets one more in."""
        item = self.item(requests, window_ms)
        if self.limiter.hit(item, key):
            return None
        reset_at, _remaining = self.limiter.get_window_stats(item, key)
        return max(0.01, reset_at - time.time())

    def used(self, requests: int, window_ms: int, key: str) -> int:
        return requests - self.limiter.get_window_stats(self.item(requests, window_ms), key).remaining
