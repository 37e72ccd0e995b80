"""Chaos run: vq never loses a job and never exceeds a limit, while its workers are
SIGKILLed or stopped, Redis crashes or pauses, and daemons are cut off from Redis.

Why: vq promises that a submitted job always ends finished or in the dead-letter queue, and
that no more jobs run at once than a limit allows, on every host. A killed worker's job must
come back when its lease lapses (stalled recovery), a crashed Redis must come back from its
AOF with every acknowledged write, no concurrency slot may stay taken, and a worker that
stalls past its lease must stop (or be killed) before its slot goes to another job (fenced
leases). The test suite checks each path alone; this run hits them all at once, at volume,
across several daemons sharing one Redis, and counts what came out, judging the limits by
the handlers' own records (stamps.py), not by vq's view.

How: a private `redis-server` (AOF, fsync always) and a temp config with one custom type,
`chaos-work` (chaos_handlers.work: records each execution in the Redis list
`chaos:executions`, stamps its start, ticks and end into a file, sleeps 50-300 ms reporting
progress), limited to 4 at once, 2 per user. Each daemon reaches Redis through a proxy of
its own that the run can cut. Half the jobs are submitted before the daemons start, the rest
while they run. Meanwhile a chaos thread, every 1-3 s, does one of `--faults`:
  kill   SIGKILL a random worker process of a random daemon;
  stop   SIGSTOP a random worker for longer than a lease, then SIGCONT;
  pause  CLIENT PAUSE Redis (ALL) for longer than a lease;
  cut    cut a random daemon off from Redis for longer than a lease, then heal (what it
         sent meanwhile arrives late, as after a partition);
and, once in the middle, SIGKILLs redis-server and restarts it on the same port and
directory. When every job is terminal (or none has ended for 60 s, or on timeout) the
daemons get SIGTERM and the figures are printed. The exit code is 1 if a job was lost, a
slot leaked or a limit was exceeded. In that case the temp dir (daemon logs, AOF, stamps) is
kept, and each lost job is shown with where it still is and its events.

    python scripts/chaos/run.py [--jobs 2000] [--daemons 2] [--workers 3] [--kills 15]
                                [--faults kill,stop,pause,cut] [--seed N] [--timeout 600]
                                [--json] [--keep]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # submit() imports the type's handler module to look for a plan

import redis
import yaml
from chaos_handlers import EXECUTIONS
from proxy import CuttableProxy
from rich.console import Console
from rich.table import Table
from rq import worker_registration
from rq.job import Job
from rq.serializers import JSONSerializer
from stamps import most_at_once
from stamps import runs as stamped_runs

from vq import keys
from vq.config import load_settings
from vq.connection import make_client
from vq.model import status_of
from vq.procutil import die_with_parent
from vq.submission import Submission, submit

JOB_TYPE = "chaos-work"
USERS = 20
TYPE_LIMIT = 4
TIER, USER_LIMIT = "basic", 2
LEASE_MS = 3000
FAULT_SECONDS = LEASE_MS / 1000 + 3  # a stop, a pause or a cut outlasts the lease
FAULTS = ("kill", "stop", "pause", "cut")
TERMINAL = ("finished", "failed", "canceled")
REDIS_DOWN_SECONDS = 2.0
STUCK_SECONDS = 60  # leases (3 s) and stalled checks (2 s) recover a killed job well within this
DOWN = (redis.ConnectionError, redis.TimeoutError)
err = Console(stderr=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def retrying(action, patience: float = 60.0):
    """Run `action`, riding out a Redis outage (the chaos thread restarts it)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return action()
        except DOWN:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class RedisServer:
    """A private redis-server that can be killed -9 and restarted on the same port and dir."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                probe.ping()  # answers only once the AOF is loaded
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start (see {self.dir / 'redis.log'})") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_config(workdir: Path, url: str, name: str = "vq-chaos.yaml") -> Path:
    config = {
        "redis": {"url": url},
        "data_dir": str(workdir / "vq-data"),
        "queue": {
            "defaultJobOptions": {"removeOnComplete": False, "removeOnFail": False, "attempts": 3},
            "settings": {"lockDuration": LEASE_MS, "stalledInterval": 2000, "maxStalledCount": 3},
        },
        "concurrency": {"type": {JOB_TYPE: TYPE_LIMIT}, "user": {TIER: USER_LIMIT}},
        "daemon": {"shutdownGrace": 10000},
        "http": {"enabled": False},  # the run needs no API, and must not take an operator's port
        "job_types": {JOB_TYPE: {"handler": "chaos_handlers:work", "attempts": 3, "timeout": 30000}},
    }
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_daemon(index: int, workers: int, config: Path, redis_url: str, workdir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_"))}
    env.update(
        VQ_CONFIG=str(config),
        CHAOS_REDIS_URL=redis_url,
        CHAOS_STAMPS=str(workdir / "stamps.log"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    )
    with open(workdir / f"daemon-{index}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "vq", "daemon", "--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            preexec_fn=lambda: die_with_parent(signal.SIGKILL),
        )  # never outlive this run


def wait_ready(workdir: Path, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = [(workdir / f"daemon-{i}.log").read_text(errors="replace") for i in range(count)]
        if all("ready: " in log for log in logs):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the daemons were not ready within {timeout:g} s (see {workdir})")


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            out.update(int(p) for p in Path(path).read_text().split())
        except OSError:
            pass
    return out


def worker_pids(conn: redis.Redis, daemon_pid: int) -> list[int]:
    """The daemon's children that are RQ workers (named vq.<host>.<i>.<pid>), not its scheduler."""
    registered = {
        int(k.rsplit(".", 1)[1])
        for k in worker_registration.get_keys(connection=conn)
        if k.rsplit(".", 1)[-1].isdigit()
    }
    return sorted(children(daemon_pid) & registered)


class Chaos(threading.Thread):
    """Every 1-3 s one of the faults (a worker SIGKILLed or stopped past its lease, Redis
    paused, a daemon cut off); once, midway, kill -9 Redis."""

    def __init__(
        self,
        rng: random.Random,
        conn,
        daemons: list[subprocess.Popen],
        server: RedisServer,
        kills: int,
        faults: tuple[str, ...] = ("kill",),
        proxies: list[CuttableProxy] = (),
    ):
        super().__init__(name="chaos", daemon=True)
        self.rng, self.conn, self.daemons, self.server, self.kills = rng, conn, daemons, server, kills
        self.faults, self.proxies = faults, list(proxies)
        self.killed: list[dict] = []
        self.done: list[dict] = []  # every fault, in order
        self.redis_restart: dict | None = None
        self.error: BaseException | None = None
        self.stop = threading.Event()  # set by the main thread when the run is over
        self.t0 = time.monotonic()

    def run(self) -> None:
        try:
            schedule = [self.faults[i % len(self.faults)] for i in range(self.kills)]  # each fault at least once
            self.rng.shuffle(schedule)
            while len(self.done) < self.kills and not self.stop.wait(self.rng.uniform(1.0, 3.0)):
                fault = schedule[len(self.done)]
                {
                    "kill": self._kill_worker,
                    "stop": self._stop_worker,
                    "pause": self._pause_redis,
                    "cut": self._cut_daemon,
                }[fault]()
                if self.redis_restart is None and len(self.done) >= self.kills // 2:
                    self._restart_redis()
            self.stop.wait(FAULT_SECONDS)  # the last stop, pause or cut has ended
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            self.error = exc

    def _kill_worker(self) -> None:
        pid = self._worker(lambda pid: os.kill(pid, signal.SIGKILL))
        if pid:
            self.killed.append({"t": self._t(), "pid": pid})
            self._did("kill", f"SIGKILL worker {pid}", pid=pid)

    def _stop_worker(self) -> None:  # not `_stop`: threading.Thread has one
        """SIGSTOP a worker past its lease (its daemon should kill it), SIGCONT it after."""

        def stop(pid: int) -> None:
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(FAULT_SECONDS, _cont, args=(pid,)).start()

        pid = self._worker(stop)
        if pid:
            self._did("stop", f"SIGSTOP worker {pid} for {FAULT_SECONDS:g} s", pid=pid)

    def _pause_redis(self) -> None:
        retrying(
            lambda: redis.Redis(port=self.server.port).execute_command(
                "CLIENT", "PAUSE", int(FAULT_SECONDS * 1000), "ALL"
            )
        )
        self._did("pause", f"CLIENT PAUSE {FAULT_SECONDS:g} s")

    def _cut_daemon(self) -> None:
        index = self.rng.randrange(len(self.proxies))
        self.proxies[index].cut()
        threading.Timer(FAULT_SECONDS, self.proxies[index].heal).start()
        self._did("cut", f"daemon {index} cut off from Redis for {FAULT_SECONDS:g} s", daemon=index)

    def _did(self, fault: str, what: str, **detail) -> None:
        self.done.append({"t": self._t(), "fault": fault, **detail})
        err.print(f"[dim]chaos: {what} ({len(self.done)}/{self.kills})[/]")

    def _t(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def _worker(self, act) -> int | None:
        """Apply `act` to a random worker of a random daemon; its pid, or None."""
        for _ in range(20):  # a daemon may be between two workers (backoff after Redis came back)
            index = self.rng.randrange(len(self.daemons))
            try:
                pids = worker_pids(self.conn, self.daemons[index].pid)
            except DOWN:
                pids = []
            if pids:
                pid = self.rng.choice(pids)
                try:
                    act(pid)
                except ProcessLookupError:
                    continue
                return pid
            time.sleep(0.25)
        return None

    def _restart_redis(self) -> None:
        err.print("[dim]chaos: kill -9 redis-server[/]")
        started = time.monotonic()
        self.server.kill()
        time.sleep(REDIS_DOWN_SECONDS)
        self.server.start()
        self.redis_restart = {"t": round(started - self.t0, 1), "downSeconds": round(time.monotonic() - started, 2)}
        err.print(f"[dim]chaos: redis-server back after {self.redis_restart['downSeconds']} s[/]")


def _cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass  # its daemon killed it for holding a lease too long: the point


def submit_jobs(conn, settings, rng: random.Random, numbers: range, pace: float = 0.0) -> list[str]:
    """Submit jobs n in `numbers`, each under an idempotency key, so retrying one that Redis
    interrupted returns the job it may have created instead of a second one."""
    ids = []
    for n in numbers:
        sub = Submission(
            job_type=JOB_TYPE,
            data={"n": n},
            user_id=f"chaos-user-{rng.randrange(USERS):02d}",
            subscription=TIER,
            idempotency_key=f"chaos-{n}",
        )
        ids.append(retrying(lambda sub=sub: submit(conn, settings, sub)))
        if pace:
            time.sleep(pace)
    return ids


def statuses(conn, ids: list[str]) -> list[str | None]:
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Job.key_for(job_id), "status")
        return [s.decode() if s else None for s in pipe.execute()]


def live_slots(conn) -> dict[str, int]:
    """Entries of the running zsets whose lease has not lapsed: a slot someone still holds."""
    now = int(time.time() * 1000)
    out = {}
    for pattern in (keys.running_type("*"), keys.running_user("*")):
        for key in conn.scan_iter(match=pattern, count=500):
            live = conn.zcount(key, now, "+inf")
            if live:
                out[key.decode()] = live
    return out


def job_events(conn) -> dict[str, list[str]]:
    """Each job's event names in vq:events, oldest first."""
    events: dict[str, list[str]] = {}
    start = "-"
    while True:
        entries = conn.xrange(keys.EVENTS, min=start, count=5000)
        for _, fields in entries:
            events.setdefault(fields[b"jobId"].decode(), []).append(fields[b"event"].decode())
        if len(entries) < 5000:
            return events
        start = "(" + entries[-1][0].decode()


def whereabouts(conn, job: Job, events: list[str]) -> dict:
    """Where a lost job is: its status, whether any list still holds it or it holds a
    running lease, and its events (without progress)."""
    return {
        "status": status_of(job),
        "inQueueList": conn.lpos(f"rq:queue:{job.origin}", job.id) is not None,
        "inWaitingLine": any(conn.zscore(k, job.id) is not None for k in keys.wait_since_all(JOB_TYPE)),
        "holdsLease": conn.zscore(keys.running_type(JOB_TYPE), job.id) is not None,
        "events": [e for e in events if e != "progress"],
    }


def stop_daemons(daemons: list[subprocess.Popen]) -> list[int | None]:
    for proc in daemons:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in daemons:
        try:
            codes.append(proc.wait(60))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


def run(args) -> dict:
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="vq-chaos-"))
    server = RedisServer(workdir)
    daemons: list[subprocess.Popen] = []
    proxies: list[CuttableProxy] = []
    try:
        server.start()
        settings = load_settings(write_config(workdir, server.url), env={})
        proxies = [CuttableProxy(server.port) for _ in range(args.daemons)]
        configs = [
            write_config(workdir, f"redis://127.0.0.1:{proxy.port}/0", f"vq-chaos-{i}.yaml")
            for i, proxy in enumerate(proxies)
        ]
        conn = make_client(settings)
        t0 = time.monotonic()
        before = args.jobs // 2
        ids = submit_jobs(conn, settings, rng, range(before))
        err.print(f"submitted {before} jobs; starting {args.daemons} daemons x {args.workers} workers")
        daemons = [start_daemon(i, args.workers, configs[i], server.url, workdir) for i in range(args.daemons)]
        wait_ready(workdir, args.daemons)  # the faults are for running daemons, not their start-up
        chaos = Chaos(rng, conn, daemons, server, args.kills, tuple(args.faults.split(",")), proxies)
        chaos.start()
        # The rest arrive over about 20 s, while the chaos runs.
        ids += submit_jobs(conn, settings, rng, range(before, args.jobs), pace=20.0 / max(1, args.jobs - before))
        err.print(f"submitted all {args.jobs} jobs; waiting for them to end")
        done, changed = 0, time.monotonic()
        while time.monotonic() - t0 < args.timeout:
            try:
                now_done = sum(s in TERMINAL for s in statuses(conn, ids))
            except DOWN:
                now_done = done
            if now_done != done:
                done, changed = now_done, time.monotonic()
            if done == len(ids) and not chaos.is_alive():
                break
            if not chaos.is_alive() and time.monotonic() - changed > STUCK_SECONDS:
                err.print(f"[red]{len(ids) - done} jobs made no progress for {STUCK_SECONDS} s: giving up[/]")
                break
            if any(p.poll() is not None for p in daemons):
                err.print("[red]a daemon exited during the run[/]")
                break
            time.sleep(1.0)
        chaos.stop.set()
        chaos.join(timeout=30)
        elapsed = time.monotonic() - t0
        daemon_exits = stop_daemons(daemons)
        result = measure(conn, ids, chaos, elapsed, daemon_exits, args, workdir / "stamps.log")
        args.keep = args.keep or failed(result)  # keep the evidence
        result["workdir"] = str(workdir) if args.keep else None
        return result
    finally:
        stop_daemons(daemons)
        for proxy in proxies:
            proxy.close()
        server.kill()
        if args.keep:
            err.print(f"kept {workdir} (daemon logs, redis AOF)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def failed(result: dict) -> bool:
    return bool(
        result["lost"]
        or result["slotsLeaked"]
        or result["mostAtOnceType"] > result["typeLimit"]
        or result["mostAtOnceUser"] > result["userLimit"]
    )


def measure(conn, ids: list[str], chaos: Chaos, elapsed: float, daemon_exits, args, stamps: Path) -> dict:
    jobs = Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)
    status = [status_of(j) if j else "missing" for j in jobs]
    by_status = Counter(status)
    events = job_events(conn)
    lost = {
        j.id if j else i: whereabouts(conn, j, events.get(i, [])) if j else {"status": "missing"}
        for i, j, s in zip(ids, jobs, status)
        if s not in TERMINAL
    }
    failed_categories = Counter(
        (j.meta.get("error") or {}).get("category", "?") for j, s in zip(jobs, status) if s == "failed"
    )
    runs = Counter(x.decode() for x in conn.lrange(EXECUTIONS, 0, -1))
    wanted = set(ids)
    finished_unrun = [i for i, s in zip(ids, status) if s == "finished" and runs[i] == 0]
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.zscore(keys.type_jobs(JOB_TYPE), job_id)
        unlisted = [i for i, score in zip(ids, pipe.execute()) if score is None]
    slots = live_slots(conn)
    handler_runs = stamped_runs(stamps)
    by_user = most_at_once(handler_runs, key=lambda run: run.user)
    return {
        "seed": args.seed,
        "daemons": args.daemons,
        "workersPerDaemon": args.workers,
        "submitted": len(ids),
        "distinctIds": len(wanted),
        "finished": by_status["finished"],
        "deadLettered": by_status["failed"],
        "canceled": by_status["canceled"],
        "deadLetterCategories": dict(failed_categories),
        "lost": len(lost),
        "lostJobs": dict(list(lost.items())[:20]),
        "executions": sum(runs[i] for i in wanted),
        "extraExecutions": sum(max(0, runs[i] - 1) for i in wanted),
        "jobsRunMoreThanOnce": sum(1 for i in wanted if runs[i] > 1),
        "rerunsAfterFinishing": sum(max(0, events.get(i, []).count("finished") - 1) for i in wanted),
        "finishedWithoutExecution": len(finished_unrun),
        "notInJobIndex": len(unlisted),
        "slotsLeaked": sum(slots.values()),
        "leakedSlotKeys": slots,
        "typeLimit": TYPE_LIMIT,
        "userLimit": USER_LIMIT,
        "mostAtOnceType": most_at_once(handler_runs).get(JOB_TYPE, 0),
        "mostAtOnceUser": max(by_user.values(), default=0),
        "usersOverLimit": {user: n for user, n in by_user.items() if n > USER_LIMIT},
        "staleWritesRefused": int(conn.get(keys.STALE_REFUSED) or 0),
        "jobsStoppedLeaseLost": int(conn.get(keys.LEASES_LOST) or 0),
        "faults": dict(Counter(f["fault"] for f in chaos.done)),
        "workerKills": len(chaos.killed),
        "kills": chaos.killed,
        "redisRestart": chaos.redis_restart,
        "chaosError": repr(chaos.error) if chaos.error else None,
        "daemonExitCodes": daemon_exits,
        "seconds": round(elapsed, 1),
    }


AT_LEAST_ONCE = (
    "vq delivers at least once: a SIGKILLed worker's job was interrupted mid-run, so when its "
    "lease lapses stalled recovery runs it again from the start (not charged as an attempt). "
    "A job killed before it recorded its run, or one whose run was lost with Redis, shows no extra."
)


def report(result: dict, console: Console) -> None:
    table = Table(
        title=f"vq chaos run: {result['daemons']} daemons x {result['workersPerDaemon']} workers, seed {result['seed']}"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("note")
    ok = lambda n: "[green]0[/]" if n == 0 else f"[bold red]{n}[/]"  # noqa: E731
    within = lambda n, limit: f"[green]{n} / {limit}[/]" if n <= limit else f"[bold red]{n} / {limit}[/]"  # noqa: E731
    restart = result["redisRestart"]
    rows = [
        ("jobs submitted", f"{result['submitted']:,}", f"{result['distinctIds']:,} distinct ids"),
        ("finished", f"{result['finished']:,}", ""),
        (
            "dead-lettered (failed)",
            f"{result['deadLettered']:,}",
            ", ".join(f"{k}: {v}" for k, v in result["deadLetterCategories"].items()),
        ),
        ("canceled", f"{result['canceled']:,}", ""),
        ("lost", ok(result["lost"]), "submitted, not terminal at the end or missing; must be 0"),
        (
            "executions beyond one per job",
            f"{result['extraExecutions']:,}",
            f"{result['jobsRunMoreThanOnce']} jobs ran more than once; {result['executions']:,} executions in all",
        ),
        (
            "re-runs of already finished jobs",
            ok(result["rerunsAfterFinishing"]),
            "part of the extra executions; no crash explains these (see README)",
        ),
        ("finished without a recorded run", ok(result["finishedWithoutExecution"]), ""),
        ("missing from vq's job index", ok(result["notInJobIndex"]), "not listed by `vq jobs`"),
        ("slots leaked", ok(result["slotsLeaked"]), "live entries in vq:running:type:* / user:*; must be 0"),
        (
            "most at once, type",
            within(result["mostAtOnceType"], result["typeLimit"]),
            "by the handlers' own start/tick/end stamps",
        ),
        (
            "most at once, one user",
            within(result["mostAtOnceUser"], result["userLimit"]),
            ", ".join(f"{u}: {n}" for u, n in result["usersOverLimit"].items()),
        ),
        (
            "stale writes refused",
            str(result["staleWritesRefused"]),
            "writes of workers whose lease had passed to another (vq:fence:refused)",
        ),
        ("jobs stopped for a lost lease", str(result["jobsStoppedLeaseLost"]), "vq:fence:lost"),
        ("faults", ", ".join(f"{k} {v}" for k, v in result["faults"].items()), "kill/stop/pause/cut"),
        ("workers SIGKILLed", str(result["workerKills"]), ""),
        (
            "redis-server kill -9 + restart",
            "yes" if restart else "no",
            f"at {restart['t']} s, down {restart['downSeconds']} s" if restart else "",
        ),
        ("daemon exit codes (SIGTERM)", " ".join(map(str, result["daemonExitCodes"])), ""),
        ("time taken", f"{result['seconds']} s", "first submission -> every job terminal"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if result["lostJobs"]:
        console.print("[red]lost jobs (first 20):[/]")
        for job_id, where in result["lostJobs"].items():
            console.print(f"  {job_id}: {json.dumps(where)}")
    if result["leakedSlotKeys"]:
        console.print(f"[red]leaked slots: {result['leakedSlotKeys']}[/]")
    if result["chaosError"]:
        console.print(f"[red]the chaos thread failed: {result['chaosError']}[/]")
    console.print(f"[dim]{AT_LEAST_ONCE}[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--daemons", type=int, default=2)
    parser.add_argument("--workers", type=int, default=3, help="worker processes per daemon")
    parser.add_argument("--kills", type=int, default=15, help="faults to cause, one every 1-3 s")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help="which faults, comma-separated: kill (SIGKILL a worker), stop (SIGSTOP a worker past "
        "its lease), pause (CLIENT PAUSE Redis past a lease), cut (a daemon cut off from Redis)",
    )
    parser.add_argument("--seed", type=int, default=None, help="chaos schedule and user spread (default: random)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every job to end")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (daemon logs, AOF)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        err.print("redis-server is not on PATH (apt-get install redis-server)")
        return 2
    unknown = set(args.faults.split(",")) - set(FAULTS)
    if unknown:
        err.print(f"--faults: unknown {', '.join(sorted(unknown))} (known: {', '.join(FAULTS)})")
        return 2
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    result = run(args)
    result["atLeastOnce"] = AT_LEAST_ONCE
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result, Console(width=None if sys.stdout.isatty() else 140, emoji=False))
    return 1 if failed(result) else 0


if __name__ == "__main__":
    sys.exit(main())
