"""The Prometheus text exposition of vq's figures (prometheus_client renders it): job counts
per state, all-time counters, run, wait and provider latency histograms, limits, workers,
breakers and health. Served by the daemon's HTTP server at /metrics (and by its metrics
listener, vq/metrics_listener.py) and printed by `vq metrics`.

Conventions (Prometheus and OpenTelemetry): base units (`_seconds`), `_total` on counters
only, counters that only grow (Redis keeps them; PromQL's `rate()` makes any window), and
label values only from sets config bounds: job types, providers config knows (or `other`),
the hosts and worker places of vq's daemons (pruned when idle: vq/worker_series.py), and
fixed sets (state, event, outcome, scope). Never a user id, a project or job data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    Exemplar,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import generate_latest
from redis import Redis

from vq import exemplars as vq_exemplars
from vq import health, keys, metrics, queues, worker_series
from vq.config import Settings
from vq.jobtypes import job_types
from vq.providers import stats as provider_stats
from vq.providers.http import OTHER, known

STATES = ("queued", "limited", "running", "scheduled", "deferred", "failed", "finished", "canceled")
COUNTERS = ("created", "started", "finished", "failed", "retried", "canceled", "cached", "stalled", "rateLimited")


def _buckets(bounds_ms: Sequence[int], counts: Counter, prefix: str, exemplars: dict | None = None) -> list[tuple]:
    """Cumulative (le, count) pairs in seconds from `prefix|<i>` counts, +Inf last; with
    `exemplars` ({bucket index: (trace id, span id, seconds, time)}, vq/exemplars.py), a bucket
    that has one gets it as a third item (shown by the OpenMetrics format only)."""
    cumulative = 0
    out: list[tuple] = []
    for index, bound in enumerate([*bounds_ms, None]):
        cumulative += counts[f"{prefix}|{index}"]
        pair: tuple = ("+Inf" if bound is None else _seconds_text(bound), cumulative)
        found = (exemplars or {}).get(index)
        if found is not None and cumulative:
            trace_id, span_id, seconds, at = found
            pair += (Exemplar({"trace_id": trace_id, "span_id": span_id}, seconds, at),)
        out.append(pair)
    return out


def _seconds_text(ms: int) -> str:
    return repr(ms / 1000)


def _job_histogram(
    name: str, doc: str, totals: dict[str, Counter], family: str, exemplars: dict | None = None
) -> HistogramMetricFamily:
    histogram = HistogramMetricFamily(name, doc, labels=["job_type"], unit="seconds")
    for job_type, counter in totals.items():
        buckets = _buckets(metrics.PROM_BOUNDS[family], counter, f"{family}_le", (exemplars or {}).get(job_type))
        histogram.add_metric([job_type], buckets, sum_value=counter[f"{family}_ms"] / 1000)
    return histogram


class _Collector:
    def __init__(self, conn: Redis, settings: Settings, with_exemplars: bool = False):
        self.conn = conn
        self.settings = settings
        self.with_exemplars = with_exemplars

    def collect(self) -> Iterable:
        yield from self._queues()
        yield from self._jobs()
        report = health.check(self.conn, self.settings)
        level = GaugeMetricFamily("vq_health", "0 healthy, 1 degraded, 2 unhealthy, 3 error", labels=["scope"])
        level.add_metric(["overall"], health.LEVELS.index(report["status"]))
        for row in report["queues"]:
            level.add_metric([row["jobType"]], health.LEVELS.index(row["status"]))
        yield level
        yield GaugeMetricFamily("vq_workers_alive", "Workers with a recent heartbeat", value=report["workers"]["alive"])
        yield from self._workers()
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
        yield from self._providers()

    def _queues(self) -> Iterable:
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

    def _jobs(self) -> Iterable:
        stored = metrics.totals(self.conn)
        totals = {name: stored.get(name, Counter()) for name in sorted(job_types(self.settings))}
        counter = CounterMetricFamily(
            "vq_jobs_events", "Job events since the metrics began", labels=["job_type", "event"]
        )
        for job_type, values in totals.items():
            for name in COUNTERS:
                counter.add_metric([job_type, name], values[name])
        yield counter
        traced = vq_exemplars.read(self.conn, list(totals)) if self.with_exemplars else None
        yield _job_histogram("vq_job_run_seconds", "Processing time of ended attempts", totals, "run", traced)
        yield _job_histogram("vq_job_wait_seconds", "Time from runnable to started", totals, "wait")

    def _workers(self) -> Iterable:
        series = worker_series.read(self.conn)
        busy = CounterMetricFamily(
            "vq_worker_busy_seconds",
            "Time each worker spent running jobs (its place in its daemon; idle ones are dropped)",
            labels=["host", "worker"],
            unit="seconds",
        )
        jobs = CounterMetricFamily(
            "vq_worker_jobs", "Attempts each worker ended, by outcome", labels=["host", "worker", "outcome"]
        )
        for (host, worker), values in sorted(series.items()):
            busy.add_metric([host, worker], values["busy_ms"] / 1000)
            for outcome in worker_series.OUTCOMES.values():
                jobs.add_metric([host, worker, outcome], values[outcome])
        yield from (busy, jobs)

    def _providers(self) -> Iterable:
        allowed = [*known(self.settings), OTHER]
        stored = provider_stats.totals(self.conn)
        calls = CounterMetricFamily(
            "vq_provider_calls",
            "Calls to each provider by outcome (ok, client: a 4xx, limited: a 429, failed: 5xx, timeout, no answer)",
            labels=["provider", "outcome"],
        )
        latency = HistogramMetricFamily(
            "vq_provider_latency",
            "Time a provider took to answer a call (calls that got no answer are not in it)",
            labels=["provider"],
            unit="seconds",
        )
        for provider in allowed:
            values = Counter(stored.get(provider, {}))
            if provider == OTHER and not values:
                continue
            for outcome in provider_stats.OUTCOMES:
                calls.add_metric([provider, outcome], values[outcome])
            latency.add_metric(
                [provider],
                _buckets(provider_stats.LATENCY_BOUNDS, values, "le"),
                sum_value=values["latency_ms"] / 1000,
            )
        yield from (calls, latency)


def exposition(conn: Redis, settings: Settings, openmetrics: bool = False) -> bytes:
    """The text format, or (`openmetrics`) OpenMetrics, whose run-time buckets carry
    exemplars: a recent traced attempt's trace id (docs/tracing.md)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(conn, settings, with_exemplars=openmetrics))
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

        return generate_openmetrics(registry)
    return generate_latest(registry)


OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def wants_openmetrics(accept: str | None) -> bool:
    """Whether a scraper's Accept header asks for OpenMetrics (Prometheus does, for exemplars)."""
    return "application/openmetrics-text" in (accept or "")


def families(conn: Redis, settings: Settings) -> list[dict]:
    """The same figures as JSON for scripts (`vq metrics --json`): one entry per metric
    family with its type, unit, help and samples (name, labels, value), in exposition order."""
    return [
        {
            "name": family.name,
            "type": family.type,
            "unit": family.unit or None,
            "help": family.documentation,
            "samples": [{"name": s.name, "labels": dict(s.labels), "value": s.value} for s in family.samples],
        }
        for family in _Collector(conn, settings).collect()
    ]
