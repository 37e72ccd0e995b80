#!/usr/bin/env python3
"""Where a no-op job's time goes: py-spy on a vq drain, and CPU per job of every process.

Runs the throughput bench's drain (N no-op jobs from 50 users, `vq daemon --workers 2`,
every feature on) on a private Redis and, once the workers are busy, for --seconds:

* samples every process of the daemon with py-spy (`record --subprocesses --gil`: only the
  thread holding the GIL, so the worker's Python CPU, not its waits) and sorts each worker
  sample into the step of the job it belongs to (CATEGORIES: the deepest frame that names
  one wins);
* reads each process's CPU time (/proc, user + system) and redis-server's, and Redis's
  INFO commandstats, and divides by the jobs that ended meanwhile.

A step's microseconds per job are its share of the workers' samples times the workers'
measured CPU per job. Needs py-spy on PATH (and the right to attach: root, or
ptrace_scope 0). Run from the repository root:
  python scripts/bench/job_profile.py                      # 5,000 jobs, 8 s of samples
  python scripts/bench/job_profile.py --jobs 10000 --seconds 15 --raw /tmp/vq.raw
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import JOB_TYPE, BenchError, run_vq, vq_registry_keys, write_vq_config
from _session import add_run_options, bench_parser, bench_session
from rich.table import Table
from throughput import subs

# (a frame's text contains this, the step): the deepest match in a sample's stack names its step.
CATEGORIES = [
    ("BaseWorker.work", "RQ's per-job loop and vq's execute_job (timeout alarm, contexts, counters)"),
    ("JobLeases._arm", "lease held: Fence.hold, which wakes the lease watchdog thread"),
    ("JobLeases._disarm", "lease dropped"),
    ("Job.perform", "handler call: vq's run_job (handler context, job-log capture, providers)"),
    ("JobOutcomes._finish_in_one_trip", "end: the rest (counters, ids)"),
    ("_finish_payload", "end: what the script writes (status, dates, result JSON, finished event)"),
    ("Admission.admit_in", "end: the admission script's arguments"),
    ("Pipeline.execute", "the round trip: commands packed, sent, reply parsed"),
    ("AdmissionStarts._take_started", "next job: its hash restored into an RQ Job"),
    ("say (vq/events.py", "event log lines (started, finished)"),
    ("Logger.", "event log lines (started, finished)"),
]
# A sample here is the worker holding the GIL while the OS runs the thread it just woke (its
# Event.set costs 20-40 µs of CPU measured alone): counted as a wait, not as CPU per job.
WAKE_STEP = CATEGORIES[1][1]
OTHER_THREADS = "other threads (lease renewer and watchdog, cancel and command listeners)"
TICK = os.sysconf("SC_CLK_TCK")


def parse_args(argv):
    p = bench_parser(__doc__)
    p.add_argument("--jobs", type=int, default=5000, help="no-op jobs in the drain (default 5000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seconds", type=int, default=8, help="how long py-spy samples, whole seconds (default 8)")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    p.add_argument("--raw", type=Path, help="keep py-spy's raw (collapsed stacks) output here")
    add_run_options(p, poll=0.02, timeout=900)
    args = p.parse_args(argv)
    if args.jobs < 1000 or args.seconds <= 0:
        p.error("--jobs must be at least 1000 and --seconds above 0")
    if shutil.which("py-spy") is None:
        p.error("py-spy is not on PATH (pip install py-spy)")
    return args


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def step_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    if "BaseWorker.work" not in joined:
        return OTHER_THREADS
    step = "idle"
    for frame in frames:
        for marker, name in CATEGORIES:
            if marker in frame:
                step = name
    return step


def read_raw(path: Path) -> dict[int, collections.Counter]:
    """py-spy's collapsed stacks, per process: {pid: Counter(step or role: samples)}."""
    per: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit():  # not a stack line
            continue
        pid = int(frames[1].split(":")[0].split()[1]) if len(frames) > 1 and frames[1].startswith("process ") else 0
        per[pid][step_of(frames)] += int(count)
        if any("Archiver.step" in f for f in frames):
            per[pid]["<archiver>"] += int(count)
    return per


class Sampler:
    """Started just before the daemon: finds it and its workers, waits until they are busy,
    then takes the CPU, ended-job and commandstats readings around a py-spy recording."""

    def __init__(self, conn, args, raw: Path):
        self.conn, self.args, self.raw = conn, args, raw
        self.finished_keys = vq_registry_keys(conn, JOB_TYPE)[0]
        self.result: dict = {}
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _ended(self) -> int:
        return sum(self.conn.zcard(k) for k in self.finished_keys)

    def _readings(self, pids: list[int]) -> dict:
        cpu = {}
        for pid in pids:
            try:
                cpu[pid] = cpu_seconds(pid)
            except OSError:
                cpu[pid] = 0.0
        stats = {k.removeprefix("cmdstat_"): v for k, v in self.conn.info("commandstats").items()}
        return {"cpu": cpu, "ended": self._ended(), "stats": stats, "at": time.perf_counter()}

    def _run(self) -> None:
        try:
            redis_pid = int(self.conn.info("server")["process_id"])
            deadline = time.monotonic() + 60
            daemon = None
            while daemon is None and time.monotonic() < deadline:
                found = [p for p in children(os.getpid()) if p != redis_pid]
                daemon = found[0] if found else None
                time.sleep(0.05)
            while daemon and len(children(daemon)) < self.args.workers + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            while self._ended() < self.args.jobs // 20 and time.monotonic() < deadline:
                time.sleep(0.05)  # the workers are busy (start-up's imports are over)
            if daemon is None:
                raise BenchError("the daemon did not start")
            pids = [redis_pid, daemon, *children(daemon)]
            before = self._readings(pids)
            spy = [
                "py-spy", "record", "--gil", "--subprocesses", "--nonblocking", "--format", "raw",
                "-r", str(self.args.rate), "--duration", str(self.args.seconds), "-o", str(self.raw),
                "--pid", str(daemon),
            ]  # fmt: skip
            done = subprocess.run(spy, capture_output=True, text=True, check=False)
            after = self._readings(pids)
            if done.returncode != 0 or not self.raw.exists():
                raise BenchError(f"py-spy failed: {done.stderr.strip()[-300:]}")
            self.result = {"before": before, "after": after, "redis": redis_pid, "daemon": daemon}
        except (BenchError, OSError) as exc:
            self.error = str(exc)


def report(out, sampler: Sampler, args) -> dict:
    before, after = sampler.result["before"], sampler.result["after"]
    jobs = after["ended"] - before["ended"]
    if jobs < 100:
        raise BenchError(f"only {jobs} jobs ended while py-spy sampled; try more --jobs")
    seconds = after["at"] - before["at"]
    us = {pid: 1e6 * (after["cpu"][pid] - before["cpu"][pid]) / jobs for pid in before["cpu"]}
    per = read_raw(sampler.raw)
    workers = [pid for pid, c in per.items() if sum(v for k, v in c.items() if k.startswith("end:")) > 0]
    archivers = [pid for pid, c in per.items() if c["<archiver>"] and pid not in workers]
    worker_us = sum(us.get(pid, 0.0) for pid in workers)

    table = Table(title=f"CPU per job, {jobs:,} jobs in {seconds:.1f} s ({jobs / seconds:,.0f}/s)")
    for col in ("process", "µs per job"):
        table.add_column(col, justify="right" if col != "process" else "left")
    table.add_row(f"vq workers ({len(workers)}), together", f"{worker_us:,.0f}")
    table.add_row("redis-server", f"{us[sampler.result['redis']]:,.0f}")
    table.add_row("archiver (history, metrics)", f"{sum(us.get(p, 0.0) for p in archivers):,.0f}")
    table.add_row("daemon (supervisor, timer, chores)", f"{us[sampler.result['daemon']]:,.0f}")
    rest = sum(
        v for p, v in us.items() if p not in (*workers, *archivers, sampler.result["redis"], sampler.result["daemon"])
    )
    table.add_row("other children (webhooks, ...)", f"{rest:,.0f}")
    table.add_row("all", f"{sum(us.values()):,.0f}")
    tables = [table]
    data: dict = {
        "jobs": jobs,
        "seconds": round(seconds, 2),
        "cpu_us_per_job": {
            "workers": round(worker_us),
            "redis": round(us[sampler.result["redis"]]),
            "archiver": round(sum(us.get(p, 0.0) for p in archivers)),
            "daemon": round(us[sampler.result["daemon"]]),
            "other": round(rest),
        },
    }

    steps: collections.Counter = collections.Counter()
    for pid in workers:
        steps.update({k: v for k, v in per[pid].items() if not k.startswith("<")})
    total = sum(steps.values())
    busy = total - steps[WAKE_STEP]  # the workers' CPU is spread over these
    table = Table(title="A worker's samples holding the GIL, by step of the job (py-spy --gil)")
    for col in ("step", "share of samples", "µs of CPU per job"):
        table.add_column(col, justify="left" if col == "step" else "right")
    data["worker_steps"] = {}
    for step, n in steps.most_common():
        cost = None if step == WAKE_STEP else round(worker_us * n / busy)
        table.add_row(step, f"{100 * n / total:.1f}%", "(a wait)" if cost is None else f"{cost:,}")
        data["worker_steps"][step] = {"share": round(n / total, 3), "us": cost}
    tables.append(table)

    stats_before, stats_after = before["stats"], after["stats"]
    rows = []
    for name, now in stats_after.items():
        was = stats_before.get(name, {"calls": 0, "usec": 0})
        rows.append((name, (now["calls"] - was["calls"]) / jobs, (now["usec"] - was["usec"]) / jobs))
    table = Table(title="Redis per job, by command (INFO commandstats; a script's usec includes its commands')")
    for col in ("command", "calls", "µs"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for name, calls, usec in sorted(rows, key=lambda r: -r[2])[:10]:
        table.add_row(name, f"{calls:.2f}", f"{usec:.1f}")
    tables.append(table)
    data["redis_by_command"] = {name: {"calls": round(c, 2), "usec": round(u, 1)} for name, c, u in rows}
    data["load_average"] = round(os.getloadavg()[0], 1)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for table in tables:
            out.print(table)
        out.print(f"load average {data['load_average']}" + (f"; samples kept in {sampler.raw}" if args.raw else ""))
    return data


def main(argv=None) -> int:
    args = parse_args(argv)
    with bench_session("profile") as s:
        conn, workdir, server = s.conn, s.workdir, s.server
        conn.config_set("maxmemory", 0)
        config = write_vq_config(workdir, server.url, concurrency={"type": {JOB_TYPE: 1000}})
        raw = args.raw or workdir / "pyspy.raw"
        sampler = Sampler(conn, args, raw)
        run_vq(
            conn,
            args,
            0,
            workdir,
            config,
            args.timeout,
            subs(args.jobs),
            before_drain=lambda: (conn.config_resetstat(), sampler.thread.start()),
            after_drain=lambda: sampler.thread.join(args.seconds + 60),
        )
        if sampler.error or not sampler.result:
            raise BenchError(sampler.error or "the drain ended before py-spy was done: try more --jobs")
        report(s.out, sampler, args)
    if s.failed is not None:
        return s.failed
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
