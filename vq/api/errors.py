"""HTTP errors in vq's one shape, `{"error": {"code", "message", "field"}}`, whatever raised
them: a `VqError` from a service, Starlette's own refusals, FastAPI's parameter checks, or
Redis being down. Also the error responses every route documents in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from vq.api.ratelimit import RateLimited
from vq.api.schemas import ErrorBody
from vq.errors import VqError
from vq.tokens import bearer_challenge

# the shape FastAPI's `responses=` takes (status -> OpenAPI response fields)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed request (the body is not JSON)"),
        (401, "Missing, malformed, expired or wrongly signed token"),
        (403, "The token's role or projects do not allow this"),
        (404, "No such job type, job or artifact"),
        (409, "The job is not in a state that allows this, or a job id prefix is ambiguous"),
        (413, "Request body too large (http.maxBodyBytes)"),
        (422, "A field is invalid; `field` names it"),
        (429, "Rate limited; see Retry-After"),
        (503, "Redis unreachable"),
    )
}


ERRORS_AS_JSON: dict[int | str, dict[str, Any]] = {
    status: {
        "description": spec["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for status, spec in ERROR_RESPONSES.items()
}
"""For routes whose success is not JSON (files, text, event streams): their errors still are."""

HTTP_CODES = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
}


def _error(status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None):
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status, headers=headers
    )


def _unparsed(cause: BaseException | None) -> str:
    """Why FastAPI could not parse a body (it says only "There was an error parsing the body")."""
    if isinstance(cause, RecursionError):
        return "body: JSON nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "body: not valid JSON (not UTF-8)"
    return f"body: could not be read ({type(cause).__name__ if cause else 'unknown error'})"


HtmlErrors = Callable[[Request, int, str, BaseException], Response]
"""How the web dashboard (vq/webui) answers a refusal of one of its /ui pages: a page, not JSON."""


def install_handlers(app: FastAPI, html: HtmlErrors | None = None) -> None:
    """Answer every refusal in vq's error shape, with the status its error names; under /ui,
    with `html`'s page."""

    def dashboard(request: Request) -> bool:
        return html is not None and (request.url.path == "/ui" or request.url.path.startswith("/ui/"))

    @app.exception_handler(VqError)
    async def _vq_error(request: Request, exc: VqError):
        if html is not None and dashboard(request):
            return html(request, exc.http_status, exc.message, exc)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        if exc.http_status == 401:
            headers = {"WWW-Authenticate": bearer_challenge(exc.message)}
        return _error(exc.http_status, exc.code, exc.message, exc.field, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        """Starlette's own refusals (a body that cannot be parsed, a wrong method, a body over
        the limit) in vq's error shape."""
        message = _unparsed(exc.__cause__) if exc.detail == "There was an error parsing the body" else str(exc.detail)
        if html is not None and dashboard(request):
            return html(request, exc.status_code, message, exc)
        return _error(exc.status_code, HTTP_CODES.get(exc.status_code, "error"), message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(
                400, "malformed", f"body: not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
            )
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        if html is not None and dashboard(request):
            return html(
                request, 404 if first.get("loc", ("",))[0] == "path" else 422, f"{where}: {first.get('msg')}", exc
            )
        return _error(422, "invalid", f"{where}: {first.get('msg', 'invalid')}", where)

    if html is not None:

        @app.exception_handler(Exception)
        async def _broken(request: Request, exc: Exception):
            """A bug: under /ui, the error page with the navigation bar (the traceback goes to
            the daemon's log, as Starlette logs it); elsewhere Starlette's own plain answer."""
            if dashboard(request):
                return html(request, 500, "the server failed to answer this page; its log says why", exc)
            return PlainTextResponse("Internal Server Error", status_code=500)

    @app.exception_handler(redis.ConnectionError)
    async def _redis_down(request: Request, exc: Exception):
        if html is not None and dashboard(request):
            return html(request, 503, "Redis unreachable", exc)
        return _error(503, "redis_unavailable", f"Redis unreachable: {str(exc).splitlines()[0] if str(exc) else exc}")
