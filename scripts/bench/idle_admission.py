#!/usr/bin/env python3
"""Admission's Redis time per call against the number of idle workers (issue 28's worker scale).

No daemon and no worker process: the admission script alone (vq/lua/admit_*.lua), called
in-process the way workers call it, on one private throw-away `redis-server`, so the figure
is Redis's own time (INFO commandstats: EVALSHA's µs per call) and nothing of the workers'
Python or the machine's scheduling. For each of `--idle` (0,2,100,1000) on a flushed Redis:

* that many workers' admission calls find nothing: each is marked idle, as a real idle
  worker is (in vq:idle-workers; vq up to 0.2.0: in vq:inbox, which every call reads whole);
* idle look -- `--calls` (2000) admission calls of an already-idle worker that find nothing
  (what each idle worker does every 10 s);
* paced    -- `--jobs` (1000) jobs one at a time, each: pushed and marked as a submission
  does, taken by an idle worker (started for it in the same call), ended by that worker's
  end call (which gives its slots back and looks for a next job), then that worker's
  call that finds nothing and marks it idle again: three admission calls per job.

Printed: µs of Redis time per admission call, idle look and paced, and the size of vq:inbox.

Run from the repository root:  python scripts/bench/idle_admission.py [--idle 0,100,1000] [--json]
About 20 s. PYTHONPATH picks the vq measured (a checkout of another commit: before/after).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, versions_line
from _session import bench_parser, bench_session
from rich.table import Table

from vq import keys
from vq.admission import Admission, Start
from vq.limits import rebuild_effective

TYPE = "bench-noop"
USERS = 50


def parse_args(argv):
    p = bench_parser(__doc__)
    p.add_argument("--idle", default="0,2,100,1000", help="idle workers per step (default 0,2,100,1000)")
    p.add_argument("--calls", type=int, default=2000, help="idle looks timed per step (default 2000)")
    p.add_argument("--jobs", type=int, default=1000, help="paced jobs per step (default 1000)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary instead of a table")
    args = p.parse_args(argv)
    try:
        args.idle = [int(x) for x in args.idle.split(",") if x.strip()]
    except ValueError:
        p.error(f"--idle: {args.idle!r} is not a comma-separated list of numbers")
    if not args.idle or min(args.idle) < 0:
        p.error("--idle: each must be 0 or more")
    if min(args.calls, args.jobs) < 1:
        p.error("--calls and --jobs must be at least 1")
    return args


def script_usec(conn) -> tuple[float, int]:
    stats = conn.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0)), int(stats.get("calls", 0))


def measure(conn, idle: int, args) -> dict:
    conn.flushall()
    conn.hset(keys.limits("type"), TYPE, 1_000_000)
    conn.hset(keys.limits("tier"), mapping={"free": 1_000_000})
    rebuild_effective(conn)
    admission = Admission(conn, 30_000)
    for n in range(idle):
        admission.admit([TYPE], start=Start(f"idle-{n:05d}", "x", 420, busy=False))
    me = "idle-00000" if idle else "worker"

    conn.config_resetstat()
    for _ in range(args.calls):
        admission.admit([TYPE], start=Start(me, "x", 420, busy=False))
    look_usec, look_calls = script_usec(conn)

    queue = keys.queue_name(TYPE, "normal")
    conn.config_resetstat()
    for j in range(args.jobs):
        job_id, user = f"job-{j}", f"user-{j % USERS:03d}"
        meta = {"userId": user, "subscription": "free", "jobType": TYPE}
        with conn.pipeline(transaction=False) as pipe:
            pipe.hset(keys.rq_job(job_id), mapping={"status": "queued", "meta": json.dumps(meta), "origin": queue})
            pipe.rpush(keys.rq_queue(queue), job_id)
            pipe.sadd(keys.INBOX, queue)
            pipe.execute()
        admitted = admission.admit([TYPE], start=Start(me, "y", 420, busy=False))
        assert admitted is not None and admitted.job_id == job_id, admitted
        with conn.pipeline(transaction=False) as pipe:
            admission.admit_in(pipe, [TYPE], start=Start(me, "z", 420, busy=True), give_back=(job_id, TYPE, user))
            pipe.execute()
        admission.admit([TYPE], start=Start(me, "x", 420, busy=False))
    paced_usec, paced_calls = script_usec(conn)
    return {
        "idle_workers": idle,
        "idle_look_usec_per_call": look_usec / max(look_calls, 1),
        "paced_usec_per_call": paced_usec / max(paced_calls, 1),
        "paced_calls_per_job": paced_calls / args.jobs,
        "inbox_size": conn.scard(keys.INBOX),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    rows: list[dict] = []
    with bench_session("idle-admission") as s:
        for idle in args.idle:
            rows.append(measure(s.conn, idle, args))
            s.progress.print(
                f"{idle:>5} idle workers: idle look {rows[-1]['idle_look_usec_per_call']:.1f} µs, "
                f"paced {rows[-1]['paced_usec_per_call']:.1f} µs per admission call"
            )
    if s.failed is not None:
        return s.failed
    meta = {"loadavg": [round(x, 2) for x in os.getloadavg()], **environment(s.redis_version)}
    if args.json:
        print(json.dumps({"rows": rows, "meta": meta}, indent=2, default=str))
    else:
        t = Table(title="Admission: Redis time per call against idle workers")
        for col in ("idle workers", "idle look µs/call", "paced µs/call", "calls/job", "vq:inbox members"):
            t.add_column(col, justify="right")
        for r in rows:
            t.add_row(
                str(r["idle_workers"]),
                f"{r['idle_look_usec_per_call']:.1f}",
                f"{r['paced_usec_per_call']:.1f}",
                f"{r['paced_calls_per_job']:.1f}",
                str(r["inbox_size"]),
            )
        s.out.print(t)
        s.out.print(f"[dim]{versions_line(meta)}; load average at the end {meta['loadavg']}[/]")
    return s.finish(False)


if __name__ == "__main__":
    sys.exit(main())
