"""Errors vq reports to people and scripts, and the error categories handlers raise.

Service functions raise a `VqError` subclass; each adapter (CLI, HTTP) maps it to one
line and an exit code or status. Handlers raise the category errors below so the
worker knows whether a failure is worth retrying.
"""

from __future__ import annotations


class VqError(Exception):
    """A failure with a one-line explanation and the CLI exit code that goes with it."""

    exit_code = 1
    http_status = 500
    code = "error"

    def __init_subclass__(
        cls, *, exit_code: int | None = None, http_status: int | None = None, code: str | None = None, **kwargs
    ) -> None:
        """A kind of error names what it changes in its class line:
        `class NotFound(VqError, exit_code=4, http_status=404, code="not_found")`."""
        super().__init_subclass__(**kwargs)
        if exit_code is not None:
            cls.exit_code = exit_code
        if http_status is not None:
            cls.http_status = http_status
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(VqError, exit_code=2, http_status=422, code="invalid"):
    """Bad usage or input: an unknown option value, malformed JSON, oversize data."""


class ConfigError(InvalidInput, code="config"):
    """The configuration file (or environment) is invalid."""


class RedisUnavailable(VqError, exit_code=3, http_status=503, code="redis_unavailable"):
    """Redis cannot be reached: says which address and what failed."""


class NotFound(VqError, exit_code=4, http_status=404, code="not_found"):
    """No such job, job type or queue."""


class Ambiguous(VqError, exit_code=2, http_status=409, code="ambiguous"):
    """A job id prefix that more than one job starts with: the message lists them."""


class Conflict(VqError, exit_code=2, http_status=409, code="conflict"):
    """The operation does not fit the job's current state (retrying a running job...)."""


class HistoryElsewhere(VqError, exit_code=1, http_status=503, code="history_elsewhere"):
    """This host's history file is not the one history is written to (several hosts with
    their own `history.db`): its answer would be incomplete."""


class KeyMismatch(VqError, exit_code=2, http_status=503, code="encryption_key_mismatch"):
    """Sensitive data would be encrypted with a key the daemons do not have (a CLI with
    another data directory made its own): the job would fail for good when it runs."""


class HistoryUnavailable(VqError, exit_code=1, http_status=503, code="history_unavailable"):
    """The history database cannot be opened or written (an unwritable folder, a file that
    is not SQLite, a full disk): jobs still run, their events wait in Redis."""


# --- categories a handler raises (see "Error categories" in the README) -------------


class HandlerError(Exception):
    """Base of the error categories a handler may raise."""

    category = "temporary"


class TemporaryError(HandlerError):
    """A transient failure: retried with exponential backoff."""

    category = "temporary"


class PermanentError(HandlerError):
    """The job can never succeed (bad input, unsupported request): not retried."""

    category = "permanent"


class RateLimitError(HandlerError):
    """The provider asked us to slow down; retried after `retry_after` seconds."""

    category = "rate_limit"

    def __init__(self, message: str = "rate limited", retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailable(RateLimitError):
    """The provider's circuit breaker is open: the job waits for the next probe, uncharged."""

    category = "breaker_open"

    def __init__(self, provider: str, retry_after: float):
        super().__init__(f"provider {provider!r} is unavailable (circuit breaker open)", retry_after=retry_after)
        self.provider = provider


class ProviderBusy(RateLimitError):
    """Every provider the job may use is at its own rate or concurrency limit: the job waits
    for the first free moment, uncharged."""

    def __init__(self, message: str, retry_after: float, provider: str):
        super().__init__(message, retry_after=retry_after)
        self.provider = provider


class BudgetHeld(RateLimitError):
    """The user's or project's budget is spent: the job is held (looked at again every
    minute, so a raised budget lets it go), uncharged."""

    category = "budget"


class ResourceExceeded(HandlerError):
    """The job went past its type's maxMemory or maxCpuTime: stopped, and not retried (it
    would only do it again)."""

    category = "resource"


class ProviderError(HandlerError):
    """An AI provider failed; counted against that provider, then retried."""

    category = "provider"
    accounted = False  # already counted against its provider (vq/provider_calls.py)

    def __init__(self, message: str = "provider failed", provider: str = "unknown"):
        super().__init__(message)
        self.provider = provider


class JobCanceled(HandlerError):
    """Raised inside a running job whose cancellation was requested; never retried."""

    category = "canceled"


def message_of(exc: BaseException) -> str:
    """The exception's message, never raising: one whose `__str__` fails (or returns what
    is not text) is `<unprintable TypeName>`, so a failure is still recorded as its own
    type instead of as the error its message raised."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - whatever its __str__ raises
        return f"<unprintable {type(exc).__name__}>"
    return text if isinstance(text, str) else f"<unprintable {type(exc).__name__}>"
