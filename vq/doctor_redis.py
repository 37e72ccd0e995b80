"""`vq doctor`'s checks of the Redis server: its version, its persistence (what a restart
loses) and its eviction policy (whether it may drop jobs)."""

from __future__ import annotations

import redis

from vq.doctor_findings import Finding

MIN_REDIS = (6, 2)  # XAUTOCLAIM (webhooks), GETDEL, ZADD GT; RQ 3 needs 5+


def version(info: dict) -> Finding:
    version = str(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS:
        return Finding(
            "redis",
            "fail",
            f"Redis {version} is older than {'.'.join(map(str, MIN_REDIS))}",
            "upgrade Redis to 6.2 or newer (7.x recommended)",
        )
    return Finding("redis", "ok", f"reachable, Redis {version}, {info.get('connected_clients', '?')} clients")


def _config(conn, name: str) -> str | None:
    try:
        return (conn.config_get(name) or {}).get(name)
    except redis.ResponseError:
        return None  # CONFIG is disabled (managed Redis): INFO is all we have


def persistence(conn, info: dict) -> Finding:
    aof = bool(info.get("aof_enabled"))
    save = _config(conn, "save")
    if not aof and save is None:
        return Finding(
            "persistence",
            "warn",
            "AOF is off and CONFIG is disabled, so RDB snapshots cannot be checked: a restart may lose every job",
            "turn on AOF (appendonly yes)",
        )
    rdb = bool(save and save.strip())
    if aof:
        fsync = _config(conn, "appendfsync") or "everysec"
        loss = {
            "always": "nothing acknowledged",
            "everysec": "at most the last second of changes",
            "no": "what the OS had not flushed (up to ~30 s)",
        }.get(fsync, "recent changes")
        status = "warn" if fsync == "no" else "ok"
        return Finding(
            "persistence",
            status,
            f"AOF on (appendfsync {fsync}): a restart loses {loss}",
            "set appendfsync everysec" if status == "warn" else None,
        )
    if rdb:
        return Finding(
            "persistence",
            "warn",
            f"RDB snapshots only (save {save}): a restart loses every job change since the last snapshot",
            "turn on AOF: CONFIG SET appendonly yes (and appendonly yes in redis.conf)",
        )
    return Finding(
        "persistence",
        "fail",
        "no persistence (AOF off, no RDB snapshots): a Redis restart loses "
        "every waiting job, every schedule and every recurring definition",
        "CONFIG SET appendonly yes, and appendonly yes in redis.conf",
    )


def eviction(conn, info: dict) -> Finding:
    policy = info.get("maxmemory_policy") or _config(conn, "maxmemory-policy") or "unknown"
    cap = int(info.get("maxmemory", 0) or 0)
    if policy != "noeviction":
        return Finding(
            "eviction",
            "fail",
            f"maxmemory-policy is {policy}: when memory is full Redis deletes keys, jobs among them",
            "CONFIG SET maxmemory-policy noeviction (and in redis.conf): a full Redis then refuses new jobs instead",
        )
    if not cap:
        return Finding("eviction", "ok", "noeviction, no maxmemory: Redis may grow until the host runs out", None)
    used = int(info.get("used_memory", 0))
    status = "warn" if used / cap > 0.8 else "ok"
    return Finding(
        "eviction",
        status,
        f"noeviction; memory {used / cap:.0%} of maxmemory {cap / 1_048_576:.0f} MB",
        "raise maxmemory or drain the backlog" if status == "warn" else None,
    )
