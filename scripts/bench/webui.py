#!/usr/bin/env python3
"""Web dashboard: how long each page of /ui takes to load with a million jobs waiting.

Why: issue 27 asks that a dashboard page load in under 300 ms on this machine with
1,000,000 waiting jobs. The pages read through the same service functions as the CLI (queue
counts from registry sizes, a job list from the per-type index, one job by its id), so their
cost should not grow with the number of jobs; this measures that it does not.

How. Everything runs against a private, throw-away `redis-server` (free port, no
persistence, temp dir) that this script starts and stops; it never touches another Redis.
The config has one custom type, `bench-noop`, with every limit raised, and the HTTP server
on a free port with a random JWT secret. The waiting jobs are made as scripts/bench/history.py
makes them (vq's own batch path, `submit_each`, in chunks of 10,000 by one process per CPU):
real RQ jobs with vq's indexes and events. Then `vq daemon --workers 1` starts with the type
paused (`vq pause bench-noop`), so no job runs and the pages see the million waiting. One
client logs in (`POST /ui/login` with a token from `vq.tokens.create`, what `vq token create
--role operator` prints) and fetches each page `--calls` times (default 20, after one
warm-up each, the pages interleaved), timing each request from its start to its last byte
(httpx, one kept-alive connection, as a browser's). Reported: median, p95 and max per page,
against the 300 ms target. Before the jobs are made, the same pages are timed with none.

Pages: `/ui` (the queues overview), `/ui/fragments/overview` (its live refresh),
`/ui/queues/bench-noop` (the newest 25 jobs), `/ui/queues/bench-noop?status=queued`, `/ui/jobs`,
`/ui/jobs/<id>` (a waiting job), `/ui/limits`, `/ui/workers`, `/ui/dlq`, and two lists
filtered by a status few jobs have: `/ui/jobs?status=failed` (every type) and
`/ui/queues/bench-noop?status=failed` (none). Before the waiting jobs are made, FAILED (3)
jobs of a second type, `bench-fail` (its handler raises), run and fail, so the million
waiting jobs are all newer than them: a list that walked the index newest first would read
every one of them to find the three. The bench checks that the failed list shows the three.

Run from the repository root:  python scripts/bench/webui.py [--waiting 1000000 --calls 20]
Redis needs about 2.6 GB for the million jobs; making them takes about 100 s on a 2-core
machine. `--waiting 20000` takes about 20 s in all.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import yaml
from _common import (
    JOB_TYPE,
    BenchError,
    environment,
    free_port,
    start_vq_daemon,
    stop_process,
    tail,
    update_vq_config,
    versions_line,
)
from _session import add_run_options, bench_parser, bench_session
from fairness import percentile
from history import bench_config, create_waiting
from rich.table import Table

from vq import job_lists, keys, queues, tokens
from vq.config import load_settings

TARGET_MS = 300.0
PAGES = (
    "/ui",
    "/ui/fragments/overview",
    f"/ui/queues/{JOB_TYPE}",
    f"/ui/queues/{JOB_TYPE}?status=queued",
    "/ui/jobs",
    "/ui/jobs/{job}",
    "/ui/limits",
    "/ui/workers",
    "/ui/dlq",
    "/ui/jobs?status=failed",
    f"/ui/queues/{JOB_TYPE}?status=failed",
)
FAIL_TYPE = "bench-fail"
FAILED = 3  # failed jobs, made before the waiting ones


def parse_args(argv):
    p = bench_parser(__doc__)
    p.add_argument("--waiting", type=int, default=1_000_000, help="waiting jobs (default 1000000)")
    p.add_argument("--calls", type=int, default=20, help="timed loads of each page (default 20)")
    p.add_argument("--users", type=int, default=50, help="users the waiting jobs belong to (default 50)")
    p.add_argument("--create-procs", type=int, default=os.cpu_count() or 2, help="processes making the jobs")
    add_run_options(p, poll=None, timeout=None)
    args = p.parse_args(argv)
    args.user_limit = args.type_limit = 1_000_000  # bench_config: no limit binds
    return args


def serve(workdir: Path, redis_url: str, args) -> tuple[Path, str]:
    config = bench_config(workdir, redis_url, args, True, "webui")
    port = free_port()
    types = yaml.safe_load(config.read_text())["job_types"]
    update_vq_config(
        config,
        http={"enabled": True, "listen": f"127.0.0.1:{port}", "jwt_secret": secrets.token_urlsafe(32)},
        job_types={**types, FAIL_TYPE: {"handler": "bench_handlers:fail", "attempts": 1}},
    )
    return config, f"http://127.0.0.1:{port}"


def wait_up(base: str, proc, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"vq daemon exited {proc.returncode}:\n{tail(log)}")
        try:
            if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the HTTP server did not come up:\n{tail(log)}")


def make_failed(conn, config: Path, proc, log: Path) -> None:
    """FAILED jobs of FAIL_TYPE, submitted with `vq submit` and run by the daemon until they fail."""
    env = {**os.environ, "VQ_CONFIG": str(config)}
    for n in range(FAILED):
        made = subprocess.run(
            [sys.executable, "-m", "vq", "submit", FAIL_TYPE, "--data", "{}", "--user", f"bench-user-{n}"],
            env=env,
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise BenchError(f"vq submit {FAIL_TYPE}: exit {made.returncode}: {made.stderr.strip()}")
    deadline = time.monotonic() + 60
    while len(job_lists.list_jobs(conn, job_type=FAIL_TYPE, status="failed")) < FAILED:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise BenchError(f"the {FAIL_TYPE} jobs did not fail in 60 s:\n{tail(log)}")
        time.sleep(0.2)


def time_pages(client: httpx.Client, job_id: str, calls: int) -> dict[str, list[float]]:
    paths = [p.replace("{job}", job_id) for p in PAGES]
    timings: dict[str, list[float]] = {p: [] for p in PAGES}
    for path in paths:  # warm-up: templates compiled, connections open
        reply = client.get(path)
        if reply.status_code != 200:
            raise BenchError(f"GET {path}: {reply.status_code} {reply.text[:300]}")
        if path == "/ui/jobs?status=failed" and reply.text.count('class="mono" href="/ui/jobs/') != FAILED:
            raise BenchError(f"GET {path}: expected the {FAILED} failed jobs listed")
    for _ in range(calls):
        for page, path in zip(PAGES, paths):
            t0 = time.perf_counter()
            reply = client.get(path)
            reply.read()
            timings[page].append((time.perf_counter() - t0) * 1000)
            if reply.status_code != 200:
                raise BenchError(f"GET {path}: {reply.status_code}")
    return timings


def summary(timings: dict[str, list[float]]) -> dict:
    return {
        page: {"median_ms": statistics.median(xs), "p95_ms": percentile(xs, 95), "max_ms": max(xs), "n": len(xs)}
        for page, xs in timings.items()
    }


def measure(s, args) -> dict:
    config, base = serve(s.workdir, s.server.url, args)
    settings = load_settings(config, env={})
    token = tokens.create(settings, tokens.TokenRequest("bench-operator", "operator", ttl_seconds=3600))
    queues.pause(s.conn, settings, JOB_TYPE)
    phases = []
    for waiting in (0, args.waiting):
        if waiting:
            s.progress.print(f"[dim]creating {waiting:,} waiting jobs ...[/]")
            create_waiting(s.server.url, config, args, s.progress)
        else:  # one job, so a job's page has something to show
            create_waiting(s.server.url, config, type(args)(**{**vars(args), "waiting": 1}), s.progress)
        log = s.workdir / f"daemon-{waiting}.log"
        proc = start_vq_daemon(config, 1, args.vq_log_level, log, s.workdir)
        s.on_exit(lambda proc=proc: stop_process(proc))
        wait_up(base, proc, log)
        if not waiting:
            make_failed(s.conn, config, proc, log)
        newest = s.conn.zrevrange(keys.type_jobs(JOB_TYPE), 0, 0)
        job_id = newest[0].decode() if newest else ""
        with httpx.Client(base_url=base, timeout=60) as client:
            login = client.post("/ui/login", data={"token": token}, follow_redirects=False)
            if login.status_code != 303:
                raise BenchError(f"login: {login.status_code} {login.text[:300]}")
            s.progress.print(f"[dim]timing {len(PAGES)} pages x {args.calls} with {waiting:,} waiting ...[/]")
            phases.append({"waiting": waiting, "pages": summary(time_pages(client, job_id, args.calls))})
        stop_process(proc)
    return {"phases": phases}


def report(out, results: dict, meta: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**results, "meta": meta, "targetMs": TARGET_MS}, indent=2))
        return
    table = Table(title=f"Web dashboard page loads (target: median under {TARGET_MS:.0f} ms)")
    table.add_column("page")
    for phase in results["phases"]:
        table.add_column(f"median / p95 ms, {phase['waiting']:,} waiting", justify="right")
    for page in PAGES:
        cells = []
        for phase in results["phases"]:
            row = phase["pages"][page]
            ok = row["median_ms"] < TARGET_MS
            cells.append(f"{'' if ok else '[red]'}{row['median_ms']:.1f} / {row['p95_ms']:.1f}")
        table.add_row(page, *cells)
    out.print(table)
    out.print(f"[dim]{versions_line(meta)}[/]")


def main(argv=None) -> int:
    args = parse_args(argv)
    with bench_session("webui") as s:
        results = measure(s, args)
    if s.failed is not None:
        return s.failed
    meta = environment(s.redis_version)
    report(s.out, results, meta, args.json)
    worst = max(row["median_ms"] for row in results["phases"][-1]["pages"].values())
    return s.finish(args.keep, 0 if worst < TARGET_MS else 1)


if __name__ == "__main__":
    sys.exit(main())
