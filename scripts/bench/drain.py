#!/usr/bin/env python3
"""Drain benchmark: N no-op jobs through `vq daemon` versus plain RQ workers.

Everything runs against a private, throw-away `redis-server` (free port, no persistence,
temp dir) that this script starts and stops; it never touches another Redis.

Per round, each system gets the same job count and the same process count:

* vq        -- jobs enqueued one by one with `vq.submission.submit` (in-process), then
               `vq daemon --workers N` is started; timed from its spawn until every job is
               in the finished (or failed) registry; then it is stopped with SIGTERM.
* rq-simple -- jobs enqueued one by one with `Queue.enqueue` (JSON serializer), then N
               `rq worker --burst -w rq.worker.SimpleWorker` processes (no fork per job,
               like vq's workers); timed from spawn until all exited and all jobs finished.
* rq-fork   -- the same with RQ's default forking `Worker` (one work-horse fork per job).

Redis is flushed before every drain. Reported: drain jobs/s (median over runs), the
"steady" rate from the jobs' own timestamps (first start -> last end, without process
start-up), enqueue jobs/s, and the ratios vq / RQ.

Run from the repository root:  python scripts/bench/drain.py [--jobs 5000 --workers 2 --runs 3 --fork-runs 1]
The defaults take about 3.5 minutes on a 2-core machine (forking RQ alone ~70 s);
`--runs 1` about 2 minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    JOB_TYPE, SYSTEMS, BenchError, PrivateRedis, consoles, environment, err, print_table, run_rounds,
    run_vq, summarize, write_vq_config,
)
from vq.submission import Submission  # noqa: E402


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=5000, help="jobs per drain (default 5000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes on each side (default 2)")
    p.add_argument("--runs", type=int, default=3, help="rounds for vq and RQ SimpleWorker; median reported (default 3)")
    p.add_argument("--fork-runs", type=int, default=1,
                   help="rounds for forking RQ (default 1: at ~70 jobs/s one drain of 5000 takes ~70 s on 2 cores)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--vq-log-level", default="INFO", help="vq daemon --log-level (default INFO, as operators run it)")
    p.add_argument("--poll", type=float, default=0.02, help="seconds between completion checks (default 0.02)")
    p.add_argument("--timeout", type=float, default=600, help="give up on one drain after this many seconds")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, daemon and worker logs)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary instead of tables")
    args = p.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.runs < 1:
        p.error("--jobs, --workers and --runs must be at least 1")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        p.error(f"--systems: unknown {unknown} (choose from {', '.join(SYSTEMS)})")
    if args.fork_runs < 1:
        p.error("--fork-runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vq-bench-"))
    server = PrivateRedis(workdir)
    out, progress = consoles()
    try:
        conn = server.start()
        redis_version = conn.info("server")["redis_version"]
        config_path = write_vq_config(workdir, server.url)
        progress.print(f"[dim]private redis-server {redis_version} on port {server.port}; work dir {workdir}[/]")
        sub = Submission(job_type=JOB_TYPE, data={}, user_id="bench", subscription="enterprise")  # limit 10: never binds
        results = run_rounds(
            conn, args, workdir, server.url, config_path, args.systems,
            runs_of=lambda system: args.fork_runs if system == "rq-fork" else args.runs,
            run_vq_round=lambda run: run_vq(conn, args, run, workdir, config_path, args.timeout, [sub] * args.jobs),
            progress=progress)
        conn.flushall()
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}")
        err.print(f"[dim]logs kept in {workdir}[/]")
        server.stop()
        return 1
    finally:
        server.stop()
    summary = summarize(results, args.systems)
    meta = {"jobs": args.jobs, "workers": args.workers, "runs": args.runs, "fork_runs": args.fork_runs,
            "vq_log_level": args.vq_log_level, **environment(redis_version)}
    if args.json:
        summary["meta"] = meta
        summary["runs"] = [{**asdict(r), "drain_jobs_per_s": r.drain_rate, "enqueue_jobs_per_s": r.enqueue_rate,
                            "steady_jobs_per_s": r.steady_rate} for r in results]
        print(json.dumps(summary, indent=2))
    else:
        print_table(out, summary, meta)
    if args.keep:
        progress.print(f"[dim]kept {workdir}[/]")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
