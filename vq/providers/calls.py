"""A job's calls to AI providers: the first provider its type allows that can take the
call now, failing over to the next when one is down (breaker open, 5xx, timeout) or busy
beyond its `rateLimit.maxWait`; each call counted against the provider's limits, its
breaker and its performance figures, and priced (vq/costs.py).

When no provider can take the call, the job is delayed, not failed, to the first moment
one can (its attempt is not charged); only when every provider actually failed does the
attempt count, and the job is retried with back-off like any other failure.
"""

from __future__ import annotations

import logging
import math
import time

from vq import costs
from vq.errors import PermanentError, ProviderBusy, ProviderError, ProviderUnavailable, RateLimitError
from vq.providers import http as providers
from vq.providers import stats as provider_stats
from vq.providers.gate import Grant

WAIT_IN_PLACE_S = 1.0  # a shorter wait for a provider is spent in the worker, not by rescheduling
log = logging.getLogger("vq.providers")


class ProviderCalls:
    def __init__(self, conn, settings, breakers, gate, job, chain: list[str]):
        self.conn, self.settings, self.breakers, self.gate, self.job = conn, settings, breakers, gate, job
        self.chain = chain
        self.last: str | None = None  # the provider that answered the latest call

    def call(self, payload: dict, units: dict | None = None, provider: str | None = None) -> dict:
        chain = (
            [provider]
            if provider
            else [p for p in self.chain if p not in self.settings.providers or providers.is_http(self.settings, p)]
        )
        if not chain:
            raise PermanentError("provider: this job type names no HTTP provider (job_types.<type>.providers)")
        waits: list[tuple[float, str]] = []
        failure: ProviderError | None = None
        for name in chain:
            if name not in self.settings.providers:
                known = ", ".join(self.settings.providers) or "none configured"
                raise PermanentError(f"provider: unknown provider {name!r} (configured: {known})")
            config = self.settings.providers[name]
            retry_at = self.breakers.acquire(name)
            if retry_at is not None:
                waits.append((max(0.0, retry_at - time.time()), f"{name}: circuit breaker open"))
                continue
            grant = self._grant(name, config)
            if not isinstance(grant, Grant):
                reason = f"{name}: rate limit spent ({_limit_text(config)})"
                if grant <= config.rateLimit.maxWait / 1000:
                    raise ProviderBusy(f"{reason}; waiting {grant:.1f}s for it", retry_after=grant, provider=name)
                waits.append((grant, reason))
                continue
            started = time.monotonic()
            try:
                answer = providers.call(self.settings, name, payload)
            except RateLimitError as exc:  # 429: the provider is up but wants us to slow down
                provider_stats.record(self.conn, name, "limited", _ms(started))
                self.breakers.success(name)
                if exc.retry_after <= config.rateLimit.maxWait / 1000:
                    raise ProviderBusy(str(exc), retry_after=exc.retry_after, provider=name) from None
                waits.append((exc.retry_after, str(exc)))
                continue
            except ProviderError as exc:
                provider_stats.record(self.conn, name, "failed", _ms(started))
                state = self.breakers.failure(name)
                log.warning("job %s: provider %s failed (%s); its breaker is %s", self.job.id, name, exc, state)
                exc.accounted = True
                failure = exc
                continue
            except PermanentError:
                provider_stats.record(self.conn, name, "client", _ms(started))
                self.breakers.success(name)
                raise
            finally:
                self.gate.release(grant)
            provider_stats.record(self.conn, name, "ok", _ms(started))
            self.breakers.success(name)
            used = _finite_units(answer.get("usage"))  # the provider's answer: anything may be in it
            used.update(_finite_units(units))
            costs.charge(self.conn, self.settings, self.job, name, used)
            self.last = name
            if failure is not None:
                log.info("job %s: failed over to provider %s", self.job.id, name)
            return answer
        if waits:
            wait, reason = min(waits)
            tried = "; ".join(r for _, r in sorted(waits)) + (f"; {failure}" if failure else "")
            error = ProviderUnavailable(chain[0], wait)
            error.args = (f"no provider can take the call now ({tried}); waiting {wait:.1f}s",)
            raise error
        assert failure is not None
        raise failure

    @property
    def http_chain(self) -> list[str]:
        """The providers of the chain vq calls itself, in order of preference."""
        return [p for p in self.chain if providers.is_http(self.settings, p)]

    def _grant(self, name: str, config) -> Grant | float:
        """A grant, waiting in place for a short wait within the provider's maxWait."""
        deadline = time.monotonic() + min(WAIT_IN_PLACE_S, config.rateLimit.maxWait / 1000)
        while True:
            grant = self.gate.acquire(name, config)
            if isinstance(grant, Grant) or time.monotonic() + grant > deadline:
                return grant
            time.sleep(grant)


def _limit_text(config) -> str:
    limit = config.rateLimit
    parts = []
    if limit.requests:
        parts.append(f"{limit.requests} per {limit.window // 1000}s")
    if limit.concurrent:
        parts.append(f"{limit.concurrent} at once")
    return ", ".join(parts)


def _finite_units(units: object) -> dict[str, float]:
    """The units a call consumed that can be priced and stored as JSON: finite numbers under
    text names (a NaN or Infinity in a provider's `usage` is dropped, not priced)."""
    if not isinstance(units, dict):
        return {}
    return {
        k: v
        for k, v in units.items()
        if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
