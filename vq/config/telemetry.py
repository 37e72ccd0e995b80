"""The `telemetry:` block: where vq's OpenTelemetry traces go (docs/tracing.md).

Off unless this block or the standard OTEL_* variables ask for it, and then only with the
`otel` extra installed; vq/telemetry/ decides, this only checks what is written."""

from typing import Annotated
from urllib.parse import urlsplit

from msgspec import Meta, field

from vq.config.base import _InvalidKey, _Strict


class TelemetrySettings(_Strict):
    """Traces over OTLP/HTTP. `enabled` unset: on when `endpoint` is set or the environment
    names an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or
    asks for the exporter (OTEL_TRACES_EXPORTER=otlp); OTEL_SDK_DISABLED=true turns it off."""

    enabled: Annotated[bool, Meta(description="export traces (unset: when an endpoint is known)")] | None = None
    endpoint: (
        Annotated[str, Meta(description="OTLP/HTTP base URL (spans go to <endpoint>/v1/traces); else OTEL_*")] | None
    ) = None
    serviceName: Annotated[str, Meta(min_length=1, description="service.name of every span")] = "vq"
    sampleRatio: Annotated[
        float, Meta(ge=0, le=1, description="share of new traces kept; a continued trace follows its caller")
    ] = 1.0
    headers: Annotated[dict[str, str], Meta(description="sent with each export (an API key for a vendor)")] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _InvalidKey("endpoint", f"{self.endpoint!r} is not an http(s) URL such as http://localhost:4318")
