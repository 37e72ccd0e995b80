"""Weighted fair shares, for `scripts/bench/fairness.py --weighted`.

Four users, one per subscription tier, flood one type at the same priority (normal), with
the tiers' weights enterprise 8, pro 4, basic 2, free 1 (`concurrency.weights`). While all
four still wait, each one's share of starts should be its weight over the sum (8/15, 4/15,
2/15, 1/15). The shares are counted over the starts made while every flooding user still
had jobs waiting (RQ's own started_at of every job, in order), so the tail, where only the
heaviest is left, does not dilute them.

A light user (free tier, weight 1) submits one job halfway through. The documented bound:
a user who starts waiting joins the end of the turn order, so their first job starts after
at most the sum of the other waiting users' weights in starts (here 15), plus the jobs
already admitted when it arrived (at most the type's limit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    BenchError,
    job_times,
    start_vq_daemon,
    statuses,
    stop_process,
    tail,
    vq_registry_keys,
    wait_until_ended,
)

from vq.config import load_settings
from vq.submission import Submission, submit

JOB_TYPE = "bench-sleep"
WEIGHTS = {"enterprise": 8, "pro": 4, "basic": 2, "free": 1}
LIGHT_USER = "light"


@dataclass
class WeightedRun:
    run: int
    window: int  # starts while every flooding user still waited
    shares: dict[str, float]  # tier -> share of those starts
    expected: dict[str, float]  # tier -> weight / sum of weights
    fifo: dict[str, float]  # tier -> share of as many starts in submission order (plain RQ's FIFO)
    light_ahead: int  # starts between the light job's submission and its start
    light_bound: int  # the documented bound on that
    verified: list[str] = field(default_factory=list)

    @property
    def worst_deviation(self) -> float:
        """The largest |share - expected| / expected over the tiers (0.1 = 10 %)."""
        return max(abs(self.shares[t] - self.expected[t]) / self.expected[t] for t in self.expected)


def config_blocks(type_limit: int) -> dict:
    """The concurrency block: the type's limit and the tiers' weights."""
    return {"type": {JOB_TYPE: type_limit}, "weights": dict(WEIGHTS)}


def weighted_run(conn, args, run: int, workdir: Path, config_path: Path) -> WeightedRun:
    settings = load_settings(config_path, env={})
    conn.flushall()
    finished_keys, failed_keys = vq_registry_keys(conn, JOB_TYPE)
    log_path = workdir / f"vq-daemon-weighted-run{run}.log"
    floods: dict[str, list[str]] = {tier: [] for tier in WEIGHTS}
    seq = 0

    def one(user: str, tier: str) -> str:
        nonlocal seq
        seq += 1  # distinct data: no job is answered from the result cache
        data = {"ms": args.sleep_ms, "seq": seq}
        sub = Submission(job_type=JOB_TYPE, data=data, user_id=user, subscription=tier, priority="normal")
        return submit(conn, settings, sub)

    for _ in range(args.flood):
        for tier in WEIGHTS:
            floods[tier].append(one(f"flood-{tier}", tier))
    total = args.flood * len(WEIGHTS) + 1
    proc = start_vq_daemon(config_path, args.workers, args.vq_log_level, log_path, workdir)
    try:
        deadline = time.monotonic() + args.timeout
        while conn.zcard(finished_keys[1]) < args.flood:  # about a quarter done: the light user arrives
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("weighted run: the daemon stopped or stalled before the light job:\n" + tail(log_path))
            time.sleep(0.01)
        light = one(LIGHT_USER, "free")
        t0 = time.perf_counter()
        wait_until_ended(conn, proc, finished_keys, failed_keys, total, t0, args.timeout, args.poll, log_path)
    finally:
        stop_process(proc)

    ids = [job_id for tier in WEIGHTS for job_id in floods[tier]] + [light]
    if statuses(conn, ids) != {"finished": total}:
        raise BenchError(f"weighted run {run}: statuses {statuses(conn, ids)}, expected all {total} finished")
    owner = {job_id: tier for tier in WEIGHTS for job_id in floods[tier]}
    owner[light] = LIGHT_USER
    times = job_times(conn, ids, "enqueued_at", "started_at")
    started = sorted((row[1], job_id) for job_id, row in zip(ids, times) if row[1] is not None)
    if len(started) != total:
        raise BenchError(f"weighted run {run}: {total - len(started)} jobs have no started_at")
    last_start = {tier: max(t for t, job_id in started if owner[job_id] == tier) for tier in WEIGHTS}
    window_end = min(last_start.values())  # the first flooding user to run out
    window = [owner[job_id] for t, job_id in started if t < window_end and owner[job_id] != LIGHT_USER]
    shares = {tier: window.count(tier) / len(window) for tier in WEIGHTS}
    expected = {tier: weight / sum(WEIGHTS.values()) for tier, weight in WEIGHTS.items()}
    in_submission_order = [owner[job_id] for _t, job_id in sorted((row[0], job_id) for job_id, row in zip(ids, times))]
    first = [o for o in in_submission_order if o != LIGHT_USER][: len(window)]
    fifo = {tier: first.count(tier) / len(first) for tier in WEIGHTS}
    light_enqueued, light_started = times[-1][0], times[-1][1]
    ahead = sum(1 for t, job_id in started if light_enqueued <= t < light_started and job_id != light)
    bound = sum(WEIGHTS.values()) + args.type_limit
    verified = [f"all {total} finished", f"{len(window)} starts while all four waited"]
    return WeightedRun(run, len(window), shares, expected, fifo, ahead, bound, verified)
