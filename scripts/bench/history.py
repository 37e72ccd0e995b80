#!/usr/bin/env python3
"""History and metrics: what the archiver costs the workers, and whether `stats`, `health`
and `perf` answer in the same time with a million jobs waiting.

Why: vq's daemon runs an archiver process (vq/history/archiver.py) that reads the `vq:events`
stream and writes every transition to SQLite (`<data_dir>/history.db`, table job_history)
and folds metric buckets into Redis (vq/metrics.py). It is on by default
(`history: {enabled: false}` turns it off). Workers only append events, so the archiver
should cost them little: the target is history-on at least 0.90x history-off. And
`vq stats` / `vq health` / `vq perf` read counters, registries and metric buckets only, so
they should answer in the same time whatever the number of jobs: the target is under
50 ms median each with 1,000,000 jobs waiting.

Everything runs against a private, throw-away `redis-server` (free port, no persistence,
temp dir) that this script starts and stops; it never touches another Redis.

Part 1, cost to the workers ("cost"). N no-op jobs (default 5,000) are submitted one by one
with `vq.submission.submit`, round-robin from 50 users (`user-000` ...) on the free tier,
whose limit the bench config raises to 1,000 like the type's (`concurrency.user`,
`concurrency.type`), so no limit binds. Then `vq daemon --workers 2` drains them, timed from
its spawn until every job is in the finished registry. Each round drains three times on a
flushed Redis: vq with `history: {enabled: true}`, vq with `history: {enabled: false}`
(the two alternate which goes first) and, as the reference, 2 plain
`rq worker --burst -w rq.worker.SimpleWorker` (non-forking, like vq's workers). Median of
`--runs` rounds (default 3). Every history-on run gets a fresh data dir, so its history.db
holds that run only. Reported: jobs/s, the ratio history-on / history-off (of the medians,
and round by round) and each vq config / RQ.

After a history-on drain, with the daemon still running, the script polls the SQLite file
(read-only) and the metric totals until job_history holds 3 rows per job (created, started,
finished) and the finished metric counts every job: "catch-up" is that moment minus the
last job's end (RQ's ended_at), i.e. how far the archiver trailed the workers. Then
`vq.history.archiver.catch_up` confirms its positions reached the stream's end. Verified per run:
every job finished, one `finished` event per job; history-on: job_history rows per event
and per job, render_jobs, metric totals; history-off: no history rows, no metrics.

Part 2, answer time ("answer"), no daemon running. First a few jobs (default 200) are run by
a daemon with history on (so the metrics and history are not all zero), and it is stopped.
Then `vq.stats.stats`, `vq.health.check`, `vq.stats.perf` (window 1 h) and
`vq.dashboard.overview` (what each `vq tui` refresh reads) are called 20
times each (after one warm-up call each, calls interleaved), in-process, and timed; then
1,000,000 waiting jobs are created and they are timed again. The waiting jobs are what
`submit` would leave behind, made by vq's own batch path (`submit_each`, what `vq submit
--batch` calls): real RQ jobs of `bench-noop` on vq's queues (`bench-noop.low` / `.normal`
/ `.high` by the users' tiers, which cycle free, basic, pro, enterprise), with vq's
indexes and `created` events, in chunks of 10,000 by one process per CPU
(`--create-procs`). The reference is what
`rq info` computes for the same 33 queues (every type x priority): `Queue.count` and the
started, finished and failed registries' `count` (which clean up first, as in rq/cli),
timed the same way.

Run from the repository root:  python scripts/bench/history.py [--jobs 5000 --runs 3 --waiting 1000000]
The defaults take about 4.5 minutes on a 2-core machine (part 1 ~2.5 min, creating the
million jobs ~100 s); `--jobs 500 --runs 1 --waiting 20000` about 20 s. Redis needs about
2.6 GB of memory for the million waiting jobs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis
from _common import (
    JOB_TYPE,
    BenchError,
    RunResult,
    check_drained,
    count_events,
    environment,
    job_times,
    print_table,
    redis_cpu_seconds,
    run_rq,
    start_vq_daemon,
    statuses,
    steady_seconds,
    stop_process,
    summarize,
    tail,
    update_vq_config,
    versions_line,
    vq_registry_keys,
    wait_until_ended,
    write_vq_config,
)
from _session import add_run_options, bench_parser, bench_session
from fairness import percentile
from history_search import part_search, print_search
from rich.table import Table
from rq import Queue
from rq.serializers import JSONSerializer

from vq import dashboard, health, keys, metrics
from vq import stats as vq_stats
from vq.config import TIERS, load_settings
from vq.history import archiver
from vq.history import db as historydb
from vq.jobtypes import job_types
from vq.submission import Submission, submit, submit_each

SYSTEMS = ("vq-on", "vq-off", "rq-simple")
LABELS = {"vq-on": "vq daemon, history on", "vq-off": "vq daemon, history off", "rq-simple": "RQ SimpleWorker"}
PARTS = ("cost", "answer", "search")
TARGET_RATIO = 0.90  # history-on at least 0.90x history-off
TARGET_MS = 50.0  # stats, health, perf: median under 50 ms with the waiting jobs
DASHBOARD_TARGET_MS = 1000.0  # vq tui must refresh within a second (issue 8); its read is the cost
ROWS_PER_JOB = ("created", "started", "finished")
CHUNK = 10_000
PERF_WINDOW_MS = 3_600_000
CALLS = ("stats", "health", "perf", "dashboard", "rq-info")
CALL_LABELS = {
    "stats": "vq stats",
    "health": "vq health",
    "perf": "vq perf (1 h)",
    "dashboard": "vq tui refresh (dashboard.overview)",
    "rq-info": "rq info (reference)",
}


# --------------------------------------------------------------------------- config and users


def users(n: int) -> list[str]:
    return [f"user-{i:03d}" for i in range(n)]


def bench_config(workdir: Path, redis_url: str, args, history: bool, name: str) -> Path:
    """The bench config: every tier's and the type's limit raised so none binds; history on
    or off; a data dir of its own (so each history.db holds one run)."""
    tiers = {tier: args.user_limit for tier in TIERS}
    path = write_vq_config(
        workdir, redis_url, concurrency={"user": tiers, "type": {JOB_TYPE: args.type_limit}}, name=f"{name}.yaml"
    )
    return update_vq_config(path, history={"enabled": history}, data_dir=str(workdir / f"data-{name}"))


# --------------------------------------------------------------------------- part 1: cost


def history_rows(db_path: Path) -> int:
    """Rows in job_history, read-only (the archiver may be writing: WAL lets us read)."""
    if not db_path.exists():
        return 0
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM job_history").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not created yet
            return 0


def finished_counted(conn) -> int:
    return metrics.totals(conn).get(JOB_TYPE, {}).get("finished", 0)


def wait_archived(conn, settings, ids: list[str], proc, log_path: Path, timeout: float, poll: float) -> dict:
    """With the daemon still running: poll until job_history holds every job's rows and the
    metrics count every job; time that from the last job's end and from the drain's end."""
    db_path = historydb.path_for(settings)
    expected = len(ROWS_PER_JOB) * len(ids)
    seen_done = time.time()
    rows_at_drain = history_rows(db_path)
    deadline = time.monotonic() + timeout
    while True:
        rows, counted = history_rows(db_path), finished_counted(conn)
        if rows >= expected and counted >= len(ids):
            caught_up = time.time()
            break
        if proc.poll() is not None:
            raise BenchError(
                f"vq daemon exited (code {proc.returncode}) before the archiver caught up:\n" + tail(log_path)
            )
        if time.monotonic() > deadline:
            raise BenchError(
                f"archiver: {rows}/{expected} job_history rows, {counted}/{len(ids)} finished counted "
                f"{timeout:.0f}s after the drain:\n" + tail(log_path)
            )
        time.sleep(poll)
    confirmed = archiver.catch_up(conn, settings, timeout=10) is None
    last_end = max(end for (end,) in job_times(conn, ids, "ended_at") if end).timestamp()
    return {
        "rows": rows,
        "rows_at_drain_end": rows_at_drain,
        "expected_rows": expected,
        "catch_up_after_last_job_s": caught_up - last_end,
        "catch_up_after_drain_seen_s": caught_up - seen_done,
        "catch_up_confirmed": confirmed,
    }


def verify_history(conn, settings, ids: list[str]) -> list[str]:
    """Every job has exactly its created, started and finished rows; render_jobs and metrics agree."""
    n = len(ids)
    with sqlite3.connect(f"file:{historydb.path_for(settings)}?mode=ro", uri=True) as db:
        by_event = {
            e: (rows, jobs)
            for e, rows, jobs in db.execute(
                "SELECT event, COUNT(*), COUNT(DISTINCT job_id) FROM job_history GROUP BY event"
            )
        }
        job_ids = {row[0] for row in db.execute("SELECT DISTINCT job_id FROM job_history")}
        finished_rows = db.execute("SELECT COUNT(*) FROM render_jobs WHERE status = 'finished'").fetchone()[0]
    if by_event != {e: (n, n) for e in ROWS_PER_JOB}:
        raise BenchError(f"job_history (event: rows, jobs) {by_event}, expected {n} of each of {ROWS_PER_JOB}")
    if job_ids != set(ids):
        raise BenchError(f"job_history: {len(job_ids - set(ids))} unknown and {len(set(ids) - job_ids)} missing jobs")
    if finished_rows != n:
        raise BenchError(f"render_jobs: {finished_rows} finished, expected {n}")
    counted = metrics.totals(conn).get(JOB_TYPE, {})
    if [counted.get(e, 0) for e in ROWS_PER_JOB] != [n] * 3:
        raise BenchError(f"metrics totals {dict(counted)}, expected {n} created/started/finished")
    return [f"job_history {3 * n} rows = 3 per job", f"render_jobs {n} finished", "metrics count all"]


def verify_no_history(conn, settings) -> list[str]:
    rows = history_rows(historydb.path_for(settings))
    if rows or conn.exists(keys.METRICS_TOTALS, keys.ARCHIVER_LEADER):
        raise BenchError(f"history off, yet {rows} job_history rows or metrics / an archiver lease in Redis")
    return ["no history rows, no metrics"]


def drain_vq(conn, args, run: int, workdir: Path, redis_url: str, system: str) -> tuple[RunResult, dict]:
    """Submit the jobs, then time `vq daemon --workers N` (history on or off) draining them;
    with history on, wait for the archiver before stopping the daemon."""
    history = system == "vq-on"
    config_path = bench_config(workdir, redis_url, args, history, f"{system}-run{run}")
    settings = load_settings(config_path, env={})
    conn.flushall()
    names = users(args.users)
    subs = [Submission(job_type=JOB_TYPE, data={}, user_id=names[i % args.users]) for i in range(args.jobs)]
    t0 = time.perf_counter()
    ids = [submit(conn, settings, sub) for sub in subs]
    enqueue_s = time.perf_counter() - t0

    finished_keys, failed_keys = vq_registry_keys(conn, JOB_TYPE)
    log_path = workdir / f"vq-daemon-{system}-run{run}.log"
    cpu0 = redis_cpu_seconds(conn)
    t0 = time.perf_counter()
    proc = start_vq_daemon(config_path, args.workers, args.vq_log_level, log_path, workdir)
    extra: dict = {}
    try:
        drain_s, finished, failed = wait_until_ended(
            conn, proc, finished_keys, failed_keys, args.jobs, t0, args.timeout, args.poll, log_path
        )
        extra["redis_cpu_s"] = redis_cpu_seconds(conn) - cpu0
        if history:
            extra.update(wait_archived(conn, settings, ids, proc, log_path, args.catch_up_timeout, args.poll))
    finally:
        stop_s = stop_process(proc)
    check_drained(proc, failed, system, log_path)
    by_status = statuses(conn, ids)
    if by_status != {"finished": args.jobs}:
        raise BenchError(f"{system}: job statuses {by_status}")
    events_seen = count_events(conn, "finished", set(ids))
    if events_seen != args.jobs:
        raise BenchError(f"{system}: {events_seen} finished events in {keys.EVENTS}, expected {args.jobs}")
    verified = [f"all {args.jobs} finished, {events_seen} finished events"]
    verified += verify_history(conn, settings, ids) if history else verify_no_history(conn, settings)
    return RunResult(system, run, args.jobs, enqueue_s, drain_s, steady_seconds(conn, ids), stop_s, verified), extra


def round_order(run: int) -> list[str]:
    """History on and off take turns going first; RQ last."""
    return ["vq-on", "vq-off", "rq-simple"] if run % 2 else ["vq-off", "vq-on", "rq-simple"]


def part_cost(conn, args, workdir: Path, redis_url: str, progress) -> tuple[list[RunResult], dict]:
    results: list[RunResult] = []
    extras: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    for run in range(1, args.runs + 1):
        for system in round_order(run):
            if system == "rq-simple":
                r, extra = run_rq(conn, args, run, workdir, redis_url, system, args.timeout), {}
            else:
                r, extra = drain_vq(conn, args, run, workdir, redis_url, system)
            results.append(r)
            extras[system].append({"run": run, **extra})
            steady = f"{r.steady_rate:,.0f}" if r.steady_rate else "-"
            archived = (
                f"  archiver caught up {extra['catch_up_after_last_job_s']:.2f}s after the last job"
                if "catch_up_after_last_job_s" in extra
                else ""
            )
            progress.print(
                f"run {run} {LABELS[system]:<23} drain {r.drain_s:6.2f}s = {r.drain_rate:6,.0f}/s  "
                f"steady {steady}/s{archived}  [dim]({'; '.join(r.verified)})[/]"
            )
    return results, extras


def cost_ratios(results: list[RunResult], summary: dict) -> dict:
    s = summary["systems"]

    def ratio(a: str, b: str, key: str) -> float | None:
        return s[a][key] / s[b][key] if s.get(a, {}).get(key) and s.get(b, {}).get(key) else None

    by_run = {(r.system, r.run): r.drain_rate for r in results}
    paired = [
        round(by_run[("vq-on", n)] / by_run[("vq-off", n)], 3)
        for n in sorted({r.run for r in results})
        if ("vq-on", n) in by_run and ("vq-off", n) in by_run
    ]
    out = {}
    for a, b in (("vq-on", "vq-off"), ("vq-on", "rq-simple"), ("vq-off", "rq-simple")):
        out[f"{a}/{b}"] = {"drain": ratio(a, b, "drain_jobs_per_s"), "steady": ratio(a, b, "steady_jobs_per_s")}
    out["vq-on/vq-off"]["per_round"] = paired
    out["vq-on/vq-off"]["meets_target"] = (out["vq-on/vq-off"]["drain"] or 0) >= TARGET_RATIO
    return out


def print_cost(console, results: list[RunResult], summary: dict, ratios: dict, extras: dict, meta: dict) -> None:
    print_table(
        console,
        summary,
        meta,
        labels=LABELS,
        title=f"Part 1: drain {meta['jobs']:,} no-op jobs from {meta['users']} users, "
        f"{meta['workers']} worker processes (median of runs)",
    )
    table = Table(title="Ratios of the medians (above 1 = the first is faster)")
    for name, justify in (
        ("ratio", "left"),
        ("drain", "right"),
        ("steady", "right"),
        ("per round (drain)", "right"),
        ("target", "left"),
    ):
        table.add_column(name, justify=justify)
    for name, r in ratios.items():
        a, b = name.split("/")
        target = ""
        if "meets_target" in r:
            target = (
                f"[{'green' if r['meets_target'] else 'red'}]>= {TARGET_RATIO:.2f}: "
                f"{'met' if r['meets_target'] else 'missed'}[/]"
            )
        table.add_row(
            f"{LABELS[a]} / {LABELS[b]}",
            f"{r['drain']:.3f}" if r["drain"] else "-",
            f"{r['steady']:.3f}" if r["steady"] else "-",
            " ".join(f"{x:.3f}" for x in r.get("per_round", [])),
            target,
        )
    console.print(table)
    archive = Table(title="Archiver after each history-on drain (daemon still running)")
    for name in (
        "run",
        "job_history rows",
        "at drain end",
        "caught up after last job",
        "after drain seen",
        "catch_up()",
    ):
        archive.add_column(name, justify="left" if name == "catch_up()" else "right")
    for e in extras["vq-on"]:
        archive.add_row(
            str(e["run"]),
            f"{e['rows']:,} / {e['expected_rows']:,}",
            f"{e['rows_at_drain_end']:,}",
            f"{e['catch_up_after_last_job_s']:.2f} s",
            f"{e['catch_up_after_drain_seen_s']:.2f} s",
            "ok" if e["catch_up_confirmed"] else "[red]timeout[/]",
        )
    console.print(archive)
    cpu = {s: statistics.median(e["redis_cpu_s"] for e in extras[s]) for s in ("vq-on", "vq-off") if extras[s]}
    console.print(
        "[dim]job_history rows: 3 per job (created, started, finished), all present in every run. "
        "Redis CPU during the drain (median): " + ", ".join(f"{LABELS[s]} {v:.2f} s" for s, v in cpu.items()) + ".[/]"
    )


# --------------------------------------------------------------------------- part 2: answer time


def seed_finished(conn, args, workdir: Path, config_path: Path, settings, progress) -> None:
    """A few jobs run and archived by a daemon (history on), then the daemon is stopped."""
    conn.flushall()
    names = users(args.users)
    ids = [
        submit(conn, settings, Submission(job_type=JOB_TYPE, data={}, user_id=names[i % args.users]))
        for i in range(args.finished)
    ]
    finished_keys, failed_keys = vq_registry_keys(conn, JOB_TYPE)
    log_path = workdir / "vq-daemon-answer-seed.log"
    t0 = time.perf_counter()
    proc = start_vq_daemon(config_path, args.workers, args.vq_log_level, log_path, workdir)
    try:
        wait_until_ended(conn, proc, finished_keys, failed_keys, len(ids), t0, args.timeout, args.poll, log_path)
        wait_archived(conn, settings, ids, proc, log_path, args.catch_up_timeout, args.poll)
    finally:
        stop_process(proc)
    progress.print(f"[dim]part 2: {len(ids)} jobs finished and archived; daemon stopped[/]")


_maker: dict = {}  # per creating process: its connection and settings


def _init_maker(redis_url: str, config_path: str, n_users: int) -> None:
    _maker.update(
        conn=redis.Redis.from_url(redis_url), settings=load_settings(Path(config_path), env={}), users=users(n_users)
    )


def _make_chunk(span: tuple[int, int]) -> int:
    """Jobs start..start+size-1 (user = index mod users, tiers cycling), through vq's batch
    submission."""
    start, size = span
    names = _maker["users"]
    subs = [
        Submission(
            job_type=JOB_TYPE, data={}, user_id=names[i % len(names)], subscription=TIERS[(i % len(names)) % len(TIERS)]
        )
        for i in range(start, start + size)
    ]
    outcomes = submit_each(_maker["conn"], _maker["settings"], subs, lambda s: s)
    refused = [o for o in outcomes if not o["ok"]]
    if refused:
        raise BenchError(f"submit_each refused {len(refused)} jobs: {refused[0]}")
    return size


def create_waiting(redis_url: str, config_path: Path, args, progress) -> float:
    """`args.waiting` jobs in chunks of CHUNK, made by `args.create_procs` processes (the
    Python side, packing the commands, is the bottleneck); returns seconds."""
    spans = [(start, min(CHUNK, args.waiting - start)) for start in range(0, args.waiting, CHUNK)]
    step = max(CHUNK, args.waiting // 10)
    t0 = time.perf_counter()
    made = 0
    with mp.get_context("fork").Pool(
        args.create_procs, _init_maker, (redis_url, str(config_path), args.users)
    ) as pool:  # exit: terminate
        for size in pool.imap_unordered(_make_chunk, spans):
            before, made = made, made + size
            if made // step != before // step or made == args.waiting:
                elapsed = time.perf_counter() - t0
                progress.print(
                    f"[dim]  {made:>9,} / {args.waiting:,} waiting jobs created ({made / elapsed:,.0f}/s)[/]"
                )
    return time.perf_counter() - t0


def all_queue_names(settings) -> list[str]:
    return [keys.queue_name(t, p) for t in job_types(settings) for p in keys.PRIORITY_ORDER]


def rq_info(conn, names: list[str]) -> list[tuple]:
    """What `rq info` computes per queue: the count, and the started/finished/failed registries'
    counts (Registry.count cleans up first, as rq/cli's show_queues calls it)."""
    out = []
    for name in names:
        q = Queue(name, connection=conn, serializer=JSONSerializer)
        out.append((q.count, q.started_job_registry.count, q.finished_job_registry.count, q.failed_job_registry.count))
    return out


def time_calls(conn, settings, calls: int) -> dict[str, list[float]]:
    """Each call once to warm up, then `calls` rounds of every call, interleaved; ms."""
    names = all_queue_names(settings)
    fns = {
        "stats": lambda: vq_stats.stats(conn, settings),
        "health": lambda: health.check(conn, settings),
        "perf": lambda: vq_stats.perf(conn, settings, PERF_WINDOW_MS),
        "dashboard": lambda: dashboard.overview(conn, settings),
        "rq-info": lambda: rq_info(conn, names),
    }
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(calls):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - t0) * 1000)
    return out


def answer_sanity(conn, settings, waiting: int) -> str:
    """What the calls see: the waiting jobs counted, the finished ones in the metrics."""
    row = next(r for r in vq_stats.stats(conn, settings, JOB_TYPE)["byType"])
    perf_row = next(r for r in vq_stats.perf(conn, settings, PERF_WINDOW_MS)["types"] if r["jobType"] == JOB_TYPE)
    if row["now"]["queued"] != waiting:
        raise BenchError(f"vq stats counts {row['now']['queued']} queued {JOB_TYPE} jobs, expected {waiting}")
    return (
        f"stats: {row['now']['queued']:,} queued, {row['totals']['finished']} finished all time; "
        f"perf 1h: {perf_row['finished']} finished; health: {health.check(conn, settings)['status']}"
    )


def summarize_calls(timings: dict[str, list[float]]) -> dict:
    return {
        name: {"median_ms": statistics.median(xs), "p95_ms": percentile(xs, 95), "max_ms": max(xs), "n": len(xs)}
        for name, xs in timings.items()
    }


def part_answer(conn, args, workdir: Path, redis_url: str, progress) -> dict:
    config_path = bench_config(workdir, redis_url, args, True, "answer")
    settings = load_settings(config_path, env={})
    seed_finished(conn, args, workdir, config_path, settings, progress)
    phases = {}
    for waiting in (0, args.waiting):
        if waiting:
            progress.print(f"[dim]part 2: creating {waiting:,} waiting jobs ...[/]")
            create_s = create_waiting(redis_url, config_path, args, progress)
        seen = answer_sanity(conn, settings, waiting)
        phase = {
            "waiting": waiting,
            "calls": summarize_calls(time_calls(conn, settings, args.calls)),
            "seen": seen,
            "redis_used_memory": conn.info("memory")["used_memory"],
            "dbsize": conn.dbsize(),
        }
        if waiting:
            phase["create_s"] = create_s
        phases["empty" if not waiting else "waiting"] = phase
        progress.print(
            f"part 2, {waiting:>9,} waiting: "
            + "  ".join(f"{name} {c['median_ms']:.1f}/{c['p95_ms']:.1f} ms" for name, c in phase["calls"].items())
            + f"  [dim]({seen})[/]"
        )
    met = {name: phases["waiting"]["calls"][name]["median_ms"] < TARGET_MS for name in ("stats", "health", "perf")}
    met["dashboard"] = phases["waiting"]["calls"]["dashboard"]["median_ms"] < DASHBOARD_TARGET_MS
    return {"phases": phases, "meets_target": met, "queues": len(all_queue_names(settings))}


def print_answer(console, answer: dict, meta: dict) -> None:
    empty, full = answer["phases"]["empty"], answer["phases"]["waiting"]
    table = Table(
        title=f"Part 2: answer time, ms ({meta['calls']} calls each, no daemon running; "
        f"{meta['finished']} finished jobs in both)"
    )
    table.add_column("call", no_wrap=True)
    for name in ("0 waiting: median", "p95", f"{full['waiting']:,} waiting: median", "p95", "target"):
        table.add_column(name, justify="right" if name != "target" else "left")
    for name in CALLS:
        e, f = empty["calls"][name], full["calls"][name]
        target = "-"
        if name in answer["meets_target"]:
            ok = answer["meets_target"][name]
            limit = DASHBOARD_TARGET_MS if name == "dashboard" else TARGET_MS
            target = f"[{'green' if ok else 'red'}]< {limit:g} ms: {'met' if ok else 'missed'}[/]"
        table.add_row(
            CALL_LABELS[name],
            f"{e['median_ms']:.1f}",
            f"{e['p95_ms']:.1f}",
            f"{f['median_ms']:.1f}",
            f"{f['p95_ms']:.1f}",
            target,
        )
    console.print(table)
    mib = 2**20
    console.print(
        f"[dim]{full['waiting']:,} waiting jobs created in {full['create_s']:.0f} s "
        f"({full['waiting'] / full['create_s']:,.0f}/s); Redis used_memory "
        f"{empty['redis_used_memory'] / mib:,.0f} MiB -> {full['redis_used_memory'] / mib:,.0f} MiB, "
        f"{full['dbsize']:,} keys. vq stats/health/perf/tui refresh = stats.stats, health.check, "
        f"stats.perf(window 1 h), dashboard.overview, in-process. "
        f"rq info = Queue.count + started/finished/failed registry count for {answer['queues']} queues. "
        f"{versions_line(meta)}.[/]"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--jobs", type=int, default=5000, help="part 1: jobs per drain (default 5000)")
    p.add_argument("--users", type=int, default=50, help="users the jobs are spread over (default 50)")
    p.add_argument("--workers", type=int, default=2, help="worker processes on each side (default 2)")
    p.add_argument("--runs", type=int, default=3, help="part 1: rounds; median reported (default 3)")
    p.add_argument("--user-limit", type=int, default=1000, help="concurrency.user limit of every tier (default 1000)")
    p.add_argument("--type-limit", type=int, default=1000, help="concurrency.type limit of bench-noop (default 1000)")
    p.add_argument("--waiting", type=int, default=1_000_000, help="part 2: waiting jobs (default 1000000)")
    p.add_argument("--finished", type=int, default=200, help="part 2: jobs run first so figures are not zero (200)")
    p.add_argument(
        "--create-procs",
        type=int,
        default=os.cpu_count() or 1,
        help="part 2: processes creating the waiting jobs (default: one per CPU)",
    )
    p.add_argument("--calls", type=int, default=20, help="part 2: timed calls of each (default 20)")
    p.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated subset of cost,answer,search (default all)"
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="part 3: history rows --where searches (1000000)")
    add_run_options(p, poll=0.02, timeout=600)
    p.add_argument(
        "--catch-up-timeout",
        type=float,
        default=120,
        help="give up waiting for the archiver this many seconds after a drain (default 120)",
    )
    args = p.parse_args(argv)
    if (
        min(
            args.jobs,
            args.users,
            args.workers,
            args.runs,
            args.waiting,
            args.finished,
            args.calls,
            args.create_procs,
            args.user_limit,
            args.type_limit,
        )
        < 1
    ):
        p.error("--jobs, --users, --workers, --runs, --waiting, --finished, --calls and the limits must be at least 1")
    args.parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    if not args.parts or any(s not in PARTS for s in args.parts):
        p.error(f"--parts: choose from {', '.join(PARTS)}")
    return args


def run_parts(conn, args, workdir: Path, redis_url: str, progress) -> dict:
    out: dict = {}
    if "cost" in args.parts:
        results, extras = part_cost(conn, args, workdir, redis_url, progress)
        summary = summarize(results, list(SYSTEMS))
        out["cost"] = {
            "results": results,
            "extras": extras,
            "summary": summary,
            "ratios": cost_ratios(results, summary),
        }
    if "search" in args.parts:  # SQLite only: no Redis
        out["search"] = part_search(args, workdir, progress)
    if "answer" in args.parts:  # last: its million jobs go with the redis-server (no FLUSHALL of GBs)
        out["answer"] = part_answer(conn, args, workdir, redis_url, progress)
    return out


def report(out_console, args, parts: dict, meta: dict) -> None:
    if args.json:
        doc: dict = {"meta": meta}
        if "cost" in parts:
            c = parts["cost"]
            doc["cost"] = {
                **c["summary"],
                "ratios": c["ratios"],
                "archiver": c["extras"]["vq-on"],
                "redis_cpu": {s: c["extras"][s] for s in ("vq-on", "vq-off")},
                "runs": [
                    {**asdict(r), "drain_jobs_per_s": r.drain_rate, "steady_jobs_per_s": r.steady_rate}
                    for r in c["results"]
                ],
            }
        if "answer" in parts:
            doc["answer"] = parts["answer"]
        if "search" in parts:
            doc["search"] = parts["search"]
        print(json.dumps(doc, indent=2))
        return
    if "cost" in parts:
        c = parts["cost"]
        print_cost(out_console, c["results"], c["summary"], c["ratios"], c["extras"], meta)
    if "answer" in parts:
        print_answer(out_console, parts["answer"], meta)
    if "search" in parts:
        print_search(out_console, parts["search"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with bench_session("history") as s:
        parts = run_parts(s.conn, args, s.workdir, s.server.url, s.progress)  # the daemons stop in their finally
    if s.failed is not None:
        return s.failed
    meta = {
        "jobs": args.jobs,
        "users": args.users,
        "workers": args.workers,
        "runs": args.runs,
        "user_limit": args.user_limit,
        "type_limit": args.type_limit,
        "waiting": args.waiting,
        "finished": args.finished,
        "calls": args.calls,
        "rows": args.rows,
        "parts": args.parts,
        "vq_log_level": args.vq_log_level,
        "targets": {"history_on_over_off": TARGET_RATIO, "answer_median_ms": TARGET_MS},
        "run_seconds": round(time.monotonic() - started, 1),
        **environment(s.redis_version),
    }
    report(s.out, args, parts, meta)
    s.progress.print(f"[dim]total run time {meta['run_seconds']:.0f} s[/]")
    return s.finish(args.keep)


if __name__ == "__main__":
    sys.exit(main())
