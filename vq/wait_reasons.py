"""Why a waiting job waits, and where it stands in line: `vq show`'s `waitReason`,
`position` and `usersAhead` for a job admission holds back (vq/admission.py decides; this
explains, reading the same lines, rings, leases and limits)."""

from __future__ import annotations

import time

from redis import Redis

from vq import capacity, groups, keys, limits
from vq.model import job_type_of, priority_of
from vq.replies import members, optional_text, text


def wait_info(
    conn: Redis,
    job,
    user_limit: int,
    type_limit: int,
    group_limits: dict[str, int] | None = None,
    group_rates: dict[str, tuple[int, int]] | None = None,
) -> dict:
    """Why a waiting job waits, and where it stands in line. `group_limits` and `group_rates`:
    the group limits and rates in force (vq/limits.py effective()["group"], group_rates())."""
    job_type = job_type_of(job)
    user = job.meta.get("userId") or "_"
    submitted = priority_of(job) or "normal"
    priority = optional_text(conn.hget(keys.AGED, job.id)) or submitted
    now = int(time.time() * 1000)
    with conn.pipeline(transaction=False) as pipe:
        pipe.sismember(keys.PAUSED, job_type)
        pipe.zcount(keys.running_type(job_type), now, "+inf")
        pipe.zcount(keys.running_user(user), now, "+inf")
        pipe.lpos(keys.waiting_list(job_type, priority, user), job.id)
        pipe.lpos(keys.ring(job_type, priority), user)
        pipe.hget(keys.rq_job(job.id), keys.GROUPS_FIELD)
        pipe.zrank(keys.deadline_line(job_type, priority, user), job.id)
        pipe.zcard(keys.deadline_line(job_type, priority, user))
        pipe.hget(keys.rq_job(job.id), keys.RESOURCES_FIELD)
        paused, type_running, user_running, position, users_ahead, in_groups, dated_rank, dated, raw_need = (
            pipe.execute()
        )
    group_held = groups.holding(conn, groups.decoded(in_groups), group_limits or {}, group_rates or {})
    need = capacity.decoded(raw_need)
    if dated_rank is not None:  # jobs with a deadline go first, earliest first (vq/lua/admit_deadline.lua)
        position = dated_rank
    elif position is not None:
        position += dated
    if paused:
        reason = "queue paused"
    elif type_running >= type_limit:
        reason = f"type limit {type_running}/{type_limit}"
    elif user_running >= user_limit:
        reason = f"user limit {user_running}/{user_limit}"
    elif group_held is not None:
        name, key, why = group_held
        reason = f"group {name}={key}: {why}"
    elif need and (too_big := _beyond_every_worker(conn, need)):
        reason = too_big
    elif position and (
        held := _first_held_by_a_group(conn, job_type, priority, user, group_limits or {}, group_rates or {})
    ):
        reason = held  # its own groups have room, but the job first in its user's line waits for one
    elif need:
        reason = f"waiting for a worker with {capacity.text_of(need)} free"
    else:
        reason = "waiting for a worker"
    return {
        "waitReason": reason,
        "position": None if position is None else position + 1,
        "usersAhead": users_ahead,
        "agedTo": priority if priority != submitted else None,
    }


def _beyond_every_worker(conn: Redis, need: dict) -> str | None:
    """`needs gpu=2: the largest worker has gpu=1` when no live worker process could ever run
    the job (vq/capacity.py), else None."""
    most = capacity.largest_live(conn)
    over = capacity.beyond(need, most)
    if over is None:
        return None
    name = over.partition("=")[0]
    if not most.get(name):
        return f"needs {over}: no live worker has {name}"
    return f"needs {over}: the largest worker has {capacity.text_of({name: most[name]})}"


def _first_held_by_a_group(
    conn: Redis, job_type: str, priority: str, user: str, group_limits: dict, group_rates: dict
) -> str | None:
    """Why the job first in this user's line waits, when a full group holds it there."""
    dated = members(conn.zrange(keys.deadline_line(job_type, priority, user), 0, 0))  # jobs with a deadline go first
    first = dated[0] if dated else optional_text(conn.lindex(keys.waiting_list(job_type, priority, user), 0))
    if first is None:
        return None
    first_groups, first_need = conn.hmget(keys.rq_job(text(first)), [keys.GROUPS_FIELD, keys.RESOURCES_FIELD])
    found = groups.holding(conn, groups.decoded(first_groups), group_limits, group_rates)
    if found is None:
        need = capacity.decoded(first_need)
        too_big = _beyond_every_worker(conn, need) if need else None
        return f"behind {text(first)}, which {too_big}" if too_big else None
    name, key, why = found
    return f"behind {text(first)}, held by group {name}={key}: {why}"


def held_at_start(conn: Redis, settings, job_type: str, user: str, in_force: dict | None = None) -> str:
    """Which limit was at its bound as a job of `job_type` for `user` started (the job
    counted): the one that most likely held it, told after the fact for its trace's wait
    span (vq/telemetry/jobs.py). `in_force`: limits.effective's answer, when the caller
    keeps one."""
    in_force = in_force or limits.effective(conn, settings)
    type_limit = limits.type_limit(conn, settings, job_type, in_force)
    user_limit = limits.user_limit(conn, settings, user or "_", in_force)
    now = int(time.time() * 1000)
    with conn.pipeline(transaction=False) as pipe:
        pipe.sismember(keys.PAUSED, job_type)
        pipe.zcount(keys.running_type(job_type), now, "+inf")
        pipe.zcount(keys.running_user(user or "_"), now, "+inf")
        paused, type_running, user_running = pipe.execute()
    if paused:
        return "queue paused"
    if type_running >= type_limit:
        return f"type limit {type_running}/{type_limit}"
    if user_running >= user_limit:
        return f"user limit {user_running}/{user_limit}"
    return "waiting for a worker"
