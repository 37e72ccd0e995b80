"""The archiver's copy of ended jobs' logs into the history database (vq/job_log_store.py,
vq/history/log_copies.py): driven by the end events it reads, so a job's log is
copied at once however many running jobs have logs waiting, and a walk over the pending set
finds the ends it did not see. Real daemon, real Redis, real SQLite."""

from __future__ import annotations

import json
import sqlite3
import time

RUNNING = 5_000  # jobs running with logs: a random sample of 200 per pass found one end in 25 passes


def _fake_jobs(redis_conn, count: int, status: str, prefix: str) -> list[str]:
    """Jobs as the pending set and the job hash show them (what the archiver reads), with 2 lines each."""
    ids = [f"{prefix}{i:031x}" for i in range(count)]
    with redis_conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hset(f"rq:job:{job_id}", mapping={"status": status})
            for seq in (1, 2):
                line = {"seq": seq, "t": time.time(), "level": "INFO", "msg": f"old {seq}", "attempt": 1}
                pipe.rpush(f"vq:log:{job_id}", json.dumps(line))
            pipe.sadd("vq:logs:pending", job_id)
        pipe.execute()
    return ids


def _archived_lines(vq, job_id: str) -> list[str]:
    db = sqlite3.connect(vq.data_dir / "history.db")
    try:
        return [row[0] for row in db.execute("SELECT message FROM job_logs WHERE job_id = ? ORDER BY seq", (job_id,))]
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        db.close()


def test_an_ended_jobs_log_is_copied_at_once_among_thousands_of_running_ones(vq, redis_conn):
    running = _fake_jobs(redis_conn, RUNNING, "started", "a")
    ended_unseen = _fake_jobs(
        redis_conn, 3, "finished", "b"
    )  # ended before the archiver ran: its first walk finds them
    vq.configure(job_types={"test-log": {"handler": "tests.plugins:logger", "attempts": 1}})
    vq.start_daemon(workers=1)
    first = vq.submit("test-log", {"count": 1}, "--user", "u")
    vq.wait_done(first)
    deadline = time.monotonic() + 30  # the archiver takes the lease a few seconds after the daemon starts
    while redis_conn.sismember("vq:logs:pending", first):
        assert time.monotonic() < deadline, "no archiver copied logs"
        time.sleep(0.05)
    job_id = vq.submit("test-log", {"count": 2}, "--user", "u")
    assert vq.wait_done(job_id)["status"] == "finished"
    ended_at = time.monotonic()
    while redis_conn.sismember("vq:logs:pending", job_id):
        assert time.monotonic() - ended_at < 3, "its log was not copied within 3 s of its end"
        time.sleep(0.05)
    assert _archived_lines(vq, job_id) == ["line 1", "line 2"]
    deadline = time.monotonic() + 20
    while any(redis_conn.smismember("vq:logs:pending", ended_unseen)):
        assert time.monotonic() < deadline, "the walk over the pending set did not copy jobs ended unseen"
        time.sleep(0.1)
    assert all(_archived_lines(vq, job_id) == ["old 1", "old 2"] for job_id in ended_unseen)
    assert redis_conn.scard("vq:logs:pending") == RUNNING  # the running ones wait for their end
    assert all(redis_conn.smismember("vq:logs:pending", running[:100]))
