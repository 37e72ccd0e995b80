"""Circuit breakers, one per AI provider, shared by every worker and host through Redis.

Closed: calls go through; provider failures are counted in a sliding window. After
`failureThreshold` of them within `window` the breaker opens: jobs that need the
provider are delayed (not failed, not charged an attempt) until `cooldown` has passed.
Then it is half-open: one job is let through as a probe; its success closes the breaker,
its failure opens it again.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC

from redis import Redis

from vq import keys, lua
from vq.config import BreakerSettings, Settings
from vq.replies import text_hash, texts


def settings_for(settings: Settings, provider: str) -> BreakerSettings:
    configured = settings.providers.get(provider)
    return configured.breaker if configured else settings.breaker


class Breakers:
    def __init__(self, conn: Redis, settings: Settings):
        self.conn = conn
        self.settings = settings
        self._script = lua.script(conn, "breaker.lua")

    def _call(self, action: str, provider: str):
        b = settings_for(self.settings, provider)
        now = int(time.time() * 1000)
        return self._script(
            keys=[keys.breaker(provider), keys.breaker_failures(provider), keys.BREAKERS],
            args=[action, now, b.failureThreshold, b.window, b.cooldown, uuid.uuid4().hex, provider],
        )

    def acquire(self, provider: str) -> float | None:
        """None when a call may go ahead; else the epoch seconds when to try again."""
        reply = self._call("acquire", provider)
        if reply[0] == b"ok":
            return None
        return int(reply[1]) / 1000

    def failure(self, provider: str) -> str:
        return self._call("failure", provider).decode()

    def success(self, provider: str) -> None:
        self._call("success", provider)


def states(conn: Redis, settings: Settings) -> list[dict]:
    """Every provider declared in config or with a breaker record: state, recent failures,
    next probe. Only names config bounds (vq/providers/http.py `known`, and `other`) are shown: a
    record an older vq made from a name in job data stays hidden."""
    from vq.providers.http import OTHER, known

    allowed = set(known(settings)) | {OTHER}
    names = sorted(set(settings.providers) | (set(texts(conn.smembers(keys.BREAKERS))) & allowed))
    now = int(time.time() * 1000)
    out = []
    for name in names:
        record = text_hash(conn.hgetall(keys.breaker(name)))
        b = settings_for(settings, name)
        failures = conn.zcount(keys.breaker_failures(name), now - b.window, "+inf")
        state = record.get("state", "closed")
        next_probe = int(record.get("nextProbe", 0) or 0)
        if state == "open" and now >= next_probe:
            state = "half_open"  # the next job will be the probe
        out.append(
            {
                "provider": name,
                "state": state,
                "failures": failures,
                "threshold": b.failureThreshold,
                "nextProbe": _iso(next_probe) if state == "open" else None,
                "kind": settings.providers[name].kind if name in settings.providers else "local",
            }
        )
    return out


def _iso(ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
