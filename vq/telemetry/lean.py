"""Lean spans: the two spans every job has (its wait and each attempt), written straight into
OTLP's protobuf wire format and sent in batches by a thread of their own, instead of through
the SDK's span objects and encoder.

Measured (CPU per job, both spans): the SDK's span objects and encoder took about 150 us,
which is a fifth of what a worker spends on a no-op job; these take about a tenth of that.
Everything else (the HTTP server span, `send`, provider calls, webhooks) goes through the
SDK. A lean span made current is an OpenTelemetry span context like any other, so the SDK
spans made under it (an attempt's provider calls) are its children.

Where they are sent, with which headers and resource, is the SDK exporter's configuration
(vq/telemetry/sdk.py); a batch that cannot be sent is dropped (logged at debug).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import struct
import threading
import time
from collections import deque
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

log = logging.getLogger("vq.telemetry")
KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
_BATCH = 512


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _any(value: Any) -> bytes:
    """An AnyValue: string 1, bool 2, int 3, double 4."""
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    return _field(1, str(value).encode())


def attributes(attrs: dict[str, Any], number: int) -> bytes:
    """Repeated KeyValue fields (`number`: 9 in a Span, 1 in a Resource); None values left out."""
    return b"".join(
        _field(number, _field(1, k.encode()) + _field(2, _any(v))) for k, v in attrs.items() if v is not None
    )


def span_bytes(
    trace_id: int,
    span_id: int,
    parent_id: int,
    name: str,
    kind: str,
    start_ns: int,
    end_ns: int,
    attrs: dict[str, Any],
    error: str | None,
) -> bytes:
    """One Span message (opentelemetry/proto/trace/v1/trace.proto)."""
    body = (
        _field(1, trace_id.to_bytes(16, "big"))
        + _field(2, span_id.to_bytes(8, "big"))
        + (_field(4, parent_id.to_bytes(8, "big")) if parent_id else b"")
        + _field(5, name.encode())
        + b"\x30"
        + _varint(KINDS[kind])
        + b"\x39"
        + struct.pack("<Q", start_ns)
        + b"\x41"
        + struct.pack("<Q", max(start_ns, end_ns))
        + attributes(attrs, 9)
    )
    if error is not None:  # Status{message 2, code 3 = ERROR (2)}
        body += _field(15, _field(2, error.encode()) + b"\x18\x02")
    return body


def parse(traceparent: str | None) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a W3C traceparent, or None."""
    if not traceparent or len(traceparent) != 55:
        return None
    try:
        trace_id, span_id, flags = int(traceparent[3:35], 16), int(traceparent[36:52], 16), int(traceparent[53:], 16)
    except ValueError:
        return None
    return (trace_id, span_id, flags) if trace_id and span_id else None


class Batcher:
    """This process's lean spans, sent as one ExportTraceServiceRequest per batch."""

    def __init__(self, resource: dict[str, Any], send, delay_s: float):
        head = _field(1, attributes(resource, 1))  # ResourceSpans.resource
        import vq

        self.scope = _field(1, _field(1, b"vq") + _field(2, vq.__version__.encode()))  # ScopeSpans.scope
        self.head, self.send, self.delay_s = head, send, delay_s
        self.spans: deque[bytes] = deque(maxlen=100_000)
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.pid = os.getpid()
        threading.Thread(target=self._run, daemon=True, name="vq-trace-lean").start()

    def add(self, span: bytes) -> None:
        self.spans.append(span)
        if len(self.spans) >= _BATCH:
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(self.delay_s)
            self.wake.clear()
            self.flush()

    def flush(self) -> None:
        if os.getpid() != self.pid:
            return
        with self.lock:
            while self.spans:
                batch: list[bytes] = []
                while self.spans and len(batch) < _BATCH:
                    batch.append(self.spans.popleft())
                scope_spans = _field(2, self.scope + b"".join(_field(2, s) for s in batch))
                try:
                    self.send(_field(1, self.head + scope_spans))
                except Exception as exc:  # noqa: BLE001 - a lost batch of spans must not touch a job
                    log.debug("telemetry: %d spans not sent (%s)", len(batch), exc)


class LeanSpan:
    """An attempt's span while it runs: the few calls vq makes on a span."""

    __slots__ = ("attrs", "context", "end_ns", "error", "kind", "name", "parent", "start_ns")

    def __init__(self, name: str, kind: str, context: trace.SpanContext, parent: int, attrs: dict, start_ns: int):
        self.name, self.kind, self.context, self.parent = name, kind, context, parent
        self.attrs, self.start_ns = attrs, start_ns
        self.error: str | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attrs[key] = value

    def set_status(self, status) -> None:
        self.error = status.description or ""

    def update_name(self, name: str) -> None:
        self.name = name

    def get_span_context(self) -> trace.SpanContext:
        return self.context


_NO_SPAN = contextlib.nullcontext(None)


def record(batcher: Batcher, name, kind, parent: str | None, start_ns, end_ns, attrs) -> str | None:
    """A finished span under `parent` (a traceparent); its own traceparent. Unsampled: not kept."""
    ids = parse(parent)
    if ids is None:
        return None
    trace_id, parent_id, flags = ids
    span_id = random.getrandbits(64) or 1
    if flags & 1:
        batcher.add(span_bytes(trace_id, span_id, parent_id, name, kind, start_ns, end_ns, attrs, None))
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


@contextlib.contextmanager
def current(batcher: Batcher, name: str, kind: str, parent: str | None, attrs: dict, start_ns: int | None):
    """A span under `parent`, current (as an OpenTelemetry span context) while the block runs."""
    ids = parse(parent)
    if ids is None:
        yield None
        return
    trace_id, parent_id, flags = ids
    context = trace.SpanContext(trace_id, random.getrandbits(64) or 1, False, trace.TraceFlags(flags & 0xFF))
    made = LeanSpan(name, kind, context, parent_id, attrs, start_ns or time.time_ns())
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(context)))
    try:
        yield made
    except BaseException as exc:
        if made.error is None:
            made.error = type(exc).__name__
        raise
    finally:
        otel_context.detach(token)
        if flags & 1:
            batcher.add(
                span_bytes(
                    trace_id,
                    context.span_id,
                    parent_id,
                    made.name,
                    kind,
                    made.start_ns,
                    time.time_ns(),
                    made.attrs,
                    made.error,
                )
            )
