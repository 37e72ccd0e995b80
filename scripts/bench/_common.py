"""Shared pieces of the benchmarks in scripts/bench/ (throughput.py, admission.py, fairness.py ...).

A private, throw-away `redis-server`; a temp vq config; `vq daemon` started as a subprocess
and drained; plain `rq worker --burst` processes for comparison; completion checks that read
RQ's registries; the summary table of jobs/s and vq ÷ RQ ratios.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_handlers must import here too (vq's submit loads the handler)
    sys.path.insert(0, str(HERE))

import redis
import rq
import yaml
from rich.console import Console
from rich.table import Table
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from vq import events, keys
from vq import jobs as vq_jobs
from vq.submission import Submission, submit

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


def consoles() -> tuple[Console, Console]:
    """(stdout, stderr progress) consoles, wide enough for the tables when not on a terminal."""
    return (
        Console(width=None if sys.stdout.isatty() else WIDTH),
        Console(stderr=True, width=None if sys.stderr.isatty() else WIDTH),
    )


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
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
                "--logfile",
                str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        conn = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                conn.ping()
                return conn
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(
                        f"private redis-server on port {self.port} did not start (see {self.log})"
                    ) from None
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


OWN_COMMANDS: dict[str, int] = {}  # Redis commands the bench's completion polls issued (throughput.py subtracts them)


def ended_counts(conn: redis.Redis, finished_keys: list[str], failed_keys: list[str]) -> tuple[int, int]:
    OWN_COMMANDS["ZCARD"] = OWN_COMMANDS.get("ZCARD", 0) + len(finished_keys) + len(failed_keys)
    with conn.pipeline(transaction=False) as pipe:
        for key in finished_keys + failed_keys:
            pipe.zcard(key)
        replies = pipe.execute()
    return sum(replies[: len(finished_keys)]), sum(replies[len(finished_keys) :])


def job_times(conn: redis.Redis, job_ids: Sequence[str], *fields: str) -> list[list[datetime | None]]:
    """RQ's own timestamps (enqueued_at, started_at, ended_at ...) of each job, parsed."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(f"rq:job:{job_id}", *fields)
        replies = pipe.execute()
    return [[utcparse(v.decode()) if v else None for v in reply] for reply in replies]


def steady_seconds(conn: redis.Redis, job_ids: list[str]) -> float | None:
    """First job start -> last job end, from RQ's own timestamps on the job hashes."""
    times = job_times(conn, job_ids, "started_at", "ended_at")
    starts = [s for s, _e in times if s]
    ends = [e for _s, e in times if e]
    if not starts or not ends:
        return None
    return (max(ends) - min(starts)).total_seconds()


def statuses(conn: redis.Redis, job_ids: Sequence[str]) -> dict[str, int]:
    """How many of these jobs are in each RQ status (from the job hashes)."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        replies = pipe.execute()
    out: dict[str, int] = {}
    for value in replies:
        name = value.decode() if value else "missing"
        out[name] = out.get(name, 0) + 1
    return out


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


# --------------------------------------------------------------------------- vq


def write_vq_config(
    workdir: Path,
    redis_url: str,
    job_types: dict | None = None,
    concurrency: dict | None = None,
    name: str = "vq-bench.yaml",
) -> Path:
    """A temp config on the private Redis; by default one custom type, `bench-noop`."""
    config = {
        "redis": {"url": redis_url},
        "data_dir": str(workdir / "vq-data"),
        "queue": {"defaultJobOptions": {"removeOnComplete": False, "removeOnFail": False}},
        "job_types": job_types or {JOB_TYPE: {"handler": "bench_handlers:noop", "attempts": 1}},
        "http": {"enabled": False},  # a bench that measures the API turns it on (http_submit.py)
    }
    if concurrency:
        config["concurrency"] = concurrency
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def vq_registry_keys(conn: redis.Redis, job_type: str) -> tuple[list[str], list[str]]:
    """The finished and failed registries of the type's three queues."""
    names = [keys.queue_name(job_type, p) for p in keys.PRIORITY_ORDER]
    return (
        [FinishedJobRegistry(n, connection=conn).key for n in names],
        [FailedJobRegistry(n, connection=conn).key for n in names],
    )


def _name_history_file(config_path: Path) -> None:
    """A running installation's Redis names the file history goes to; a flushed bench Redis
    does not, and its daemon's archiver would first wait 6 s for other hosts to announce
    their files (vq/history/lease.py), so archiving would start late in a short drain."""
    from vq.config import load_settings
    from vq.connection import make_client
    from vq.history.archiver import Archiver

    settings = load_settings(config_path, env={})
    if settings.history.enabled:
        archiver = Archiver(make_client(settings), settings)
        if archiver.hold_lease(settle_ms=0).held:
            archiver.release_lease()


def start_vq_daemon(
    config_path: Path, workers: int, log_level: str, log_path: Path, cwd: Path, extra: Sequence[str] = ()
) -> subprocess.Popen:
    """`python -m vq daemon --workers N` on the temp config; its output goes to log_path."""
    _name_history_file(config_path)
    cmd = [sys.executable, "-m", "vq", "daemon", "--workers", str(workers), "--log-level", log_level, *extra]
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=child_env({"VQ_CONFIG": str(config_path)}), stdout=log, stderr=log, cwd=cwd)


def wait_until_ended(
    conn: redis.Redis,
    proc: subprocess.Popen,
    finished_keys: list[str],
    failed_keys: list[str],
    total: int,
    t0: float,
    timeout: float,
    poll: float,
    log_path: Path,
    label: str = "vq",
) -> tuple[float, int, int]:
    """Poll the registries until `total` jobs ended; (seconds since t0, finished, failed)."""
    while True:
        finished, failed = ended_counts(conn, finished_keys, failed_keys)
        if finished + failed >= total:
            return time.perf_counter() - t0, finished, failed
        if proc.poll() is not None:
            raise BenchError(
                f"{label} daemon exited with code {proc.returncode} after {finished} jobs:\n" + tail(log_path)
            )
        if time.perf_counter() - t0 > timeout:
            raise BenchError(f"{label}: only {finished}/{total} finished after {timeout:.0f}s:\n" + tail(log_path))
        time.sleep(poll)


def check_drained(proc: subprocess.Popen, failed: int, label: str, log_path: Path) -> None:
    """After a drain and the daemon's stop: no job may have failed; an unclean exit is said."""
    if failed:
        raise BenchError(f"{label}: {failed} jobs failed (log {log_path}):\n" + tail(log_path))
    if proc.returncode != 0:
        err.print(f"[yellow]vq daemon exited with code {proc.returncode} on SIGTERM (log {log_path})[/]")


def run_vq(
    conn,
    args,
    run: int,
    workdir: Path,
    config_path: Path,
    timeout: float,
    subs: Sequence[Submission],
    job_type: str = JOB_TYPE,
    daemon_args: Sequence[str] = (),
    extra_verify: Callable[[redis.Redis, list[str]], list[str]] | None = None,
    before_drain: Callable[[], None] | None = None,
    after_drain: Callable[[], None] | None = None,
) -> RunResult:
    """Submit `subs` one by one in-process, then start `vq daemon --workers N` and time it
    from its spawn until every job is in the finished (or failed) registry; stop it.
    `before_drain` and `after_drain` run just before the daemon starts and as soon as the
    last job ended (before the bench's own checks read anything)."""
    from vq.config import load_settings

    settings = load_settings(config_path, env={})
    conn.flushall()
    jobs = len(subs)
    t0 = time.perf_counter()
    ids = [submit(conn, settings, sub) for sub in subs]
    enqueue_s = time.perf_counter() - t0

    finished_keys, failed_keys = vq_registry_keys(conn, job_type)
    log_path = workdir / f"vq-daemon-run{run}.log"
    if before_drain:
        before_drain()
    t0 = time.perf_counter()
    proc = start_vq_daemon(config_path, args.workers, args.vq_log_level, log_path, workdir, daemon_args)
    try:
        drain_s, finished, failed = wait_until_ended(
            conn, proc, finished_keys, failed_keys, jobs, t0, timeout, args.poll, log_path
        )
        if after_drain:
            after_drain()
    finally:
        stop_s = stop_process(proc)
    check_drained(proc, failed, "vq", log_path)

    # Verify: a sample through vq's own API, and the event stream's finished count.
    verified = []
    for job_id in random.sample(ids, min(25, len(ids))):
        status = vq_jobs.show(conn, job_id)["status"]
        if status != "finished":
            raise BenchError(f"vq job {job_id} is {status}, not finished")
    verified.append(f"{min(25, len(ids))} sampled via vq.jobs.show: finished")
    finished_events = count_events(conn, "finished", set(ids))
    if finished_events != jobs:
        raise BenchError(f"vq: {finished_events} 'finished' events in {keys.EVENTS}, expected {jobs}")
    verified.append(f"{finished_events} finished events in {keys.EVENTS}")
    if extra_verify:
        verified += extra_verify(conn, ids)
    return RunResult("vq", run, jobs, enqueue_s, drain_s, steady_seconds(conn, ids), stop_s, verified)


# --------------------------------------------------------------------------- plain RQ


def rq_executable() -> list[str]:
    beside = Path(sys.executable).with_name("rq")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rq")
    if not found:
        raise BenchError("the `rq` command was not found")
    return [found]


def run_rq(
    conn,
    args,
    run: int,
    workdir: Path,
    redis_url: str,
    system: str,
    timeout: float,
    before_drain: Callable[[], None] | None = None,
    jobs: int | None = None,
    after_drain: Callable[[], None] | None = None,
) -> RunResult:
    """Enqueue jobs no-op jobs with `Queue.enqueue` (JSON serializer), then time N
    `rq worker --burst` processes (SimpleWorker for rq-simple) until every job ended, as vq's
    drain is timed; then wait for the workers to exit, untimed (with redis-py 8.2 a burst
    worker can take a minute to exit: its pubsub thread's join has no timeout)."""
    conn.flushall()
    jobs = jobs or args.jobs
    queue = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    t0 = time.perf_counter()
    ids = [queue.enqueue("bench_handlers.noop").id for _ in range(jobs)]
    enqueue_s = time.perf_counter() - t0
    if before_drain:
        before_drain()

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
        drain_s = None
        while True:
            finished, failed = ended_counts(conn, finished_keys, failed_keys)
            all_exited = all(p.poll() is not None for p in procs)
            if drain_s is None and finished + failed >= jobs:
                drain_s = time.perf_counter() - t0
                if after_drain:
                    after_drain()
            if all_exited and drain_s is not None:
                break
            if all_exited:
                raise BenchError(
                    f"{system}: workers exited with only {finished}+{failed}/{jobs} jobs ended:\n" + tail(logs[0])
                )
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"{system}: only {finished}/{jobs} finished after {timeout:.0f}s:\n" + tail(logs[0]))
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
    return RunResult(system, run, jobs, enqueue_s, drain_s, steady_seconds(conn, ids), None, verified)


def run_rounds(
    conn,
    args,
    workdir: Path,
    redis_url: str,
    config_path: Path,
    systems: list[str],
    runs_of: Callable[[str], int],
    run_vq_round: Callable[[int], RunResult],
    progress: Console,
    run_rq_round: Callable[[int, str], RunResult] | None = None,
) -> list[RunResult]:
    """Interleave the systems round by round (vq, then RQ, then vq ...), so a slow spell of
    the machine hits all of them; print one progress line per drain."""
    results: list[RunResult] = []
    rounds = max(runs_of(s) for s in systems)
    for run in range(1, rounds + 1):
        for system in systems:
            if run > runs_of(system):
                continue
            if system == "vq":
                r = run_vq_round(run)
            elif run_rq_round is not None:
                r = run_rq_round(run, system)
            else:
                r = run_rq(conn, args, run, workdir, redis_url, system, args.timeout)
            results.append(r)
            steady = f"{r.steady_rate:,.0f}" if r.steady_rate else "-"
            progress.print(
                f"run {run} {LABELS[system]:<17} enqueue {r.enqueue_rate:7,.0f}/s  "
                f"drain {r.drain_s:6.2f}s = {r.drain_rate:7,.0f}/s  steady {steady}/s  "
                f"[dim]({'; '.join(r.verified)})[/]"
            )
    return results


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
                    "steady": (
                        out["vq"]["steady_jobs_per_s"] / out[base]["steady_jobs_per_s"]
                        if out["vq"]["steady_jobs_per_s"] and out[base]["steady_jobs_per_s"]
                        else None
                    ),
                    "enqueue": out["vq"]["enqueue_jobs_per_s"] / out[base]["enqueue_jobs_per_s"],
                }
    return {"systems": out, "ratios": ratios}


def print_table(
    console: Console, summary: dict, meta: dict, title: str | None = None, labels: dict[str, str] | None = None
) -> None:
    labels = labels or LABELS
    table = Table(
        title=title or f"Drain {meta['jobs']:,} no-op jobs, {meta['workers']} worker processes (median of runs)"
    )
    table.add_column("system")
    table.add_column("runs", justify="right")
    table.add_column("drain jobs/s", justify="right")
    table.add_column("per run", justify="right")
    table.add_column("drain s", justify="right")
    table.add_column("steady jobs/s", justify="right")
    table.add_column("enqueue jobs/s", justify="right")
    for system, s in summary["systems"].items():
        table.add_row(
            labels[system],
            str(s["runs"]),
            f"{s['drain_jobs_per_s']:,.0f}",
            " ".join(f"{v:,.0f}" for v in s["drain_jobs_per_s_runs"]),
            f"{s['drain_seconds_median']:.2f}",
            f"{s['steady_jobs_per_s']:,.0f}" if s["steady_jobs_per_s"] else "-",
            f"{s['enqueue_jobs_per_s']:,.0f}",
        )
    console.print(table)
    if summary["ratios"]:
        ratios = Table(title="vq ÷ RQ (above 1 = vq faster)")
        ratios.add_column("ratio")
        ratios.add_column("drain", justify="right")
        ratios.add_column("steady", justify="right")
        ratios.add_column("enqueue", justify="right")
        for name, r in summary["ratios"].items():
            base = name.split("/", 1)[1]
            ratios.add_row(
                f"vq / {LABELS[base]}",
                f"{r['drain']:.2f}",
                f"{r['steady']:.2f}" if r["steady"] else "-",
                f"{r['enqueue']:.2f}",
            )
        console.print(ratios)
    console.print(
        f"[dim]{versions_line(meta)}. drain = process spawn -> all jobs finished; "
        f"steady = first job start -> last job end (job timestamps).[/]"
    )


def environment(redis_version: str) -> dict:
    """Machine and versions, for the footnote and the JSON meta."""
    return {
        "machine": f"{platform.machine()} x{os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "rq": rq.__version__,
        "redis_py": redis.__version__,
        "redis_server": redis_version,
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def versions_line(meta: dict) -> str:
    """The footnote's `x86_64 x2 CPUs; Python 3.11.7, rq 3.0.0, redis-py 8.2.0, redis-server 7.0.15`
    from a meta dict made with environment()."""
    return (
        f"{meta['machine']}; Python {meta['python']}, rq {meta['rq']}, redis-py {meta['redis_py']}, "
        f"redis-server {meta['redis_server']}"
    )


def update_vq_config(path: Path, **sections) -> Path:
    """Set top-level sections (e.g. history={"enabled": False}, data_dir=...) in a config
    written by write_vq_config; the other sections stay as they are."""
    config = yaml.safe_load(path.read_text())
    config.update(sections)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def redis_cpu_seconds(conn: redis.Redis) -> float:
    """CPU time (user + sys) the Redis server has used so far: diff two readings for a phase."""
    info = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --------------------------------------------------------------------------- CPU of processes (Linux /proc)


def proc_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + sys, all threads) a live process has used so far; None if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def process_tree(pid: int) -> list[int]:
    """The process and all its live descendants (from /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return out


def listening_pids(port: int, pids: Sequence[int]) -> list[int]:
    """Those of `pids` that hold the TCP socket listening on `port` (via /proc/net/tcp inodes)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    found = []
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        found.append(pid)
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return found
