"""Web dashboard sessions: a login with a token becomes a session cookie, and every
state-changing request carries the session's CSRF token.

The session lives in Redis (`keys.ui_session`), so logging out ends it on every host, and it
expires when the token it was made from expires (or after SESSION_MAX, whichever comes
first), so a session never outlives its token. The token is checked at login with
`vq.tokens.decode`, the API's own check; the session keeps its claims, not the token. The cookie holds only the session id, signed
with a key kept in Redis (shared by every daemon): HttpOnly, SameSite=Strict, and Secure
when the page came over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt
from redis import Redis
from starlette.requests import Request
from starlette.responses import Response

from vq import keys
from vq.config import Settings
from vq.errors import VqError
from vq.replies import text
from vq.tokens import Forbidden, Principal, decode

COOKIE = "vq_session"
SESSION_MAX = 12 * 3600  # seconds: a session ends after this even when its token lives longer
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


class LoginNeeded(VqError, http_status=401, code="login_needed"):
    """No session, or an ended one: the pages send the browser to /ui/login."""


@dataclass(frozen=True)
class Session:
    id: str
    principal: Principal
    csrf: str
    expires: int  # epoch seconds
    flash: str | None = None  # what the last action did, shown once on the next page


def _signing_key(conn: Redis) -> bytes:
    conn.set(keys.UI_SECRET, secrets.token_hex(32), nx=True)
    key = conn.get(keys.UI_SECRET) or b""
    return key.encode() if isinstance(key, str) else bytes(key)


def _sign(key: bytes, session_id: str) -> str:
    return hmac.new(key, session_id.encode(), hashlib.sha256).hexdigest()


def start(conn: Redis, settings: Settings, token: str, verify_key: tuple[str, str]) -> tuple[Session, str]:
    """A new session for a valid token, and the cookie value naming it; Unauthorized if the
    token is not one the API would take. The session keeps what the token says (user, role,
    projects, tier) and a hash of it, never the token itself: a reader of Redis gets no
    bearer token for the API."""
    token = token.strip()
    principal = decode(settings, f"Bearer {token}", verify_key)
    expires = int(jwt.decode(token, options={"verify_signature": False})["exp"])
    expires = min(expires, int(time.time()) + SESSION_MAX)
    session_id, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    claims = {"sub": principal.user_id, "role": principal.role, "projects": principal.projects, "tier": principal.tier}
    key = keys.ui_session(session_id)
    with conn.pipeline() as pipe:
        pipe.hset(
            key,
            mapping={
                "principal": json.dumps(claims),
                "exp": expires,
                "token": hashlib.sha256(token.encode()).hexdigest(),  # which token, for the record
                "csrf": csrf,
            },
        )
        pipe.expireat(key, expires)
        pipe.execute()
    return Session(session_id, principal, csrf, expires), f"{session_id}.{_sign(_signing_key(conn), session_id)}"


def current(conn: Redis, request: Request, shows_pages: bool = True) -> Session:
    """The request's session, or LoginNeeded: a cookie with a good signature naming a live
    session (Redis drops it when its token expires, and it is checked here too).
    `shows_pages`: the request renders a page, which shows the pending message once (not
    an htmx poll, not the event stream)."""
    cookie = request.cookies.get(COOKIE, "")
    session_id, _, signature = cookie.partition(".")
    if not session_id or not hmac.compare_digest(signature, _sign(_signing_key(conn), session_id)):
        raise LoginNeeded("please log in")
    stored = {text(k): text(v) for k, v in conn.hgetall(keys.ui_session(session_id)).items()}
    if "principal" not in stored or int(stored.get("exp", 0)) <= time.time():
        conn.delete(keys.ui_session(session_id))
        raise LoginNeeded("your session has ended (its token expired, or you logged out): please log in again")
    claims = json.loads(stored["principal"])
    projects = claims.get("projects")
    principal = Principal(
        user_id=claims["sub"],
        role=claims["role"],
        projects=tuple(projects) if projects is not None else None,
        tier=claims.get("tier"),
    )
    flash = None
    if "flash" in stored and shows_pages and not request.headers.get("hx-request"):
        flash = stored["flash"]
        conn.hdel(keys.ui_session(session_id), "flash")
    return Session(session_id, principal, stored["csrf"], int(stored["exp"]), flash)


def tell(conn: Redis, session: Session, said: str) -> None:
    """Say `said` on the session's next page (after an action's redirect), and only there:
    never from a URL another site could craft."""
    conn.hset(keys.ui_session(session.id), "flash", said[:500])


def end(conn: Redis, session: Session) -> None:
    conn.delete(keys.ui_session(session.id))


def set_cookie(response: Response, request: Request, value: str, expires: int) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=max(expires - int(time.time()), 0),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict", secure=request.url.scheme == "https")


def check_origin(request: Request) -> None:
    """A state-changing request must come from a page of this server: its Origin (else its
    Referer), when the browser sends one, names this host. Browsers send Origin on every
    cross-site POST, so a form on another site is refused here even before the CSRF check."""
    claimed = request.headers.get("origin") or request.headers.get("referer")
    if not claimed or claimed == "null":
        if claimed == "null":
            raise Forbidden("cross-site request refused (Origin: null)")
        return
    parts = urlsplit(claimed)
    # this server's name as the browser used it: Host, or a proxy's X-Forwarded-Host (a form
    # on another site cannot set that header, and a script's request with it needs CORS,
    # which this server never grants)
    own = {request.headers.get("host", "")}
    own |= {h.strip() for h in request.headers.get("x-forwarded-host", "").split(",") if h.strip()}
    if parts.netloc not in own or parts.scheme not in ("http", "https"):
        raise Forbidden(f"cross-site request refused (Origin {parts.scheme}://{parts.netloc} is not this server)")


def check_csrf(request: Request, session: Session, submitted: str | None) -> None:
    """The form's hidden field (or the X-CSRF-Token header) must be this session's token."""
    check_origin(request)
    given = submitted or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
