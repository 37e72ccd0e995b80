#!/usr/bin/env python3
"""Fairness: how long a light user waits behind one user's flood, in slot turnovers.

One user ("flood") submits 1,000 jobs, then 20 other users ("light-01" ... "light-20")
submit one job each. All jobs are of one type whose concurrency limit (2 by default) is
the bottleneck: every job sleeps a fixed time (20 ms) in a bench handler, and there are
more worker processes (4) than slots. All users are on the enterprise tier (10 slots per
user, so the user limit never binds; all jobs get the same priority).

One *slot turnover* = job duration ÷ type limit (20 ms ÷ 2 = 10 ms): the time in which,
on average, one slot of the type comes free and one more job starts. A light job's wait is
measured from its submission (RQ's enqueued_at, `enqueuedAt` in `vq show`) -- or from the
first job's start when it was submitted before the daemon ran -- until it started
(`startedAt`). Under plain FIFO a light job waits for every job submitted before it that
had not started yet, one turnover each: ~1,000 jobs ahead = ~1,000 turnovers (= ~500 job
durations at limit 2). vq's round-robin between users should let each light job start
within about as many turnovers as there are light users ahead of it.

Jobs hold their slot longer than their sleep (admission, RQ's bookkeeping, events), so the
wait is converted with the *effective* turnover measured in the same run (makespan ÷ jobs);
the conversion with the nominal 10 ms is reported beside it.

Two variants, each on a private throw-away `redis-server`, flushed between runs:

* queued -- the flood and the light jobs are all submitted first (in-process, with
            `vq.submission.submit`), then `vq daemon` starts: everything is already queued.
* live   -- `vq daemon` runs (all its workers registered) while the flood and then the
            light jobs are submitted.

Reported for the light users (all runs pooled): p50/p95/max wait in turnovers and in ms,
the number of jobs that started between the light job's submission and its start, and the
same figures plain FIFO would give (from submission order and the run's own timestamps).
Verified every run: all jobs finished, never more jobs of the type running at once
than its limit, admission left clean.

Run from the repository root:  python scripts/bench/fairness.py [--runs 3 --flood 1000 --light 20]
The defaults take about 2 minutes on a 2-core machine.

`--weighted` measures weighted fair shares instead (scripts/bench/weighted.py): four users of
the four tiers flood the type with weights 8/4/2/1, and their shares of starts are compared
with the weights; a light user arriving mid-flood is held to its documented bound.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchError,
    count_events,
    environment,
    job_times,
    start_vq_daemon,
    statuses,
    stop_process,
    tail,
    versions_line,
    vq_registry_keys,
    wait_until_ended,
    write_vq_config,
)
from _session import add_run_options, bench_parser, bench_session
from rich.table import Table
from rq import Worker
from weighted import WEIGHTS, WeightedRun, config_blocks, weighted_run

from vq import jobs as vq_jobs
from vq import keys
from vq.admission import count_waiting
from vq.config import load_settings
from vq.submission import Submission, submit

JOB_TYPE = "bench-sleep"
TIER = "enterprise"
FLOOD_USER = "flood"
VARIANTS = ("queued", "live")
VARIANT_LABELS = {"queued": "daemon started after all submissions", "live": "daemon running during the submissions"}


@dataclass
class LightWait:
    user: str
    job_id: str
    wait_ms: float  # from max(submission, first job start) to its start
    turnovers: float  # wait_ms ÷ the run's effective turnover (makespan ÷ jobs)
    turnovers_nominal: float  # wait_ms ÷ (sleep_ms ÷ limit): as if jobs held slots for their sleep only
    ahead: int  # jobs that started between its submission (or the first start) and its start
    fifo_ahead: int  # jobs submitted before it that had not started by then: FIFO would run them first


@dataclass
class RunFigures:
    variant: str
    run: int
    jobs: int
    submit_s: float  # submitting the flood and the light jobs
    startup_ms: float | None  # queued: daemon spawn -> first job start
    makespan_s: float  # first job start -> last job end
    effective_turnover_ms: float  # makespan ÷ jobs: how often a slot came free on this machine
    max_running: int  # most jobs of the type running at once (from start/end times)
    light: list[LightWait] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    points = [(s, 1) for s, _e in intervals] + [(e, -1) for _s, e in intervals]
    points.sort(key=lambda p: (p[0], p[1]))  # an end before a start at the same instant
    running = peak = 0
    for _t, delta in points:
        running += delta
        peak = max(peak, running)
    return peak


def wait_for_workers(conn, proc, n: int, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Worker.count(connection=conn) < n:
        if proc.poll() is not None:
            raise BenchError(f"vq daemon exited with code {proc.returncode} at start:\n" + tail(log_path))
        if time.monotonic() > deadline:
            raise BenchError(f"vq daemon: fewer than {n} workers registered after {timeout:.0f}s:\n" + tail(log_path))
        time.sleep(0.02)
    time.sleep(0.2)  # registered a moment before they first ask admission for a job


def one_run(conn, args, variant: str, run: int, workdir: Path, config_path: Path) -> RunFigures:
    settings = load_settings(config_path, env={})
    conn.flushall()
    # Each job's data is distinct ("seq"), so no submission can be answered from a cached
    # result of an identical job: every job really runs and holds a slot.
    flood = [
        Submission(job_type=JOB_TYPE, data={"ms": args.sleep_ms, "seq": n}, user_id=FLOOD_USER, subscription=TIER)
        for n in range(args.flood)
    ]
    light_users = [f"light-{i:02d}" for i in range(1, args.light + 1)]
    light = [
        Submission(job_type=JOB_TYPE, data={"ms": args.sleep_ms, "seq": args.flood + k}, user_id=u, subscription=TIER)
        for k, u in enumerate(light_users)
    ]
    total = args.flood + args.light
    finished_keys, failed_keys = vq_registry_keys(conn, JOB_TYPE)
    log_path = workdir / f"vq-daemon-{variant}-run{run}.log"
    daemon_args = ["--queues", args.vq_queues] if args.vq_queues else []

    proc = None
    spawn_wall = None
    try:
        if variant == "live":
            proc = start_vq_daemon(config_path, args.workers, args.vq_log_level, log_path, workdir, daemon_args)
            wait_for_workers(conn, proc, args.workers, log_path)
        t0 = time.perf_counter()
        flood_ids = [submit(conn, settings, s) for s in flood]
        light_ids = [submit(conn, settings, s) for s in light]
        submit_s = time.perf_counter() - t0
        if variant == "queued":
            spawn_wall = time.time()
            proc = start_vq_daemon(config_path, args.workers, args.vq_log_level, log_path, workdir, daemon_args)
        t0 = time.perf_counter()
        wait_until_ended(conn, proc, finished_keys, failed_keys, total, t0, args.timeout, args.poll, log_path)
    finally:
        if proc is not None:
            stop_process(proc)

    ids = flood_ids + light_ids
    by_status = statuses(conn, ids)
    if by_status != {"finished": total}:
        raise BenchError(
            f"{variant} run {run}: job statuses {by_status}, expected all {total} finished "
            f"(log {log_path}):\n" + tail(log_path)
        )
    verified = [f"all {total} finished"]
    for job_id in light_ids:  # the same fields through vq's own API
        view = vq_jobs.show(conn, job_id)
        if view["status"] != "finished" or not view["startedAt"] or not view["enqueuedAt"]:
            raise BenchError(
                f"{variant} run {run}: light job {job_id}: {view['status']}, "
                f"startedAt {view['startedAt']}, enqueuedAt {view['enqueuedAt']}"
            )
    verified.append(f"{len(light_ids)} light jobs via vq.jobs.show")
    started_events = count_events(conn, "started", set(ids))
    if started_events != total:
        raise BenchError(
            f"{variant} run {run}: {started_events} 'started' events, expected {total} "
            "(a job that never ran, e.g. answered from a cache?)"
        )
    verified.append(f"{started_events} started events")
    held, waiting = conn.zcard(keys.running_type(JOB_TYPE)), count_waiting(conn, JOB_TYPE)
    if held or waiting:
        raise BenchError(f"{variant} run {run}: admission not clean: {held} leases held, {waiting} jobs waiting")
    verified.append("admission clean")

    times = job_times(conn, ids, "enqueued_at", "started_at", "ended_at")
    if any(v is None for row in times for v in row):
        raise BenchError(f"{variant} run {run}: a job has no enqueued_at/started_at/ended_at")
    enq = [row[0] for row in times]
    start = [row[1] for row in times]
    end = [row[2] for row in times]
    first_start, last_end = min(start), max(end)
    makespan_s = (last_end - first_start).total_seconds()
    # Slots always busy: `limit` slots ran `total` jobs in the makespan, so one came free every
    # makespan ÷ total -- the measured slot turnover (job's real slot time, with overhead, ÷ limit).
    effective_turnover_ms = makespan_s * 1000 / total
    peak = max_overlap(list(zip(start, end)))
    if peak > args.type_limit:
        raise BenchError(f"{variant} run {run}: {peak} jobs ran at once, over the type limit {args.type_limit}")
    verified.append(f"at most {peak} running at once (limit {args.type_limit})")
    nominal_turnover_ms = args.sleep_ms / args.type_limit

    lights = []
    for k, (user, job_id) in enumerate(zip(light_users, light_ids)):
        i = args.flood + k
        ready = max(enq[i], first_start)
        wait_ms = (start[i] - ready).total_seconds() * 1000
        ahead = sum(1 for j in range(total) if j != i and ready <= start[j] < start[i])
        fifo_ahead = sum(1 for j in range(total) if j != i and enq[j] < enq[i] and start[j] >= ready)
        lights.append(
            LightWait(
                user, job_id, wait_ms, wait_ms / effective_turnover_ms, wait_ms / nominal_turnover_ms, ahead, fifo_ahead
            )
        )
    startup_ms = None
    if spawn_wall is not None:
        startup_ms = (first_start.timestamp() - spawn_wall) * 1000  # RQ's times are timezone-aware UTC
    return RunFigures(
        variant, run, total, submit_s, startup_ms, makespan_s, effective_turnover_ms, peak, lights, verified
    )


def _spread(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}


def summarize(results: list[RunFigures], args) -> dict:
    """Light users' waits, all runs of a variant pooled; FIFO from the same runs' submission order."""
    out = {}
    for variant in args.variants:
        rs = [r for r in results if r.variant == variant]
        if not rs:
            continue
        vq_turn, vq_ms, vq_nominal, vq_ahead, fifo_turn, fifo_ms = [], [], [], [], [], []
        for r in rs:
            for w in r.light:
                vq_turn.append(w.turnovers)
                vq_ms.append(w.wait_ms)
                vq_nominal.append(w.turnovers_nominal)
                vq_ahead.append(w.ahead)
                fifo_turn.append(w.fifo_ahead)  # FIFO: each of them takes one slot turnover first
                fifo_ms.append(w.fifo_ahead * r.effective_turnover_ms)
        nominal = args.sleep_ms / args.type_limit
        out[variant] = {
            "runs": len(rs),
            "light_samples": len(vq_turn),
            "vq": {
                "turnovers": _spread(vq_turn),
                "ms": _spread(vq_ms),
                "turnovers_nominal": _spread(vq_nominal),
                "jobs_ahead": _spread(vq_ahead),
            },
            "fifo": {
                "turnovers": _spread(fifo_turn),
                "ms": _spread(fifo_ms),
                "turnovers_nominal": _spread([m / nominal for m in fifo_ms]),
                "jobs_ahead": _spread(fifo_turn),
            },
            "nominal_turnover_ms": nominal,
            "effective_turnover_ms_median": statistics.median(r.effective_turnover_ms for r in rs),
            "makespan_s_median": statistics.median(r.makespan_s for r in rs),
            "max_running": max(r.max_running for r in rs),
            "startup_ms_median": (
                statistics.median(r.startup_ms for r in rs if r.startup_ms is not None)
                if any(r.startup_ms is not None for r in rs)
                else None
            ),
        }
        p95 = out[variant]["vq"]["turnovers"]["p95"]
        out[variant]["fifo_over_vq_p95"] = out[variant]["fifo"]["turnovers"]["p95"] / p95 if p95 else None
    return out


def print_report(console, summary: dict, meta: dict) -> None:
    nominal = meta["sleep_ms"] / meta["type_limit"]
    table = Table(
        title=f"Fairness: {meta['light']} light users' wait behind one user's {meta['flood']:,}-job flood "
        f"(type limit {meta['type_limit']}, {meta['sleep_ms']:g} ms jobs, {meta['workers']} workers)"
    )
    table.add_column("variant")
    table.add_column("scheduler")
    table.add_column("turnovers p50 / p95 / max", justify="right")
    table.add_column("ms p50 / p95", justify="right")
    table.add_column("jobs ahead p50 / p95", justify="right")
    table.add_column(f"÷ nominal {nominal:g} ms p50 / p95", justify="right")

    def num(v: float) -> str:
        return f"{v:.1f}" if v < 100 else f"{v:,.0f}"

    def cells(x: dict) -> list[str]:
        t, m, a, n = x["turnovers"], x["ms"], x["jobs_ahead"], x["turnovers_nominal"]
        return [
            f"{num(t['p50'])} / {num(t['p95'])} / {num(t['max'])}",
            f"{m['p50']:,.0f} / {m['p95']:,.0f}",
            f"{a['p50']:,.0f} / {a['p95']:,.0f}",
            f"{num(n['p50'])} / {num(n['p95'])}",
        ]

    for variant, s in summary.items():
        label = f"{variant} ({s['runs']}×{meta['light']})"
        table.add_row(label, "vq (round-robin)", *cells(s["vq"]))
        table.add_row("", "plain FIFO (est.)", *cells(s["fifo"]), end_section=True)
    console.print(table)
    for variant, s in summary.items():
        startup = f", daemon spawn → first job {s['startup_ms_median']:,.0f} ms" if s["startup_ms_median"] else ""
        better = f"; p95 FIFO ÷ vq = {s['fifo_over_vq_p95']:.0f}×" if s["fifo_over_vq_p95"] else ""
        console.print(
            f"[dim]{variant}: {VARIANT_LABELS[variant]}; effective turnover "
            f"{s['effective_turnover_ms_median']:.1f} ms (nominal {nominal:g}; makespan "
            f"{s['makespan_s_median']:.2f} s for {meta['flood'] + meta['light']:,} jobs), at most "
            f"{s['max_running']} running at once{startup}{better}[/]"
        )
    console.print(
        f"[dim]1 slot turnover = job duration ÷ limit: a slot comes free, one job starts. wait = submission "
        f"(or the first job's start, if later) → start. turnovers = wait ÷ effective turnover (measured: "
        f"makespan ÷ jobs, i.e. the slot time a job really took, sleep + per-job overhead, ÷ limit); "
        f"÷ nominal = wait ÷ (sleep ÷ limit). jobs ahead = jobs that started in the meantime. FIFO = jobs "
        f"submitted earlier and not yet started (each one turnover), its ms at the effective turnover. "
        f"In job durations (rounds of all slots): turnovers ÷ {meta['type_limit']}. "
        f"{versions_line(meta)}.[/]"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--flood", type=int, default=1000, help="jobs the flooding user submits first (default 1000)")
    p.add_argument("--light", type=int, default=20, help="light users, one job each, submitted after (default 20)")
    p.add_argument("--sleep-ms", type=float, default=20, help="how long each job holds its slot (default 20 ms)")
    p.add_argument("--type-limit", type=int, default=2, help="concurrency.type limit of bench-sleep (default 2)")
    p.add_argument(
        "--workers",
        type=int,
        default=4,
        help="vq daemon --workers (default 4: more workers than slots, so slots are the bottleneck)",
    )
    p.add_argument("--runs", type=int, default=3, help="runs per variant; light waits pooled (default 3)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    p.add_argument("--vq-queues", default=None, help="pass `--queues` to vq daemon; default: every job type")
    add_run_options(p, poll=0.05, timeout=600)
    p.add_argument(
        "--weighted",
        action="store_true",
        help="measure weighted fair shares: four tiers flood with weights 8/4/2/1 (--flood jobs each)",
    )
    args = p.parse_args(argv)
    if min(args.flood, args.light, args.type_limit, args.workers, args.runs) < 1 or args.sleep_ms <= 0:
        p.error("--flood, --light, --type-limit, --workers, --runs and --sleep-ms must be positive")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        p.error(f"--variants: unknown {unknown} (choose from {', '.join(VARIANTS)})")
    return args


def _sleep_config(s, concurrency: dict) -> Path:
    """The bench's config: one type whose jobs sleep (bench_handlers:sleep), these limits."""
    job_types = {JOB_TYPE: {"handler": "bench_handlers:sleep", "attempts": 1}}
    return write_vq_config(s.workdir, s.server.url, job_types=job_types, concurrency=concurrency)


def weighted_main(args) -> int:
    """--weighted: the shares of starts of four tiers' flooding users against their weights."""
    results: list[WeightedRun] = []
    with bench_session("weighted", announce=False) as s:
        conn, workdir, progress = s.conn, s.workdir, s.progress
        config_path = _sleep_config(s, config_blocks(args.type_limit))
        for run in range(1, args.runs + 1):
            r = weighted_run(conn, args, run, workdir, config_path)
            results.append(r)
            progress.print(
                f"run {run}: worst share off its weight by {r.worst_deviation:.1%}; light user started after "
                f"{r.light_ahead} starts (bound {r.light_bound})  [dim]({'; '.join(r.verified)})[/]"
            )
    if s.failed is not None:
        return s.failed
    meta = {"flood": args.flood, "sleep_ms": args.sleep_ms, "type_limit": args.type_limit, "workers": args.workers}
    meta.update(environment(s.redis_version))
    if args.json:
        print(json.dumps({"weighted": [asdict(r) for r in results], "meta": meta}, indent=2))
    else:
        table = Table(title="weighted fair shares: share of starts while all four tiers waited")
        for column in ("run", "starts", *(f"{t} (weight {w})" for t, w in WEIGHTS.items()), "light: starts ahead"):
            table.add_column(column, justify="right")
        table.add_row("weights", "", *(f"{r:.1%}" for r in results[0].expected.values()), "bound")
        table.add_row("FIFO", "", *(f"{r:.1%}" for r in results[0].fifo.values()), "")
        for r in results:
            table.add_row(
                str(r.run),
                str(r.window),
                *(f"{r.shares[t]:.1%}" for t in r.expected),
                f"{r.light_ahead} / {r.light_bound}",
            )
        s.out.print(table)
        s.out.print(
            f"[dim]{meta['machine']}; {args.flood} jobs per tier of {args.sleep_ms:g} ms, "
            f"type limit {args.type_limit}, {args.workers} workers[/]"
        )
    within = all(r.worst_deviation <= 0.10 and r.light_ahead <= r.light_bound for r in results)
    return s.finish(args.keep, 0 if within else 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.weighted:
        return weighted_main(args)
    results: list[RunFigures] = []
    with bench_session("fairness") as s:
        conn, workdir, progress = s.conn, s.workdir, s.progress
        config_path = _sleep_config(s, {"type": {JOB_TYPE: args.type_limit}})
        for run in range(1, args.runs + 1):
            for variant in args.variants:
                r = one_run(conn, args, variant, run, workdir, config_path)
                results.append(r)
                t = [w.turnovers for w in r.light]
                fifo = [w.fifo_ahead for w in r.light]
                progress.print(
                    f"run {run} {variant:<6} light wait p50 {percentile(t, 50):5.1f} p95 {percentile(t, 95):5.1f}"
                    f" turnovers (FIFO p50 {percentile(fifo, 50):5.1f})  effective turnover "
                    f"{r.effective_turnover_ms:.1f} ms (nominal {args.sleep_ms / args.type_limit:g})  "
                    f"[dim]({'; '.join(r.verified)})[/]"
                )
        conn.flushall()
    if s.failed is not None:
        return s.failed
    summary = summarize(results, args)
    meta = {
        "flood": args.flood,
        "light": args.light,
        "sleep_ms": args.sleep_ms,
        "type_limit": args.type_limit,
        "tier": TIER,
        "workers": args.workers,
        "runs": args.runs,
        "variants": args.variants,
        "vq_queues": args.vq_queues,
        "vq_log_level": args.vq_log_level,
        **environment(s.redis_version),
    }
    if args.json:
        print(json.dumps({"variants": summary, "meta": meta, "runs": [asdict(r) for r in results]}, indent=2))
    else:
        print_report(s.out, summary, meta)
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
