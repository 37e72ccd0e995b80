#!/usr/bin/env python3
"""Worker scale: what 2, 20 and 100 vq worker processes cost one Redis, idle and busy (issue 28).

For each size N (`--sizes 2,20,100`), on a flushed private Redis, N real worker processes
are started as `vq daemon --workers K` daemons of at most `--per-daemon` (50) workers each
(forked by their daemon; every feature on, as throughput.py's drain), and, once all N are
registered and settled:

* idle -- `--idle-seconds` (10) with no job: Redis commands (INFO commandstats, reset at the
          start; every client: the workers, the daemons' archiver, timer and housekeeping)
          per idle worker per second, and Redis CPU (INFO cpu, used_cpu_user + sys) per second.
* busy -- `--busy-jobs` (1000) no-op jobs submitted one by one at `--rate` (100) per second
          from 50 enterprise users (type limit 1000: no limit binds), so the system is busy
          but never behind: Redis CPU per job (from the first submit until the last job
          ended; the submits count, on every size alike), Redis commands per job, and the
          admission latency of each job: `started_at` − `created_at` from its hash (µs,
          both written by this machine's clock; the events' millisecond `ts` for a job
          whose hash is gone), p50/p99/max; and Redis's own time in the scripts
          (INFO commandstats: EVALSHA's µs per call and per job; admission calls, mostly),
          which the machine's load sways less than the process's CPU.

Printed per size, then the ratios of 100 (the largest) to 2 (the smallest) workers; issue
28's targets: at most 1.5× on CPU per job and on latency p99, and about 1 command per idle
worker per second at most.

Run from the repository root:
  python scripts/bench/worker_scale.py                       # 2, 20, 100 workers, ~3 min
  python scripts/bench/worker_scale.py --sizes 2,20 --busy-jobs 300 --idle-seconds 5   # smoke
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    JOB_TYPE,
    BenchError,
    environment,
    redis_cpu_seconds,
    start_vq_daemon,
    versions_line,
    vq_registry_keys,
    wait_until_ended,
    write_vq_config,
)
from _session import add_run_options, bench_parser, bench_session
from rich.table import Table
from rq.utils import utcparse

from vq import events
from vq.config import load_settings
from vq.submission import Submission, submit

USERS = 50
TARGETS = {"cpu_per_job": 1.5, "latency_p99": 1.5, "idle_commands_per_worker_s": 1.0}


def parse_args(argv):
    p = bench_parser(__doc__)
    p.add_argument("--sizes", default="2,20,100", help="worker processes per step (default 2,20,100)")
    p.add_argument("--per-daemon", type=int, default=50, help="at most this many workers per daemon (default 50)")
    p.add_argument("--idle-seconds", type=float, default=10.0, help="the idle window (default 10 s)")
    p.add_argument("--busy-jobs", type=int, default=1000, help="jobs in the busy phase (default 1000)")
    p.add_argument("--rate", type=float, default=100.0, help="submissions per second when busy (default 100)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after the last worker registered (default 3)")
    add_run_options(p, poll=0.05, timeout=300)
    args = p.parse_args(argv)
    try:
        args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        p.error(f"--sizes: {args.sizes!r} is not a comma-separated list of numbers")
    if not args.sizes or min(args.sizes) < 1:
        p.error("--sizes: each must be at least 1")
    if min(args.per_daemon, args.busy_jobs) < 1 or min(args.idle_seconds, args.rate, args.settle) <= 0:
        p.error("--per-daemon, --busy-jobs, --idle-seconds, --rate and --settle must be above 0")
    return args


def commands(conn) -> dict[str, int]:
    return {name.removeprefix("cmdstat_").upper(): v["calls"] for name, v in command_stats(conn).items()}


def command_stats(conn) -> dict[str, dict]:
    """INFO commandstats as it is: per command its calls and the microseconds Redis spent in
    them (a script's commands count in its EVALSHA's time and, each, in their own)."""
    return conn.info("commandstats")


def split(n: int, per_daemon: int) -> list[int]:
    """n workers over as few daemons of at most per_daemon as can hold them, evenly."""
    daemons = -(-n // per_daemon)
    return [n // daemons + (1 if i < n % daemons else 0) for i in range(daemons)]


class Daemons:
    """The daemons of one size, so a failure stops them all."""

    def __init__(self):
        self.procs: list = []

    def stop(self) -> None:
        """SIGTERM to all at once (one by one, 100 workers take a while each), then wait."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


def wait_registered(conn, n: int, daemons: Daemons, timeout: float) -> float:
    """Seconds until n workers are in RQ's worker set (each a live worker process)."""
    t0 = time.monotonic()
    while True:
        count = conn.scard("rq:workers")
        if count >= n:
            return time.monotonic() - t0
        dead = [p for p in daemons.procs if p.poll() is not None]
        if dead:
            raise BenchError(f"a daemon exited with code {dead[0].returncode} with {count}/{n} workers registered")
        if time.monotonic() - t0 > timeout:
            raise BenchError(f"only {count}/{n} workers registered after {timeout:.0f}s")
        time.sleep(0.2)


def measure(conn, args, workdir: Path, config: Path, n: int, progress, session) -> dict:
    conn.flushall()
    settings = load_settings(config, env={})
    daemons = Daemons()
    session.on_exit(daemons.stop)
    shares = split(n, args.per_daemon)
    logs = [workdir / f"vq-scale-{n}-d{i}.log" for i in range(len(shares))]
    try:
        for share, log in zip(shares, logs, strict=True):
            daemons.procs.append(start_vq_daemon(config, share, args.vq_log_level, log, workdir))
        up_s = wait_registered(conn, n, daemons, args.timeout)
        time.sleep(args.settle)

        # idle
        conn.config_resetstat()
        cpu0, t0 = redis_cpu_seconds(conn), time.monotonic()
        time.sleep(args.idle_seconds)
        idle_cmds = commands(conn)
        idle_cpu, idle_s = redis_cpu_seconds(conn) - cpu0, time.monotonic() - t0
        idle_cmds.pop("INFO", None)  # the bench's own readings
        idle_total = sum(idle_cmds.values())

        # busy: paced submissions, never behind
        conn.config_resetstat()
        cpu0 = redis_cpu_seconds(conn)
        ids: list[str] = []
        t0 = time.perf_counter()
        gap = 1.0 / args.rate
        for i in range(args.busy_jobs):
            due = t0 + i * gap
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sub = Submission(job_type=JOB_TYPE, data={}, user_id=f"user-{i % USERS:03d}", subscription="enterprise")
            ids.append(submit(conn, settings, sub))
        submit_s = time.perf_counter() - t0
        finished_keys, failed_keys = vq_registry_keys(conn, JOB_TYPE)
        _s, _finished, failed = wait_until_ended(
            conn, daemons.procs[0], finished_keys, failed_keys, args.busy_jobs, t0, args.timeout, args.poll, logs[0]
        )
        busy_cpu = redis_cpu_seconds(conn) - cpu0
        busy_stats = command_stats(conn)
        busy_cmds = {name.removeprefix("cmdstat_").upper(): v["calls"] for name, v in busy_stats.items()}
        busy_cmds.pop("INFO", None)
        if failed:
            raise BenchError(f"{n} workers: {failed} jobs failed")
    finally:
        daemons.stop()
    latency = admission_latency(conn, set(ids))
    row = {
        "workers": n,
        "daemons": shares,
        "registered_s": round(up_s, 1),
        "idle_seconds": round(idle_s, 2),
        "idle_commands_per_worker_s": idle_total / n / idle_s,
        "idle_commands_per_s": idle_total / idle_s,
        "idle_commands_by_name": dict(sorted(idle_cmds.items(), key=lambda kv: -kv[1])[:8]),
        "idle_redis_cpu_ms_per_s": idle_cpu * 1000 / idle_s,
        "busy_jobs": args.busy_jobs,
        "busy_submit_rate": args.busy_jobs / submit_s,
        "busy_redis_cpu_ms_per_job": busy_cpu * 1000 / args.busy_jobs,
        "busy_commands_per_job": sum(busy_cmds.values()) / args.busy_jobs,
        # Redis's time in the scripts (admission, mostly), less machine-bound than its process CPU:
        # per job, and per EVALSHA call
        "busy_script_usec_per_job": busy_stats.get("cmdstat_evalsha", {}).get("usec", 0) / args.busy_jobs,
        "busy_script_usec_per_call": busy_stats.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0),
        **latency,
    }
    progress.print(
        f"{n:>4} workers ({'+'.join(map(str, shares))} per daemon, registered in {up_s:.1f}s): idle "
        f"{row['idle_commands_per_worker_s']:.2f} commands/worker/s, Redis CPU {row['idle_redis_cpu_ms_per_s']:.1f} ms/s; "
        f"busy {row['busy_redis_cpu_ms_per_job']:.3f} ms Redis CPU/job, {row['busy_commands_per_job']:.1f} commands/job, "
        f"{row['busy_script_usec_per_call']:.0f} µs per script call, "
        f"admission p50 {row['latency_p50_ms']:.2f} ms p99 {row['latency_p99_ms']:.2f} ms"
    )
    return row


def admission_latency(conn, ids: set[str]) -> dict:
    """started − created (ms) of each job: from its hash's timestamps (microseconds; RQ's
    text format), else from the event stream's (whole milliseconds, which made a 1 ms p99
    and a 1.9 ms one look the same)."""
    order = sorted(ids)
    with conn.pipeline(transaction=False) as pipe:
        for job_id in order:
            pipe.hmget(f"rq:job:{job_id}", "created_at", "started_at")
        stamps = pipe.execute()
    waits_by_id = {
        job_id: (utcparse(started.decode()).timestamp() - utcparse(created.decode()).timestamp()) * 1000
        for job_id, (created, started) in zip(order, stamps)
        if created and started
    }
    missing = ids - set(waits_by_id)
    if missing:
        created: dict[str, int] = {}
        started: dict[str, int] = {}
        since = "0-0"
        while batch := events.read(conn, since=since, count=5000):
            for e in batch:
                if e["jobId"] in missing:
                    if e["event"] == "created":
                        created.setdefault(e["jobId"], e["ts"])
                    elif e["event"] == "started":
                        started.setdefault(e["jobId"], e["ts"])
            since = batch[-1]["id"]
        waits_by_id.update({j: started[j] - created[j] for j in missing if j in started and j in created})
    waits = sorted(waits_by_id.values())
    if len(waits) != len(ids):
        raise BenchError(f"{len(waits)} of {len(ids)} jobs have both a creation and a start time")
    return {
        "latency_p50_ms": statistics.median(waits),
        "latency_p99_ms": waits[max(0, int(len(waits) * 0.99) - 1)],
        "latency_max_ms": waits[-1],
        "latency_from_events": len(missing),
    }


def report(out, rows: list[dict], meta: dict) -> None:
    t = Table(title="Worker scale: one private Redis, idle and busy")
    cols = (
        "workers",
        "per daemon",
        "idle cmds/s",
        "idle cmds/worker/s",
        "idle Redis CPU ms/s",
        "busy Redis CPU ms/job",
        "busy cmds/job",
        "admission p50 ms",
        "p99 ms",
        "max ms",
    )
    for col in cols:
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["workers"]),
            "+".join(map(str, r["daemons"])),
            f"{r['idle_commands_per_s']:.0f}",
            f"{r['idle_commands_per_worker_s']:.2f}",
            f"{r['idle_redis_cpu_ms_per_s']:.1f}",
            f"{r['busy_redis_cpu_ms_per_job']:.3f}",
            f"{r['busy_commands_per_job']:.1f}",
            f"{r['latency_p50_ms']:.2f}",
            f"{r['latency_p99_ms']:.2f}",
            f"{r['latency_max_ms']:.2f}",
        )
    out.print(t)
    for r in rows:
        top = ", ".join(
            f"{k} {v / r['idle_seconds'] / r['workers']:.2f}" for k, v in r["idle_commands_by_name"].items()
        )
        out.print(f"[dim]idle commands per worker per second, {r['workers']} workers: {top}[/]")
    if meta.get("ratios"):
        ra = meta["ratios"]
        out.print(
            f"{ra['largest']} ÷ {ra['smallest']} workers: Redis CPU per job {ra['cpu_per_job']:.2f}× (target ≤ 1.5), "
            f"admission p99 {ra['latency_p99']:.2f}× (target ≤ 1.5), Redis's time per script call "
            f"{ra['script_usec_per_call']:.2f}×; idle commands per worker per second at "
            f"{ra['largest']}: {ra['idle_commands_per_worker_s']:.2f}, per worker added "
            f"{ra['idle_commands_per_added_worker_s']:.2f} (target ≤ ~1)"
        )
    out.print(f"[dim]{versions_line(meta)}; load average at the end {meta['loadavg']}[/]")


def main(argv=None) -> int:
    args = parse_args(argv)
    rows: list[dict] = []
    with bench_session("worker-scale") as s:
        s.conn.config_set("maxmemory", 0)
        config = write_vq_config(s.workdir, s.server.url, concurrency={"type": {JOB_TYPE: 1000}})
        for n in args.sizes:
            rows.append(measure(s.conn, args, s.workdir, config, n, s.progress, s))
    if s.failed is not None:
        return s.failed
    meta = {"sizes": args.sizes, "loadavg": [round(x, 2) for x in os.getloadavg()], **environment(s.redis_version)}
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        meta["ratios"] = {
            "smallest": small["workers"],
            "largest": large["workers"],
            "cpu_per_job": large["busy_redis_cpu_ms_per_job"] / small["busy_redis_cpu_ms_per_job"],
            "latency_p99": large["latency_p99_ms"] / max(small["latency_p99_ms"], 0.01),
            "script_usec_per_call": large["busy_script_usec_per_call"] / max(small["busy_script_usec_per_call"], 1e-9),
            "idle_commands_per_worker_s": large["idle_commands_per_worker_s"],
            # what one more idle worker adds, the daemons' own chores (archiver, timer) aside
            "idle_commands_per_added_worker_s": (large["idle_commands_per_s"] - small["idle_commands_per_s"])
            / max(large["workers"] - small["workers"], 1),
        }
    if args.json:
        print(json.dumps({"sizes": rows, "meta": meta}, indent=2, default=str))
    else:
        report(s.out, rows, meta)
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
