"""Resource-aware admission (GPUs): what a daemon's worker processes have and what a job needs.

A daemon advertises resources (`--resources gpu=2,vram=80`, or `daemon.resources`), split
evenly over its worker processes at start, or gives each worker the same
(`--resources-per-worker`, `daemon.resourcesPerWorker`). A job needs some (its type's
`resources`, or its own at submission, stored in its hash as `vq_resources`). Admission
(vq/lua/admit_resources.lua) gives a job only to a worker process whose free share covers
its need, and holds what it took as a lease beside the job's others (vq/lua/resources.lua).

`gpu` is counted in whole devices, and a worker owns device indices: the job gets some of
them (ctx.resources["gpu"], CUDA_VISIBLE_DEVICES). Every other resource is an amount.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from vq.errors import InvalidInput

GPU = "gpu"
Amounts = dict[str, float]

# This worker process's share (set by vq/daemon_children.py worker_main): admission passes it
# in its options, so the Lua gives this process only jobs its free share covers.
THIS_WORKER: WorkerShare | None = None


@dataclass(frozen=True)
class WorkerShare:
    """One worker process's resources: amounts, and the GPU device indices it owns."""

    amounts: Amounts
    devices: list[int] = field(default_factory=list)
    holder: str = ""  # the worker process's name: its jobs' resource leases are kept under it

    def options(self) -> dict:
        """What admission's options carry (vq/lua/admit_common.lua `resources`)."""
        return {"holder": self.holder, "capacity": self.amounts, "devices": self.devices}


# The attribute on an admitted job with what admission gave it of its worker's resources,
# from the hash admission returned (vq/rq_seam/queue.py): ctx.resources without a read.
ADMITTED_HELD = "_vq_admitted_held"


def named(share: WorkerShare, holder: str) -> WorkerShare:
    """This worker process's share under its name (its jobs' leases are kept under it)."""
    return WorkerShare(share.amounts, share.devices, holder)


def advertise(conn, share: WorkerShare) -> None:
    """A worker process's share, under its name, for `vq workers`, `vq limits` and `vq doctor`
    (admission reads THIS_WORKER instead). Written once its RQ worker key exists
    (VqWorker.register_birth): readers drop the advertisement of a worker without one
    (live_workers), which once dropped a worker's share read between the two for good."""
    from vq import keys

    conn.hset(keys.WORKER_RESOURCES, share.holder, json.dumps({"capacity": share.amounts, "devices": share.devices}))


def withdraw_in(pipe, holder: str) -> None:
    """A stopping or dead worker's share no longer counts (its key lives on a minute)."""
    from vq import keys

    pipe.hdel(keys.WORKER_RESOURCES, holder)


def parse(text: str, where: str) -> Amounts:
    """`gpu=2,vram=80` as amounts; a malformed one is refused naming `where` (the option)."""
    out: Amounts = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInput(f"{where}: expected name=amount[,name=amount...], got {part!r}", field=where)
        try:
            amount = float(value)
        except ValueError:
            raise InvalidInput(f"{where}: {name}={value!r} is not a number", field=where) from None
        out[name] = amount
    return checked(out, where)


def checked(obj: object, where: str) -> Amounts:
    """A mapping of resource name to a non-negative finite amount (gpu: whole devices)."""
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: expected an object of resource name to amount", field=where)
    out: Amounts = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
            raise InvalidInput(f"{where}: {name!r} is not a resource name (letters, digits, _ -)", field=where)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InvalidInput(f"{where}: {name}: expected an amount of 0 or more", field=where)
        if name == GPU and value != int(value):
            raise InvalidInput(f"{where}: gpu: expected whole devices", field=where)
        out[name] = int(value) if value == int(value) else float(value)
    return out


def text_of(amounts: Amounts) -> str:
    """`gpu=1,vram=24`, in name order."""
    return ",".join(f"{name}={_number(value)}" for name, value in sorted(amounts.items()))


def held_text(held: dict) -> str:
    """What a running job holds, for people: `gpu=1 (device 1),vram=24` (gpu: its indices)."""
    parts = []
    for name, value in sorted(held.items()):
        if isinstance(value, list):
            devices = ",".join(str(d) for d in value)
            parts.append(f"{name}={len(value)} (device{'s' if len(value) != 1 else ''} {devices})")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{name}={_number(value)}")
    return ",".join(parts)


def usage_text(have: Amounts, in_use: dict) -> str:
    """`gpu 1/2 (#1) vram 24/80`: in use / capacity per resource, in name order; where in use
    are device indices (a worker's GPUs), they follow the count."""
    parts = []
    for name, amount in sorted(have.items()):
        used = in_use.get(name, 0)
        devices = f" (#{','.join(str(d) for d in used)})" if isinstance(used, list) and used else ""
        used = len(used) if isinstance(used, list) else used
        parts.append(f"{name} {_number(round(used, 3))}/{_number(round(amount, 3))}{devices}")
    return " ".join(parts)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def split(total: Amounts, workers: int) -> list[WorkerShare]:
    """A daemon's resources over its worker processes: whole amounts as whole units, the
    remainder to the first workers (gpu=3 over 2: 2 and 1); fractional ones evenly. GPU
    devices are numbered in worker order (gpu=2 over 2: worker 0 owns [0], worker 1 [1])."""
    shares: list[Amounts] = [{} for _ in range(workers)]
    for name, value in total.items():
        if value == int(value):
            base, extra = divmod(int(value), workers)
            for i in range(workers):
                shares[i][name] = base + (1 if i < extra else 0)
        else:
            for i in range(workers):
                shares[i][name] = value / workers
    return _numbered(shares)


def per_worker(each: Amounts, workers: int) -> list[WorkerShare]:
    """The same share for each worker; GPU devices numbered in worker order."""
    return _numbered([dict(each) for _ in range(workers)])


def _numbered(shares: list[Amounts]) -> list[WorkerShare]:
    out, first = [], 0
    for amounts in shares:
        count = int(amounts.get(GPU, 0))
        out.append(WorkerShare(amounts, list(range(first, first + count))))
        first += count
    return out


def shares_for(total: Amounts | None, each: Amounts | None, workers: int) -> list[WorkerShare] | None:
    """The workers' shares from a daemon's resources (`each` wins), or None: none advertised."""
    if each:
        return per_worker(checked(each, "resourcesPerWorker"), workers)
    if total:
        return split(checked(total, "resources"), workers)
    return None


def largest_possible(total: Amounts | None, each: Amounts | None) -> Amounts | None:
    """The most one worker of this configuration could ever have (all of `total`, with one
    worker), or None: no resources configured here."""
    return dict(each) if each else dict(total) if total else None


def beyond(need: Amounts, most: Amounts) -> str | None:
    """The first resource of `need` that `most` cannot cover, as `gpu=2` (or None)."""
    for name, amount in sorted(need.items()):
        if amount > most.get(name, 0):
            return f"{name}={_number(amount)}"
    return None


def encoded(need: Amounts) -> str:
    return json.dumps(need, separators=(",", ":"), sort_keys=True)


def decoded(raw: bytes | str | None) -> dict:
    """A hash field's JSON object (a job's need, or what it holds), or {}."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def held_view(raw: bytes | str | None) -> dict:
    """What a running job holds, as its handler sees it (ctx.resources): gpu as the device
    indices it was given, every other resource as its amount."""
    held = decoded(raw)
    held.pop("holder", None)
    return held


def cuda_visible(held: dict) -> str | None:
    """CUDA_VISIBLE_DEVICES for a job holding GPUs (None: it holds none)."""
    devices = held.get(GPU)
    if not isinstance(devices, list) or not devices:
        return None
    return ",".join(str(d) for d in devices)


@contextmanager
def visible_devices(held: dict) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES set to the job's GPUs while its handler runs, and put back after.
    Only where the job has the process to itself: in a worker's main thread (a job of a type
    run in threads shares the process's environment, and reads ctx.resources instead)."""
    visible = cuda_visible(held)
    if visible is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = visible
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def drop_lapsed(conn, now_ms: int) -> int:
    """Drop lapsed resource leases (stalled-job recovery, after it settled their jobs:
    vq/stalled.py) and dead workers' advertised shares. Admission counts live leases only,
    so this is tidying, not correctness."""
    from vq import keys

    dropped = 0
    for key in conn.scan_iter(match=keys.running_resources("*"), count=500):
        dropped += conn.zremrangebyscore(key, "-inf", now_ms)
    return dropped


def live_workers(conn) -> dict[str, dict]:
    """The advertised shares of live worker processes, by name: {capacity, devices, inUse}
    (inUse: what their live jobs hold, summed; gpu as the device indices in use). A dead
    worker's entry (its RQ worker key gone) is dropped here."""
    import time

    from vq import keys

    entries = {k.decode(): decoded(v) for k, v in conn.hgetall(keys.WORKER_RESOURCES).items()}
    if not entries:
        return {}
    names = sorted(entries)
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(keys.rq_worker(name))
        alive = pipe.execute()
    gone = [name for name, exists in zip(names, alive) if not exists]
    if gone:
        conn.hdel(keys.WORKER_RESOURCES, *gone)
    now_ms = int(time.time() * 1000)
    out = {}
    for name in (n for n, exists in zip(names, alive) if exists):
        ids = [i.decode() for i in conn.zrangebyscore(keys.running_resources(name), now_ms, "+inf")]
        in_use: dict = {}
        for job_id in ids:
            for res, value in held_view(conn.hget(keys.rq_job(job_id), keys.HELD_FIELD)).items():
                if isinstance(value, list):
                    in_use[res] = sorted([*in_use.get(res, []), *value])
                elif isinstance(value, (int, float)):
                    in_use[res] = in_use.get(res, 0) + value
        entry = entries[name]
        out[name] = {"capacity": entry.get("capacity", {}), "devices": entry.get("devices", []), "inUse": in_use}
    return out


def largest_live(conn) -> Amounts:
    """Per resource, the most any live worker process has."""
    most: Amounts = {}
    for entry in live_workers(conn).values():
        for name, value in entry["capacity"].items():
            most[name] = max(most.get(name, 0), value)
    return most


def totals(conn) -> list[dict]:
    """Per resource, over every live worker process: in use / had, and how many workers
    have some (`vq limits`)."""
    sums: dict[str, dict] = {}
    for entry in live_workers(conn).values():
        for name, have in entry["capacity"].items():
            row = sums.setdefault(name, {"resource": name, "inUse": 0, "capacity": 0, "workers": 0})
            used = entry["inUse"].get(name, 0)
            row["inUse"] += len(used) if isinstance(used, list) else used
            row["capacity"] += have
            row["workers"] += 1 if have else 0
    return [sums[name] for name in sorted(sums)]
