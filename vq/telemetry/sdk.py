"""The OpenTelemetry SDK behind vq/telemetry/: imported only when tracing is on.

One TracerProvider per process, built by the first span the process makes: a BatchSpanProcessor
(spans leave in a background thread, in batches) and the OTLP/HTTP exporter. A process forked
from one that had a provider builds its own (the pid tells): the parent's exporter holds
pooled connections the child must not write to. Each provider is flushed and shut down when
its process ends (atexit; a multiprocessing child's exit runs its finalizers instead).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import vq
from vq import telemetry

KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}
PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_pid = 0
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def _nothing() -> None:
    pass


_stop: Callable[[], None] = _nothing  # this process's provider's shutdown, once


def _build(plan: telemetry.Plan) -> TracerProvider:
    import socket

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create(
        {"service.name": plan.service_name, "service.version": vq.__version__, "host.name": socket.gethostname()}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(plan.sample_ratio)))
    endpoint = plan.endpoint.rstrip("/") + "/v1/traces" if plan.endpoint else None
    # A collector that is away must not hold a CLI's exit for the SDK's default 10 s of retries.
    timeout = None if any(os.environ.get(f"OTEL_EXPORTER_OTLP{t}_TIMEOUT") for t in ("", "_TRACES")) else 3
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=plan.headers or None, timeout=timeout)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer() -> trace.Tracer | None:
    """This process's tracer, built on first use (and again in a forked child)."""
    global _pid, _provider, _tracer
    if _pid == os.getpid() and _tracer is not None:
        return _tracer
    plan = telemetry.plan()
    if plan is None:
        return None
    with _lock:
        if _pid != os.getpid() or _tracer is None:
            _provider = _build(plan)
            _tracer = _provider.get_tracer("vq", vq.__version__)
            _pid = os.getpid()
            _at_exit(_provider)
    return _tracer


def _at_exit(provider: TracerProvider) -> None:
    """Flush and stop `provider` when this process ends, however it ends normally (or at
    `reset`)."""
    global _stop
    from multiprocessing import util

    pid = os.getpid()
    done: list[bool] = []

    def shutdown() -> None:
        if os.getpid() == pid and not done:  # once, and never by a forked child for its parent
            done.append(True)
            telemetry.run_before_flush()
            provider.shutdown()

    _stop = shutdown
    atexit.register(shutdown)
    util.Finalize(provider, shutdown, exitpriority=100)  # a multiprocessing child skips atexit


def reset() -> None:
    """Forget this process's provider (configure changed the plan); what it holds is sent."""
    global _pid, _provider, _tracer
    with _lock:
        _stop()
        _pid, _provider, _tracer = 0, None, None


def _parent(traceparent: str | None) -> otel_context.Context | None:
    """The context a traceparent names (None for the current one)."""
    if not traceparent:
        return None
    return PROPAGATOR.extract({"traceparent": traceparent})


@contextlib.contextmanager
def span(name: str, kind: str, parent: str | None, attributes: dict[str, Any] | None, start_time: int | None):
    t = tracer()
    if t is None:
        yield None
        return
    with t.start_as_current_span(
        name, context=_parent(parent), kind=KINDS[kind], attributes=_clean(attributes), start_time=start_time
    ) as made:
        yield made


def record(
    name: str, kind: str, parent: str | None, start_ns: int, end_ns: int, attributes: dict[str, Any] | None
) -> str | None:
    t = tracer()
    if t is None:
        return None
    made = t.start_span(
        name, context=_parent(parent), kind=KINDS[kind], attributes=_clean(attributes), start_time=start_ns
    )
    made.end(end_time=max(start_ns, end_ns))
    return _format(made.get_span_context())


def current_traceparent() -> str | None:
    return _format(trace.get_current_span().get_span_context())


def _format(context: trace.SpanContext) -> str | None:
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def inject(headers: dict[str, str]) -> None:
    PROPAGATOR.inject(headers)


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(PROPAGATOR.extract(headers))
    try:
        yield
    finally:
        otel_context.detach(token)


def flush(timeout_s: float) -> None:
    if _provider is not None and _pid == os.getpid():
        telemetry.run_before_flush()
        _provider.force_flush(int(timeout_s * 1000))


def _clean(attributes: dict[str, Any] | None) -> dict[str, Any] | None:
    """Attributes without the None values OpenTelemetry would warn about."""
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}
