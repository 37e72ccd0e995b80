"""What the archiver's copy of ended jobs' logs costs (vq/job_log_store.py), with many jobs.

`python scripts/bench/log_archive.py [--jobs 10000] [--json]`: a private Redis holds `--jobs`
jobs' logs (3 lines each, as the worker's script writes them) in the pending set, and a
history database (the daemon's schema) takes the copies. Two ways of finding the jobs that
ended are timed, pass by pass as the archiver runs them (one pass every 0.5 s):

* "sampled", the first version: each pass checks a random 200 of the pending set;
* "seen", now: each pass copies the jobs whose end event the archiver read (up to 1,000,
  200 at a time), one SMISMEMBER keeping those that logged.

Two cases: A, `--jobs` jobs ended at once (how many passes and how long to copy them all);
B, `--jobs` jobs running with logs (what a pass costs when nothing ended), then 100 more
jobs end among them (how many passes until their logs are copied).
Redis commands are counted from INFO commandstats.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import PrivateRedis

from vq import job_log_store, keys
from vq.config import load_settings
from vq.history import db as historydb
from vq.history.archiver import LOGS_PER_PASS

PASS_EVERY = 0.5  # the archiver's LOGS_EVERY


def _populate(conn, count: int, status: str, prefix: str) -> list[str]:
    ids = [f"{prefix}{i:031x}" for i in range(count)]
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hset(keys.rq_job(job_id), mapping={"status": status})
            pipe.expire(keys.rq_job(job_id), 3600)
            for seq in (1, 2, 3):
                line = {"seq": seq, "t": time.time(), "level": "INFO", "msg": f"line {seq}", "attempt": 1}
                pipe.rpush(keys.job_log(job_id), json.dumps(line))
            pipe.hset(keys.job_log_meta(job_id), "seq", 3)
            pipe.sadd(keys.JOB_LOGS_PENDING, job_id)
        pipe.execute()
    return ids


def _commands(conn) -> int:
    return sum(int(v["calls"]) for v in conn.info("commandstats").values())


def _one_pass(conn, db, way: str, seen: list[str]) -> list[str]:
    """One archiver pass; returns the jobs seen ending that are left for the next."""
    if way == "sampled":
        members = conn.srandmember(keys.JOB_LOGS_PENDING, job_log_store.ARCHIVE_BATCH) or []
        job_log_store.archive_ended(conn, db, [m.decode() for m in members])
        return []
    taken = 0
    while seen and taken < LOGS_PER_PASS:
        chunk, seen = seen[: job_log_store.ARCHIVE_BATCH], seen[job_log_store.ARCHIVE_BATCH :]
        job_log_store.archive_ended(conn, db, chunk)
        taken += len(chunk)
    return seen


def _case(conn, settings, way: str, jobs: int) -> dict:
    conn.flushall()
    db = historydb.open_db(settings)
    with db.conn:
        db.conn.execute(f"DELETE FROM {job_log_store.TABLE}")
    ended = _populate(conn, jobs, "finished", "a")
    seen, passes, took, before = list(ended), 0, 0.0, _commands(conn)
    while conn.scard(keys.JOB_LOGS_PENDING) and passes < 10_000:
        start = time.perf_counter()
        seen = _one_pass(conn, db, way, seen)
        took += time.perf_counter() - start
        passes += 1
    a = {"passes": passes, "workSeconds": round(took, 2), "msPerPass": round(took / passes * 1000, 1),
         "commands": _commands(conn) - before, "secondsAtOnePassPer0.5s": passes * PASS_EVERY}  # fmt: skip
    conn.flushall()
    _populate(conn, jobs, "started", "b")
    before, start = _commands(conn), time.perf_counter()
    for _ in range(10):
        _one_pass(conn, db, way, [])
    idle = {
        "msPerPass": round((time.perf_counter() - start) * 100, 2),
        "commandsPerPass": (_commands(conn) - before) / 10,
    }
    few = _populate(conn, 100, "finished", "c")
    seen, passes = list(few), 0
    while any(conn.smismember(keys.JOB_LOGS_PENDING, few)) and passes < 10_000:
        seen = _one_pass(conn, db, way, seen)
        passes += 1
    db.conn.close()
    return {"A": a, "Bidle": idle, "Bpasses": passes, "BsecondsAtOnePassPer0.5s": passes * PASS_EVERY}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs with logs in each case")
    parser.add_argument("--json", action="store_true", help="a JSON summary on stdout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = PrivateRedis(workdir)
        conn = server.start()
        try:
            config = workdir / "config.yaml"
            config.write_text(f"data_dir: {workdir}\nredis: {{url: '{server.url}'}}\n")
            settings = load_settings(str(config))
            results = {way: _case(conn, settings, way, args.jobs) for way in ("sampled", "seen")}
        finally:
            server.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for way, r in results.items():
        print(
            f"{way:8} A: {args.jobs:,} ended jobs copied in {r['A']['passes']} passes "
            f"({r['A']['secondsAtOnePassPer0.5s']:.1f} s at one pass per 0.5 s), {r['A']['msPerPass']} ms of work "
            f"per pass, {r['A']['commands']:,} Redis commands | B: a pass with {args.jobs:,} running jobs' logs "
            f"pending and none ended: {r['Bidle']['commandsPerPass']:.0f} commands, {r['Bidle']['msPerPass']} ms; "
            f"100 jobs ending among them copied after {r['Bpasses']} passes ({r['BsecondsAtOnePassPer0.5s']:.1f} s)"
        )


if __name__ == "__main__":
    main()
