"""How each AI provider performs, from every call any worker made: calls and outcomes per
minute (kept two days) and the latest 1,000 answered calls' latencies, read by `vq
providers`, GET /api/providers and the TUI; and all-time counters of calls by outcome and a
histogram of answered calls' latencies (`vq:metrics:providers`), which the Prometheus
exposition reads (its `rate()` makes any window), written in the same round trip.

Outcomes: ok; client (a 4xx other than 429: the request was wrong, the provider was up);
limited (429); failed (5xx, timeout, no connection). Error rate counts every outcome but
ok; availability counts the calls the provider answered at all (all but failed).
"""

from __future__ import annotations

import time
from bisect import bisect_left

from redis import Redis

from vq import keys
from vq.replies import text_hash

OUTCOMES = ("ok", "client", "limited", "failed")
KEEP_MINUTES_S = 2 * 86_400
LATENCIES_KEPT = 1000
# The Prometheus histogram of answered calls' latency, in ms: an HTTP call to a model, from a
# fast completion to a long generation; the last bucket is +Inf.
LATENCY_BOUNDS = (50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000)


def record(conn: Redis, provider: str, outcome: str, latency_ms: float) -> None:
    minute = int(time.time() // 60)
    with conn.pipeline(transaction=False) as pipe:
        bucket = keys.provider_minute(provider, minute)
        pipe.hincrby(bucket, outcome, 1)
        pipe.expire(bucket, KEEP_MINUTES_S)
        pipe.hincrby(keys.METRICS_PROVIDERS, f"{provider}|{outcome}", 1)
        if outcome != "failed":  # a timeout's "latency" is the timeout
            pipe.lpush(keys.provider_latency(provider), int(latency_ms))
            pipe.ltrim(keys.provider_latency(provider), 0, LATENCIES_KEPT - 1)
            pipe.hincrby(keys.METRICS_PROVIDERS, f"{provider}|le|{bisect_left(LATENCY_BOUNDS, latency_ms)}", 1)
            pipe.hincrby(keys.METRICS_PROVIDERS, f"{provider}|latency_ms", int(latency_ms))
        pipe.execute()


def totals(conn: Redis) -> dict[str, dict[str, int]]:
    """All-time counters per provider: each outcome, `le|<i>` latency buckets, `latency_ms`."""
    out: dict[str, dict[str, int]] = {}
    for raw, n in text_hash(conn.hgetall(keys.METRICS_PROVIDERS)).items():
        provider, _, name = raw.partition("|")
        out.setdefault(provider, {})[name] = int(n)
    return out


def read(conn: Redis, providers: list[str], window_ms: int) -> dict[str, dict]:
    """Per provider: calls and each outcome in the window, errorRate, availability, and
    latency p50/p95 (ms) of the latest answered calls."""
    now_minute = int(time.time() // 60)
    minutes = range(now_minute - max(1, window_ms // 60_000) + 1, now_minute + 1)
    with conn.pipeline(transaction=False) as pipe:
        for name in providers:
            for minute in minutes:
                pipe.hgetall(keys.provider_minute(name, minute))
            pipe.lrange(keys.provider_latency(name), 0, -1)
        replies = iter(pipe.execute())
    out = {}
    for name in providers:
        counts = dict.fromkeys(OUTCOMES, 0)
        for _ in minutes:
            for outcome, n in next(replies).items():
                counts[outcome.decode()] = counts.get(outcome.decode(), 0) + int(n)
        latencies = sorted(int(x) for x in next(replies))
        calls = sum(counts.values())
        out[name] = {
            "calls": calls,
            **counts,
            "errorRate": round(1 - counts["ok"] / calls, 4) if calls else None,
            "availability": round(1 - counts["failed"] / calls, 4) if calls else None,
            "p50Ms": _quantile(latencies, 0.50),
            "p95Ms": _quantile(latencies, 0.95),
        }
    return out


def _quantile(values: list[int], q: float) -> int | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def overview(conn: Redis, settings, window_ms: int) -> list[dict]:
    """`vq providers` and GET /api/providers: each provider's breaker, its limits' use now
    and its performance over the window."""
    from vq.providers import breaker
    from vq.providers.gate import ProviderGate

    rows = breaker.states(conn, settings)
    figures = read(conn, [r["provider"] for r in rows], window_ms)
    gate = ProviderGate(conn)
    for row in rows:
        config = settings.providers.get(row["provider"])
        row.update(figures[row["provider"]])
        row["limits"] = gate.usage(row["provider"], config) if config else None
        row["windowMs"] = window_ms
    return rows
