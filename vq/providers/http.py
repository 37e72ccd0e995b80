"""Calling AI providers declared in config. The generic HTTP adapter POSTs the job's
request as JSON and turns the answer into vq's error categories:

- 2xx: the JSON body is the result;
- 429: RateLimitError, with the Retry-After header's seconds (else 1 s);
- 5xx, timeouts, connection failures: ProviderError (counted by the provider's breaker);
- any other 4xx: PermanentError (the request itself is wrong; retrying cannot help).

The API key comes from the environment variable the provider's `apiKeyEnv` names, so
secrets stay out of the config file.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from vq import telemetry
from vq.config import ProviderSettings, Settings
from vq.errors import InvalidInput, PermanentError, ProviderError, RateLimitError
from vq.providers import pool as http_pool

if TYPE_CHECKING:
    import httpx

# Provider names are operator-visible state (a breaker row in `vq providers` and the TUI,
# Prometheus series, stat keys in Redis): only names config bounds may become one. A name
# from anywhere else (a handler's ProviderError) is counted under OTHER.
BUILT_IN = ("local",)  # ai-processing's own text-statistics provider
OTHER = "other"


def known(settings: Settings) -> list[str]:
    """Every provider name config allows: declared ones (`providers:`), those a job type
    lists (`job_types.T.providers`, possibly local ones) and the built-in `local`."""
    listed = [p for jt in settings.job_types.values() for p in (jt.providers or [])]
    return list(dict.fromkeys([*settings.providers, *listed, *BUILT_IN]))


def bounded(settings: Settings, name: object) -> str:
    """`name` when config knows it, else OTHER: what a breaker or a stat may be keyed by."""
    return name if isinstance(name, str) and name in known(settings) else OTHER


def check_named(settings: Settings, data: dict) -> None:
    """A submission's `data.provider` (the provider a job asks for first) must be one config
    knows: refused at submit, so user data never creates a breaker, a stat or a series."""
    name = data.get("provider")
    if name is not None and not isinstance(name, str):
        raise InvalidInput(f"data.provider: expected a provider's name, got {name!r}", field="data.provider")
    if name and name not in known(settings):
        raise InvalidInput(
            f"data.provider: unknown provider {name!r} (known: {', '.join(known(settings))})", field="data.provider"
        )


def is_http(settings: Settings, name: str) -> bool:
    """A provider vq calls itself (kind http); others (local, or unknown names) a handler
    runs on its own."""
    config = settings.providers.get(name)
    return config is not None and config.kind == "http"


def call(settings: Settings, name: str, payload: dict) -> dict:
    provider = settings.providers.get(name)
    if provider is None:
        known = ", ".join(settings.providers) or "none configured"
        raise PermanentError(f"provider: unknown provider {name!r} (configured: {known})")
    if provider.kind != "http" or not provider.url:
        raise PermanentError(f"provider {name!r}: needs kind: http and a url to be called")
    return call_http(name, provider, payload)


def call_http(name: str, provider: ProviderSettings, payload: dict) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if provider.apiKeyEnv:
        key = os.environ.get(provider.apiKeyEnv)
        if not key:
            raise PermanentError(f"provider {name!r}: environment variable {provider.apiKeyEnv} is not set")
        headers["Authorization"] = f"Bearer {key}"
    url = provider.url
    if not url:  # `call` calls only a provider with one
        raise PermanentError(f"provider {name!r}: needs kind: http and a url to be called")
    if telemetry.on():  # a CLIENT span, its traceparent sent along (vq/telemetry/)
        with telemetry.span("POST", kind="client", attributes=_span_attributes(name, url)) as span:
            response = _post(name, provider, url, payload, telemetry.inject(headers))
            if span is not None:
                span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    span.set_attribute("error.type", str(response.status_code))
                    telemetry.failed(span)
    else:
        response = _post(name, provider, url, payload, headers)
    return _answer(name, response)


def _span_attributes(name: str, url: str) -> dict:
    """HTTP client conventions: method, URL (no query: it may carry a key), server; and the provider."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return {
        "http.request.method": "POST",
        "url.full": parts._replace(query="", fragment="", netloc=parts.netloc.rpartition("@")[2]).geturl(),
        "server.address": parts.hostname,
        "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        "vq.provider": name,
    }


def _post(name: str, provider: ProviderSettings, url: str, payload: dict, headers: dict) -> httpx.Response:
    import httpx  # here: importing httpx imports click and rich (its CLI), which the core must not

    try:
        return http_pool.client(name, provider.timeout).post(url, content=json.dumps(payload).encode(), headers=headers)
    except httpx.TimeoutException:
        raise ProviderError(f"{name}: no answer within {provider.timeout} ms", provider=name) from None
    except (httpx.TransportError, OSError) as exc:
        raise ProviderError(f"{name}: cannot connect ({_reason(exc)})", provider=name) from None


def _answer(name: str, response: httpx.Response) -> dict:
    """The provider's answer as a result, or the error its status says."""
    body = response.content
    if not 200 <= response.status_code < 300:
        code, detail = response.status_code, _detail(body)
        if code == 429:
            raise RateLimitError(f"{name}: rate limited (429){detail}", retry_after=_retry_after(response)) from None
        if code >= 500:
            raise ProviderError(f"{name}: HTTP {code}{detail}", provider=name) from None
        raise PermanentError(f"{name}: HTTP {code}{detail}") from None  # 3xx too: redirects are not followed
    try:
        result = json.loads(body or b"{}", parse_constant=_not_json)
    except (json.JSONDecodeError, ValueError):  # ValueError: NaN or Infinity, which JSON has not
        raise ProviderError(f"{name}: answered with something that is not JSON", provider=name) from None
    return result if isinstance(result, dict) else {"result": result}


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


def _reason(exc: Exception) -> str:
    import httpx

    """What went wrong connecting, the way the OS said it (httpx wraps the OSError)."""
    cause = exc.__context__ if isinstance(exc, httpx.TransportError) and exc.__context__ else exc
    return str(cause) or type(cause).__name__


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0  # an HTTP date: rare from APIs; wait a second and ask again


def _detail(body: bytes) -> str:
    text = body[:300].decode(errors="replace").strip()
    return f": {text}" if text else ""
