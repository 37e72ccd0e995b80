"""The Prometheus text exposition of vq's figures (prometheus_client renders it): job counts
per state, all-time counters, run and wait time histograms, limits, workers, breakers and
health. Served by the daemon's HTTP server at /metrics and printed by `vq metrics`."""

from __future__ import annotations

from collections import Counter

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from redis import Redis

from vq import health, keys, metrics, queues
from vq.config import Settings
from vq.providers import stats as provider_stats

STATES = ("queued", "limited", "running", "scheduled", "deferred", "failed", "finished", "canceled")
COUNTERS = ("created", "started", "finished", "failed", "retried", "canceled", "cached", "stalled", "rateLimited")
PROVIDER_WINDOW_MS = 15 * 60_000


def _histogram(name: str, doc: str, totals: dict[str, Counter], part: str, sum_field: str) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["job_type"])
    for job_type, counter in sorted(totals.items()):
        cumulative, buckets = 0, []
        for index, bound in enumerate(metrics.BOUNDS):
            cumulative += counter[f"{part}|{index}"]
            buckets.append((str(bound / 1000), cumulative))
        cumulative += counter[f"{part}|{len(metrics.BOUNDS)}"]
        buckets.append(("+Inf", cumulative))
        family.add_metric([job_type], buckets, sum_value=counter[sum_field] / 1000)
    return family


class _Collector:
    def __init__(self, conn: Redis, settings: Settings):
        self.conn = conn
        self.settings = settings

    def collect(self):
        rows = queues.counts(self.conn, self.settings)
        jobs = GaugeMetricFamily("vq_jobs", "Jobs per type and state now", labels=["job_type", "state"])
        limit = GaugeMetricFamily("vq_type_limit", "Concurrency limit per job type", labels=["job_type"])
        paused = GaugeMetricFamily("vq_queue_paused", "1 when the type is paused", labels=["job_type"])
        for row in rows:
            for state in STATES:
                jobs.add_metric([row["jobType"], state], row[state])
            limit.add_metric([row["jobType"]], row["limit"])
            paused.add_metric([row["jobType"]], 1 if row["paused"] else 0)
        yield from (jobs, limit, paused)
        totals = metrics.totals(self.conn)
        counter = CounterMetricFamily(
            "vq_jobs_events", "Job events since the metrics began", labels=["job_type", "event"]
        )
        for job_type, values in sorted(totals.items()):
            for name in COUNTERS:
                counter.add_metric([job_type, name], values[name])
        yield counter
        yield _histogram("vq_job_run_seconds", "Processing time of ended attempts", totals, "run", "run_ms")
        yield _histogram("vq_job_wait_seconds", "Time from runnable to started", totals, "wait", "wait_ms")
        report = health.check(self.conn, self.settings)
        level = GaugeMetricFamily("vq_health", "0 healthy, 1 degraded, 2 unhealthy, 3 error", labels=["scope"])
        level.add_metric(["overall"], health.LEVELS.index(report["status"]))
        for row in report["queues"]:
            level.add_metric([row["jobType"]], health.LEVELS.index(row["status"]))
        yield level
        yield GaugeMetricFamily("vq_workers_alive", "Workers with a recent heartbeat", value=report["workers"]["alive"])
        refused, lost = self.conn.mget(keys.STALE_REFUSED, keys.LEASES_LOST)
        yield CounterMetricFamily(
            "vq_fence_stale_writes_refused",
            "Writes of workers whose lease had passed to another holder, refused (fenced leases)",
            value=int(refused or 0),
        )
        yield CounterMetricFamily(
            "vq_fence_leases_lost",
            "Jobs a worker stopped because it could not renew their lease in time",
            value=int(lost or 0),
        )
        breakers = GaugeMetricFamily(
            "vq_breaker_open", "1 when a provider's circuit breaker is open", labels=["provider"]
        )
        for provider in report["breakers"]:
            breakers.add_metric([provider], 1)
        yield breakers
        figures = provider_stats.overview(self.conn, self.settings, PROVIDER_WINDOW_MS)
        calls = GaugeMetricFamily(
            "vq_provider_calls_15m",
            "Provider calls in the last 15 minutes by outcome (ok, client, limited, failed)",
            labels=["provider", "outcome"],
        )
        latency = GaugeMetricFamily(
            "vq_provider_latency_ms", "Latency of the provider's latest 1,000 answers", labels=["provider", "quantile"]
        )
        for row in figures:
            for outcome in provider_stats.OUTCOMES:
                calls.add_metric([row["provider"], outcome], row[outcome])
            for quantile, key in (("0.5", "p50Ms"), ("0.95", "p95Ms")):
                if row[key] is not None:
                    latency.add_metric([row["provider"], quantile], row[key])
        yield calls
        yield latency


def exposition(conn: Redis, settings: Settings) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(conn, settings))
    return generate_latest(registry)


def families(conn: Redis, settings: Settings) -> list[dict]:
    """The same figures as JSON for scripts (`vq metrics --json`): one entry per metric
    family with its type, help and samples (name, labels, value), in exposition order."""
    return [
        {
            "name": family.name,
            "type": family.type,
            "help": family.documentation,
            "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value} for s in family.samples],
        }
        for family in _Collector(conn, settings).collect()
    ]
