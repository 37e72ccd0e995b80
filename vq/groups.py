"""Limit groups (config `concurrency.groups`): jobs that share the value of a field (data.model,
projectId, a composite of fields) share that group's slots on every host, beside their user's and
their type's.

A job's keys are worked out once, at submission, and kept in its RQ hash (keys.GROUPS_FIELD, a
JSON object {group: key}); admission reads them from there (vq/lua/admit_groups.lua) and never
evaluates a path into the job's data. A job whose key field is missing (or not a plain value) is
not limited by that group.
"""

from __future__ import annotations

import json
import time

from redis import Redis

from vq import keys
from vq.config import Settings

DEFAULT = "default"  # the limit key for every value not listed


def _field_value(name: str, user_id: str, project_id: str | None, data: dict) -> str | None:
    """One field's value as text, or None when it is missing or not a plain value."""
    if name == "userId":
        value: object = user_id
    elif name == "projectId":
        value = project_id
    else:
        value = data
        for part in name.split(".")[1:]:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float) and value != "":
        return str(value)
    return None


def key_values(settings: Settings, job_type: str, user_id: str, project_id: str | None, data: dict) -> dict[str, str]:
    """{group: key} of every group that applies to a job of this type and has its key fields."""
    out = {}
    for name, group in settings.concurrency.groups.items():
        if group.types is not None and job_type not in group.types:
            continue
        values = [_field_value(f, user_id, project_id, data) for f in group.fields]
        if all(v is not None for v in values):
            out[name] = "|".join(v for v in values if v is not None)
    return out


def encoded(groups: dict[str, str]) -> str:
    """The job hash's field value (keys.GROUPS_FIELD)."""
    return json.dumps(groups, separators=(",", ":"), sort_keys=True)


def decoded(raw: bytes | str | None) -> dict[str, str]:
    """A job's {group: key} from its hash field; {} when it has none (or it is unreadable)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def text_of(job_groups: dict[str, str]) -> str:
    """A job's limit groups as `model=sdxl,project=p1` (group=key, in name order)."""
    return ",".join(f"{name}={key}" for name, key in sorted(job_groups.items()))


def limit_field(group: str, key: str) -> str:
    """The field of the limits hashes for one key of a group (`default`: the group's default)."""
    return group if key == DEFAULT else f"{group}={key}"


def config_limits(settings: Settings) -> dict[str, int]:
    """The config's group limits as the limits hashes keep them (`limit_field`)."""
    return {
        limit_field(name, key): limit
        for name, group in settings.concurrency.groups.items()
        for key, limit in group.limits.items()
    }


def limit_of(limits: dict[str, int], group: str, key: str) -> int | None:
    """A key's limit from the group limits in force (`limit_field` -> n); None: not limited."""
    found = limits.get(limit_field(group, key))
    return found if found is not None else limits.get(group)


def running(conn: Redis, groups: dict[str, str], now_ms: int | None = None) -> dict[str, int]:
    """Live leases per group of a job's {group: key}."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with conn.pipeline(transaction=False) as pipe:
        for name, key in groups.items():
            pipe.zcount(keys.running_group(name, key), now_ms, "+inf")
        return dict(zip(groups, pipe.execute()))


def full(conn: Redis, groups: dict[str, str], limits: dict[str, int]) -> tuple[str, str, int, int] | None:
    """The first of a job's groups with no room: (group, key, running, limit), or None."""
    counts = running(conn, groups)
    for name, key in groups.items():
        limit = limit_of(limits, name, key)
        if limit is not None and counts[name] >= limit:
            return name, key, counts[name], limit
    return None


def drop_lapsed(conn: Redis, settings: Settings, now_ms: int) -> int:
    """Drop the lapsed leases of every configured group's keys (stalled-job recovery, after it
    has settled their jobs: vq/stalled.py), so a running set does not keep a dead worker's
    entries. Admission counts live leases only, so this is tidying, not correctness."""
    dropped = 0
    for name in settings.concurrency.groups:
        for key in conn.scan_iter(match=keys.running_group(name, "*"), count=500):
            dropped += conn.zremrangebyscore(key, "-inf", now_ms)
    return dropped


def overview(conn: Redis, settings: Settings, limits: dict[str, int]) -> list[dict]:
    """Per group: its key fields, its default limit, and each key that runs jobs or has a limit
    of its own with running / limit (a group only set at runtime is shown too)."""
    now_ms = int(time.time() * 1000)
    configured = settings.concurrency.groups
    names = sorted(set(configured) | {field.partition("=")[0] for field in limits})
    out = []
    for name in names:
        rows: dict[str, int] = {}
        prefix = keys.running_group(name, "")
        for raw in conn.scan_iter(match=keys.running_group(name, "*"), count=500):
            count = conn.zcount(raw, now_ms, "+inf")
            if count:
                rows[raw.decode()[len(prefix) :]] = count
        for field in limits:
            group, sep, key = field.partition("=")
            if group == name and sep:
                rows.setdefault(key, 0)
        out.append(
            {
                "group": name,
                "keyedOn": configured[name].fields if name in configured else None,
                "default": limits.get(name),
                "keys": [
                    {"key": key, "running": rows[key], "limit": limit_of(limits, name, key)} for key in sorted(rows)
                ],
            }
        )
    return out
