#!/usr/bin/env python3
"""HTTP submit: how many jobs/s the daemon's HTTP API accepts from 20 concurrent clients, and
how long each `POST /api/jobs/{jobType}` takes, beside the Python API in the same run.

Why: `vq daemon` serves an HTTP API (vq/api/app.py: FastAPI under uvicorn, in
`daemon.httpWorkers` child processes of the daemon sharing one socket; this bench runs
`--http-workers`, default 2). Creating a job over HTTP adds, to what `vq.submission.submit`
does, the HTTP round trip, JSON in and out, the JWT check (a token verified once is
remembered until it expires), the per-user rate limit (off unless `--rate-limit`), an audit event and
the job's JSON read back for the 201 answer (both in one pipelined round trip,
vq/created_view.py), submit and read-back on the server's event loop. This
script measures what that costs, as submissions/s and per-request latency p50/p99, against
the same submissions made in-process through the Python API, and prints issue 28's targets
(at least 1,500 submissions/s, p99 at most 25 ms, at least 0.6x of in-process `submit()`
from 20 threads) with this run's figures.

How. Everything runs against a private, throw-away `redis-server` (free port, no persistence,
temp dir) that this script starts and stops; it never touches another Redis. The temp config
has one custom type, `bench-noop` (`bench_handlers:noop`), and `http: {enabled: true, listen:
127.0.0.1:<free port>, jwt_secret: <random>, rateLimit: {requests: 0}}` (0 turns the per-user
rate limit off; `--rate-limit N` sets `requests: N` per 60 s window instead, on as in the
default configuration: N = 1000000 never refuses, so the check's cost alone is measured). The type is paused (`vq.queues.pause`, what `vq pause bench-noop` does) before
`vq daemon --workers 1` starts, so no job runs during the bench: the submissions alone are
measured, no worker takes CPU from them on a 2-core machine (a running worker would also make
the 201 answers read jobs in ever-changing states), and every job created can be checked
afterwards. The one worker still routes the new jobs into their users' waiting lines (vq's
admission, as it would with the type running), so they read back as `limited`.

Systems, one after the other, each with users of its own and N submissions (default 5,000):

* http     -- 20 clients (`--clients`), each a separate user with its own token (minted with
              vq's own `vq.tokens.create`, what `vq token create --user U` prints), each with
              one keep-alive HTTP/1.1 connection, one request in flight: raw_http.py's
              RawClient (asyncio streams; `--client httpx`: one `httpx.AsyncClient` limited
              to one connection), all on one asyncio loop in this process. Each client sends
              `POST /api/jobs/bench-noop` with `{"prompt": "bench", "seq": n}` as soon as its
              previous answer arrived; n comes from a shared counter, so every client keeps
              busy until the N-th submission. Every answer must be 201 with the job's JSON.
* api      -- the same N submissions with `vq.submission.submit(conn, settings, Submission(...))`
              from 20 threads (one user each) sharing one Redis client, as the API server does.
* api-show -- the same plus `vq.audit.record` and `vq.jobs.show` after each submit: what the route
              (vq/api/routes/jobs.py, create_job) ran before vq/created_view.py, without HTTP.
* api-1    -- `submit` from a single thread (one user).

Before each system's clock starts, every client or thread makes `--warmup` submissions (5)
that are not timed (connections open, code paths warm). Latency = one request (or call) from
send to the answer read; submissions/s = N / (first timed send -> last answer). The job data
differs per submission, so no submission is answered from vq's result cache. Between systems
the script waits until the worker has routed every job and the archiver (history on, the
default) has caught up, so no system pays for the one before. CPU per submission is measured
from /proc and Redis's INFO: this process (the clients), the daemon's HTTP children, the rest of
the daemon (supervisor, worker, timer, archiver), redis-server. Checked per system: every
answer 201 (any other status or error is listed with its body), N distinct job ids, every job
still waiting (`queued` / `limited`: none ran), one `created` event per job, each user's index
holding the user's jobs; for http, one TCP connection per client.

Why the default client is raw_http.py, not httpx (which it was): the clients run on the same
2 cores as the server, so every millisecond of CPU they spend is taken from the server they
measure. httpx spent ~1.1 ms of CPU per request (request and response objects, the pool,
anyio), half as much as the server's whole create; raw_http.py writes prepared bytes and
reads the answer's head and body, ~0.15 ms. It checks only what HTTP needs; this script
checks every answer (201, the job's JSON with its id, user and type). `--client httpx` runs
the old client, to compare with figures measured with it.

Run from the repository root:  python scripts/bench/http_submit.py [--jobs 5000 --clients 20]
The defaults take about 1 minute on a 2-core machine (the HTTP part ~30 s); `--jobs 200` about 8 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import statistics
import sys
import threading
import time
import urllib.request
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    JOB_TYPE,
    BenchError,
    count_events,
    environment,
    err,
    free_port,
    listening_pids,
    proc_cpu_seconds,
    process_tree,
    redis_cpu_seconds,
    start_vq_daemon,
    statuses,
    stop_process,
    tail,
    update_vq_config,
    versions_line,
    write_vq_config,
)
from _session import add_run_options, bench_parser, bench_session
from fairness import percentile

try:
    import httpx
except ImportError:  # pragma: no cover - told at the start of main
    httpx = None
import yaml
from raw_http import HttpError, RawClient
from rich.table import Table
from rq import Queue, Worker

from vq import audit, keys, queues
from vq import jobs as vq_jobs
from vq.config import load_settings
from vq.connection import make_client
from vq.history import archiver
from vq.submission import Submission, submit
from vq.tokens import TokenRequest
from vq.tokens import create as create_token

SYSTEMS = ("http", "api", "api-show", "api-1")
HTTP_WORKERS = 2  # daemon.httpWorkers the bench runs with (--http-workers)
TARGET_RATE, TARGET_P99_MS, TARGET_RATIO = 1500, 25.0, 0.6  # issue 28: HTTP submit, 20 keep-alive clients
WAITING = {"queued", "rate_limited"}  # RQ's statuses of a job not run yet (vq: queued, limited)
ERRORS_SHOWN = 10


def labels(clients: int) -> dict[str, str]:
    return {
        "http": f"HTTP POST, {clients} clients",
        "api": f"submit(), {clients} threads",
        "api-show": f"submit+audit+show, {clients} thr.",
        "api-1": "submit(), 1 thread",
    }


@dataclass
class Phase:
    system: str
    label: str
    clients: int
    jobs: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # the timed submissions' jobs
    warmup_ids: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)  # HTTP status (or "ok" / "error") -> count
    seen: dict[str, int] = field(default_factory=dict)  # the job's status in the answer (http, api-show) -> count
    errors: list[dict] = field(default_factory=list)
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    connections: int | None = None
    settle_s: float = 0.0
    verified: list[str] = field(default_factory=list)

    def stats(self) -> dict:
        xs, n = self.latencies_ms, self.jobs
        return {
            "label": self.label,
            "clients": self.clients,
            "jobs": n,
            "seconds": self.seconds,
            "submissions_per_s": n / self.seconds if self.seconds else None,
            "p50_ms": percentile(xs, 50),
            "p90_ms": percentile(xs, 90),
            "p99_ms": percentile(xs, 99),
            "max_ms": max(xs) if xs else None,
            "mean_ms": statistics.fmean(xs) if xs else None,
            "cpu_ms_per_submission": {k: (v * 1000 / n if v is not None else None) for k, v in self.cpu_s.items()},
            "answers": self.answers,
            "status_in_answer": self.seen,
            "errors": len(self.errors),
            "connections": self.connections,
        }


# --------------------------------------------------------------------------- the daemon


def bench_config(workdir: Path, redis_url: str, port: int, http_workers: int, rate_limit: int = 0) -> tuple[Path, str]:
    """bench-noop on the private Redis, with the HTTP API on `port` (`http_workers` server
    processes: daemon.httpWorkers) and `rate_limit` requests per user per 60 s (0: none)."""
    secret = secrets.token_urlsafe(32)
    path = write_vq_config(workdir, redis_url)
    daemon = yaml.safe_load(path.read_text()).get("daemon") or {}
    update_vq_config(
        path,
        http={
            "enabled": True,
            "listen": f"127.0.0.1:{port}",
            "jwt_secret": secret,
            "rateLimit": {"requests": rate_limit, "window": 60000},
        },
        daemon={**daemon, "httpWorkers": http_workers},
    )
    return path, f"http://127.0.0.1:{port}"


def wait_up(conn, proc, base_url: str, log_path: Path, timeout: float = 30) -> None:
    """Until /livez answers 200 and the worker is registered."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base_url + "/livez", timeout=2) as answer:
                live = answer.status == 200
        except OSError:  # refused, or an HTTP error status (urllib's HTTPError is one)
            live = False
        if live and Worker.count(connection=conn) >= 1:
            return
        if proc.poll() is not None:
            raise BenchError(f"vq daemon exited with code {proc.returncode}:\n" + tail(log_path))
        if time.monotonic() > deadline:
            raise BenchError(f"the HTTP API did not answer /livez within {timeout:.0f}s:\n" + tail(log_path))
        time.sleep(0.1)


class CpuMeter:
    """CPU seconds used by this process, the daemon's HTTP children, the rest of the daemon, Redis.
    The HTTP children are the daemon's processes holding the listening socket, but the
    supervisor itself (it binds the socket and keeps it for restarts)."""

    def __init__(self, conn, daemon_pid: int, port: int):
        self.conn, self.daemon_pid = conn, daemon_pid
        self.http_pids = [p for p in listening_pids(port, process_tree(daemon_pid)) if p != daemon_pid]

    def read(self) -> dict[str, float | None]:
        spent = [proc_cpu_seconds(p) for p in self.http_pids]
        server = sum(t for t in spent if t is not None) if self.http_pids else None
        tree = [proc_cpu_seconds(p) for p in process_tree(self.daemon_pid)]
        daemon = sum(t for t in tree if t is not None) - (server or 0)
        return {
            "client": time.process_time(),
            "server": server,
            "daemon": daemon,
            "redis": redis_cpu_seconds(self.conn),
        }

    @staticmethod
    def spent(before: dict, after: dict) -> dict[str, float | None]:
        return {k: (after[k] - before[k] if after[k] is not None and before[k] is not None else None) for k in before}


def settle(conn, settings, timeout: float = 60) -> float:
    """Until the worker has routed every new job out of RQ's lists and the archiver caught up."""
    t0 = time.monotonic()
    names = [keys.queue_name(JOB_TYPE, p) for p in keys.PRIORITY_ORDER]
    while any(Queue(n, connection=conn).count for n in names):
        if time.monotonic() - t0 > timeout:
            err.print(f"[yellow]the worker left jobs in RQ's lists {timeout:.0f}s after the phase[/]")
            break
        time.sleep(0.05)
    if archiver.catch_up(conn, settings, timeout=timeout) is not None:
        err.print(f"[yellow]the archiver had not caught up {timeout:.0f}s after the phase[/]")
    return time.monotonic() - t0


# --------------------------------------------------------------------------- HTTP clients


class HttpxClient:
    """httpx (`--client httpx`): one AsyncClient limited to one keep-alive connection, with
    RawClient's interface; its own CPU per request is several times RawClient's (the
    module docstring)."""

    def __init__(self, base_url: str, headers: dict[str, str]):
        self.client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self.local_ports: set = set()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            reply = await self.client.post(path, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        stream = reply.extensions.get("network_stream")
        try:
            self.local_ports.add(stream.get_extra_info("client_addr") if stream is not None else None)
        except OSError:  # the connection is gone already (the server stopped)
            pass
        return reply.status_code, reply.content

    async def __aenter__(self) -> HttpxClient:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.__aexit__(*exc)


def body_of(seq: int | str) -> dict:
    return {"prompt": "bench", "seq": seq}


async def post_one(client, user: str, seq, phase: Phase, timed: bool) -> None:
    body = json.dumps(body_of(seq)).encode()
    t0 = time.perf_counter()
    try:
        status, content = await client.post(f"/api/jobs/{JOB_TYPE}", body)
    except HttpError as exc:
        phase.answers["error"] = phase.answers.get("error", 0) + 1
        phase.errors.append({"seq": seq, "user": user, "status": None, "error": str(exc)})
        return
    took = (time.perf_counter() - t0) * 1000
    phase.answers[str(status)] = phase.answers.get(str(status), 0) + 1
    try:
        job = json.loads(content) if status == 201 else None
    except ValueError:
        job = None
    if not isinstance(job, dict) or not job.get("id") or job.get("userId") != user or job.get("jobType") != JOB_TYPE:
        text = content.decode("utf-8", "replace")[:1000]
        phase.errors.append({"seq": seq, "user": user, "status": status, "body": text})
        return
    (phase.ids if timed else phase.warmup_ids).append(job["id"])
    if timed:
        phase.latencies_ms.append(took)
        phase.seen[job["status"]] = phase.seen.get(job["status"], 0) + 1


async def http_clients(
    base_url: str, tokens: dict[str, str], phase: Phase, warmup: int, meter: CpuMeter, kind: str = "raw"
) -> None:
    """One client (one keep-alive connection) per user: RawClient (raw_http.py), or httpx's
    AsyncClient with `kind="httpx"`; warm-up, then the timed N. Ctrl-C lets each client
    finish its request in flight, then raises KeyboardInterrupt (asyncio's own handling, a
    cancel, can be swallowed inside the HTTP client)."""
    seqs = iter(range(phase.jobs))
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    catch = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN  # ignored (a background job): leave it so
    if catch:
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
    make = HttpxClient if kind == "httpx" else RawClient

    async def run(client, user: str) -> None:
        while not interrupted.is_set() and (seq := next(seqs, None)) is not None:
            await post_one(client, user, seq, phase, True)

    async def warm(client, user: str) -> None:
        for w in range(warmup):
            if not interrupted.is_set():
                await post_one(client, user, f"w{w}", phase, False)

    try:
        async with AsyncExitStack() as stack:
            clients = {
                user: await stack.enter_async_context(make(base_url, {"Authorization": f"Bearer {token}"}))
                for user, token in tokens.items()
            }
            await asyncio.gather(*(warm(c, u) for u, c in clients.items()))
            before = meter.read()
            t0 = time.perf_counter()
            await asyncio.gather(*(run(c, u) for u, c in clients.items()))
            phase.seconds = time.perf_counter() - t0
            phase.cpu_s = CpuMeter.spent(before, meter.read())
            phase.connections = sum(len(c.local_ports) for c in clients.values())
    finally:
        if catch:
            loop.remove_signal_handler(signal.SIGINT)
    if interrupted.is_set():
        raise KeyboardInterrupt


def run_http(base_url: str, settings, phase: Phase, warmup: int, meter: CpuMeter, kind: str) -> None:
    tokens = {user: create_token(settings, TokenRequest(user_id=user, ttl_seconds=3600)) for user in phase.users}
    asyncio.run(http_clients(base_url, tokens, phase, warmup, meter, kind))


# --------------------------------------------------------------------------- Python API threads


def run_api(settings, phase: Phase, warmup: int, meter: CpuMeter, show: bool) -> None:
    """submit() (and, when `show`, audit.record() and jobs.show()) from one thread per user, one
    shared Redis client. The main thread waits with timeouts only, so Ctrl-C reaches it whichever
    thread the signal lands on; the threads then stop after their call in flight."""
    conn = make_client(settings)
    seqs, lock = iter(range(phase.jobs)), threading.Lock()
    ready, go, stop = [0], threading.Event(), threading.Event()

    def one(user: str, seq, timed: bool) -> None:
        t0 = time.perf_counter()
        try:
            job_id = submit(conn, settings, Submission(job_type=JOB_TYPE, data=body_of(seq), user_id=user))
            status = None
            if show:  # the rest of what the HTTP route does
                audit.record(conn, user, "user", "create", JOB_TYPE, job_id)
                status = vq_jobs.show(conn, job_id, settings)["status"]
        except Exception as exc:  # noqa: BLE001 - listed in the report, like a non-201
            with lock:
                phase.answers["error"] = phase.answers.get("error", 0) + 1
                phase.errors.append({"seq": seq, "user": user, "error": f"{type(exc).__name__}: {exc}"})
            return
        took = (time.perf_counter() - t0) * 1000
        with lock:
            phase.answers["ok"] = phase.answers.get("ok", 0) + 1
            (phase.ids if timed else phase.warmup_ids).append(job_id)
            if timed:
                phase.latencies_ms.append(took)
                if status:
                    phase.seen[status] = phase.seen.get(status, 0) + 1

    def thread(user: str) -> None:
        for w in range(warmup):
            if not stop.is_set():
                one(user, f"w{w}", False)
        with lock:
            ready[0] += 1
        go.wait()
        while not stop.is_set():
            with lock:
                seq = next(seqs, None)
            if seq is None:
                return
            one(user, seq, True)

    threads = [threading.Thread(target=thread, args=(u,), daemon=True, name=f"bench-{u}") for u in phase.users]
    for t in threads:
        t.start()
    try:
        while ready[0] < len(threads):
            time.sleep(0.002)
        before = meter.read()
        t0 = time.perf_counter()
        go.set()
        for t in threads:
            while t.is_alive():
                t.join(0.05)
        phase.seconds = time.perf_counter() - t0
        phase.cpu_s = CpuMeter.spent(before, meter.read())
    except BaseException:  # Ctrl-C: the threads stop before the daemon and Redis do
        stop.set()
        go.set()
        for t in threads:
            t.join(5)
        raise
    finally:
        conn.close()


# --------------------------------------------------------------------------- verify


def verify(conn, phase: Phase) -> list[str]:
    """N distinct jobs, none ran, one created event each, each user's index complete."""
    all_ids = phase.ids + phase.warmup_ids
    if phase.errors:
        return [f"[red]{len(phase.errors)} failed submissions[/]"]
    if len(phase.ids) != phase.jobs or len(set(all_ids)) != len(all_ids):
        raise BenchError(
            f"{phase.system}: {len(phase.ids)} jobs timed ({len(set(all_ids))} distinct of "
            f"{len(all_ids)} with the warm-up), expected {phase.jobs}"
        )
    by_status = statuses(conn, all_ids)
    if set(by_status) - WAITING:
        raise BenchError(f"{phase.system}: job statuses {by_status}: some ran or vanished (the type is paused)")
    created = count_events(conn, "created", set(all_ids))
    if created != len(all_ids):
        raise BenchError(f"{phase.system}: {created} created events for {len(all_ids)} jobs")
    with conn.pipeline(transaction=False) as pipe:
        for user in phase.users:
            pipe.zcard(keys.user_jobs(user))
        indexed = sum(pipe.execute())
    if indexed != len(all_ids):
        raise BenchError(f"{phase.system}: the users' indexes hold {indexed} jobs, expected {len(all_ids)}")
    out = [
        f"{len(all_ids)} jobs waiting ({', '.join(f'{k} {v}' for k, v in sorted(by_status.items()))})",
        f"{created} created events",
        "user indexes complete",
    ]
    if phase.connections is not None:
        if phase.connections != phase.clients:
            raise BenchError(f"{phase.system}: {phase.connections} TCP connections for {phase.clients} clients")
        out.append(f"{phase.connections} connections")
    return out


# --------------------------------------------------------------------------- report


def ratios(summary: dict) -> dict:
    h = summary.get("http")
    out = {}
    for ref in ("api", "api-show", "api-1"):
        r = summary.get(ref)
        if h and r and h["submissions_per_s"] and r["submissions_per_s"]:
            out[f"http/{ref}"] = {
                "submissions_per_s": h["submissions_per_s"] / r["submissions_per_s"],
                "p50": h["p50_ms"] / r["p50_ms"],
                "p99": h["p99_ms"] / r["p99_ms"],
            }
    return out


def targets(summary: dict, rat: dict) -> list[dict]:
    """Issue 28's HTTP submit targets, each with this run's figure and whether it is met."""
    h, r = summary.get("http"), rat.get("http/api")
    rows = []
    if h and h["submissions_per_s"]:
        rows.append(_target("submissions/s", h["submissions_per_s"], TARGET_RATE, at_least=True))
    if h and h["p99_ms"] is not None:
        rows.append(_target("p99 ms", h["p99_ms"], TARGET_P99_MS, at_least=False))
    if r:
        rows.append(_target("÷ submit() (20 threads)", r["submissions_per_s"], TARGET_RATIO, at_least=True))
    return rows


def _target(name: str, value: float, target: float, at_least: bool) -> dict:
    met = value >= target if at_least else value <= target
    return {
        "target": name,
        "value": value,
        "goal": f"{'≥' if at_least else '≤'} {target:g}",
        "met": met,
        "of_target": value / target,
    }


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def tally(counts: dict[str, int]) -> str:
    return " ".join(f"{k} ×{v:,}" for k, v in sorted(counts.items())) or "-"


def print_report(console, summary: dict, rat: dict, phases: list[Phase], meta: dict) -> None:
    table = Table(
        title=f"Submit {meta['jobs']:,} {JOB_TYPE} jobs ({JOB_TYPE} paused, vq daemon --workers 1): "
        f"throughput and latency (ms)"
    )
    for name in ("system", "s", "submits/s", "p50", "p90", "p99", "max", "mean"):
        table.add_column(name, justify="left" if name == "system" else "right", no_wrap=name == "system")
    for s in summary.values():
        table.add_row(
            s["label"],
            f"{s['seconds']:.2f}",
            fmt(s["submissions_per_s"], ",.0f"),
            *(fmt(s[k], ".2f") for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")),
        )
    console.print(table)
    cpu = Table(title="CPU ms per submission (timed part), and the answers")
    for name in ("system", "client", "HTTP server", "rest of daemon", "redis", "total", "answers (all)", "job status"):
        cpu.add_column(
            name,
            justify="left" if name in ("system", "answers (all)", "job status") else "right",
            no_wrap=name == "system",
        )
    for s in summary.values():
        c = s["cpu_ms_per_submission"]
        total = sum(v for v in c.values() if v is not None)
        cpu.add_row(
            s["label"],
            *(fmt(c[k], ".2f") for k in ("client", "server", "daemon", "redis")),
            f"{total:.2f}",
            tally(s["answers"]),
            tally(s["status_in_answer"]),
        )
    console.print(cpu)
    if rat:
        names = labels(meta["clients"])
        rt = Table(title="HTTP ÷ Python API (submits/s below 1 = HTTP slower; latency above 1 = HTTP slower)")
        for name in ("ratio", "submits/s", "p50", "p99"):
            rt.add_column(name, justify="left" if name == "ratio" else "right")
        for name, r in rat.items():
            rt.add_row(
                f"HTTP / {names[name.split('/', 1)[1]]}",
                f"{r['submissions_per_s']:.2f}",
                f"{r['p50']:.2f}",
                f"{r['p99']:.2f}",
            )
        console.print(rt)
    goals = targets(summary, rat)
    if goals:
        tt = Table(title="Issue 28's HTTP submit targets (20 keep-alive clients)")
        for name in ("target", "this run", "goal", "× goal", "met"):
            tt.add_column(name, justify="left" if name in ("target", "goal", "met") else "right")
        for g in goals:
            tt.add_row(
                g["target"],
                f"{g['value']:,.2f}",
                g["goal"],
                f"{g['of_target']:.2f}",
                "[green]yes[/]" if g["met"] else "[red]no[/]",
            )
        console.print(tt)
    for p in phases:
        for e in p.errors[:ERRORS_SHOWN]:
            console.print(f"[red]{p.system}: {e}[/]")
        if len(p.errors) > ERRORS_SHOWN:
            console.print(f"[red]{p.system}: ... {len(p.errors) - ERRORS_SHOWN} more errors[/]")
    console.print(
        f"[dim]{meta['clients']} clients/threads, one user each, {meta['warmup']} untimed warm-up "
        f"submissions each first. HTTP POST = POST /api/jobs/{JOB_TYPE} over one keep-alive connection "
        f"per client ({meta['client']}, asyncio; server uvicorn {meta['uvicorn']}, fastapi "
        f"{meta['fastapi']}); submit() = vq.submission.submit in-process, one shared Redis client; "
        f"audit, show = vq.audit.record, vq.jobs.show: the route's work before its one-trip read-back. Latency = one request or call; submits/s = "
        f"jobs / (first timed send -> last answer). CPU: client = this process, HTTP server = the "
        f"daemon's uvicorn children ({meta['http_workers']}), rest of daemon = its other processes (supervisor, worker, timer, "
        f"archiver), redis = redis-server. job status = the job's status in the answer (limited = routed "
        f"by the worker into its user's line). Per-user rate limit: {meta['rate_limit']}. "
        f"{versions_line(meta)}.[/]"
    )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = bench_parser(__doc__)
    p.add_argument("--jobs", type=int, default=5000, help="timed submissions per system (default 5000)")
    p.add_argument(
        "--clients", type=int, default=20, help="concurrent HTTP clients and Python threads, one user each (default 20)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed submissions per client first (default 5)")
    p.add_argument(
        "--http-workers",
        type=int,
        default=HTTP_WORKERS,
        help=f"the daemon's HTTP server processes, daemon.httpWorkers (default {HTTP_WORKERS})",
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default all, in that order)",
    )
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the HTTP load generator: raw (raw_http.py: asyncio streams, the default: little CPU "
        "taken from the server on a 2-core machine) or httpx (AsyncClient, ~1 ms of CPU per request)",
    )
    p.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        metavar="N",
        help="http.rateLimit.requests per user per 60 s: 0 (the default here) turns the check off; "
        "on by default in vq (600), so e.g. 1000000 measures its cost without a refusal",
    )
    add_run_options(p, poll=None, timeout=None)
    args = p.parse_args(argv)
    if min(args.jobs, args.clients, args.http_workers) < 1 or min(args.warmup, args.rate_limit) < 0:
        p.error("--jobs, --clients and --http-workers must be at least 1, --warmup and --rate-limit at least 0")
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown or not args.systems:
        p.error(f"--systems: unknown {unknown} (choose from {', '.join(SYSTEMS)})")
    return args


def run_phase(system: str, args, settings, base_url: str, meter: CpuMeter) -> Phase:
    clients = 1 if system == "api-1" else args.clients
    phase = Phase(
        system, labels(args.clients)[system], clients, args.jobs, users=[f"{system}-u{i:02d}" for i in range(clients)]
    )
    if system == "http":
        run_http(base_url, settings, phase, args.warmup, meter, args.client)
    else:
        run_api(settings, phase, args.warmup, meter, show=system == "api-show")
    return phase


def run_all(conn, args, settings, base_url: str, meter: CpuMeter, progress) -> list[Phase]:
    phases = []
    settle(conn, settings)
    for system in args.systems:
        progress.print(f"[dim]{system} ...[/]")
        phase = run_phase(system, args, settings, base_url, meter)
        phase.settle_s = settle(conn, settings)
        phase.verified = verify(conn, phase)
        phases.append(phase)
        s = phase.stats()
        progress.print(
            f"{phase.label:<28} {fmt(s['submissions_per_s'], '7,.0f')}/s  p50 {fmt(s['p50_ms'], '6.2f')}  "
            f"p99 {fmt(s['p99_ms'], '6.2f')} ms  [dim]({'; '.join(phase.verified)}; "
            f"settled {phase.settle_s:.1f}s)[/]"
        )
    return phases


def versions() -> dict:
    import fastapi
    import uvicorn

    return {
        "httpx": httpx.__version__ if httpx else None,
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client == "httpx" and httpx is None:
        err.print("[red]httpx is not installed: pip install httpx[/]")
        return 2
    started = time.monotonic()
    with bench_session("http", announce=False) as s:
        conn, workdir = s.conn, s.workdir
        port = free_port()
        config_path, base_url = bench_config(workdir, s.server.url, port, args.http_workers, args.rate_limit)
        settings = load_settings(config_path, env={})
        queues.pause(conn, settings, JOB_TYPE)  # before the daemon: no job of the type ever runs
        log_path = workdir / "vq-daemon.log"
        daemon = start_vq_daemon(config_path, 1, args.vq_log_level, log_path, workdir)
        s.on_exit(lambda: stop_process(daemon))
        wait_up(conn, daemon, base_url, log_path)
        meter = CpuMeter(conn, daemon.pid, port)
        s.progress.print(
            f"[dim]private redis-server {s.redis_version} on port {s.server.port}; vq daemon pid {daemon.pid}, "
            f"HTTP API {base_url} (pids {', '.join(map(str, meter.http_pids))}); {JOB_TYPE} paused; "
            f"work dir {workdir}[/]"
        )
        phases = run_all(conn, args, settings, base_url, meter, s.progress)
        if daemon.poll() is not None:
            raise BenchError(f"vq daemon exited with code {daemon.returncode} during the bench:\n" + tail(log_path))
    if s.failed is not None:
        return s.failed
    summary = {p.system: p.stats() for p in phases}
    rat = ratios(summary)
    failed = sum(len(p.errors) for p in phases)
    meta = {
        "jobs": args.jobs,
        "clients": args.clients,
        "warmup": args.warmup,
        "systems": args.systems,
        "daemon_workers": 1,
        "http_workers": args.http_workers,
        "client": "raw_http.py" if args.client == "raw" else f"httpx {httpx.__version__}",
        "paused": JOB_TYPE,
        "rate_limit": f"{args.rate_limit} per 60 s per user" if args.rate_limit else "off",
        "vq_log_level": args.vq_log_level,
        "run_seconds": round(time.monotonic() - started, 1),
        **versions(),
        **environment(s.redis_version),
    }
    if args.json:
        print(
            json.dumps(
                {
                    "systems": summary,
                    "ratios": rat,
                    "targets": targets(summary, rat),
                    "meta": meta,
                    "failed_submissions": failed,
                    "errors": {p.system: p.errors for p in phases if p.errors},
                    "verified": {p.system: p.verified for p in phases},
                    "settle_s": {p.system: p.settle_s for p in phases},
                },
                indent=2,
            )
        )
    else:
        print_report(s.out, summary, rat, phases, meta)
    s.progress.print(f"[dim]total run time {meta['run_seconds']:.0f} s[/]")
    return s.finish(args.keep, 1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
