"""The `features` part of scripts/bench/throughput.py: the drain with admission's newer rules
on against the same drain without them, in interleaved rounds of one run.

"on": weighted fair shares (the tiers' weights 8/4/2/1, and the bench's users spread over
the four tiers at normal priority) and a limit group keyed on `data.model` (four models,
each with room enough that the group never binds), so every admission reads the weights,
checks and leases a group slot, and every end gives it back. "off": the same users and
data, no weights, no groups. "resources": as "off", but the daemon advertises one GPU per
worker process (`--resources gpu=N` over its N workers) and the type needs one
(`resources: {gpu: 1}`), so every admission checks the worker's free share and leases a
device, and every end gives it back. Each ratio to "off" is held to ≥ 0.9 (issue 24).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from _common import JOB_TYPE, BenchError, run_vq, write_vq_config
from weighted import WEIGHTS

from vq import keys
from vq.submission import Submission

TIERS = tuple(WEIGHTS)
MODELS = ("sdxl", "flux", "kandinsky", "sd15")
USERS = 50
VARIANTS = ("off", "on", "resources")


def _subs(n: int) -> list[Submission]:
    return [
        Submission(
            job_type=JOB_TYPE,
            data={"model": MODELS[i % len(MODELS)]},
            user_id=f"user-{i % USERS:03d}",
            subscription=TIERS[i % USERS % len(TIERS)],
            priority="normal",
        )
        for i in range(n)
    ]


def _configs(workdir: Path, redis_url: str) -> dict[str, Path]:
    limits = {"type": {JOB_TYPE: 1000}, "user": dict.fromkeys(TIERS, 1000)}
    off = write_vq_config(workdir, redis_url, concurrency=limits, name="vq-features-off.yaml")
    on = write_vq_config(
        workdir,
        redis_url,
        concurrency={
            **limits,
            "weights": dict(WEIGHTS),
            "groups": {"model": {"key": "data.model", "limit": 1000, "types": [JOB_TYPE]}},
        },
        name="vq-features-on.yaml",
    )
    noop_gpu = {JOB_TYPE: {"handler": "bench_handlers:noop", "attempts": 1, "resources": {"gpu": 1}}}
    gpu = write_vq_config(workdir, redis_url, job_types=noop_gpu, concurrency=limits, name="vq-features-gpu.yaml")
    return {"off": off, "on": on, "resources": gpu}


def part_features(conn, args, workdir: Path, server, progress) -> dict:
    configs = _configs(workdir, server.url)
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    gpus = ("--resources", f"gpu={args.workers}")  # one GPU per worker process
    for run in range(1, args.runs + 1):
        for variant in VARIANTS:  # interleaved: a slow spell of the machine hits each
            result = run_vq(
                conn,
                args,
                run,
                workdir,
                configs[variant],
                args.timeout,
                _subs(args.jobs),
                daemon_args=gpus if variant == "resources" else (),
            )
            if variant == "on":
                _check_groups_in_effect(conn)
            if variant == "resources":
                _check_resources_in_effect(conn)
            rates[variant].append(result.drain_rate)
            progress.print(
                f"run {run} features {variant:<9} drain {result.drain_s:6.2f}s = {result.drain_rate:7,.0f}/s"
            )
    off, on, gpu = (statistics.median(rates[variant]) for variant in VARIANTS)
    # Each round's drain against the "off" drain of the same round: a slow spell of a shared
    # machine hits a round's drains alike, so the median of these is steadier than the ratio
    # of the medians (the target's measure).
    per_round = {
        variant: [round(a / b, 3) for a, b in zip(rates[variant], rates["off"])] for variant in ("on", "resources")
    }
    return {
        "off_jobs_per_s": off,
        "on_jobs_per_s": on,
        "ratio": on / off,
        "ratio_per_round": per_round["on"],
        "resources_jobs_per_s": gpu,
        "resources_ratio": gpu / off,
        "resources_ratio_per_round": per_round["resources"],
        "runs": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
    }


def _job_fields(conn, field: str) -> list:
    """`field` of every job's RQ hash (not the hashes' sub-keys)."""
    job_keys = [
        k
        for k in conn.scan_iter(match=keys.RQ_JOB_PREFIX + "*", count=1000)
        if b":" not in k[len(keys.RQ_JOB_PREFIX) :]
    ]
    with conn.pipeline(transaction=False) as pipe:
        for key in job_keys:
            pipe.hget(key, field)
        return pipe.execute()


def _check_resources_in_effect(conn) -> None:
    """Every job of the "resources" drain needed a GPU and was given one, and none is left held."""
    needs = _job_fields(conn, keys.RESOURCES_FIELD)
    if not needs or not all(n == b'{"gpu":1}' for n in needs):
        raise BenchError("features resources: a job without its need (vq_resources)")
    held = _job_fields(conn, keys.HELD_FIELD)
    if not all(h and b'"gpu":[' in h for h in held):
        raise BenchError("features resources: a job that ran without holding a GPU (vq_held)")
    if any(conn.zcard(k) for k in conn.scan_iter(match=keys.RUNNING_RESOURCES_PREFIX + "*")):
        raise BenchError("features resources: resource leases still held after the drain")


def _check_groups_in_effect(conn) -> None:
    """Every job of the "on" drain carried its group key, and no group slot is left held."""
    fields = _job_fields(conn, keys.GROUPS_FIELD)
    if not fields or not all(f and b"model" in f for f in fields):
        raise BenchError("features on: a job without its limit group key (vq_groups)")
    if any(conn.zcard(k) for k in conn.scan_iter(match=keys.RUNNING_GROUP_PREFIX + "*")):
        raise BenchError("features on: group slots still held after the drain")
