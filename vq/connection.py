"""The Redis connection, from settings: a configured server, or the embedded one.

When an operator configured a Redis (file or environment), vq uses exactly that and never
falls back. When none is configured, the CLI uses the embedded server that `vq daemon`
supervises in the data directory.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from vq.config import Settings
from vq.errors import RedisUnavailable


def describe_address(settings: Settings) -> str:
    r = settings.redis
    if r.sentinel:
        return f"sentinel master {r.sentinel.service!r} via {', '.join(r.sentinel.hosts)}"
    if r.url:
        return _hide_password(r.url)
    if r.socket:
        return f"unix://{r.socket}"
    if r.host:
        return f"{r.host}:{r.port}/{r.db}"
    return f"embedded unix://{embedded_socket_path(settings)}"


def _hide_password(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def embedded_socket_path(settings: Settings) -> str:
    return str(settings.data_path / "redis" / "redis.sock")


def _client(module, settings: Settings, **common):
    """A redis-py client (sync or asyncio `module`) for the configured or embedded Redis."""
    r = settings.redis
    if r.sentinel:
        import importlib

        sentinels = importlib.import_module(f"{module.__name__}.sentinel")
        watch = sentinels.Sentinel(
            r.sentinel.addresses(),
            sentinel_kwargs={"password": r.sentinel.password, "socket_timeout": 2.0, "socket_connect_timeout": 2.0},
        )
        return watch.master_for(r.sentinel.service, password=r.password, db=r.db, **common)
    if r.url:
        return module.Redis.from_url(r.url, **common)
    if r.socket:
        return module.Redis(unix_socket_path=r.socket, password=r.password, db=r.db, **common)
    if r.host:
        return module.Redis(host=r.host, port=r.port, password=r.password, db=r.db, **common)
    return module.Redis(unix_socket_path=embedded_socket_path(settings), **common)


def _identity() -> dict:
    """CLIENT SETINFO names vq (`CLIENT LIST` shows lib-name=redis-py(vq_v0.2.0)), and the
    version is given, not looked up: redis-py reads it from the installed package metadata on
    every new client otherwise, ~13 ms of each CLI command. (LIB-NAME is shown by Redis 7.2+.)"""
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # an older redis-py: it names itself
        return {}
    from vq import __version__

    return {"driver_info": DriverInfo(lib_version=redis.__version__).add_upstream_driver("vq", __version__)}


def make_client(settings: Settings, socket_timeout: float | None = 10.0) -> redis.Redis:
    """A client for the configured Redis (or the embedded one); does not connect yet."""
    # Few, short retries: an unreachable Redis must be reported in about a second, not ten.
    return _client(
        redis,
        settings,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        **_identity(),
    )


def make_listener_client(settings: Settings) -> redis.Redis:
    """A client for a long-lived pub/sub subscription (vq/cancel_now.py): no read timeout and
    no health-check PING, so that an idle subscriber sends Redis nothing; over TCP, the
    kernel's keep-alive finds a dead connection (a unix socket's connection takes no such option)."""
    r = settings.redis
    tcp = bool(r.sentinel) or (r.url.startswith(("redis:", "rediss:")) if r.url else bool(r.host and not r.socket))
    keepalive = {"socket_keepalive": True} if tcp else {}
    return _client(redis, settings, socket_timeout=None, socket_connect_timeout=5.0, **keepalive, **_identity())


def make_async_client(settings: Settings, socket_timeout: float | None = None):
    """The same Redis for asyncio code (the HTTP API's long-lived event streams): waiting on
    Redis there holds no thread."""
    import redis.asyncio as aredis

    return _client(
        aredis, settings, socket_timeout=socket_timeout, socket_connect_timeout=5.0, health_check_interval=30
    )


def connect(settings: Settings, socket_timeout: float | None = 10.0) -> redis.Redis:
    """Connect and ping; an unreachable Redis becomes one line naming the address (exit 3)."""
    client = make_client(settings, socket_timeout)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise RedisUnavailable(f"Redis at {describe_address(settings)}: authentication failed ({exc})") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        hint = ""
        if not settings.redis.configured:
            hint = (
                " (no Redis is configured and the embedded one is not running: start `vq daemon`, or "
                "`vq redis start` to queue jobs before a daemon runs)"
            )
        raise RedisUnavailable(f"cannot reach Redis at {describe_address(settings)}: {_reason(exc)}{hint}") from None
    except redis.ResponseError as exc:
        raise RedisUnavailable(f"Redis at {describe_address(settings)} refused: {exc}") from None
    return client


def try_connect(settings: Settings, timeout: float = 1.0) -> tuple[redis.Redis | None, str | None]:
    """(client, None) when Redis answers within `timeout`, else (None, why not): for
    commands that read elsewhere (SQLite) and use Redis only for extras, which must not wait
    for it or fail without it."""
    client = _client(
        redis,
        settings,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **_identity(),
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        return None, f"cannot reach Redis at {describe_address(settings)}: {_reason(exc)}"
    return client, None


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")
