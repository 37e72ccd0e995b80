"""Who is looking at the dashboard: the login and logout pages, and the `viewer` and
`operator` dependencies every other page and action takes (vq/webui/sessions.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from redis import Redis
from starlette.concurrency import run_in_threadpool

from vq import audit
from vq.config import Settings
from vq.tokens import Forbidden, Unauthorized, verify_key
from vq.webui import sessions
from vq.webui.render import page
from vq.webui.sessions import Session

MAX_FORM = 64 * 1024


async def form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the dashboard's forms are small and never upload files)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise Forbidden("form too large")
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path on this server, never another site."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return "/ui"
    return target


class Gate:
    """The session checks, as FastAPI dependencies."""

    def __init__(self, conn: Redis, settings: Settings):
        self.conn, self.settings = conn, settings
        self.key = verify_key(settings)

        def viewer(request: Request) -> Session:
            return sessions.current(conn, request)

        def operator(session: Session = Depends(viewer)) -> Session:
            if not session.principal.is_operator:
                raise Forbidden("this needs the operator role")
            return session

        self.viewer, self.operator = viewer, operator

    async def checked(self, request: Request, session: Session) -> dict[str, str]:
        """A state-changing form from this session: its fields, once its Origin and CSRF
        token pass."""
        fields = await form(request)
        sessions.check_csrf(request, session, fields.get(sessions.CSRF_FIELD))
        return fields


def router(gate: Gate) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    conn, settings = gate.conn, gate.settings

    @routes.get("/ui/login")
    def login_page(request: Request, next: str = "/ui"):
        return page(request, "login.html", next=safe_next(next), error=None, session=None)

    @routes.post("/ui/login")
    async def login(request: Request):
        sessions.check_origin(request)
        fields = await form(request)
        target = safe_next(fields.get("next"))
        try:
            session, cookie = await run_in_threadpool(sessions.start, conn, settings, fields.get("token", ""), gate.key)
        except Unauthorized as exc:
            return page(request, "login.html", code=401, next=target, error=exc.message, session=None)
        principal = session.principal
        await run_in_threadpool(audit.record, conn, principal.user_id, principal.role, "ui-login", None, "-")
        response = RedirectResponse(target, status_code=303)
        sessions.set_cookie(response, request, cookie, session.expires)
        return response

    @routes.post("/ui/logout")
    async def logout(request: Request, session: Session = Depends(gate.viewer)):
        await gate.checked(request, session)
        await run_in_threadpool(sessions.end, conn, session)
        response = RedirectResponse("/ui/login", status_code=303)
        sessions.clear_cookie(response, request)
        return response

    return routes


def login_redirect(request: Request) -> RedirectResponse:
    """Where a page sends a browser without a session: the login page, then back here."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(here)}", status_code=303)
