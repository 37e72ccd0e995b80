"""`vq doctor`'s check of resource-aware admission (GPUs, vq/capacity.py): a job type, or a
waiting job, that needs more of a resource than any live worker process has. Admission never
gives such a job to anyone, so it waits until a daemon with enough starts (its waitReason says
so, one job at a time); this names every such type at once, with what the largest live worker
has. Submission refuses a need only against the submitting host's own configuration, and a
host with none accepts every need, so such jobs can exist."""

from __future__ import annotations

from collections import defaultdict

from redis import Redis

from vq import capacity, keys, presence
from vq.config import Settings
from vq.doctor_findings import Finding
from vq.jobtypes import job_types

# The oldest waiting jobs read per type and priority: enough to find jobs that asked for more
# than their type (`vq submit --resources`), at a bounded cost whatever the backlog.
SAMPLE_PER_LEVEL = 200


def resources(conn: Redis, settings: Settings) -> list[Finding]:
    """One finding: warn naming each type (and waiting jobs) no live worker can run, ok when
    every need fits; none when nothing here needs resources or no daemon is live (the
    daemons check fails then, and no worker has anything to compare with)."""
    if not any(d["live"] for d in presence.daemons(conn)):
        return []
    types = job_types(settings)
    type_needs = {name: jt.resources for name, jt in types.items() if jt.resources}
    waiting = _waiting_needs(conn, list(types))
    if not type_needs and not waiting:
        return []
    most = capacity.largest_live(conn)
    problems = []
    for name, need in sorted(type_needs.items()):
        if over := capacity.beyond(need, most):
            problems.append(f"job type {name} needs {over} (job_types.{name}.resources): {_has(most, over)}")
    for name, jobs in sorted(waiting.items()):
        too_big = [(job_id, over) for job_id, need in jobs if (over := capacity.beyond(need, most))]
        if not too_big or (name in type_needs and capacity.beyond(type_needs[name], most)):
            continue  # fits, or its type is named above
        job_id, over = too_big[0]
        problems.append(
            f"{len(too_big)} waiting job(s) of {name} need more than any live worker has "
            f"(e.g. {job_id} needs {over}: {_has(most, over)})"
        )
    if problems:
        return [
            Finding(
                "resources",
                "warn",
                "; ".join(problems) + ": such jobs wait until a worker with enough starts",
                "start a daemon whose worker processes each have enough (`vq daemon --resources-per-worker "
                "gpu=N`, or daemon.resources on a host with fewer workers: --resources is split over its "
                "worker processes), or lower the type's resources; cancel jobs that asked for too much "
                "(`vq cancel ID`)",
            )
        ]
    shown = capacity.text_of(most) if most else "nothing"
    return [Finding("resources", "ok", f"every need fits a live worker (the largest has {shown})")]


def _has(most: dict, over: str) -> str:
    """`the largest live worker has gpu=2`, or `no live worker has gpu`."""
    name = over.partition("=")[0]
    if not most:
        return "no live worker advertises any resources"
    if not most.get(name):
        return f"no live worker has {name}"
    return f"the largest live worker has {capacity.text_of({name: most[name]})}"


def _waiting_needs(conn: Redis, type_names: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """Per type, the needs of its oldest waiting jobs that need anything: [(id, need)]."""
    with conn.pipeline(transaction=False) as pipe:
        for name in type_names:
            for key in keys.wait_since_all(name):
                pipe.zrange(key, 0, SAMPLE_PER_LEVEL - 1)
        ranges = pipe.execute()
    levels = len(keys.PRIORITY_ORDER)
    ids = [
        (name, member.decode())
        for i, name in enumerate(type_names)
        for chunk in ranges[i * levels : (i + 1) * levels]
        for member in chunk
    ]
    if not ids:
        return {}
    with conn.pipeline(transaction=False) as pipe:
        for _name, job_id in ids:
            pipe.hget(keys.rq_job(job_id), keys.RESOURCES_FIELD)
        raw = pipe.execute()
    out: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for (name, job_id), value in zip(ids, raw):
        if need := capacity.decoded(value):
            out[name].append((job_id, need))
    return dict(out)
