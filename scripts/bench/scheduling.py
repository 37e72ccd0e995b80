#!/usr/bin/env python3
"""Scheduling precision: how late (or early) delayed and recurring jobs start, vq versus plain RQ.

vq promises that a delayed job or a recurring tick never starts early and starts on time:
its timer keeps due times to the microsecond and sleeps exactly until the next one
(vq/timer.py), where RQ keeps whole seconds and polls once a second. This script measures
both, in the same run, on one private throw-away `redis-server` (free port, no persistence,
temp dir) that it starts and stops; it never touches another Redis.

Every job runs `bench_handlers:stamp_start`, which first thing records `time.time()` in the
hash `bench:starts` (job id -> start) of the bench's Redis, and counts its runs in
`bench:runs` (every job must run exactly once). Lateness = start - intended time; a negative
lateness is an *early start*. The target: no early start, p99 lateness at most 50 ms.

Scenario A, delayed jobs (default 200): each job gets a delay drawn uniformly from 1-5 s
(rounded to whole ms, the same seeded list for both systems). Intended time = the
`time.time()` taken just before the job is submitted + its delay.

* vq -- `vq daemon --workers 2` is started and waited for (its workers registered, its timer
        subscribed to `vq:timer`); then the jobs are submitted one by one in-process with
        `vq.submission.submit(..., Submission(delay_ms=...))`, spread round-robin over 20
        free-tier users. The bench config raises the concurrency limits (user tier free:
        1000, type bench-stamp: 1000), so admission never holds a due job back.
* RQ -- 2 `rq worker --with-scheduler -w rq.worker.SimpleWorker` (non-forking, like vq's
        workers; `--rq-worker fork` uses RQ's forking Worker) with the JSON serializer, waited
        for (registered, scheduler lock taken); then `Queue.enqueue_in(timedelta(ms=delay))`.
        RQ's own scheduler runs in one of the workers: it stores due times as whole seconds
        and polls every second, so early starts are expected.

Scenario B, recurring, one job per second over N ticks (default 60):

* vq -- the daemon is started and waited for *before* the definition is added, so every
        tick counts, the first included: `vq recurring add bench-stamp --cron "* * * * * *"
        --user bench-recurring --skip-cache` (the CLI, as a subprocess). Once N jobs have
        started, `vq recurring rm ID`. Intended time = the tick: each spawned job's
        `meta["tickMs"]` (read with `Job.fetch_many(..., serializer=JSONSerializer)`).
* RQ -- RQ 3's built-in cron scheduler (`rq cron CONFIG`, rq/cron.py), registered with the
        same cron string `* * * * * *` (croniter's sixth field = seconds), plus 2 plain RQ
        workers (SimpleWorker, default pickle serializer: `CronJob.enqueue` builds its Queue
        without a serializer, so the workers must use RQ's default). Started workers first,
        then `rq cron`; stopped once N jobs have started. RQ records no intended tick on the
        job, only when it enqueued it (`enqueued_at`, also the score in its
        `rq:cron_job:<name>:jobs` history); its cron grid is whole seconds (croniter from the
        previous enqueue time), and `CronScheduler` enqueues a job only once `now() >=` its
        tick. So intended tick = floor(enqueued_at) to the whole second. That is exact as
        long as RQ enqueues less than 1 s late; a gap in the floored sequence shows up as a
        missed tick in the table (then a tick was skipped or enqueued over 1 s late).

In both scenarios the first N ticks (by tick time) or all jobs are measured; nothing is
skipped. The first tick's lateness is also shown on its own ("1st"), since it alone
depends on the scheduler noticing a definition added while it sleeps (vq's timer sleeps
up to daemon.schedulerInterval, 1 s, unless told of something due sooner). Systems run
one after the other (vq, then RQ), Redis flushed before each.

Run from the repository root:  python scripts/bench/scheduling.py [--jobs 200 --ticks 60]
The defaults take about 2.5 minutes on a 2-core machine (the two 60-tick recurring runs
dominate); `--jobs 20 --ticks 5` about 30 s.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchError,
    child_env,
    environment,
    err,
    job_times,
    rq_executable,
    start_vq_daemon,
    statuses,
    stop_process,
    tail,
    versions_line,
    write_vq_config,
)
from _session import add_run_options, bench_parser, bench_session
from bench_handlers import RUNS_KEY, STARTS_KEY
from fairness import percentile
from rich.table import Table
from rq import Queue, Worker
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from vq import keys
from vq.config import load_settings
from vq.submission import Submission, submit

JOB_TYPE = "bench-stamp"
HANDLER = "bench_handlers.stamp_start"
RQ_QUEUE = "bench-sched"
RQ_CRON_NAME = "bench-tick"
CRON = "* * * * * *"  # every second (croniter: sixth field = seconds), for vq and RQ alike
RECURRING_USER = "bench-recurring"
TARGET_P99_MS = 50.0
SCENARIOS = {"delayed": "A delayed", "recurring": "B recurring"}
SYSTEMS = ("vq", "rq")


@dataclass
class Measured:
    scenario: str
    system: str
    label: str
    lateness_ms: list[float]
    missed_ticks: int | None = None  # recurring only: ticks in the measured span with no job
    verified: list[str] = field(default_factory=list)

    def stats(self) -> dict:
        xs = self.lateness_ms
        early = sum(1 for x in xs if x < 0)
        p99 = percentile(xs, 99)
        return {
            "label": self.label,
            "n": len(xs),
            "p50_ms": percentile(xs, 50),
            "p99_ms": p99,
            "max_ms": max(xs),
            "min_ms": min(xs),
            "early": early,
            "missed_ticks": self.missed_ticks,
            "meets_target": early == 0 and p99 <= TARGET_P99_MS and not self.missed_ticks,
            # Recurring only, a diagnostic beside the figures above (which count every tick):
            # the first tick's lateness, and p99 / max of the ticks after it.
            "first_tick_ms": xs[0] if self.missed_ticks is not None else None,
            "p99_after_first_ms": percentile(xs[1:], 99) if self.missed_ticks is not None and len(xs) > 1 else None,
            "max_after_first_ms": max(xs[1:]) if self.missed_ticks is not None and len(xs) > 1 else None,
        }


class Processes:
    """Every child this script starts, so each one is stopped on the way out, whatever happens."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.running: list[subprocess.Popen] = []

    def spawn(self, cmd: list[str], log_path: Path, env: dict[str, str]) -> subprocess.Popen:
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=self.workdir)
        self.running.append(proc)
        return proc

    def adopt(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 30) -> None:
        stop_process(proc, timeout)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


# --------------------------------------------------------------------------- waiting


def wait_for(
    predicate, what: str, procs: list[subprocess.Popen], log_path: Path, timeout: float, poll: float = 0.02
) -> None:
    """Poll until `predicate()`; fail early if one of `procs` exits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in procs:
            if proc.poll() is not None:
                raise BenchError(f"{what}: pid {proc.pid} exited with code {proc.returncode}:\n" + tail(log_path))
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not after {timeout:.0f}s:\n" + tail(log_path))
        time.sleep(poll)


def timer_subscribed(conn) -> bool:
    return conn.pubsub_numsub(keys.TIMER_CHANNEL)[0][1] > 0


def start_vq(conn, procs: Processes, args, config_path: Path, log_path: Path) -> subprocess.Popen:
    """`vq daemon --workers N`, waited for until its workers are registered and its timer listens."""
    proc = procs.adopt(start_vq_daemon(config_path, args.workers, args.vq_log_level, log_path, procs.workdir))
    wait_for(
        lambda: Worker.count(connection=conn) >= args.workers and timer_subscribed(conn),
        "vq daemon up (workers registered, timer subscribed)",
        [proc],
        log_path,
        30,
    )
    time.sleep(0.2)  # registered a moment before they first wait for a job
    return proc


def rq_worker_cmd(args, redis_url: str, scheduler: bool, json_serializer: bool) -> list[str]:
    cmd = rq_executable() + ["worker", "--url", redis_url]
    if args.rq_worker == "simple":
        cmd += ["-w", "rq.worker.SimpleWorker"]
    if scheduler:
        cmd.append("--with-scheduler")
    if json_serializer:
        cmd += ["-S", "rq.serializers.JSONSerializer"]
    return cmd + [RQ_QUEUE]


def start_rq_workers(
    conn, procs: Processes, args, redis_url: str, tag: str, scheduler: bool, json_serializer: bool
) -> tuple[list[subprocess.Popen], Path]:
    """N plain `rq worker` processes, waited for until registered (and the scheduler lock taken)."""
    cmd = rq_worker_cmd(args, redis_url, scheduler, json_serializer)
    logs = [procs.workdir / f"rq-{tag}-w{i}.log" for i in range(args.workers)]
    workers = [procs.spawn(cmd, log, child_env({})) for log in logs]
    lock = RQScheduler.get_locking_key(RQ_QUEUE)
    wait_for(
        lambda: Worker.count(connection=conn) >= args.workers and (not scheduler or conn.exists(lock)),
        "rq workers up" + (" (scheduler lock taken)" if scheduler else ""),
        workers,
        logs[0],
        30,
    )
    time.sleep(0.2)
    return workers, logs[0]


def wait_started(conn, want: int, procs: list[subprocess.Popen], log_path: Path, timeout: float, what: str) -> None:
    wait_for(lambda: conn.hlen(STARTS_KEY) >= want, f"{what}: {want} jobs started", procs, log_path, timeout, 0.05)


def wait_finished(conn, ids: list[str], procs: list[subprocess.Popen], log_path: Path, what: str) -> list[str]:
    """Every measured job finished, and each one's handler ran exactly once."""
    wait_for(
        lambda: statuses(conn, ids).get("finished", 0) == len(ids),
        f"{what}: all jobs finished",
        procs,
        log_path,
        30,
        0.05,
    )
    runs = conn.hmget(RUNS_KEY, ids)
    doubled = [i for i, r in zip(ids, runs) if int(r or 0) != 1]
    if doubled:
        raise BenchError(f"{what}: {len(doubled)} jobs did not run exactly once, e.g. {doubled[0]}")
    return [f"{len(ids)} finished", "each ran once"]


def starts_of(conn, ids: list[str]) -> list[float]:
    return [float(v) for v in conn.hmget(STARTS_KEY, ids)]


# --------------------------------------------------------------------------- scenario A: delayed jobs


def delays_ms(args) -> list[int]:
    rng = random.Random(args.seed)
    return [round(rng.uniform(args.min_delay * 1000, args.max_delay * 1000)) for _ in range(args.jobs)]


def delayed_vq(conn, args, procs: Processes, config_path: Path, delays: list[int]) -> Measured:
    settings = load_settings(config_path, env={})
    conn.flushall()
    log_path = procs.workdir / "vq-daemon-delayed.log"
    daemon = start_vq(conn, procs, args, config_path, log_path)
    intended, ids = [], []
    for n, delay in enumerate(delays):
        sub = Submission(job_type=JOB_TYPE, data={"seq": n}, user_id=f"sched-{n % args.users:02d}", delay_ms=delay)
        t = time.time()
        ids.append(submit(conn, settings, sub))
        intended.append(t + delay / 1000)
    try:
        wait_started(conn, len(ids), [daemon], log_path, args.max_delay + 60, "vq delayed")
        verified = wait_finished(conn, ids, [daemon], log_path, "vq delayed")
    finally:
        procs.stop(daemon)
    late = [(s - i) * 1000 for s, i in zip(starts_of(conn, ids), intended)]
    return Measured("delayed", "vq", f"vq daemon ×{args.workers}", late, None, verified)


def delayed_rq(conn, args, procs: Processes, redis_url: str, delays: list[int]) -> Measured:
    conn.flushall()
    workers, log_path = start_rq_workers(conn, procs, args, redis_url, "delayed", scheduler=True, json_serializer=True)
    queue = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    intended, ids = [], []
    for delay in delays:
        t = time.time()
        ids.append(queue.enqueue_in(timedelta(milliseconds=delay), HANDLER).id)
        intended.append(t + delay / 1000)
    try:
        wait_started(conn, len(ids), workers, log_path, args.max_delay + 60, "rq delayed")
        verified = wait_finished(conn, ids, workers, log_path, "rq delayed")
    finally:
        for w in workers:
            procs.stop(w, 10)
    late = [(s - i) * 1000 for s, i in zip(starts_of(conn, ids), intended)]
    label = f"RQ {args.rq_worker_label} ×{args.workers} +scheduler"
    return Measured("delayed", "rq", label, late, None, verified)


# --------------------------------------------------------------------------- scenario B: recurring


def first_ticks(ticks_and_ids: list[tuple[float, str]], n: int) -> tuple[list[float], list[str], int]:
    """The first n (tick s, job id) by tick; and how many whole-second ticks in their span had no job."""
    chosen = sorted(ticks_and_ids)[:n]
    ticks = [t for t, _ in chosen]
    missed = round(ticks[-1] - ticks[0]) + 1 - len(set(ticks)) if ticks else 0
    return ticks, [i for _, i in chosen], missed


def vq_cli(config_path: Path, *cli_args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "vq", *cli_args],
        env=child_env({"VQ_CONFIG": str(config_path)}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise BenchError(f"vq {' '.join(cli_args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def recurring_vq(conn, args, procs: Processes, config_path: Path) -> Measured:
    conn.flushall()
    log_path = procs.workdir / "vq-daemon-recurring.log"
    daemon = start_vq(conn, procs, args, config_path, log_path)
    definition = None
    try:
        definition = vq_cli(
            config_path, "recurring", "add", JOB_TYPE, "--cron", CRON, "--user", RECURRING_USER, "--skip-cache"
        )
        args.progress.print(f"[dim]vq recurring {definition} added; waiting for {args.ticks} ticks[/]")
        wait_started(conn, args.ticks, [daemon], log_path, args.ticks + 30, "vq recurring")
        vq_cli(config_path, "recurring", "rm", definition)
        definition = None
        ids = [k.decode() for k in conn.hkeys(STARTS_KEY)]
        jobs = Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)
        ticks, ids, missed = first_ticks([(j.meta["tickMs"] / 1000, j.id) for j in jobs if j is not None], args.ticks)
        verified = wait_finished(conn, ids, [daemon], log_path, "vq recurring")
    finally:
        if definition is not None and daemon.poll() is None:  # failed midway: do not leave it firing
            try:
                vq_cli(config_path, "recurring", "rm", definition)
            except BenchError as exc:
                err.print(f"[yellow]{exc}[/]")
        procs.stop(daemon)
    late = [(s - t) * 1000 for s, t in zip(starts_of(conn, ids), ticks)]
    return Measured("recurring", "vq", f"vq daemon ×{args.workers}", late, missed, verified)


def write_rq_cron_config(workdir: Path) -> Path:
    path = workdir / "rq_cron_bench.py"
    path.write_text(
        '"""RQ cron config written by scripts/bench/scheduling.py."""\n'
        "from rq import cron\n\n"
        "from bench_handlers import stamp_start\n\n"
        f"cron.register(stamp_start, {RQ_QUEUE!r}, cron={CRON!r}, name={RQ_CRON_NAME!r})\n"
    )
    return path


def recurring_rq(conn, args, procs: Processes, redis_url: str) -> Measured:
    conn.flushall()
    workers, worker_log = start_rq_workers(
        conn, procs, args, redis_url, "recurring", scheduler=False, json_serializer=False
    )
    cron_log = procs.workdir / "rq-cron.log"
    cron = None
    try:
        cron = procs.spawn(
            rq_executable() + ["cron", "--url", redis_url, str(write_rq_cron_config(procs.workdir))],
            cron_log,
            child_env({}),
        )
        wait_started(conn, args.ticks, workers + [cron], cron_log, args.ticks + 30, "rq cron")
        procs.stop(cron, 10)
        ids = [k.decode() for k in conn.hkeys(STARTS_KEY)]
        enqueued = [row[0].timestamp() for row in job_times(conn, ids, "enqueued_at")]
        ticks, ids, missed = first_ticks([(math.floor(e), i) for e, i in zip(enqueued, ids)], args.ticks)
        verified = wait_finished(conn, ids, workers, worker_log, "rq cron")
    finally:
        for proc in ([cron] if cron else []) + workers:
            procs.stop(proc, 10)
    late = [(s - t) * 1000 for s, t in zip(starts_of(conn, ids), ticks)]
    return Measured("recurring", "rq", f"RQ cron + {args.rq_worker_label} ×{args.workers}", late, missed, verified)


# --------------------------------------------------------------------------- report


def first_tick_note(s: dict) -> str:
    if s["first_tick_ms"] is None or s["p99_after_first_ms"] is None:
        return ""
    return (
        f"  (first tick {s['first_tick_ms']:.1f} ms; ticks 2..{s['n']}: p99 {s['p99_after_first_ms']:.1f}, "
        f"max {s['max_after_first_ms']:.1f} ms)"
    )


def summarize(results: list[Measured]) -> dict:
    out: dict = {}
    for r in results:
        out.setdefault(r.scenario, {})[r.system] = r.stats()
    return out


def verdict(summary: dict) -> str:
    parts = []
    for scenario, systems in summary.items():
        s = systems.get("vq")
        if s:
            parts.append(
                f"{scenario} p99 {s['p99_ms']:.1f} ms, {s['early']} early"
                + (f", {s['missed_ticks']} missed" if s["missed_ticks"] else "")
                + (f", first tick {s['first_tick_ms']:.0f} ms" if s["first_tick_ms"] is not None else "")
            )
    met = all(systems["vq"]["meets_target"] for systems in summary.values() if "vq" in systems)
    word = "[green]MEETS[/]" if met else "[red]MISSES[/]"
    return (
        f"verdict: vq {word} the target (no early start, p99 lateness <= {TARGET_P99_MS:g} ms): "
        + "; ".join(parts)
        + "."
    )


def print_table(console, summary: dict, meta: dict) -> None:
    table = Table(
        title=f"Scheduling precision: lateness = handler start - intended time, ms "
        f"({meta['jobs']} delayed jobs; {meta['ticks']} ticks of '{meta['cron']}')"
    )
    for name, justify in (
        ("scenario", "left"),
        ("system", "left"),
        ("n", "right"),
        ("p50", "right"),
        ("p99", "right"),
        ("max", "right"),
        ("min", "right"),
        ("early", "right"),
        ("missed", "right"),
        ("1st", "right"),
        ("target", "left"),
    ):
        table.add_column(name, justify=justify, no_wrap=name in ("scenario", "system"))
    for scenario, systems in summary.items():
        for s in systems.values():
            table.add_row(
                SCENARIOS[scenario],
                s["label"],
                str(s["n"]),
                f"{s['p50_ms']:.1f}",
                f"{s['p99_ms']:.1f}",
                f"{s['max_ms']:.1f}",
                f"{s['min_ms']:.1f}",
                f"[red]{s['early']}[/]" if s["early"] else "0",
                "-" if s["missed_ticks"] is None else str(s["missed_ticks"]),
                "-" if s["first_tick_ms"] is None else f"{s['first_tick_ms']:.1f}",
                "[green]met[/]" if s["meets_target"] else "[red]missed[/]",
            )
    console.print(table)
    console.print(verdict(summary))
    console.print(
        f"[dim]early = started before the intended time (negative lateness). Delayed: intended = submit "
        f"time.time() + delay ({meta['min_delay']:g}-{meta['max_delay']:g} s, seed {meta['seed']}). "
        f"Recurring, cron '{meta['cron']}': vq = the tick (meta tickMs); RQ = floor(enqueued_at) to the "
        f"second (RQ records no tick). missed = ticks without a job in the measured span. 1st = the "
        f"first tick's lateness alone (it is counted in the other columns too). "
        f"{versions_line(meta)}.[/]"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--jobs", type=int, default=200, help="delayed jobs per system (default 200)")
    p.add_argument("--ticks", type=int, default=60, help="recurring ticks per system (default 60)")
    p.add_argument("--workers", type=int, default=2, help="worker processes on each side (default 2)")
    p.add_argument("--users", type=int, default=20, help="vq users the delayed jobs are spread over (default 20)")
    p.add_argument("--min-delay", type=float, default=1.0, help="shortest delay in seconds (default 1)")
    p.add_argument("--max-delay", type=float, default=5.0, help="longest delay in seconds (default 5)")
    p.add_argument("--seed", type=int, default=1, help="seed of the delays (default 1)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of delayed,recurring")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of vq,rq")
    p.add_argument(
        "--rq-worker",
        choices=("simple", "fork"),
        default="simple",
        help="RQ worker class: SimpleWorker (no fork per job, like vq's; default) or the forking Worker",
    )
    add_run_options(p, poll=None, timeout=None)
    args = p.parse_args(argv)
    if min(args.jobs, args.ticks, args.workers, args.users) < 1:
        p.error("--jobs, --ticks, --workers and --users must be at least 1")
    if not 0 < args.min_delay <= args.max_delay:
        p.error("need 0 < --min-delay <= --max-delay")
    for name, allowed in (("scenarios", SCENARIOS), ("systems", SYSTEMS)):
        chosen = [s.strip() for s in getattr(args, name).split(",") if s.strip()]
        unknown = [s for s in chosen if s not in allowed]
        if unknown or not chosen:
            p.error(f"--{name}: unknown {unknown} (choose from {', '.join(allowed)})")
        setattr(args, name, chosen)
    args.rq_worker_label = "SimpleWorker" if args.rq_worker == "simple" else "Worker (fork)"
    return args


def run_all(conn, args, procs: Processes, redis_url: str, config_path: Path) -> list[Measured]:
    results = []
    delays = delays_ms(args)
    steps = {
        ("delayed", "vq"): lambda: delayed_vq(conn, args, procs, config_path, delays),
        ("delayed", "rq"): lambda: delayed_rq(conn, args, procs, redis_url, delays),
        ("recurring", "vq"): lambda: recurring_vq(conn, args, procs, config_path),
        ("recurring", "rq"): lambda: recurring_rq(conn, args, procs, redis_url),
    }
    for scenario in args.scenarios:
        for system in args.systems:
            args.progress.print(f"[dim]{SCENARIOS[scenario]}: {system} ...[/]")
            r = steps[(scenario, system)]()
            results.append(r)
            s = r.stats()
            args.progress.print(
                f"{SCENARIOS[scenario]:<12} {r.label:<30} p50 {s['p50_ms']:7.1f}  "
                f"p99 {s['p99_ms']:7.1f}  max {s['max_ms']:7.1f} ms  early {s['early']}"
                + first_tick_note(s)
                + f"  [dim]({'; '.join(r.verified)})[/]"
            )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with bench_session("scheduling") as s:
        conn, workdir, args.progress = s.conn, s.workdir, s.progress
        procs = Processes(workdir)
        s.on_exit(procs.stop_all)
        config_path = write_vq_config(
            workdir,
            s.server.url,
            job_types={JOB_TYPE: {"handler": "bench_handlers:stamp_start", "attempts": 1}},
            concurrency={"user": {"free": 1000}, "type": {JOB_TYPE: 1000}},
        )
        results = run_all(conn, args, procs, s.server.url, config_path)
        conn.flushall()
    if s.failed is not None:  # Ctrl-C too: the daemons and workers stop, and the redis-server
        return s.failed
    summary = summarize(results)
    meta = {
        "jobs": args.jobs,
        "ticks": args.ticks,
        "workers": args.workers,
        "users": args.users,
        "min_delay": args.min_delay,
        "max_delay": args.max_delay,
        "seed": args.seed,
        "cron": CRON,
        "rq_worker": args.rq_worker,
        "vq_log_level": args.vq_log_level,
        "target": {"early": 0, "p99_ms": TARGET_P99_MS},
        **environment(s.redis_version),
    }
    if args.json:
        print(
            json.dumps(
                {
                    "scenarios": summary,
                    "meta": meta,
                    "vq_meets_target": all(s["vq"]["meets_target"] for s in summary.values() if "vq" in s),
                    "runs": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
    else:
        print_table(s.out, summary, meta)
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
