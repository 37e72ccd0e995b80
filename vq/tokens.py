"""Who is calling: JWT bearer tokens (PyJWT), their claims, and the signing secret.

HS256 with a shared secret by default (config `http.jwt_secret`, else `VQ_JWT_SECRET`,
else a random secret generated once into the data directory, readable by its owner only);
RS256 with a public key when `http.jwt_public_key` names one. The algorithm is fixed by
config, never taken from the token, so `alg: none` and algorithm-confusion tokens fail.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt

from vq.config import TIERS, Settings
from vq.errors import InvalidInput, VqError
from vq.secretfile import read_or_create

ROLES = ("user", "operator", "admin", "metrics")  # metrics: GET /metrics and nothing else (a scraper's)
SECRET_FILE = "jwt.secret"


class Unauthorized(VqError):
    http_status = 401
    code = "unauthorized"
    exit_code = 2


MISSING_TOKEN = "missing bearer token (Authorization: Bearer <token>)"
MALFORMED_HEADER = "malformed Authorization header: expected 'Bearer <token>'"


def bearer_challenge(message: str) -> str:
    """The WWW-Authenticate header of a 401 (RFC 6750 section 3): no error code when no
    token was sent, invalid_request for a malformed header, else invalid_token."""
    if message == MISSING_TOKEN:
        return 'Bearer realm="vq"'
    code = "invalid_request" if message == MALFORMED_HEADER else "invalid_token"
    description = "".join(c for c in message if c not in '"\\' and c.isprintable())
    return f'Bearer realm="vq", error="{code}", error_description="{description}"'


class Forbidden(VqError):
    http_status = 403
    code = "forbidden"
    exit_code = 2


@dataclass(frozen=True)
class Principal:
    """The caller, from a verified token."""

    user_id: str
    role: str = "user"
    projects: tuple[str, ...] | None = None  # None: every project of the user
    tier: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role in ("operator", "admin")

    @property
    def may_scrape(self) -> bool:
        """May read the Prometheus exposition: an operator, or a scrape-only token."""
        return self.is_operator or self.role == "metrics"

    def may_see(self, owner: str | None, project: str | None) -> bool:
        """A user sees their own jobs (within their projects, when the token lists them)."""
        if self.is_operator:
            return True
        if owner != self.user_id:
            return False
        return self.projects is None or project in self.projects


def signing_secret(settings: Settings) -> str:
    """The HS256 secret: config, env, or the data directory's own (made on first use)."""
    configured = settings.http.jwt_secret or os.environ.get("VQ_JWT_SECRET")
    if configured:
        return configured
    return read_or_create(settings.data_path / SECRET_FILE, lambda: secrets.token_urlsafe(48))


def verify_key(settings: Settings) -> tuple[str, str]:
    """(key, algorithm) tokens are checked with; read once per server, not per request."""
    return _verify_key(settings)


def _verify_key(settings: Settings) -> tuple[str, str]:
    if settings.http.jwt_public_key:
        return Path(settings.http.jwt_public_key).expanduser().read_text(), "RS256"
    return signing_secret(settings), "HS256"


LEEWAY = 5  # seconds of clock skew an expiry is allowed


def decode(settings: Settings, header: str | None, key_and_algorithm: tuple[str, str] | None = None) -> Principal:
    """The caller of an `Authorization: Bearer <token>` header, or Unauthorized."""
    return _decoded(settings, header, key_and_algorithm)[0]


def _decoded(
    settings: Settings, header: str | None, key_and_algorithm: tuple[str, str] | None
) -> tuple[Principal, int]:
    """The caller and the token's expiry (epoch seconds)."""
    if not header:
        raise Unauthorized(MISSING_TOKEN)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(MALFORMED_HEADER)
    key, algorithm = key_and_algorithm or _verify_key(settings)
    try:
        claims = jwt.decode(
            token.strip(), key, algorithms=[algorithm], options={"require": ["exp", "sub"]}, leeway=LEEWAY
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("token signature is not valid") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    role = claims.get("role", "user")
    if role not in ROLES:
        raise Unauthorized(f"invalid token: role {role!r} is not one of {', '.join(ROLES)}")
    projects = claims.get("projects")
    if projects is not None and (not isinstance(projects, list) or not all(isinstance(p, str) for p in projects)):
        raise Unauthorized("invalid token: projects must be a list of strings")
    tier = claims.get("tier")
    if tier is not None and tier not in TIERS:
        raise Unauthorized(f"invalid token: tier {tier!r} is not one of {', '.join(TIERS)}")
    principal = Principal(
        user_id=str(claims["sub"]), role=role, projects=tuple(projects) if projects is not None else None, tier=tier
    )
    return principal, int(claims["exp"])


class VerifiedTokens:
    """`decode` for a server that sees the same few tokens again and again (each client
    sends its own on every request): a token verified once is remembered with its expiry
    until then, so its signature (HMAC or RSA) and claims are not checked again per
    request. Only tokens that passed are kept; an expired one is checked (and refused)
    afresh. The key is fixed for the life of the server (a reload starts a new HTTP
    process), so what passed once passes until it expires. At most `size` tokens are
    kept; when full, the store starts over."""

    def __init__(self, settings: Settings, key_and_algorithm: tuple[str, str], size: int = 4096):
        self.settings, self.key, self.size = settings, key_and_algorithm, size
        self.known: dict[str, tuple[Principal, int]] = {}

    def decode(self, header: str | None) -> Principal:
        if header is not None:
            hit = self.known.get(header)
            if hit is not None and time.time() <= hit[1] + LEEWAY:
                return hit[0]
        principal, expires = _decoded(self.settings, header, self.key)
        if len(self.known) >= self.size:
            self.known.clear()
        self.known[header or ""] = (principal, expires)
        return principal


@dataclass
class TokenRequest:
    user_id: str
    role: str = "user"
    tier: str | None = None
    projects: list[str] | None = None
    ttl_seconds: int = 3600
    extra: dict = field(default_factory=dict)


METRICS_SUBJECT = "metrics"  # a scrape-only token's subject when none is given: it acts for no user


def subject_of(role: str, user: str | None) -> str:
    """The token's subject: the user it acts for. Only a metrics token may name none; it
    reads /metrics for nobody in particular."""
    if user:
        return user
    if role == "metrics":
        return METRICS_SUBJECT
    raise InvalidInput(
        f"--user: missing (a token of role {role} acts for a user; only --role metrics may leave it out)"
    )


def create(settings: Settings, request: TokenRequest) -> str:
    """Mint an HS256 token with the daemon's secret (`vq token create`)."""
    if settings.http.jwt_public_key:
        raise InvalidInput("token: this server verifies RS256 tokens; mint them with the private key's owner")
    if request.role not in ROLES:
        raise InvalidInput(f"--role: {request.role!r} is not one of {', '.join(ROLES)}", field="role")
    if request.tier is not None and request.tier not in TIERS:
        raise InvalidInput(f"--tier: {request.tier!r} is not one of {', '.join(TIERS)}", field="tier")
    if request.ttl_seconds <= 0:
        raise InvalidInput("--ttl: at least 1s (a number with s, m, h or d: e.g. 15m, 1h, 30d)", field="ttl")
    now = int(time.time())
    claims = {
        "sub": request.user_id,
        "role": request.role,
        "iat": now,
        "exp": now + request.ttl_seconds,
        **request.extra,
    }
    if request.tier:
        claims["tier"] = request.tier
    if request.projects is not None:
        claims["projects"] = list(request.projects)
    return jwt.encode(claims, signing_secret(settings), algorithm="HS256")
