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
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_handlers must import here too (vq's submit loads the handler)
    sys.path.insert(0, str(HERE))

import redis  # noqa: E402
import rq  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from rq import Queue  # noqa: E402
from rq.job import Job  # noqa: E402
from rq.registry import FailedJobRegistry, FinishedJobRegistry  # noqa: E402
from rq.serializers import JSONSerializer  # noqa: E402
from rq.utils import utcparse  # noqa: E402

from vq import events, jobs as vq_jobs, keys  # noqa: E402
from vq.config import load_settings  # noqa: E402
from vq.submission import Submission, submit  # noqa: E402

JOB_TYPE = "bench-noop"
RQ_QUEUE = "bench"
SYSTEMS = ("vq", "rq-simple", "rq-fork")
LABELS = {"vq": "vq daemon", "rq-simple": "RQ SimpleWorker", "rq-fork": "RQ Worker (fork)"}
WIDTH = 120  # rich wraps at 80 columns when not on a terminal; the tables need more
# Variables that would point vq or its children at another Redis or data dir.
SCRUB_ENV = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "VQ_DATA_DIR", "VQ_CONFIG")

err = Console(stderr=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- private Redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.port = free_port()
        if self.port == 6379:  # never the conventional port, whatever the OS hands out
            self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "redis.log"

    def start(self) -> redis.Redis:
        exe = shutil.which("redis-server")
        if not exe:
            raise BenchError("redis-server not found on PATH (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--daemonize", "no", "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                conn.ping()
                return conn
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"private redis-server on port {self.port} did not start (see {self.log})")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- helpers


@dataclass
class RunResult:
    system: str
    run: int
    jobs: int
    enqueue_s: float
    drain_s: float
    steady_s: float | None
    stop_s: float | None = None
    verified: list[str] = field(default_factory=list)

    @property
    def enqueue_rate(self) -> float:
        return self.jobs / self.enqueue_s

    @property
    def drain_rate(self) -> float:
        return self.jobs / self.drain_s

    @property
    def steady_rate(self) -> float | None:
        return self.jobs / self.steady_s if self.steady_s else None


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def ended_counts(conn: redis.Redis, finished_keys: list[str], failed_keys: list[str]) -> tuple[int, int]:
    with conn.pipeline(transaction=False) as pipe:
        for key in finished_keys + failed_keys:
            pipe.zcard(key)
        replies = pipe.execute()
    return sum(replies[: len(finished_keys)]), sum(replies[len(finished_keys):])


def steady_seconds(conn: redis.Redis, job_ids: list[str]) -> float | None:
    """First job start -> last job end, from RQ's own timestamps on the job hashes."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at")
        replies = pipe.execute()
    starts = [utcparse(s.decode()) for s, _e in replies if s]
    ends = [utcparse(e.decode()) for _s, e in replies if e]
    if not starts or not ends:
        return None
    return (max(ends) - min(starts)).total_seconds()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> float:
    """SIGTERM, wait; SIGKILL if it does not go. Returns seconds to exit."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            err.print(f"[yellow]pid {proc.pid} still running {timeout:.0f}s after SIGTERM: killing it[/]")
            proc.kill()
            proc.wait()
    return time.monotonic() - t0


# --------------------------------------------------------------------------- vq


def write_vq_config(workdir: Path, redis_url: str) -> Path:
    config = {
        "redis": {"url": redis_url},
        "data_dir": str(workdir / "vq-data"),
        "queue": {"defaultJobOptions": {"removeOnComplete": False, "removeOnFail": False}},
        "job_types": {JOB_TYPE: {"handler": "bench_handlers:noop", "attempts": 1}},
    }
    path = workdir / "vq-bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_vq(conn, args, run: int, workdir: Path, config_path: Path, timeout: float) -> RunResult:
    settings = load_settings(config_path, env={})
    conn.flushall()
    sub = Submission(job_type=JOB_TYPE, data={}, user_id="bench")
    t0 = time.perf_counter()
    ids = [submit(conn, settings, sub) for _ in range(args.jobs)]
    enqueue_s = time.perf_counter() - t0

    names = [keys.queue_name(JOB_TYPE, p) for p in keys.PRIORITY_ORDER]
    finished_keys = [FinishedJobRegistry(n, connection=conn).key for n in names]
    failed_keys = [FailedJobRegistry(n, connection=conn).key for n in names]
    log_path = workdir / f"vq-daemon-run{run}.log"
    cmd = [sys.executable, "-m", "vq", "daemon", "--workers", str(args.workers), "--log-level", args.vq_log_level]
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=child_env({"VQ_CONFIG": str(config_path)}), stdout=log, stderr=log,
                                cwd=workdir)
        try:
            while True:
                finished, failed = ended_counts(conn, finished_keys, failed_keys)
                if finished + failed >= args.jobs:
                    drain_s = time.perf_counter() - t0
                    break
                if proc.poll() is not None:
                    raise BenchError(f"vq daemon exited with code {proc.returncode} after {finished} jobs:\n"
                                     + tail(log_path))
                if time.perf_counter() - t0 > timeout:
                    raise BenchError(f"vq: only {finished}/{args.jobs} finished after {timeout:.0f}s:\n" + tail(log_path))
                time.sleep(args.poll)
        finally:
            stop_s = stop_process(proc)
    if failed:
        raise BenchError(f"vq: {failed} jobs failed (log {log_path}):\n" + tail(log_path))
    if proc.returncode != 0:
        err.print(f"[yellow]vq daemon exited with code {proc.returncode} on SIGTERM (log {log_path})[/]")

    # Verify: a sample through vq's own API, and the event stream's finished count.
    verified = []
    for job_id in random.sample(ids, min(25, len(ids))):
        status = vq_jobs.show(conn, job_id)["status"]
        if status != "finished":
            raise BenchError(f"vq job {job_id} is {status}, not finished")
    verified.append(f"{min(25, len(ids))} sampled via vq.jobs.show: finished")
    finished_events = count_events(conn, "finished", set(ids))
    if finished_events != args.jobs:
        raise BenchError(f"vq: {finished_events} 'finished' events in {keys.EVENTS}, expected {args.jobs}")
    verified.append(f"{finished_events} finished events in {keys.EVENTS}")
    return RunResult("vq", run, args.jobs, enqueue_s, drain_s, steady_seconds(conn, ids), stop_s, verified)


def count_events(conn, event: str, ids: set[str]) -> int:
    seen, since = set(), "0-0"
    while True:
        batch = events.read(conn, since=since, count=5000)
        if not batch:
            return len(seen)
        for e in batch:
            if e["event"] == event and e["jobId"] in ids:
                seen.add(e["jobId"])
        since = batch[-1]["id"]


# --------------------------------------------------------------------------- plain RQ


def rq_executable() -> list[str]:
    beside = Path(sys.executable).with_name("rq")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rq")
    if not found:
        raise BenchError("the `rq` command was not found")
    return [found]


def run_rq(conn, args, run: int, workdir: Path, redis_url: str, system: str, timeout: float) -> RunResult:
    conn.flushall()
    queue = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    t0 = time.perf_counter()
    ids = [queue.enqueue("bench_handlers.noop").id for _ in range(args.jobs)]
    enqueue_s = time.perf_counter() - t0

    finished_keys = [FinishedJobRegistry(RQ_QUEUE, connection=conn).key]
    failed_keys = [FailedJobRegistry(RQ_QUEUE, connection=conn).key]
    cmd = rq_executable() + ["worker", "--burst", "-S", "rq.serializers.JSONSerializer", "--url", redis_url]
    if system == "rq-simple":
        cmd += ["-w", "rq.worker.SimpleWorker"]
    cmd.append(RQ_QUEUE)
    env = child_env({})
    logs = [workdir / f"{system}-run{run}-w{i}.log" for i in range(args.workers)]
    handles = [open(p, "wb") for p in logs]
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        for handle in handles:
            procs.append(subprocess.Popen(cmd, env=env, stdout=handle, stderr=handle, cwd=workdir))
        while True:
            finished, failed = ended_counts(conn, finished_keys, failed_keys)
            all_exited = all(p.poll() is not None for p in procs)
            if all_exited and finished + failed >= args.jobs:
                drain_s = time.perf_counter() - t0
                break
            if all_exited:
                raise BenchError(f"{system}: workers exited with only {finished}+{failed}/{args.jobs} jobs ended:\n"
                                 + tail(logs[0]))
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"{system}: only {finished}/{args.jobs} finished after {timeout:.0f}s:\n" + tail(logs[0]))
            time.sleep(args.poll)
    finally:
        for p in procs:
            stop_process(p, 10)
        for h in handles:
            h.close()
    if failed:
        raise BenchError(f"{system}: {failed} jobs failed:\n" + tail(logs[0]))
    bad = [p.returncode for p in procs if p.returncode != 0]
    if bad:
        raise BenchError(f"{system}: worker exit codes {bad}:\n" + tail(logs[0]))
    sample = random.sample(ids, min(25, len(ids)))
    for job in Job.fetch_many(sample, connection=conn, serializer=JSONSerializer):
        status = job.get_status(refresh=False) if job else None
        if job is None or status is None or status.value != "finished":
            raise BenchError(f"{system}: job {job.id if job else '?'} is {status}, not finished")
    verified = [f"{len(sample)} sampled via Job.fetch_many: finished", f"{finished} in {finished_keys[0]}"]
    return RunResult(system, run, args.jobs, enqueue_s, drain_s, steady_seconds(conn, ids), None, verified)


# --------------------------------------------------------------------------- report


def summarize(results: list[RunResult], systems: list[str]) -> dict:
    out = {}
    for system in systems:
        rs = [r for r in results if r.system == system]
        if not rs:
            continue
        steady = [r.steady_rate for r in rs if r.steady_rate]
        out[system] = {
            "runs": len(rs),
            "drain_jobs_per_s": statistics.median(r.drain_rate for r in rs),
            "drain_jobs_per_s_runs": [round(r.drain_rate, 1) for r in rs],
            "drain_seconds_median": statistics.median(r.drain_s for r in rs),
            "steady_jobs_per_s": statistics.median(steady) if steady else None,
            "enqueue_jobs_per_s": statistics.median(r.enqueue_rate for r in rs),
        }
        if system == "vq":
            out[system]["stop_seconds_median"] = statistics.median(r.stop_s for r in rs if r.stop_s is not None)
    ratios = {}
    if "vq" in out:
        for base in ("rq-fork", "rq-simple"):
            if base in out:
                ratios[f"vq/{base}"] = {
                    "drain": out["vq"]["drain_jobs_per_s"] / out[base]["drain_jobs_per_s"],
                    "steady": (out["vq"]["steady_jobs_per_s"] / out[base]["steady_jobs_per_s"]
                               if out["vq"]["steady_jobs_per_s"] and out[base]["steady_jobs_per_s"] else None),
                    "enqueue": out["vq"]["enqueue_jobs_per_s"] / out[base]["enqueue_jobs_per_s"],
                }
    return {"systems": out, "ratios": ratios}


def print_table(console: Console, summary: dict, meta: dict) -> None:
    table = Table(title=f"Drain {meta['jobs']:,} no-op jobs, {meta['workers']} worker processes "
                        f"(median of runs)")
    table.add_column("system")
    table.add_column("runs", justify="right")
    table.add_column("drain jobs/s", justify="right")
    table.add_column("per run", justify="right")
    table.add_column("drain s", justify="right")
    table.add_column("steady jobs/s", justify="right")
    table.add_column("enqueue jobs/s", justify="right")
    for system, s in summary["systems"].items():
        table.add_row(LABELS[system], str(s["runs"]), f"{s['drain_jobs_per_s']:,.0f}",
                      " ".join(f"{v:,.0f}" for v in s["drain_jobs_per_s_runs"]),
                      f"{s['drain_seconds_median']:.2f}",
                      f"{s['steady_jobs_per_s']:,.0f}" if s["steady_jobs_per_s"] else "-",
                      f"{s['enqueue_jobs_per_s']:,.0f}")
    console.print(table)
    if summary["ratios"]:
        ratios = Table(title="vq ÷ RQ (above 1 = vq faster)")
        ratios.add_column("ratio")
        ratios.add_column("drain", justify="right")
        ratios.add_column("steady", justify="right")
        ratios.add_column("enqueue", justify="right")
        for name, r in summary["ratios"].items():
            base = name.split("/", 1)[1]
            ratios.add_row(f"vq / {LABELS[base]}", f"{r['drain']:.2f}",
                           f"{r['steady']:.2f}" if r["steady"] else "-", f"{r['enqueue']:.2f}")
        console.print(ratios)
    console.print(f"[dim]{meta['machine']}; Python {meta['python']}, rq {meta['rq']}, redis-py {meta['redis_py']}, "
                  f"redis-server {meta['redis_server']}. drain = process spawn -> all jobs finished; "
                  f"steady = first job start -> last job end (job timestamps).[/]")


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
    results: list[RunResult] = []
    progress = Console(stderr=True, width=None if sys.stderr.isatty() else WIDTH)
    try:
        conn = server.start()
        redis_version = conn.info("server")["redis_version"]
        config_path = write_vq_config(workdir, server.url)
        progress.print(f"[dim]private redis-server {redis_version} on port {server.port}; work dir {workdir}[/]")
        rounds = max(args.runs, args.fork_runs if "rq-fork" in args.systems else 0)
        for run in range(1, rounds + 1):
            for system in args.systems:
                wanted = args.fork_runs if system == "rq-fork" else args.runs
                if run > wanted:
                    continue
                if system == "vq":
                    r = run_vq(conn, args, run, workdir, config_path, args.timeout)
                else:
                    r = run_rq(conn, args, run, workdir, server.url, system, args.timeout)
                results.append(r)
                steady = f"{r.steady_rate:,.0f}" if r.steady_rate else "-"
                progress.print(f"run {run} {LABELS[system]:<17} enqueue {r.enqueue_rate:7,.0f}/s  "
                               f"drain {r.drain_s:6.2f}s = {r.drain_rate:7,.0f}/s  steady {steady}/s  "
                               f"[dim]({'; '.join(r.verified)})[/]")
        conn.flushall()
    except BenchError as exc:
        err.print(f"[red]benchmark failed:[/] {exc}")
        err.print(f"[dim]logs kept in {workdir}[/]")
        server.stop()
        return 1
    finally:
        server.stop()
    summary = summarize(results, args.systems)
    meta = {
        "jobs": args.jobs, "workers": args.workers, "runs": args.runs, "fork_runs": args.fork_runs,
        "vq_log_level": args.vq_log_level, "machine": f"{platform.machine()} x{os.cpu_count()} CPUs",
        "python": platform.python_version(), "rq": rq.__version__, "redis_py": redis.__version__,
        "redis_server": redis_version, "date": datetime.now().isoformat(timespec="seconds"),
    }
    if args.json:
        summary["meta"] = meta
        summary["runs"] = [{**asdict(r), "drain_jobs_per_s": r.drain_rate, "enqueue_jobs_per_s": r.enqueue_rate,
                            "steady_jobs_per_s": r.steady_rate} for r in results]
        print(json.dumps(summary, indent=2))
    else:
        print_table(Console(width=None if sys.stdout.isatty() else WIDTH), summary, meta)
    if args.keep:
        progress.print(f"[dim]kept {workdir}[/]")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
