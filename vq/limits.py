"""Concurrency limits: what they are (config, then runtime overrides), changing them at
runtime, and how full each type, user and limit group is right now.

Each daemon publishes its config's limits to Redis when it starts; `vq limits set`
writes overrides that win over config on every host at once, without a restart.
"""

from __future__ import annotations

import json
import time

from redis import Redis
from redis.typing import EncodableT, FieldT

from vq import capacity, groups, keys, lua
from vq.config import DEFAULT_TYPE_LIMITS, DEFAULT_USER_LIMITS, MAX_WEIGHT, TIERS, Settings
from vq.config.queue import parse_rate
from vq.errors import InvalidInput, NotFound
from vq.jobtypes import DEFAULT_CUSTOM_TYPE_LIMIT, get_job_type, job_types
from vq.replies import optional_text, text, texts


def publish_config_limits(conn: Redis, settings: Settings) -> None:
    """Write this config's type, tier and group limits, and the weights of tiers' and users'
    turns, where the admission script reads them."""
    published: dict[str, dict[FieldT, EncodableT]] = {
        "type": {name: jt.limit for name, jt in job_types(settings).items()},
        "tier": {tier: limit for tier, limit in settings.concurrency.user.items()},
        "group": {field: limit for field, limit in groups.config_limits(settings).items()},
        "group-rate": {field: groups.rate_text(rate) for field, rate in groups.config_rates(settings).items()},
        "tier-weight": {tier: weight for tier, weight in settings.concurrency.weights.items()},
        "user-weight": {user: weight for user, weight in settings.concurrency.userWeights.items()},
    }
    with conn.pipeline() as pipe:
        pipe.delete(*(keys.limits(kind) for kind in published))
        for kind, mapping in published.items():
            if mapping:
                pipe.hset(keys.limits(kind), mapping=mapping)
        pipe.execute()
    rebuild_effective(conn)


def rebuild_effective(conn: Redis) -> int:
    """Recompute the one hash admission reads (keys.LIMITS_EFFECTIVE) from config and
    overrides, atomically; after every change of either. Returns its number of entries."""
    return int(lua.script(conn, "limits.lua")())


def _hash(conn: Redis, key: str) -> dict[str, int]:
    return {text(k): int(v) for k, v in conn.hgetall(key).items()}


def _texts(conn: Redis, key: str) -> dict[str, str]:
    """A rates hash as people write rates (10/1m)."""
    return {field: groups.rate_shown(rate) for field, rate in _rates(conn.hgetall(key)).items()}


def effective(conn: Redis, settings: Settings | None = None) -> dict[str, dict[str, int]]:
    """The limits and weights in force, by kind (keys.LIMIT_KINDS but the rates: `group_rates`):
    overrides over published config over this host's config (or, without settings, the spec's
    defaults). Group limits are keyed as vq/groups.py limit_field has them."""
    if settings is None:
        config = {"type": dict(DEFAULT_TYPE_LIMITS), "tier": dict(DEFAULT_USER_LIMITS)}
    else:
        config = {
            "type": {name: jt.limit for name, jt in job_types(settings).items()},
            "tier": dict(settings.concurrency.user),
            "group": groups.config_limits(settings),
            "tier-weight": dict(settings.concurrency.weights),
            "user-weight": dict(settings.concurrency.userWeights),
        }
    kinds = [kind for kind in keys.LIMIT_KINDS if kind not in keys.RATE_KINDS]
    with conn.pipeline(transaction=False) as pipe:
        for kind in kinds:
            pipe.hgetall(keys.limits(kind))
            pipe.hgetall(keys.limit_overrides(kind))
        replies = iter(pipe.execute())
    out = {}
    for kind in kinds:
        published, overridden = next(replies), next(replies)
        out[kind] = {**config.get(kind, {}), **_ints(published), **_ints(overridden)}
    return out


def group_rates(conn: Redis, settings: Settings | None) -> dict[str, tuple[int, int]]:
    """The limit groups' rates in force, (starts, window ms) keyed as vq/groups.py limit_field
    has them: runtime overrides over what the daemons published (admission reads both) over
    this host's config."""
    out = dict(groups.config_rates(settings) if settings else {})
    with conn.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.limits("group-rate"))
        pipe.hgetall(keys.limit_overrides("group-rate"))
        for reply in pipe.execute():
            out.update(_rates(reply))
    return out


def _rates(reply: dict) -> dict[str, tuple[int, int]]:
    """A rates hash ("<starts>/<window ms>" per field) as (starts, window ms)."""
    out = {}
    for field, value in reply.items():
        starts, _, window = text(value).partition("/")
        if starts.isdigit() and window.isdigit():
            out[text(field)] = (int(starts), int(window))
    return out


def _ints(reply: dict) -> dict[str, int]:
    return {text(k): int(v) for k, v in reply.items()}


def user_limit(conn: Redis, settings: Settings | None, user_id: str, limits: dict | None = None) -> int:
    return user_limits(conn, settings, [user_id], limits)[0]


def user_limits(conn: Redis, settings: Settings | None, user_ids: list[str], limits: dict | None = None) -> list[int]:
    """Each user's limit: their own override, else their tier's (tiers read in one round trip)."""
    return _per_user(conn, settings, user_ids, limits, "user", "tier")


def user_weights(conn: Redis, settings: Settings | None, user_ids: list[str], limits: dict | None = None) -> list[int]:
    """Each user's weight (the most starts it takes per turn): its own, else its tier's, else 1."""
    return _per_user(conn, settings, user_ids, limits, "user-weight", "tier-weight")


def _per_user(
    conn: Redis, settings: Settings | None, user_ids: list[str], limits: dict | None, own: str, by_tier: str
) -> list[int]:
    """A value per user from the limits in force: the user's own of kind `own`, else their
    tier's of kind `by_tier`, else 1 (tiers read in one round trip)."""
    limits = limits or effective(conn, settings)
    if not user_ids:
        return []
    default_tier = settings.priority.defaultSubscription if settings else "free"
    tiers = conn.hmget(keys.USER_TIER, user_ids)
    return [
        limits[own][user] if user in limits[own] else limits[by_tier].get(optional_text(tier) or default_tier, 1)
        for user, tier in zip(user_ids, tiers)
    ]


def type_limit(conn: Redis, settings: Settings | None, job_type: str, limits: dict | None = None) -> int:
    limits = limits or effective(conn, settings)
    return limits["type"].get(job_type, DEFAULT_CUSTOM_TYPE_LIMIT)


def set_limit(
    conn: Redis, settings: Settings, kind: str, name: str, value: int | str | None, key: str | None = None
) -> dict:
    """Set (or, with value None, drop) a runtime override; takes effect at once everywhere.
    A group's limit and rate are per `key` (a value of its key field; `default`: every key not
    set); a rate is text, `starts/window` (10/1m)."""
    if kind not in keys.LIMIT_KINDS:
        raise InvalidInput(f"limit kind {kind!r} is not one of {', '.join(keys.LIMIT_KINDS)}")
    if (kind in keys.GROUP_KINDS) != (key is not None):
        raise InvalidInput(
            (
                "a group's rate is set per key: group-rate NAME KEY RATE"
                if kind == "group-rate"
                else "a group's limit is set per key: group NAME KEY LIMIT"
            )
            if kind in keys.GROUP_KINDS
            else "KEY: only a group's limit or rate has one"
        )
    if (kind in keys.RATE_KINDS) != isinstance(value, str) and value is not None:
        raise InvalidInput(f"{kind}: expected {'a rate such as 10/1m' if kind in keys.RATE_KINDS else 'a number'}")
    field = name
    if kind in keys.GROUP_KINDS:
        # A group gone from the config may still have an override to drop.
        dropping_stale = value is None and conn.hexists(keys.limit_overrides(kind), groups.limit_field(name, key or ""))
        if name not in settings.concurrency.groups and not dropping_stale:
            known = ", ".join(sorted(settings.concurrency.groups)) or "none are configured"
            raise NotFound(f"no limit group {name!r} (groups: {known})")
        if not key:
            raise InvalidInput("KEY: missing")
        field = groups.limit_field(name, key)
    if kind == "type":
        get_job_type(settings, name)  # an unknown type is "no such type" (exit 4), as everywhere
    if kind in ("tier", "tier-weight") and name not in TIERS:
        raise InvalidInput(f"unknown subscription tier {name!r} (expected one of {', '.join(TIERS)})")
    if kind in ("user", "user-weight") and not name:
        raise InvalidInput("user: missing")
    if value is None:
        conn.hdel(keys.limit_overrides(kind), field)
    elif isinstance(value, str):
        rate = parse_rate(value)
        if isinstance(rate, str):
            raise InvalidInput(f"RATE: {rate}")
        value = groups.rate_shown(rate)
        conn.hset(keys.limit_overrides(kind), field, groups.rate_text(rate))
    else:
        if value < 1:
            raise InvalidInput(f"limit must be a whole number of at least 1, got {value}")
        if kind in keys.WEIGHT_KINDS and value > MAX_WEIGHT:
            raise InvalidInput(f"weight must be from 1 to {MAX_WEIGHT}, got {value}")
        conn.hset(keys.limit_overrides(kind), field, value)
    rebuild_effective(conn)
    from vq.admission import wake

    wake(conn)  # a raised limit may let waiting jobs run now
    result: dict = {"kind": kind, "name": name, "limit": value, "override": value is not None}
    if key is not None:
        result["key"] = key
    return result


def _running_users(conn: Redis, names: list[str], now: int) -> set[str]:
    """The users with a job running now: the owners of the jobs in each type's running set
    (a few per worker), as admission files them (`userId`, else "_"). Not a SCAN of the
    keyspace for their running sets, which costs seconds with a million jobs in Redis."""
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zrangebyscore(keys.running_type(name), now, "+inf")
        ids = [job_id for reply in pipe.execute() for job_id in texts(reply)]
    if not ids:
        return set()
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(keys.rq_job(job_id), "meta")
        metas = pipe.execute()
    return {(json.loads(meta).get("userId") or "_") for meta in metas if meta}


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
    running_users = sorted(_running_users(conn, names, now))
    with conn.pipeline(transaction=False) as pipe:
        for user in running_users:
            pipe.zcount(keys.running_user(user), now, "+inf")
        for user, running in zip(running_users, pipe.execute()):
            if running:
                users.setdefault(user, {"userId": user, "running": 0, "waiting": 0})["running"] = running
    for name in names:
        for priority in keys.PRIORITY_ORDER:
            for user in set(texts(conn.lrange(keys.ring(name, priority), 0, -1))):
                entry = users.setdefault(user, {"userId": user, "running": 0, "waiting": 0})
                entry["waiting"] += conn.llen(keys.waiting_list(name, priority, user))
                entry["waiting"] += conn.zcard(keys.deadline_line(name, priority, user))
    ids = list(users)
    tiers = conn.hmget(keys.USER_TIER, ids) if ids else []
    in_force = zip(user_limits(conn, settings, ids, limits), user_weights(conn, settings, ids, limits), tiers)
    for entry, (limit, weight, tier) in zip(users.values(), in_force):
        entry.update(weight=weight, limit=limit, tier=optional_text(tier) or None)
    return {
        "types": types,
        "users": sorted(users.values(), key=lambda u: u["userId"]),
        "groups": groups.overview(conn, settings, limits["group"], group_rates(conn, settings)),
        "resources": capacity.totals(conn),
        "tiers": limits["tier"],
        "tierWeights": {tier: limits["tier-weight"].get(tier, 1) for tier in TIERS},
        "overrides": {
            k: (_texts(conn, keys.limit_overrides(k)) if k in keys.RATE_KINDS else _hash(conn, keys.limit_overrides(k)))
            for k in keys.LIMIT_KINDS
        },
    }
