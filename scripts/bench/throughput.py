#!/usr/bin/env python3
"""Throughput benchmark: vq against plain RQ on the targets of the worker-model issue.

Everything runs against a private, throw-away `redis-server` (free port, no persistence,
temp dir) that this script starts and stops. Five parts, each comparing vq with plain RQ
in the same run on the same Redis and printing the ratio:

* drain    -- N no-op jobs from 50 users (enterprise tier, type limit 1000: no limit binds)
              through `vq daemon --workers 2` with every feature on (admission, leases,
              events, history, metrics), against 2 RQ SimpleWorkers and 2 RQ Workers (fork
              per job); rounds interleaved. Also Redis commands per job (INFO commandstats,
              reset when the drain starts: every client, the archiver's included, less
              the bench's own completion polls).
* enqueue  -- N submissions through `submit_each` (what `vq submit --batch` and the bulk
              route call) against RQ's `enqueue_many`; one by one through `submit` against
              `Queue.enqueue`. Same payload on both sides.
* latency  -- on an idle system, submit one job, wait for it, repeat: handler start minus
              the moment submit was called, p50/p99, vq (through admission) and RQ.
* memory   -- Redis memory (INFO used_memory) per waiting job over N jobs with a 1 KB
              payload: vq after admission routed them into their waiting lines (the type
              paused, so nothing runs), RQ with `enqueue_many`.
* features -- vq's drain with weighted fair shares and a limit group on, and with
              resources (one GPU per worker, a type that needs one), each against the
              same drain without them, interleaved rounds (scripts/bench/features.py);
              each ≥ 0.9.
* tracing  -- vq's drain with OpenTelemetry traces exported to a local OTLP/HTTP sink (the
              `otel` extra) against the same drain with them off, interleaved rounds
              (scripts/bench/tracing.py); ≥ 0.85.
* scale    -- vq's drain rate of N jobs at the head of a 1,000,000-job backlog (kept in a
              second private Redis, each round draining its next N) against the rate of a
              backlog of N alone, in --runs interleaved rounds (medians); each backlog
              settled first (routed into its waiting lines, its creations archived), as a
              backlog that built up is.

Run from the repository root:
  python scripts/bench/throughput.py                        # all parts but scale (~4 min)
  python scripts/bench/throughput.py --parts scale          # ~6 min, ~2 GB of Redis
  python scripts/bench/throughput.py --parts drain --runs 1 --fork-jobs 1000
  python scripts/bench/throughput.py --parts tracing        # ~1 min
"""

from __future__ import annotations

import json
import random
import statistics
import string
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    JOB_TYPE,
    OWN_COMMANDS,
    RQ_QUEUE,
    BenchError,
    PrivateRedis,
    environment,
    run_rounds,
    run_rq,
    run_vq,
    start_vq_daemon,
    steady_seconds,
    stop_process,
    summarize,
    versions_line,
    vq_registry_keys,
    wait_until_ended,
    write_vq_config,
)
from _session import add_run_options, bench_parser, bench_session
from bench_handlers import STARTS_KEY
from features import part_features
from rich.table import Table
from rq import Queue
from rq.serializers import JSONSerializer

from vq import queues as vq_queues
from vq.admission import Admission, count_waiting
from vq.config import load_settings
from vq.submission import Submission, submit, submit_each

PARTS = ("drain", "enqueue", "latency", "memory", "features", "tracing", "scale")
USERS = 50
STAMP_TYPE = "bench-stamp"
TARGETS = {
    "drain_vs_simple": 2.0,
    "drain_vs_fork": 5.0,
    "commands_per_job": 24,
    "batch_vs_enqueue_many": 1.0,
    "one_by_one_vs_enqueue": 1.0,
    "latency_p50_ms": 2.0,
    "latency_p99_ms": 5.0,
    "memory_vs_rq": 1.2,
    "scale": 0.9,
    "features": 0.9,
    "features_resources": 0.9,
    "tracing": 0.85,
}


def parse_args(argv):
    p = bench_parser(__doc__)
    p.add_argument(
        "--parts",
        default="drain,enqueue,latency,memory",
        help=f"comma-separated subset of {','.join(PARTS)} (default: all but scale)",
    )
    p.add_argument("--jobs", type=int, default=10_000, help="jobs per drain and per enqueue run (default 10000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes on each side (default 2)")
    p.add_argument("--runs", type=int, default=3, help="rounds of vq and RQ SimpleWorker drains, and of enqueues")
    p.add_argument(
        "--fork-jobs",
        type=int,
        default=2_000,
        help="jobs in the forking RQ drain (default 2000: ~80 jobs/s; 0 skips it)",
    )
    p.add_argument("--samples", type=int, default=300, help="latency samples per system (default 300)")
    p.add_argument("--memory-jobs", type=int, default=100_000, help="waiting jobs for the memory part")
    p.add_argument("--backlog", type=int, default=1_000_000, help="waiting jobs for the scale part")
    add_run_options(p, poll=0.02, timeout=900)
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = [x for x in args.parts if x not in PARTS]
    if unknown:
        p.error(f"--parts: unknown {unknown} (choose from {', '.join(PARTS)})")
    if min(args.jobs, args.workers, args.runs, args.samples, args.memory_jobs, args.backlog) < 1:
        p.error("--jobs, --workers, --runs, --samples, --memory-jobs and --backlog must be at least 1")
    return args


def subs(n: int, data=None) -> list[Submission]:
    """n no-op submissions, round-robin over USERS enterprise users."""
    return [
        Submission(job_type=JOB_TYPE, data=dict(data or {}), user_id=f"user-{i % USERS:03d}", subscription="enterprise")
        for i in range(n)
    ]


def commands(conn) -> dict[str, int]:
    """Calls per Redis command since the last CONFIG RESETSTAT (every client counts)."""
    return {name.removeprefix("cmdstat_").upper(): v["calls"] for name, v in conn.info("commandstats").items()}


# --------------------------------------------------------------------------- drain


def part_drain(conn, args, workdir, server, config, progress) -> dict:
    systems = ["vq", "rq-simple"] + (["rq-fork"] if args.fork_jobs else [])
    counted: dict[str, list[dict[str, int]]] = {s: [] for s in systems}
    jobs_of = {s: args.fork_jobs if s == "rq-fork" else args.jobs for s in systems}

    def counting(system, body):
        """The drain's commands: from just before its start until its last job ended, less
        the bench's own completion polls (its checks afterwards are not counted either)."""

        def before():
            OWN_COMMANDS.clear()
            conn.config_resetstat()

        def after():
            seen = commands(conn)
            counted[system].append({name: n - OWN_COMMANDS.get(name, 0) for name, n in seen.items()})

        return body(before, after)

    def vq_round(run):
        return counting(
            "vq",
            lambda before, after: run_vq(
                conn, args, run, workdir, config, args.timeout, subs(args.jobs), before_drain=before, after_drain=after
            ),
        )

    def rq_round(run, system):
        jobs = args.fork_jobs if system == "rq-fork" else args.jobs
        return counting(
            system,
            lambda before, after: run_rq(
                conn,
                args,
                run,
                workdir,
                server.url,
                system,
                args.timeout,
                before_drain=before,
                jobs=jobs,
                after_drain=after,
            ),
        )

    results = run_rounds(
        conn,
        args,
        workdir,
        server.url,
        config,
        systems,
        runs_of=lambda s: 1 if s == "rq-fork" else args.runs,
        run_vq_round=vq_round,
        run_rq_round=rq_round,
        progress=progress,
    )
    summary = summarize(results, systems)["systems"]
    for system in systems:
        runs = counted[system]
        summary[system]["commands_per_job"] = round(
            statistics.median(sum(run.values()) / jobs_of[system] for run in runs), 1
        )
        names = sorted({name for run in runs for name in run})
        by_name = {
            name: round(statistics.median(run.get(name, 0) for run in runs) / jobs_of[system], 2) for name in names
        }
        summary[system]["commands_by_name"] = dict(sorted(by_name.items(), key=lambda kv: -kv[1]))
    return summary


# --------------------------------------------------------------------------- enqueue


def part_enqueue(conn, args, settings, progress) -> dict:
    """Median rates of `runs` interleaved rounds of each way of enqueueing."""
    queue = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    data = {"prompt": "a short prompt"}
    ways = {
        "vq submit_each (vq submit --batch)": lambda n: _check_all_ok(
            submit_each(conn, settings, subs(n, data), lambda s: s)
        ),
        "RQ enqueue_many": lambda n: [
            queue.enqueue_many(
                [Queue.prepare_data("bench_handlers.noop", kwargs=data) for _ in range(min(1000, n - i))]
            )
            for i in range(0, n, 1000)
        ],
        "vq submit (one by one)": lambda n: [submit(conn, settings, s) for s in subs(n, data)],
        "RQ enqueue (one by one)": lambda n: [queue.enqueue("bench_handlers.noop", **data) for _ in range(n)],
    }
    rates: dict[str, list[float]] = {w: [] for w in ways}
    for run in range(1, args.runs + 1):
        for way, call in ways.items():
            conn.flushall()
            t0 = time.perf_counter()
            call(args.jobs)
            rates[way].append(args.jobs / (time.perf_counter() - t0))
            progress.print(f"enqueue run {run} {way:<36} {rates[way][-1]:9,.0f}/s")
    return {way: {"jobs_per_s": statistics.median(r), "runs": [round(x) for x in r]} for way, r in rates.items()}


def _check_all_ok(outcomes):
    bad = [o for o in outcomes if not o["ok"]]
    if bad:
        raise BenchError(f"submit_each refused {len(bad)} submissions: {bad[0]}")


# --------------------------------------------------------------------------- latency


def part_latency(conn, args, workdir, server, progress) -> dict:
    config = write_vq_config(
        workdir,
        server.url,
        job_types={STAMP_TYPE: {"handler": "bench_handlers:stamp_start", "attempts": 1}},
        name="vq-latency.yaml",
    )
    settings = load_settings(config, env={})
    out = {}
    conn.flushall()
    log = workdir / "vq-latency.log"
    daemon = start_vq_daemon(config, args.workers, args.vq_log_level, log, workdir)
    try:
        _wait_idle_workers(conn, args.workers, daemon)
        out["vq"] = _sample(
            conn,
            args.samples,
            lambda: submit(
                conn, settings, Submission(job_type=STAMP_TYPE, data={}, user_id="latency", subscription="enterprise")
            ),
        )
    finally:
        stop_process(daemon)
    conn.flushall()
    queue = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    from _common import child_env, rq_executable

    cmd = rq_executable() + [
        "worker",
        "-S",
        "rq.serializers.JSONSerializer",
        "--url",
        server.url,
        "-w",
        "rq.worker.SimpleWorker",
        RQ_QUEUE,
    ]
    workers = [
        subprocess.Popen(cmd, env=child_env({}), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
        for _ in range(args.workers)
    ]
    try:
        _wait_idle_workers(conn, args.workers, workers[0])
        out["rq-simple"] = _sample(conn, args.samples, lambda: queue.enqueue("bench_handlers.stamp_start").id)
    finally:
        for w in workers:
            stop_process(w, 10)
    for system, row in out.items():
        progress.print(
            f"latency {system:<10} p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  max {row['max_ms']:.2f} ms"
        )
    return out


def _wait_idle_workers(conn, count: int, proc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"worker process exited with code {proc.returncode}")
        if len(conn.smembers("rq:workers")) >= count:
            time.sleep(1.5)  # past their start-up maintenance, blocked waiting for work
            return
        time.sleep(0.05)
    raise BenchError("workers did not register within 60 s")


def _sample(conn, samples: int, submit_one) -> dict:
    lat = []
    for _ in range(samples):
        t0 = time.time()
        job_id = submit_one()
        deadline = time.monotonic() + 10
        while (started := conn.hget(STARTS_KEY, job_id)) is None:
            if time.monotonic() > deadline:
                raise BenchError(f"job {job_id} did not start within 10 s")
            time.sleep(0.0005)
        lat.append((float(started) - t0) * 1000)
        time.sleep(0.01)  # idle again between samples
    lat.sort()
    return {
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)],
        "max_ms": lat[-1],
        "samples": len(lat),
    }


# --------------------------------------------------------------------------- memory


def part_memory(conn, args, settings, progress) -> dict:
    # 1 KB of text that does not compress away (RQ stores job data zlib-compressed).
    payload = {"prompt": "".join(random.Random(7).choices(string.ascii_letters + " ", k=1000))}
    n = args.memory_jobs
    conn.flushall()
    before = conn.info("memory")["used_memory"]
    vq_queues.pause(conn, settings, JOB_TYPE)
    for start in range(0, n, 10_000):
        _check_all_ok(submit_each(conn, settings, subs(min(10_000, n - start), payload), lambda s: s))
    admission = Admission(conn, settings.queue.settings.lockDuration)
    while conn.llen(f"rq:queue:{JOB_TYPE}.normal") or conn.llen(f"rq:queue:{JOB_TYPE}.high"):
        admission.admit([JOB_TYPE])  # routes into the waiting lines; the type is paused: admits nothing
    waiting = count_waiting(conn, JOB_TYPE)
    if waiting != n:
        raise BenchError(f"memory: {waiting} jobs in vq's waiting lines, expected {n}")
    vq_bytes = (conn.info("memory")["used_memory"] - before) / n
    events_bytes = conn.memory_usage("vq:events") / n
    conn.flushall()
    before = conn.info("memory")["used_memory"]
    queue = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    for start in range(0, n, 1000):
        queue.enqueue_many(
            [Queue.prepare_data("bench_handlers.noop", kwargs=payload) for _ in range(min(1000, n - start))]
        )
    if queue.count != n:
        raise BenchError(f"memory: RQ queue holds {queue.count}, expected {n}")
    rq_bytes = (conn.info("memory")["used_memory"] - before) / n
    conn.flushall()
    progress.print(
        f"memory: vq {vq_bytes:,.0f} B/job (of which the created event {events_bytes:,.0f}), RQ {rq_bytes:,.0f} B/job"
    )
    return {
        "vq_bytes_per_job": vq_bytes,
        "vq_event_bytes_per_job": events_bytes,
        "rq_bytes_per_job": rq_bytes,
        "jobs": n,
    }


# --------------------------------------------------------------------------- scale


def part_scale(conn, args, workdir, config, settings, progress) -> dict:
    """The drain rate of `--jobs` jobs at the head of a `--backlog` backlog against a backlog
    of `--jobs` alone, in `--runs` interleaved rounds (medians: this machine's speed drifts
    by more than the effect measured). The big backlog lives in a second private Redis, made
    once; each round drains its next `--jobs`, so it stays above backlog - runs x jobs."""
    big_dir = workdir / "large"
    big_dir.mkdir()
    big_server = PrivateRedis(big_dir)
    try:
        big = big_server.start()
        big.config_set("maxmemory", 0)
        big_config = write_vq_config(big_dir, big_server.url, concurrency={"type": {JOB_TYPE: 1000}})
        big_settings = load_settings(big_config, env={})
        made_s, settle_s = _make_backlog(big, big_settings, args.backlog, progress)
        progress.print(
            f"[dim]scale: {args.backlog:,} waiting made in {made_s:.0f}s, settled in {settle_s:.0f}s, "
            f"Redis {big.info('memory')['used_memory'] / 2**20:,.0f} MB[/]"
        )
        rounds: dict[str, list[dict]] = {"small": [], "large": []}
        for run in range(1, args.runs + 1):
            conn.flushall()
            _make_backlog(conn, settings, args.jobs, progress)
            rounds["small"].append(_drain_head(conn, args, workdir, config, f"small-{run}"))
            rounds["large"].append(_drain_head(big, args, big_dir, big_config, f"large-{run}"))
            progress.print(
                f"scale round {run}: {args.jobs:,} of {args.jobs:,} waiting at "
                f"{rounds['small'][-1]['jobs_per_s']:,.0f}/s, of {rounds['large'][-1]['backlog']:,} "
                f"waiting at {rounds['large'][-1]['jobs_per_s']:,.0f}/s (from the daemon's spawn; "
                f"first start to last end {rounds['small'][-1]['steady_jobs_per_s'] or 0:,.0f} and "
                f"{rounds['large'][-1]['steady_jobs_per_s'] or 0:,.0f}/s)"
            )
    finally:
        big_server.stop()
    out: dict = {"rounds": rounds}
    for label, runs in rounds.items():
        out[label] = {
            "backlog": runs[0]["backlog"],
            "drained": args.jobs,
            "runs": len(runs),
            "jobs_per_s": statistics.median(r["jobs_per_s"] for r in runs),
            "steady_jobs_per_s": statistics.median(r["steady_jobs_per_s"] or 0 for r in runs) or None,
        }
    out["ratio"] = out["large"]["jobs_per_s"] / out["small"]["jobs_per_s"]
    if out["large"]["steady_jobs_per_s"] and out["small"]["steady_jobs_per_s"]:
        out["steady_ratio"] = out["large"]["steady_jobs_per_s"] / out["small"]["steady_jobs_per_s"]
    conn.flushall()
    return out


def _make_backlog(conn, settings, backlog: int, progress) -> tuple[float, float]:
    """`backlog` waiting jobs, settled; (seconds to submit, seconds to settle)."""
    t0 = time.perf_counter()
    for start in range(0, backlog, 10_000):
        _check_all_ok(submit_each(conn, settings, subs(min(10_000, backlog - start)), lambda s: s))
        if backlog > 100_000 and start % 100_000 == 0:
            progress.print(f"[dim]scale: {start:,} of {backlog:,} submitted[/]")
    return time.perf_counter() - t0, _settle(conn, settings, backlog)


def _drain_head(conn, args, workdir, config, label: str) -> dict:
    """Start a daemon, let it finish the next `--jobs` jobs, stop it: its rates."""
    finished_keys, failed_keys = vq_registry_keys(conn, JOB_TYPE)
    before = {i for key in finished_keys for i in conn.zrange(key, 0, -1)}
    waiting = count_waiting(conn, JOB_TYPE)
    log = workdir / f"vq-scale-{label}.log"
    t0 = time.perf_counter()
    daemon = start_vq_daemon(config, args.workers, args.vq_log_level, log, workdir)
    try:
        drain_s, _finished, failed = wait_until_ended(
            conn, daemon, finished_keys, failed_keys, len(before) + args.jobs, t0, args.timeout, args.poll, log
        )
    finally:
        stop_process(daemon)
    if failed:
        raise BenchError(f"scale: {failed} jobs failed")
    ended = [i.decode() for key in finished_keys for i in conn.zrange(key, 0, -1) if i not in before]
    steady_s = steady_seconds(conn, ended)
    return {
        "backlog": waiting,
        "seconds": drain_s,
        "jobs_per_s": args.jobs / drain_s,
        "steady_jobs_per_s": len(ended) / steady_s if steady_s else None,
    }


def _settle(conn, settings, backlog: int) -> float:
    """Bring the backlog to the state a long backlog is in: every job routed into its
    user's waiting line (a burst of pushes is routed 200 per admission call; jobs that
    arrive while workers run are routed as they come) and its creation archived (the
    archiver writes history as jobs arrive). What is then measured is the job's path."""
    t0 = time.perf_counter()
    from vq.history import archiver

    vq_queues.pause(conn, settings, JOB_TYPE)
    admission = Admission(conn, settings.queue.settings.lockDuration)
    lists = [f"rq:queue:{JOB_TYPE}.{p}" for p in ("high", "normal", "low")]
    while any(conn.llen(name) for name in lists):
        admission.admit([JOB_TYPE])
    vq_queues.resume(conn, settings, JOB_TYPE)
    if archiver.catch_up(conn, settings, timeout=1800) is not None:
        raise BenchError("scale: the archiver did not catch up with the backlog's creations")
    if count_waiting(conn, JOB_TYPE) != backlog:
        raise BenchError("scale: not every job is in a waiting line")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- report


def verdicts(report: dict) -> list[tuple[str, float, str, bool]]:
    """(what, measured, target, met) for each target that this run measured."""
    rows = []
    drain = report.get("drain")
    if drain:
        vq = drain["vq"]["drain_jobs_per_s"]
        rows.append(
            (
                "drain ÷ RQ SimpleWorker",
                vq / drain["rq-simple"]["drain_jobs_per_s"],
                f"≥ {TARGETS['drain_vs_simple']}",
                vq / drain["rq-simple"]["drain_jobs_per_s"] >= TARGETS["drain_vs_simple"],
            )
        )
        if "rq-fork" in drain:
            ratio = vq / drain["rq-fork"]["drain_jobs_per_s"]
            rows.append(
                ("drain ÷ RQ Worker (fork)", ratio, f"≥ {TARGETS['drain_vs_fork']}", ratio >= TARGETS["drain_vs_fork"])
            )
        per_job = drain["vq"]["commands_per_job"]
        rows.append(
            (
                "Redis commands per job (vq)",
                per_job,
                f"≤ {TARGETS['commands_per_job']}",
                per_job <= TARGETS["commands_per_job"],
            )
        )
    enqueue = report.get("enqueue")
    if enqueue:
        batch = enqueue["vq submit_each (vq submit --batch)"]["jobs_per_s"] / enqueue["RQ enqueue_many"]["jobs_per_s"]
        one = enqueue["vq submit (one by one)"]["jobs_per_s"] / enqueue["RQ enqueue (one by one)"]["jobs_per_s"]
        rows.append(("batch submit ÷ RQ enqueue_many", batch, "≥ 1.0", batch >= TARGETS["batch_vs_enqueue_many"]))
        rows.append(("submit ÷ RQ enqueue, one by one", one, "≥ 1.0", one >= TARGETS["one_by_one_vs_enqueue"]))
    latency = report.get("latency")
    if latency:
        rows.append(("latency p50 (ms)", latency["vq"]["p50_ms"], "≤ 2", latency["vq"]["p50_ms"] <= 2.0))
        rows.append(("latency p99 (ms)", latency["vq"]["p99_ms"], "≤ 5", latency["vq"]["p99_ms"] <= 5.0))
    memory = report.get("memory")
    if memory:
        ratio = memory["vq_bytes_per_job"] / memory["rq_bytes_per_job"]
        rows.append(("memory per waiting job ÷ RQ", ratio, "≤ 1.2", ratio <= TARGETS["memory_vs_rq"]))
    features = report.get("features")
    if features:
        rows.append(
            (
                "drain, weights and a group on ÷ off",
                features["ratio"],
                "≥ 0.9",
                features["ratio"] >= TARGETS["features"],
            )
        )
        rows.append(
            (
                "drain, a GPU per worker and per job ÷ off",
                features["resources_ratio"],
                "≥ 0.9",
                features["resources_ratio"] >= TARGETS["features_resources"],
            )
        )
    tracing = report.get("tracing")
    if tracing:
        rows.append(("drain, traces on ÷ off", tracing["ratio"], "≥ 0.85", tracing["ratio"] >= TARGETS["tracing"]))
    scale = report.get("scale")
    if scale:
        rows.append(("drain at 1M waiting ÷ at 10k", scale["ratio"], "≥ 0.9", scale["ratio"] >= TARGETS["scale"]))
    return rows


def _rounds(ratios: list[float]) -> str:
    """`1.14 0.27 1.21 (median 1.14)`."""
    return " ".join(f"{r:.2f}" for r in ratios) + f" (median {statistics.median(ratios):.2f})"


def print_report(out, report: dict, meta: dict) -> None:
    if "drain" in report:
        t = Table(
            title=f"Drain: {meta['jobs']:,} no-op jobs from {USERS} users, {meta['workers']} worker processes "
            f"(median of runs)"
        )
        for col in ("system", "runs", "drain jobs/s", "steady jobs/s", "Redis commands/job"):
            t.add_column(col, justify="left" if col == "system" else "right")
        for system, row in report["drain"].items():
            t.add_row(
                system,
                str(row["runs"]),
                f"{row['drain_jobs_per_s']:,.0f}",
                f"{row['steady_jobs_per_s']:,.0f}" if row.get("steady_jobs_per_s") else "-",
                f"{row['commands_per_job']:.1f}",
            )
        out.print(t)
        t = Table(title="Redis commands per job, by command (median of runs; every client but the bench's polls)")
        t.add_column("command")
        drained = list(report["drain"])
        for system in drained:
            t.add_column(system, justify="right")
        per_job = [report["drain"][s]["commands_by_name"] for s in drained]
        names = list(dict.fromkeys(n for counts in per_job for n in counts))  # vq's order first
        for name in names:
            if max(counts.get(name, 0) for counts in per_job) >= 0.01:  # not the bench's own setup
                t.add_row(name, *(f"{counts.get(name, 0):.2f}" for counts in per_job))
        out.print(t)
    if "enqueue" in report:
        t = Table(title=f"Enqueue: {meta['jobs']:,} jobs (median of {meta['runs']})")
        t.add_column("way")
        t.add_column("jobs/s", justify="right")
        for way, row in report["enqueue"].items():
            t.add_row(way, f"{row['jobs_per_s']:,.0f}")
        out.print(t)
    if "latency" in report:
        t = Table(title="Enqueue → handler start on an idle system")
        for col in ("system", "samples", "p50 ms", "p99 ms", "max ms"):
            t.add_column(col, justify="left" if col == "system" else "right")
        for system, row in report["latency"].items():
            t.add_row(
                system, str(row["samples"]), f"{row['p50_ms']:.2f}", f"{row['p99_ms']:.2f}", f"{row['max_ms']:.2f}"
            )
        out.print(t)
    if "memory" in report:
        m = report["memory"]
        out.print(
            f"Memory per waiting job ({m['jobs']:,} jobs, 1 KB payload): vq {m['vq_bytes_per_job']:,.0f} B "
            f"(its created event {m['vq_event_bytes_per_job']:,.0f} B), RQ {m['rq_bytes_per_job']:,.0f} B"
        )
    if "features" in report:
        f = report["features"]
        out.print(
            f"Features (median of {meta['runs']} interleaved rounds of {meta['jobs']:,} jobs): weighted fair shares "
            f"and a limit group on {f['on_jobs_per_s']:,.0f}/s, off {f['off_jobs_per_s']:,.0f}/s (ratio {f['ratio']:.2f}); "
            f"a GPU per worker and per job {f['resources_jobs_per_s']:,.0f}/s (ratio {f['resources_ratio']:.2f}). "
            f"[dim]Round by round ÷ off: weights and a group {_rounds(f['ratio_per_round'])}, "
            f"a GPU each {_rounds(f['resources_ratio_per_round'])}[/]"
        )
    if "tracing" in report:
        f = report["tracing"]
        out.print(
            f"Tracing (median of {meta['runs']} interleaved rounds of {meta['jobs']:,} jobs): traces exported to a "
            f"local OTLP sink {f['on_jobs_per_s']:,.0f}/s, off {f['off_jobs_per_s']:,.0f}/s (ratio {f['ratio']:.2f}). "
            f"[dim]Round by round ÷ off: {_rounds(f['ratio_per_round'])}; spans per round {f['spans_per_round']}[/]"
        )
    if "scale" in report:
        s = report["scale"]
        out.print(
            f"Scale (median of {s['small']['runs']} interleaved rounds): {s['small']['drained']:,} jobs at "
            f"{s['small']['jobs_per_s']:,.0f}/s with "
            f"{s['small']['backlog']:,} waiting, {s['large']['jobs_per_s']:,.0f}/s with "
            f"{s['large']['backlog']:,} waiting, from the daemon's spawn (the target's measure); "
            f"from first start to last end {s['small']['steady_jobs_per_s'] or 0:,.0f}/s and "
            f"{s['large']['steady_jobs_per_s'] or 0:,.0f}/s (ratio {s.get('steady_ratio', 0):.2f})"
        )
    t = Table(title="Targets")
    for col in ("measure", "value", "target", "met"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    for what, value, target, met in verdicts(report):
        t.add_row(what, f"{value:.2f}", target, "[green]yes[/]" if met else "[red]no[/]")
    out.print(t)
    out.print(f"[dim]{versions_line(meta)}[/]")


def main(argv=None) -> int:
    args = parse_args(argv)
    report: dict = {}
    with bench_session("throughput") as s:
        conn, workdir, server, progress = s.conn, s.workdir, s.server, s.progress
        conn.config_set("maxmemory", 0)
        config = write_vq_config(workdir, server.url, concurrency={"type": {JOB_TYPE: 1000}})
        settings = load_settings(config, env={})
        if "drain" in args.parts:
            report["drain"] = part_drain(conn, args, workdir, server, config, progress)
        if "enqueue" in args.parts:
            report["enqueue"] = part_enqueue(conn, args, settings, progress)
        if "latency" in args.parts:
            report["latency"] = part_latency(conn, args, workdir, server, progress)
        if "memory" in args.parts:
            report["memory"] = part_memory(conn, args, settings, progress)
        if "features" in args.parts:
            report["features"] = part_features(conn, args, workdir, server, progress)
        if "tracing" in args.parts:
            from tracing import part_tracing  # imports the otel extra's protobuf classes only when asked

            report["tracing"] = part_tracing(conn, args, workdir, server, progress)
        if "scale" in args.parts:
            report["scale"] = part_scale(conn, args, workdir, config, settings, progress)
    if s.failed is not None:
        return s.failed
    meta = {
        "jobs": args.jobs,
        "workers": args.workers,
        "runs": args.runs,
        "parts": args.parts,
        **environment(s.redis_version),
    }
    if args.json:
        report["targets"] = [{"measure": w, "value": v, "target": t, "met": m} for w, v, t, m in verdicts(report)]
        report["meta"] = meta
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(s.out, report, meta)
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
