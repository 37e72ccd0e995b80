"""Concurrency limits: what they are (config, then runtime overrides), changing them at
runtime, and how full each type and user is right now.

Each daemon publishes its config's limits to Redis when it starts; `vq limits set`
writes overrides that win over config on every host at once, without a restart.
"""

from __future__ import annotations

import time

from redis import Redis
from redis.typing import EncodableT, FieldT

from vq import keys, lua
from vq.config import DEFAULT_TYPE_LIMITS, DEFAULT_USER_LIMITS, TIERS, Settings
from vq.errors import InvalidInput
from vq.jobtypes import DEFAULT_CUSTOM_TYPE_LIMIT, get_job_type, job_types
from vq.replies import optional_text, text, texts


def publish_config_limits(conn: Redis, settings: Settings) -> None:
    """Write this config's type and tier limits where the admission script reads them."""
    types: dict[FieldT, EncodableT] = {name: jt.limit for name, jt in job_types(settings).items()}
    tiers: dict[FieldT, EncodableT] = {tier: limit for tier, limit in settings.concurrency.user.items()}
    with conn.pipeline() as pipe:
        pipe.delete(keys.limits("type"), keys.limits("tier"))
        pipe.hset(keys.limits("type"), mapping=types)
        pipe.hset(keys.limits("tier"), mapping=tiers)
        pipe.execute()
    rebuild_effective(conn)


def rebuild_effective(conn: Redis) -> int:
    """Recompute the one hash admission reads (keys.LIMITS_EFFECTIVE) from config and
    overrides, atomically; after every change of either. Returns its number of entries."""
    return int(lua.script(conn, "limits.lua")())


def _hash(conn: Redis, key: str) -> dict[str, int]:
    return {text(k): int(v) for k, v in conn.hgetall(key).items()}


def effective(conn: Redis, settings: Settings | None = None) -> dict[str, dict[str, int]]:
    """The limits in force: overrides over published config over this host's config (or,
    without settings, the spec's defaults)."""
    if settings is None:
        config_types, config_tiers = dict(DEFAULT_TYPE_LIMITS), dict(DEFAULT_USER_LIMITS)
    else:
        config_types = {name: jt.limit for name, jt in job_types(settings).items()}
        config_tiers = dict(settings.concurrency.user)
    out = {}
    for kind, base in (("type", config_types), ("tier", config_tiers), ("user", {})):
        out[kind] = {**base, **_hash(conn, keys.limits(kind)), **_hash(conn, keys.limit_overrides(kind))}
    return out


def user_limit(conn: Redis, settings: Settings | None, user_id: str, limits: dict | None = None) -> int:
    return user_limits(conn, settings, [user_id], limits)[0]


def user_limits(conn: Redis, settings: Settings | None, user_ids: list[str], limits: dict | None = None) -> list[int]:
    """Each user's limit: their own override, else their tier's (tiers read in one round trip)."""
    limits = limits or effective(conn, settings)
    if not user_ids:
        return []
    default_tier = settings.priority.defaultSubscription if settings else "free"
    tiers = conn.hmget(keys.USER_TIER, user_ids)
    return [
        limits["user"][user] if user in limits["user"] else limits["tier"].get(optional_text(tier) or default_tier, 1)
        for user, tier in zip(user_ids, tiers)
    ]


def type_limit(conn: Redis, settings: Settings | None, job_type: str, limits: dict | None = None) -> int:
    limits = limits or effective(conn, settings)
    return limits["type"].get(job_type, DEFAULT_CUSTOM_TYPE_LIMIT)


def set_limit(conn: Redis, settings: Settings, kind: str, name: str, value: int | None) -> dict:
    """Set (or, with value None, drop) a runtime override; takes effect at once everywhere."""
    if kind not in keys.LIMIT_KINDS:
        raise InvalidInput(f"limit kind {kind!r} is not one of {', '.join(keys.LIMIT_KINDS)}")
    if kind == "type":
        get_job_type(settings, name)  # an unknown type is "no such type" (exit 4), as everywhere
    if kind == "tier" and name not in TIERS:
        raise InvalidInput(f"unknown subscription tier {name!r} (expected one of {', '.join(TIERS)})")
    if kind == "user" and not name:
        raise InvalidInput("user: missing")
    if value is None:
        conn.hdel(keys.limit_overrides(kind), name)
    else:
        if value < 1:
            raise InvalidInput(f"limit must be a whole number of at least 1, got {value}")
        conn.hset(keys.limit_overrides(kind), name, value)
    rebuild_effective(conn)
    from vq.admission import wake

    wake(conn)  # a raised limit may let waiting jobs run now
    return {"kind": kind, "name": name, "limit": value, "override": value is not None}


def overview(conn: Redis, settings: Settings) -> dict:
    """Per type and per active user: running / limit / waiting."""
    limits = effective(conn, settings)
    now = int(time.time() * 1000)
    names = list(job_types(settings))
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zcount(keys.running_type(name), now, "+inf")
            for key in keys.wait_since_all(name):
                pipe.zcard(key)
        replies = iter(pipe.execute())
    types = [
        {
            "jobType": n,
            "running": next(replies),
            "limit": type_limit(conn, settings, n, limits),
            "waiting": sum(next(replies) for _ in keys.PRIORITY_ORDER),
        }
        for n in names
    ]
    users: dict[str, dict] = {}
    for key in conn.scan_iter(match=keys.running_user("*"), count=500):
        user = key.decode()[len(keys.running_user("")) :]
        running = conn.zcount(key, now, "+inf")
        if running:
            users.setdefault(user, {"userId": user, "running": 0, "waiting": 0})["running"] = running
    for name in names:
        for priority in keys.PRIORITY_ORDER:
            for user in set(texts(conn.lrange(keys.ring(name, priority), 0, -1))):
                entry = users.setdefault(user, {"userId": user, "running": 0, "waiting": 0})
                entry["waiting"] += conn.llen(keys.waiting_list(name, priority, user))
                entry["waiting"] += conn.zcard(keys.deadline_line(name, priority, user))
    for entry in users.values():
        entry["limit"] = user_limit(conn, settings, entry["userId"], limits)
        entry["tier"] = optional_text(conn.hget(keys.USER_TIER, entry["userId"])) or None
    return {
        "types": types,
        "users": sorted(users.values(), key=lambda u: u["userId"]),
        "tiers": limits["tier"],
        "overrides": {k: _hash(conn, keys.limit_overrides(k)) for k in keys.LIMIT_KINDS},
    }
