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
from vq.telemetry import lean

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
_batcher: lean.Batcher | None = None


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
    endpoint = _traces_url(plan.endpoint) if plan.endpoint else None
    # A collector that is away must not hold a CLI's exit for the SDK's default 10 s of retries.
    timeout = None if any(os.environ.get(f"OTEL_EXPORTER_OTLP{t}_TIMEOUT") for t in ("", "_TRACES")) else 3
    exporter = OTLPSpanExporter(endpoint=endpoint, headers=plan.headers or None, timeout=timeout)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    # The jobs' wait and attempt spans (vq/telemetry/lean.py): sent by an exporter of their own.
    global _batcher
    delay = _schedule_delay_s()
    own = OTLPSpanExporter(endpoint=endpoint, headers=plan.headers or None, timeout=timeout)
    _batcher = lean.Batcher(dict(provider.resource.attributes), _sender(own), delay)
    return provider


def _traces_url(endpoint: str) -> str:
    """`telemetry.endpoint` is the collector's base URL; one that already names the traces
    path is taken as it is."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _schedule_delay_s() -> float:
    """OTEL_BSP_SCHEDULE_DELAY (ms) as the SDK's batch processor reads it; 5 s by default."""
    try:
        return max(0.01, float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY") or 5000) / 1000)
    except ValueError:
        return 5.0


def _sender(exporter):
    """Sends one serialized ExportTraceServiceRequest with `exporter`'s endpoint, headers,
    compression and retries (its HTTP client, SDK 1.40 and later), else a plain POST."""
    client = getattr(exporter, "_client", None)
    if client is not None and hasattr(client, "export"):

        def send(data: bytes) -> None:
            result = client.export(data)
            if not getattr(result, "success", True):
                raise RuntimeError(f"the collector refused ({getattr(result, 'status_code', None)})")

        return send

    import urllib.request

    def post(data: bytes) -> None:
        headers = {**dict(getattr(exporter, "_headers", None) or {}), "Content-Type": "application/x-protobuf"}
        request = urllib.request.Request(exporter._endpoint, data=data, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=3) as answer:
            answer.read()

    return post


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
            if _batcher is not None:
                _batcher.flush()
            provider.shutdown()

    _stop = shutdown
    atexit.register(shutdown)
    util.Finalize(provider, shutdown, exitpriority=100)  # a multiprocessing child skips atexit


def reset() -> None:
    """Forget this process's provider (configure changed the plan); what it holds is sent."""
    global _pid, _provider, _tracer, _batcher
    with _lock:
        _stop()
        _pid, _provider, _tracer, _batcher = 0, None, None, None


def _parent(traceparent: str | None) -> otel_context.Context | None:
    """The context a traceparent names (None for the current one)."""
    if not traceparent:
        return None
    return PROPAGATOR.extract({"traceparent": traceparent})


@contextlib.contextmanager
def span(
    name: str,
    kind: str,
    parent: str | None,
    attributes: dict[str, Any] | None,
    start_time: int | None,
    links: list[str] | None = None,
):
    t = tracer()
    if t is None:
        yield None
        return
    linked = [trace.Link(c) for c in (_context_of(p) for p in links or ()) if c is not None]
    with t.start_as_current_span(
        name,
        context=_parent(parent),
        kind=KINDS[kind],
        attributes=_clean(attributes),
        start_time=start_time,
        links=linked or None,
    ) as made:
        yield made


def _context_of(traceparent: str) -> trace.SpanContext | None:
    ids = lean.parse(traceparent)
    if ids is None:
        return None
    return trace.SpanContext(ids[0], ids[1], True, trace.TraceFlags(ids[2] & 0xFF))


def record(
    name: str, kind: str, parent: str | None, start_ns: int, end_ns: int, attributes: dict[str, Any] | None
) -> str | None:
    """A finished span: lean (vq/telemetry/lean.py) under a given traceparent, else the SDK's
    under the current span."""
    if tracer() is None:
        return None
    parent = parent or current_traceparent()
    if parent is None:  # no trace to join: a root, which only the SDK's sampler may start
        t = tracer()
        assert t is not None
        made = t.start_span(name, kind=KINDS[kind], attributes=_clean(attributes), start_time=start_ns)
        made.end(end_time=max(start_ns, end_ns))
        return _format(made.get_span_context())
    assert _batcher is not None
    return lean.record(_batcher, name, kind, parent, start_ns, end_ns, attributes or {})


def lean_span(name: str, kind: str, parent: str, attributes: dict[str, Any], start_time: int | None):
    if tracer() is None or _batcher is None:
        return lean._NO_SPAN
    return lean.current(_batcher, name, kind, parent, attributes, start_time)


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
        if _batcher is not None:
            _batcher.flush()
        _provider.force_flush(int(timeout_s * 1000))


def _clean(attributes: dict[str, Any] | None) -> dict[str, Any] | None:
    """Attributes without the None values OpenTelemetry would warn about."""
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}
