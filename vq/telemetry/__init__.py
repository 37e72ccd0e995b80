"""vq's OpenTelemetry traces: one trace per job, from its submission to its provider calls
(docs/tracing.md).

Every function here is a cheap no-op unless `configure` found tracing asked for (a
`telemetry:` block, or the standard OTEL_* variables) and the `otel` extra installed: the
hot path then pays one global read. OpenTelemetry is imported only once the first span of a
process is made (vq/telemetry/sdk.py); each process (a daemon's forked children, an
`isolation: fork` job's child) builds its own exporter, since threads do not survive fork.

A job's trace context travels in its meta (`traceparent`, the W3C header's value): the span
that submitted it (vq/telemetry/jobs.py `sent`), which every later span of the job (its
wait, each attempt, its provider calls, its webhook) is a child of.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vq.config import Settings

log = logging.getLogger("vq.telemetry")

META_KEY = "traceparent"  # the job's meta field: "00-<trace id>-<span id>-<flags>", 55 characters
_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True)
class Plan:
    """Where this process's spans go; None of it is OpenTelemetry's yet."""

    endpoint: str | None  # a base URL (spans to <endpoint>/v1/traces); None: the OTEL_* variables say
    service_name: str
    sample_ratio: float
    headers: dict[str, str] = field(default_factory=dict)


_plan: Plan | None = None  # set by configure: tracing is on
_NO_SPAN = contextlib.nullcontext(None)


def wanted(settings: Settings, env: Mapping[str, str] | None = None) -> Plan | None:
    """What config and the environment ask for, or None (tracing off)."""
    env = os.environ if env is None else env
    block = settings.telemetry
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" or block.enabled is False:
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" and block.enabled is None:
        return None
    asked = (
        block.enabled
        or block.endpoint is not None
        or any(env.get(name) for name in _ENDPOINT_VARS)
        or exporter.startswith("otlp")
    )
    if not asked:
        return None
    service = env.get("OTEL_SERVICE_NAME") if block.serviceName == "vq" else None
    return Plan(block.endpoint, service or block.serviceName, block.sampleRatio, dict(block.headers))


def described(settings: Settings, env: Mapping[str, str] | None = None) -> tuple[str, str, str | None] | None:
    """What `vq doctor` says of traces: (status, detail, fix), or None when nobody asked for
    them (the default: no line at all)."""
    env = os.environ if env is None else env
    asked = wanted(settings, env)
    if asked is None:
        return None
    if not installed():
        return ("warn", "traces asked for, but OpenTelemetry is not installed: none are sent", "pip install 'vq[otel]'")
    where = asked.endpoint or next((env[n] for n in _ENDPOINT_VARS if env.get(n)), None) or "http://localhost:4318"
    share = f", {asked.sample_ratio:.0%} of new traces kept" if asked.sample_ratio < 1 else ""
    return ("ok", f"exported over OTLP/HTTP to {where} as service {asked.service_name}{share}", None)


def configure(settings: Settings, env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on or off for this process (and the children it forks from now on).
    Without the `otel` extra, asking for it logs one warning and leaves it off."""
    global _plan
    plan = wanted(settings, env)
    if plan is not None and not installed():
        # Said loudly when vq's own config asks; an OTEL_* variable set for the whole host
        # (other programs read it too) is left to `vq doctor`, not repeated by every command.
        block = settings.telemetry
        log.log(
            logging.WARNING if block.enabled or block.endpoint else logging.DEBUG,
            "telemetry: traces asked for, but OpenTelemetry is not installed (pip install 'vq[otel]'); off",
        )
        plan = None
    loaded = sys.modules.get("vq.telemetry.sdk")  # a span was made under the old plan
    if plan != _plan and loaded is not None:
        loaded.reset()
    _plan = plan
    return plan is not None


def installed() -> bool:
    """Whether the `otel` extra is importable (checked without importing it)."""
    import importlib.util

    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
        )
    except ModuleNotFoundError:
        return False


def warm() -> None:
    """Build this process's exporter now (a worker's or the API's, as it starts), so that
    its first job or request does not wait for OpenTelemetry's imports."""
    if _plan is not None:
        from vq.telemetry import sdk

        sdk.tracer()


def on() -> bool:
    return _plan is not None


def plan() -> Plan | None:
    return _plan


def span(
    name: str,
    *,
    kind: str = "internal",
    parent: str | None = None,
    attributes: dict[str, Any] | None = None,
    start_time: int | None = None,
    links: list[str] | None = None,
):
    """A context manager: a span, current while the block runs (None when tracing is off).
    `parent`: a traceparent to continue (a job's); else the current span. An exception that
    leaves the block is recorded on the span and marks it as an error. `links`: traceparents
    of spans that caused this one in other traces (a dependent's dependencies)."""
    if _plan is None:
        return _NO_SPAN
    from vq.telemetry import sdk

    return sdk.span(name, kind, parent, attributes, start_time, links)


def current_span(name: str, *, kind: str, parent: str, attributes: dict[str, Any], start_time: int | None = None):
    """`span` for a job's attempt: a lean span (vq/telemetry/lean.py) under the job's
    traceparent, current while the block runs. None when tracing is off."""
    if _plan is None:
        return _NO_SPAN
    from vq.telemetry import sdk

    return sdk.lean_span(name, kind, parent, attributes, start_time)


def record(
    name: str,
    *,
    kind: str = "internal",
    parent: str | None,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any] | None = None,
) -> str | None:
    """A span that has already happened (a job's wait), ended at once; its traceparent."""
    if _plan is None:
        return None
    from vq.telemetry import sdk

    return sdk.record(name, kind, parent, start_ns, end_ns, attributes)


def traceparent() -> str | None:
    """The current span's context as a W3C traceparent, or None."""
    if _plan is None:
        return None
    from vq.telemetry import sdk

    return sdk.current_traceparent()


def inject(headers: dict[str, str]) -> dict[str, str]:
    """`headers` with the current span's `traceparent` (and `tracestate`) added, for a call out."""
    if _plan is not None:
        from vq.telemetry import sdk

        sdk.inject(headers)
    return headers


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """The trace an incoming request's `traceparent` header names, current while the block runs."""
    if _plan is None:
        yield
        return
    from vq.telemetry import sdk

    with sdk.continued(headers):
        yield


def failed(made, description: str | None = None) -> None:
    """Mark a span (from `span`) as failed: its status ERROR."""
    if made is not None:
        from opentelemetry.trace import Status, StatusCode

        made.set_status(Status(StatusCode.ERROR, description))


def flush(timeout_s: float = 5.0) -> None:
    """Export what this process has made so far: before a forked job's child exits, whose
    exit runs no clean-up."""
    if _plan is not None:
        from vq.telemetry import sdk

        sdk.flush(timeout_s)
