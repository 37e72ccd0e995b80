"""What handlers record of their own runs, and how many ran at once by those records.

A stamping handler appends `start`, a `tick` every 50 ms while it runs, and `end` (also
when it is interrupted) to a file, with the wall-clock time. A run lasts from its start to
its last tick or end: a process that was frozen (SIGSTOP) ticks no more, and one that was
killed writes no end, so a run counts only while it really executed. Nothing here goes
through Redis, which a fault scenario may pause. Used by the fault tests and by
scripts/chaos/run.py."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICK = 0.05


def stamp(path: str, what: str, job_id: str, job_type: str, user: str) -> None:
    with open(path, "a") as out:
        out.write(f"{what} {job_id} {job_type} {user} {os.getpid()} {time.time():.6f}\n")


def stamped(ctx, data):
    """Runs for `seconds`, stamping as it goes; with `progress`, reports progress at each tick."""
    path = data.get("stamps") or os.environ["VQ_TEST_STAMPS"]
    stamp(path, "start", ctx.job_id, ctx.job_type, ctx.user_id)
    try:
        end = time.time() + float(data.get("seconds", 1.0))
        while time.time() < end:
            time.sleep(TICK)
            stamp(path, "tick", ctx.job_id, ctx.job_type, ctx.user_id)
            if data.get("progress"):
                ctx.progress(min(99.0, 100 * (1 - (end - time.time()) / float(data.get("seconds", 1.0)))))
    finally:
        stamp(path, "end", ctx.job_id, ctx.job_type, ctx.user_id)
    return {"pid": os.getpid()}


@dataclass
class Run:
    job_id: str
    job_type: str
    user: str
    pid: int
    start: float
    last: float


def runs(path: Path) -> list[Run]:
    """Every run in the file: one per start, lasting to that process's last stamp of the job."""
    found: dict[tuple[str, int], Run] = {}
    done: list[Run] = []
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 6:
            continue  # a line cut by a kill
        what, job_id, job_type, user, pid, at = parts[0], parts[1], parts[2], parts[3], int(parts[4]), float(parts[5])
        key = (job_id, pid)
        if what == "start":
            if key in found:
                done.append(found.pop(key))
            found[key] = Run(job_id, job_type, user, pid, at, at)
        elif key in found:
            found[key].last = max(found[key].last, at)
            if what == "end":
                done.append(found.pop(key))
    return done + list(found.values())


def most_at_once(all_runs: list[Run], key=lambda run: run.job_type) -> dict[str, int]:
    """Per key (type by default; `lambda r: r.user` for users), the most runs that executed
    at the same moment, by their own stamps."""
    points: dict[str, list[tuple[float, int]]] = {}
    for run in all_runs:
        points.setdefault(key(run), []).extend([(run.start, 1), (run.last, -1)])
    most = {}
    for name, events in points.items():
        current = peak = 0
        for _at, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
            current += step
            peak = max(peak, current)
        most[name] = peak
    return most
