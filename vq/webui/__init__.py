"""The web dashboard, served by the daemon's HTTP server under /ui (docs/web-dashboard.md).

An adapter only, like the CLI, the HTTP API and the TUI: server-rendered Jinja2 pages over
the same service functions, a stylesheet, htmx (vendored in static/, no CDN, no build
step) for the parts that update live, and a session cookie made from an API token
(vq/webui/sessions.py). Every action is a POST with the session's CSRF token, and is
audited. `mount` adds the routes to the API's FastAPI app (vq/api/app.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from redis import Redis
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from vq.config import Settings
from vq.webui import actions, auth, live, operations, pages, sessions
from vq.webui.render import STATIC, page
from vq.webui.sessions import LoginNeeded, Session


def error_page(request: Request, status: int, message: str, exc: BaseException) -> Response:
    """A refusal under /ui as a page: to the login page without a session (for an htmx
    poll, by telling htmx to go there), else the error with its status."""
    if isinstance(exc, LoginNeeded):
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": "/ui/login"})
        if request.method == "GET":
            return auth.login_redirect(request)
        return RedirectResponse("/ui/login", status_code=303)
    return page(
        request,
        "error.html",
        code=status,
        session=_session_of(request, status),
        status_code=status,
        message=message,
        title=TITLES.get(status, "Error"),
        job_id=request.path_params.get("jobId") if status == 404 else None,
    )


TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 422: "Bad request", 500: "Something broke"}


def _session_of(request: Request, status: int) -> Session | None:
    """The viewer's session, so an error page keeps the navigation bar; None without one (or
    with Redis down, when asking would only wait)."""
    conn = getattr(request.app.state, "vq_ui_conn", None)
    if conn is None or status == 503:
        return None
    try:
        return sessions.current(conn, request, shows_pages=False)
    except Exception:  # noqa: BLE001 - no session, or none to be had: the page without the bar
        return None


def mount(app: FastAPI, conn: Redis, settings: Settings, stream_conn) -> None:
    """Add the dashboard's routes and assets; `stream_conn` is the asyncio Redis client its
    live stream waits on (vq/webui/live.py)."""
    gate = auth.Gate(conn, settings)
    app.state.vq_ui_conn = conn  # error_page's session lookup
    app.include_router(auth.router(gate))
    app.include_router(pages.router(gate, conn, settings))
    app.include_router(operations.router(gate, conn, settings))
    app.include_router(live.router(gate, conn, settings, stream_conn))
    app.include_router(actions.router(gate, conn, settings))
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
