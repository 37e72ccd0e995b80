#!/usr/bin/env python3
"""BullMQ beside vq: the same drains in the same run on the same private Redis (issue 28).

Two parts, rounds interleaved (vq, BullMQ, vq, BullMQ ...) so a slow spell of this shared
machine hits both, medians compared and printed as vq ÷ BullMQ:

* drain -- N no-op jobs: vq as throughput.py's drain (`vq daemon --workers 2`, every
           feature on, 50 enterprise users, type limit 1000) against BullMQ (Queue.addBulk,
           then one Worker in one Node process) at concurrency 1 and at concurrency 10.
* io    -- N jobs whose handler POSTs to a local stub provider that answers after 50 ms
           (one stub, a Node http server, for both): vq with 2 worker processes running
           the type in threads (`concurrencyPerWorker`, default 5, so 10 in flight)
           through vq's pooled httpx client, against one BullMQ Worker at concurrency 10
           (fetch, kept-alive). At 10 in flight the ceiling is 10 / 50 ms = 200 jobs/s.

Two times per drain: "drain" from the start of the consumer (vq: the daemon's spawn, so
its start-up counts; BullMQ: `new Worker`, in a Node process already running) to the last
job's end, and "steady" from the first job's start to the last job's end (vq: RQ's
timestamps on the job hashes; BullMQ: the first processor call and the last `completed`
event), the like-for-like one. Every vq drain is verified as throughput.py's; every
BullMQ drain must end with N completed jobs and none failed.

Node (`node`, v18+) must be on PATH; BullMQ 5 is installed from the npm registry into
--cache-dir (default ~/.cache/vq-bench/bullmq) the first time, never into the repository.

Run from the repository root:
  python scripts/bench/bullmq.py                          # both parts, ~3 min
  python scripts/bench/bullmq.py --parts drain --runs 1   # ~40 s
  python scripts/bench/bullmq.py --parts io --json
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import JOB_TYPE, BenchError, RunResult, environment, run_vq, stop_process, versions_line, write_vq_config
from _session import add_run_options, bench_parser, bench_session
from rich.table import Table
from throughput import USERS

from vq.submission import Submission

HERE = Path(__file__).resolve().parent
DRAIN_JS = HERE / "bullmq_drain.mjs"
IO_TYPE = "bench-io"
BULLMQ_SPEC = "bullmq@5"
PARTS = ("drain", "io")


def parse_args(argv):
    p = bench_parser(__doc__)
    p.add_argument("--parts", default="drain,io", help=f"comma-separated subset of {','.join(PARTS)} (default both)")
    p.add_argument("--jobs", type=int, default=5_000, help="no-op jobs per drain (default 5000)")
    p.add_argument("--io-jobs", type=int, default=1_000, help="jobs per I/O-bound drain (default 1000)")
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds of each (default 3)")
    p.add_argument("--workers", type=int, default=2, help="vq worker processes (default 2)")
    p.add_argument(
        "--concurrency", default="1,10", help="BullMQ Worker concurrencies for the no-op drain (default 1,10)"
    )
    p.add_argument("--per-worker", type=int, default=5, help="vq concurrencyPerWorker in the io part (default 5)")
    p.add_argument("--io-concurrency", type=int, default=10, help="BullMQ concurrency in the io part (default 10)")
    p.add_argument("--delay-ms", type=int, default=50, help="the stub provider's answer time (default 50 ms)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "vq-bench" / "bullmq",
        help="where BullMQ is installed (default ~/.cache/vq-bench/bullmq)",
    )
    add_run_options(p, poll=0.02, timeout=600)
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = [x for x in args.parts if x not in PARTS]
    if unknown:
        p.error(f"--parts: unknown {unknown} (choose from {', '.join(PARTS)})")
    try:
        args.concurrency = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        p.error(f"--concurrency: {args.concurrency!r} is not a comma-separated list of numbers")
    if not args.concurrency or min(args.concurrency) < 1:
        p.error("--concurrency: each must be at least 1")
    if min(args.jobs, args.io_jobs, args.runs, args.workers, args.io_concurrency, args.delay_ms) < 1:
        p.error("--jobs, --io-jobs, --runs, --workers, --io-concurrency and --delay-ms must be at least 1")
    if not 1 <= args.per_worker <= 64:
        p.error("--per-worker: from 1 to 64 (concurrencyPerWorker's range)")
    return args


# --------------------------------------------------------------------------- node and BullMQ


def ensure_bullmq(cache_dir: Path, progress) -> str:
    """BullMQ's version, installed into cache_dir with npm the first time."""
    if not shutil.which("node"):
        raise BenchError("node not found on PATH (BullMQ's side needs Node.js 18 or later)")
    package = cache_dir / "node_modules" / "bullmq" / "package.json"
    if not package.exists():
        npm = shutil.which("npm")
        if not npm:
            raise BenchError("npm not found on PATH (needed once, to install BullMQ)")
        cache_dir.mkdir(parents=True, exist_ok=True)
        if not (cache_dir / "package.json").exists():
            (cache_dir / "package.json").write_text('{"name": "vq-bench-bullmq", "private": true}\n')
        progress.print(f"[dim]installing {BULLMQ_SPEC} into {cache_dir} (once)[/]")
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache_dir), BULLMQ_SPEC],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0 or not package.exists():
            raise BenchError(f"npm install {BULLMQ_SPEC} failed:\n{done.stderr[-2000:]}")
    return json.loads(package.read_text())["version"]


def node_env(cache_dir: Path) -> dict[str, str]:
    return {**os.environ, "BULLMQ_DIR": str(cache_dir)}


class Stub:
    """The stub provider (bullmq_drain.mjs stub), a Node process on a free loopback port."""

    def __init__(self, delay_ms: int, workdir: Path):
        self.log = open(workdir / "stub.log", "wb")
        self.proc = subprocess.Popen(
            ["node", str(DRAIN_JS), "stub", "--delay-ms", str(delay_ms)], stdout=subprocess.PIPE, stderr=self.log
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the stub provider did not start (see {workdir / 'stub.log'})")
        self.url = json.loads(line)["url"]

    def stop(self) -> None:
        stop_process(self.proc, 5)
        self.log.close()


def run_bullmq(conn, args, run: int, redis_url: str, jobs: int, concurrency: int, url: str | None) -> RunResult:
    """One BullMQ drain in a fresh Node process on a flushed Redis."""
    conn.flushall()
    cmd = ["node", str(DRAIN_JS), "drain", "--redis", redis_url, "--jobs", str(jobs), "--concurrency", str(concurrency)]
    if url:
        cmd += ["--url", url]
    done = subprocess.run(cmd, capture_output=True, text=True, env=node_env(args.cache_dir), timeout=args.timeout)
    if done.returncode != 0:
        raise BenchError(f"BullMQ drain failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    if r["failed"] or r["counts"].get("completed") != jobs:
        raise BenchError(f"BullMQ drain: {r['failed']} failed, counts {r['counts']} (expected {jobs} completed)")
    system = f"bullmq-c{concurrency}"
    verified = [f"{r['counts']['completed']} completed, 0 failed (Queue.getJobCounts)"]
    return RunResult(system, run, jobs, r["enqueue_s"], r["drain_s"], r["steady_s"], None, verified)


# --------------------------------------------------------------------------- parts


def noop_subs(n: int) -> list[Submission]:
    return [
        Submission(job_type=JOB_TYPE, data={}, user_id=f"user-{i % USERS:03d}", subscription="enterprise")
        for i in range(n)
    ]


def io_subs(n: int, url: str) -> list[Submission]:
    return [
        Submission(job_type=IO_TYPE, data={"url": url}, user_id=f"user-{i % USERS:03d}", subscription="enterprise")
        for i in range(n)
    ]


def say(progress, r: RunResult, label: str) -> None:
    steady = f"{r.steady_rate:,.0f}" if r.steady_rate else "-"
    progress.print(
        f"run {r.run} {label:<26} drain {r.drain_s:6.2f}s = {r.drain_rate:7,.0f}/s  steady {steady:>6}/s  "
        f"[dim]({'; '.join(r.verified)})[/]"
    )


def part_drain(conn, args, workdir, server, progress) -> list[RunResult]:
    config = write_vq_config(workdir, server.url, concurrency={"type": {JOB_TYPE: 1000}}, name="vq-drain.yaml")
    results = []
    for run in range(1, args.runs + 1):
        r = run_vq(conn, args, run, workdir, config, args.timeout, noop_subs(args.jobs))
        say(progress, r, f"vq daemon --workers {args.workers}")
        results.append(r)
        for c in args.concurrency:
            r = run_bullmq(conn, args, run, server.url, args.jobs, c, None)
            say(progress, r, f"BullMQ concurrency {c}")
            results.append(r)
    return results


def part_io(conn, args, workdir, server, stub: Stub, progress) -> list[RunResult]:
    config = write_vq_config(
        workdir,
        server.url,
        job_types={
            IO_TYPE: {
                "handler": "bench_handlers:provider_call",
                "attempts": 1,
                "concurrencyPerWorker": args.per_worker,
            }
        },
        concurrency={"type": {IO_TYPE: 1000}},
        name="vq-io.yaml",
    )
    results = []
    for run in range(1, args.runs + 1):
        r = run_vq(conn, args, run, workdir, config, args.timeout, io_subs(args.io_jobs, stub.url), job_type=IO_TYPE)
        r.system = "vq-io"
        say(progress, r, f"vq io {args.workers}x{args.per_worker} threads")
        results.append(r)
        r = run_bullmq(conn, args, run, server.url, args.io_jobs, args.io_concurrency, stub.url)
        r.system = f"bullmq-io-c{args.io_concurrency}"
        say(progress, r, f"BullMQ io concurrency {args.io_concurrency}")
        results.append(r)
    return results


# --------------------------------------------------------------------------- report


def summarize(results: list[RunResult]) -> dict:
    out: dict = {}
    for system in dict.fromkeys(r.system for r in results):
        rs = [r for r in results if r.system == system]
        steady = [r.steady_rate for r in rs if r.steady_rate]
        out[system] = {
            "runs": len(rs),
            "jobs": rs[0].jobs,
            "drain_jobs_per_s": statistics.median(r.drain_rate for r in rs),
            "drain_jobs_per_s_runs": [round(r.drain_rate, 1) for r in rs],
            "steady_jobs_per_s": statistics.median(steady) if steady else None,
            "steady_jobs_per_s_runs": [round(x, 1) for x in steady],
            "enqueue_jobs_per_s": statistics.median(r.enqueue_rate for r in rs),
        }
    return out


def ratios(summary: dict) -> dict:
    """vq ÷ each BullMQ drain of the same part, on the medians, drain and steady."""
    out = {}
    for system, row in summary.items():
        if not system.startswith("bullmq"):
            continue
        vq = summary.get("vq-io" if "-io-" in system else "vq")
        if not vq:
            continue
        out[f"{'vq-io' if '-io-' in system else 'vq'}/{system}"] = {
            # each round's vq ÷ the same round's BullMQ: steadier than the medians' ratio on a noisy machine
            "steady_per_round": [
                round(a / b, 2)
                for a, b in zip(vq["steady_jobs_per_s_runs"], row["steady_jobs_per_s_runs"], strict=False)
            ],
            "drain": vq["drain_jobs_per_s"] / row["drain_jobs_per_s"],
            "steady": (
                vq["steady_jobs_per_s"] / row["steady_jobs_per_s"]
                if vq["steady_jobs_per_s"] and row["steady_jobs_per_s"]
                else None
            ),
        }
    return out


def print_report(out, summary: dict, rat: dict, meta: dict) -> None:
    t = Table(title=f"vq and BullMQ on one private Redis (median of {meta['runs']} interleaved rounds)")
    for col in ("system", "jobs", "drain jobs/s", "per run", "steady jobs/s", "per run", "enqueue jobs/s"):
        t.add_column(col, justify="left" if col == "system" else "right")
    for system, s in summary.items():
        t.add_row(
            meta["labels"].get(system, system),
            f"{s['jobs']:,}",
            f"{s['drain_jobs_per_s']:,.0f}",
            " ".join(f"{v:,.0f}" for v in s["drain_jobs_per_s_runs"]),
            f"{s['steady_jobs_per_s']:,.0f}" if s["steady_jobs_per_s"] else "-",
            " ".join(f"{v:,.0f}" for v in s["steady_jobs_per_s_runs"]),
            f"{s['enqueue_jobs_per_s']:,.0f}",
        )
    out.print(t)
    t = Table(title="vq ÷ BullMQ (above 1 = vq faster)")
    for col in ("ratio", "drain", "steady", "steady, round by round"):
        t.add_column(col, justify="left" if col == "ratio" else "right")
    for name, r in rat.items():
        a, b = name.split("/", 1)
        t.add_row(
            f"{meta['labels'][a]} ÷ {meta['labels'][b]}",
            f"{r['drain']:.2f}",
            f"{r['steady']:.2f}" if r["steady"] else "-",
            " ".join(f"{x:.2f}" for x in r["steady_per_round"]),
        )
    out.print(t)
    out.print(
        f"[dim]{versions_line(meta)}, node {meta['node']}, bullmq {meta['bullmq']}. drain = consumer start "
        f"(vq: daemon spawn; BullMQ: new Worker) -> last job ended; steady = first job start -> last job end.[/]"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    results: list[RunResult] = []
    with bench_session("bullmq") as s:
        conn, workdir, server, progress = s.conn, s.workdir, s.server, s.progress
        conn.config_set("maxmemory", 0)
        bullmq_version = ensure_bullmq(args.cache_dir, progress)
        node_version = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        if "drain" in args.parts:
            results += part_drain(conn, args, workdir, server, progress)
        if "io" in args.parts:
            stub = Stub(args.delay_ms, workdir)
            s.on_exit(stub.stop)
            results += part_io(conn, args, workdir, server, stub, progress)
    if s.failed is not None:
        return s.failed
    summary = summarize(results)
    rat = ratios(summary)
    labels = {
        "vq": f"vq daemon --workers {args.workers}",
        "vq-io": f"vq io, {args.workers} processes x {args.per_worker} threads",
        **{f"bullmq-c{c}": f"BullMQ concurrency {c}" for c in args.concurrency},
        f"bullmq-io-c{args.io_concurrency}": f"BullMQ io, concurrency {args.io_concurrency}",
    }
    meta = {
        "jobs": args.jobs,
        "io_jobs": args.io_jobs,
        "runs": args.runs,
        "workers": args.workers,
        "per_worker": args.per_worker,
        "delay_ms": args.delay_ms,
        "parts": args.parts,
        "node": node_version,
        "bullmq": bullmq_version,
        "loadavg": os.getloadavg(),
        "labels": labels,
        **environment(s.redis_version),
    }
    if args.json:
        print(json.dumps({"systems": summary, "ratios": rat, "meta": meta}, indent=2, default=str))
    else:
        print_report(s.out, summary, rat, meta)
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
