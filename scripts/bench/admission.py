#!/usr/bin/env python3
"""Admission overhead: no-op jobs from many users through `vq daemon` versus plain RQ.

Every vq dequeue goes through admission (vq/lua/admit_*.lua): new arrivals are routed into
per-user waiting lines, users take turns, and a job runs only when its user and its type
both have a free slot. This benchmark measures what that machinery costs when the limits
never bind: 5,000 no-op jobs from 50 users (submitted round-robin over the users), all on
the enterprise tier (10 slots per user) and the bench type's limit set to 1,000
(`concurrency.type: {bench-noop: 1000}`), drained by N worker processes, so no job ever
waits for a slot -- only for a worker.

Per round, on one private throw-away `redis-server` (free port, no persistence):

* vq        -- jobs submitted one by one with `vq.submission.submit` (in-process), then
               `vq daemon --workers N` is started; timed from its spawn until every job is
               in the finished registry; then it is stopped with SIGTERM.
* rq-simple -- the same number of jobs enqueued one by one with `Queue.enqueue` (JSON
               serializer), drained by N `rq worker --burst -w rq.worker.SimpleWorker`
               (no fork per job, like vq's workers: the fair comparison).
* rq-fork   -- optional (`--fork-runs 1`, ~70 s more on 2 cores): RQ's default forking Worker.

Verified after every vq drain: every job's status is `finished`, one `finished` event per
job, each user's index holds its share of the jobs, and admission is left clean (no
leases held, no job waiting, RQ's lists empty).

Run from the repository root:  python scripts/bench/admission.py [--jobs 5000 --users 50 --workers 2 --runs 3]
The defaults take about 2 minutes on a 2-core machine; `--fork-runs 1` adds about one more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    JOB_TYPE,
    BenchError,
    count_events,
    environment,
    print_table,
    run_rounds,
    run_vq,
    statuses,
    summarize,
    write_vq_config,
)
from _session import add_run_options, bench_parser, bench_session

from vq import keys
from vq.submission import Submission

TIER = "enterprise"
LABELS = {"vq": "vq daemon (admission)", "rq-simple": "RQ SimpleWorker", "rq-fork": "RQ Worker (fork)"}
TARGET = 0.8  # the bar: vq at least 0.8x plain RQ SimpleWorker


def users(n: int) -> list[str]:
    return [f"user-{i:03d}" for i in range(n)]


def submissions(jobs: int, n_users: int) -> list[Submission]:
    """Round-robin over the users: user-000, user-001, ..., user-049, user-000, ..."""
    names = users(n_users)
    return [Submission(job_type=JOB_TYPE, data={}, user_id=names[i % n_users], subscription=TIER) for i in range(jobs)]


def verify_admission(n_users: int, jobs: int):
    def check(conn, ids: list[str]) -> list[str]:
        by_status = statuses(conn, ids)
        if by_status != {"finished": jobs}:
            raise BenchError(f"vq: job statuses {by_status}, expected {{'finished': {jobs}}}")
        started = count_events(conn, "started", set(ids))
        if started != jobs:  # every job really ran in a worker (none was answered without running)
            raise BenchError(f"vq: {started} 'started' events, expected {jobs}")
        names = users(n_users)
        with conn.pipeline(transaction=False) as pipe:
            for user in names:
                pipe.zcard(keys.user_jobs(user))
            for user in names:
                pipe.zcard(keys.running_user(user))
            pipe.zcard(keys.running_type(JOB_TYPE))
            for key in keys.wait_since_all(JOB_TYPE):
                pipe.zcard(key)
            for p in keys.PRIORITY_ORDER:
                pipe.llen(keys.ring(JOB_TYPE, p))
                pipe.llen(f"rq:queue:{keys.queue_name(JOB_TYPE, p)}")
            pipe.hgetall(keys.USER_TIER)
            replies = pipe.execute()
        per_user = replies[:n_users]
        held = sum(replies[n_users : 2 * n_users]) + replies[2 * n_users]
        left = sum(replies[2 * n_users + 1 : -1])
        tiers = {k.decode(): v.decode() for k, v in replies[-1].items()}
        expected = {u: jobs // n_users + (1 if i < jobs % n_users else 0) for i, u in enumerate(names)}
        if dict(zip(names, per_user)) != expected:
            raise BenchError(f"vq: per-user job counts {dict(zip(names, per_user))} != {expected}")
        if held or left:
            raise BenchError(f"vq: admission not clean after the drain: {held} leases held, {left} jobs left in lines")
        if set(tiers) != set(names) or set(tiers.values()) != {TIER}:
            raise BenchError(f"vq: admission saw users/tiers {tiers}")
        return [
            f"all {jobs} finished and {started} started events",
            f"{n_users} users x {min(per_user)}-{max(per_user)} jobs",
            "no leases or waiting jobs left",
        ]

    return check


def paired_ratios(results) -> list[float]:
    vq = {r.run: r.drain_rate for r in results if r.system == "vq"}
    rq = {r.run: r.drain_rate for r in results if r.system == "rq-simple"}
    return [round(vq[run] / rq[run], 3) for run in sorted(vq) if run in rq]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--jobs", type=int, default=5000, help="jobs per drain (default 5000)")
    p.add_argument("--users", type=int, default=50, help="distinct users the vq jobs are spread over (default 50)")
    p.add_argument(
        "--type-limit", type=int, default=1000, help="concurrency.type limit of bench-noop (default 1000: never binds)"
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes on each side (default 2)")
    p.add_argument("--runs", type=int, default=3, help="rounds for vq and RQ SimpleWorker; median reported (default 3)")
    p.add_argument(
        "--fork-runs", type=int, default=0, help="rounds for RQ's forking Worker (default 0; 1 adds ~70 s on 2 cores)"
    )
    p.add_argument(
        "--vq-queues",
        default=None,
        help="pass `--queues` to vq daemon (e.g. bench-noop); default: every job type, as operators run it",
    )
    add_run_options(p, poll=0.02, timeout=600)
    args = p.parse_args(argv)
    if min(args.jobs, args.users, args.workers, args.runs, args.type_limit) < 1:
        p.error("--jobs, --users, --workers, --runs and --type-limit must be at least 1")
    if args.fork_runs < 0:
        p.error("--fork-runs must not be negative")
    args.systems = ["vq", "rq-simple"] + (["rq-fork"] if args.fork_runs else [])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    daemon_args = ["--queues", args.vq_queues] if args.vq_queues else []
    with bench_session("admission") as s:
        conn, workdir = s.conn, s.workdir
        config_path = write_vq_config(workdir, s.server.url, concurrency={"type": {JOB_TYPE: args.type_limit}})
        subs = submissions(args.jobs, args.users)
        results = run_rounds(
            conn,
            args,
            workdir,
            s.server.url,
            config_path,
            args.systems,
            runs_of=lambda system: args.fork_runs if system == "rq-fork" else args.runs,
            run_vq_round=lambda run: run_vq(
                conn,
                args,
                run,
                workdir,
                config_path,
                args.timeout,
                subs,
                daemon_args=daemon_args,
                extra_verify=verify_admission(args.users, args.jobs),
            ),
            progress=s.progress,
        )
        conn.flushall()
    if s.failed is not None:
        return s.failed
    summary = summarize(results, args.systems)
    ratio = summary["ratios"]["vq/rq-simple"]["drain"]
    # Each round's vq drain against the RQ drain right after it: a slow spell of the machine
    # hits both sides of a pair, so the pairs' median is steadier than the ratio of medians.
    paired = paired_ratios(results)
    summary["ratios"]["vq/rq-simple"]["drain_per_round"] = paired
    summary["ratios"]["vq/rq-simple"]["drain_per_round_median"] = statistics.median(paired)
    summary["target"] = {"vq/rq-simple drain at least": TARGET, "met": ratio >= TARGET}
    meta = {
        "jobs": args.jobs,
        "users": args.users,
        "tier": TIER,
        "type_limit": args.type_limit,
        "workers": args.workers,
        "runs": args.runs,
        "fork_runs": args.fork_runs,
        "vq_queues": args.vq_queues,
        "vq_log_level": args.vq_log_level,
        **environment(s.redis_version),
    }
    if args.json:
        summary["meta"] = meta
        summary["runs"] = [
            {
                **asdict(r),
                "drain_jobs_per_s": r.drain_rate,
                "enqueue_jobs_per_s": r.enqueue_rate,
                "steady_jobs_per_s": r.steady_rate,
            }
            for r in results
        ]
        print(json.dumps(summary, indent=2))
    else:
        title = (
            f"Admission overhead: {args.jobs:,} no-op jobs from {args.users} {TIER} users, type limit "
            f"{args.type_limit} (limits never bind), {args.workers} worker processes (median of runs)"
        )
        print_table(s.out, summary, meta, title=title, labels=LABELS)
        verdict = "[green]met[/]" if ratio >= TARGET else "[red]NOT met[/]"
        s.out.print(
            f"target vq ≥ {TARGET}× RQ SimpleWorker (drain): {ratio:.2f}× — {verdict}  "
            f"[dim](round by round: {' '.join(f'{r:.2f}' for r in paired)}; median {statistics.median(paired):.2f})[/]"
        )
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
