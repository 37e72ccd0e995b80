"""A provider's own limits, held by every worker on every host together: requests per
window (a moving window kept by the `limits` library in Redis) and requests in flight
(leases in a Redis sorted set, so a killed worker's lapse by themselves).

`acquire` either grants a call or says how long until one could be granted; the caller
decides whether to wait, to fail over or to delay the job (vq/providers/calls.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from redis import Redis

from vq import keys
from vq.config import ProviderSettings
from vq.windows import Window

BUSY_RETRY_S = 0.2  # all in-flight slots taken: when to look again (a call's end is not announced)

_TAKE = """
-- this token's lease taken already: the same call sent again after a lost reply (redis-py)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


@dataclass
class Grant:
    provider: str
    token: str | None  # the in-flight lease, when the provider limits concurrency


class ProviderGate:
    def __init__(self, conn: Redis):
        self.conn = conn
        self.window = Window(conn, keys.PROVIDER_RATE_PREFIX)
        self._take = conn.register_script(_TAKE)

    def acquire(self, name: str, provider: ProviderSettings) -> Grant | float:
        """A Grant, or the seconds until this provider could take another request."""
        limit = provider.rateLimit
        token = None
        if limit.concurrent:
            token = uuid.uuid4().hex
            lease_ms = provider.timeout + 5000
            if not self._take(
                keys=[keys.provider_inflight(name)], args=[int(time.time() * 1000), limit.concurrent, token, lease_ms]
            ):
                return BUSY_RETRY_S
        if limit.requests:
            wait = self.window.hit(limit.requests, limit.window, name)
            if wait is not None:
                if token:
                    self.conn.zrem(keys.provider_inflight(name), token)
                return wait
        return Grant(name, token)

    def release(self, grant: Grant) -> None:
        if grant.token:
            self.conn.zrem(keys.provider_inflight(grant.provider), grant.token)

    def usage(self, name: str, provider: ProviderSettings) -> dict:
        """Requests used in the current window and requests in flight now."""
        limit = provider.rateLimit
        used = self.window.used(limit.requests, limit.window, name) if limit.requests else None
        now = int(time.time() * 1000)
        inflight = self.conn.zcount(keys.provider_inflight(name), now, "+inf")
        return {
            "requestsInWindow": used,
            "requestLimit": limit.requests or None,
            "windowMs": limit.window,
            "inFlight": inflight,
            "concurrentLimit": limit.concurrent or None,
        }
