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
from vq.replies import text, texts

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


def config_rates(settings: Settings) -> dict[str, tuple[int, int]]:
    """The config's group rates, (starts, window ms), keyed as `limit_field` keys limits."""
    return {
        limit_field(name, key): rate
        for name, group in settings.concurrency.groups.items()
        for key, rate in group.rates.items()
    }


def rate_text(rate: tuple[int, int]) -> str:
    """A rate as the limits hashes keep it (and admission parses it): "<starts>/<window ms>"."""
    return f"{rate[0]}/{rate[1]}"


def rate_shown(rate: tuple[int, int]) -> str:
    """A rate as people write it: 10/1m, 3/2s, 5/1500ms."""
    starts, ms = rate
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{starts}/{ms // size}{unit}"
    return f"{starts}/{ms}ms"


def rate_of(rates: dict[str, tuple[int, int]], group: str, key: str) -> tuple[int, int] | None:
    """A key's rate, (starts, window ms), from the group rates in force; None: no rate."""
    found = rates.get(limit_field(group, key))
    return found if found is not None else rates.get(group)


def limit_of(limits: dict[str, int], group: str, key: str) -> int | None:
    """A key's limit from the group limits in force (`limit_field` -> n); None: not limited."""
    found = limits.get(limit_field(group, key))
    return found if found is not None else limits.get(group)


def holding(
    conn: Redis, groups: dict[str, str], limits: dict[str, int], rates: dict[str, tuple[int, int]]
) -> tuple[str, str, str] | None:
    """The first of a job's groups that holds it back, as admission judges it
    (vq/lua/groups.lua): (group, key, why) with why `2/2 running` (its slots are full) or
    `10 starts in 1m` (its rate is spent); None when every group has room."""
    now_ms = int(time.time() * 1000)
    with conn.pipeline(transaction=False) as pipe:
        for name, key in groups.items():
            rate = rate_of(rates, name, key)
            pipe.zcount(keys.running_group(name, key), now_ms, "+inf")
            pipe.zcount(keys.group_starts(name, key), f"({now_ms - rate[1]}" if rate else "+inf", "+inf")
        replies = iter(pipe.execute())
    for name, key in groups.items():
        running, starts = next(replies), next(replies)
        limit, rate = limit_of(limits, name, key), rate_of(rates, name, key)
        if limit is not None and running >= limit:
            return name, key, f"{running}/{limit} running"
        if rate is not None and starts >= rate[0]:
            return name, key, f"{starts} starts in {rate_shown(rate).partition('/')[2]}"
    return None


WAITING_STATUSES = (b"queued", b"rate_limited")  # a job in a user's line keeps RQ's `queued`
TIDY_MAX = 1000  # waiting ids per group key looked at per recovery run
TIDY_KEYS = 200  # group keys looked at per group and recovery run
_tidy_cursors: dict[str, int] = {}  # waiting set -> where the last run's ZSCAN stopped


def drop_lapsed(conn: Redis, settings: Settings, now_ms: int) -> int:
    """Drop the lapsed leases of every configured group's keys (stalled-job recovery, after it
    has settled their jobs: vq/stalled.py), so a running set does not keep a dead worker's
    entries. Admission counts live leases only, so this is tidying, not correctness. Also
    tidies the waiting sets (`tidy_waiting`)."""
    dropped = 0
    for name in settings.concurrency.groups:
        for key in conn.scan_iter(match=keys.running_group(name, "*"), count=500):
            dropped += conn.zremrangebyscore(key, "-inf", now_ms)
        dropped += tidy_waiting(conn, name)
    return dropped


def tidy_waiting(conn: Redis, name: str) -> int:
    """Drop from a group's waiting sets the ids of jobs no longer waiting that no step took out
    (every step that takes a job out of line does: admission, cancel, remove, clear, expiry;
    this is for the rest, such as a job hash that expired or was deleted by hand), and from its
    index the keys with nothing waiting, running or counted by a rate. Bounded per run, each
    resuming where the last stopped: up to TIDY_KEYS keys of the index, TIDY_MAX ids of each
    key's set. A million waiting jobs are looked through over many runs, never at once."""
    index = keys.group_keys(name)
    cursor, found = conn.sscan(index, _tidy_cursors.get(index, 0), count=TIDY_KEYS)
    _tidy_cursors[index] = cursor
    group_keys = sorted({text(k) for k in found})
    with conn.pipeline(transaction=False) as pipe:
        for key in group_keys:
            waiting = keys.group_waiting(name, key)
            pipe.zscan(waiting, _tidy_cursors.get(waiting, 0), count=TIDY_MAX)
        scans = pipe.execute()
    ids: dict[str, list[str]] = {}
    for key, (next_cursor, members) in zip(group_keys, scans):
        _tidy_cursors[keys.group_waiting(name, key)] = next_cursor
        ids[key] = [text(member) for member, _ in members]
    with conn.pipeline(transaction=False) as pipe:
        for key in group_keys:
            for job_id in ids[key]:
                pipe.hget(keys.rq_job(job_id), "status")
        statuses = iter(pipe.execute())
    with conn.pipeline(transaction=False) as pipe:
        for key in group_keys:
            gone = [job_id for job_id in ids[key] if next(statuses) not in WAITING_STATUSES]
            if gone:
                pipe.zrem(keys.group_waiting(name, key), *gone)
            else:
                pipe.echo(0)  # one reply per key either way
            pipe.exists(keys.group_waiting(name, key), keys.running_group(name, key), keys.group_starts(name, key))
        replies = iter(pipe.execute())
    dropped, empty = 0, []
    for key in group_keys:
        dropped += int(next(replies))
        if not next(replies):
            empty.append(key)
            _tidy_cursors.pop(keys.group_waiting(name, key), None)
    if empty:
        conn.srem(index, *empty)
    return dropped


def overview(conn: Redis, settings: Settings, limits: dict[str, int], rates: dict[str, tuple[int, int]]) -> list[dict]:
    """Per group: its key fields, its default limit and rate, and each key that has jobs
    running, waiting or started within its rate's window, or a limit or rate of its own:
    running / limit, waiting, and with a rate, the starts in the current window (a group only
    set at runtime is shown too). The keys come from the group's index (keys.group_keys),
    not a scan of the keyspace: a few reads per key however many jobs wait."""
    now_ms = int(time.time() * 1000)
    configured = settings.concurrency.groups
    names = sorted(set(configured) | {field.partition("=")[0] for field in (*limits, *rates)})
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.smembers(keys.group_keys(name))
        indexed = [sorted(texts(found)) for found in pipe.execute()]
    out = []
    for name, seen in zip(names, indexed):
        own = [f.partition("=")[2] for f in (*limits, *rates) if f.partition("=")[0] == name and "=" in f]
        candidates = sorted(set(seen) | set(own))
        with conn.pipeline(transaction=False) as pipe:
            for key in candidates:
                rate = rate_of(rates, name, key)
                pipe.zcount(keys.running_group(name, key), now_ms, "+inf")
                pipe.zcard(keys.group_waiting(name, key))
                pipe.zcount(keys.group_starts(name, key), f"({now_ms - rate[1]}" if rate else "+inf", "+inf")
            replies = iter(pipe.execute())
        rows = []
        for key in candidates:
            running, waiting, starts = next(replies), next(replies), next(replies)
            rate = rate_of(rates, name, key)
            if running or waiting or (rate and starts) or key in own:
                rows.append(
                    {
                        "key": key,
                        "running": running,
                        "limit": limit_of(limits, name, key),
                        "waiting": waiting,
                        "rate": rate_shown(rate) if rate else None,
                        "starts": starts if rate else None,
                    }
                )
        default_rate = rates.get(name)
        out.append(
            {
                "group": name,
                "keyedOn": configured[name].fields if name in configured else None,
                "default": limits.get(name),
                "defaultRate": rate_shown(default_rate) if default_rate else None,
                "keys": rows,
            }
        )
    return out
