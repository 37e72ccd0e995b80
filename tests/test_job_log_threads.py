"""Per-job logs from a handler's own threads and on the ways a job stops (vq/job_logs.py):
a ThreadPoolExecutor's lines are its job's; a process running several jobs at once gives
no job a line it cannot place; a cold stop, a cancel and a worker's exit write the lines
still buffered. Real daemons, the handler tests/plugins.py pooled_logger."""

from __future__ import annotations

import json
import time

from tests.plugins import handler_pid

POOLED = {"handler": "tests.plugins:pooled_logger", "attempts": 1, "timeout": 120000}


def _messages(vq, job_id: str) -> list[str]:
    proc = vq.run("logs", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line)["message"] for line in proc.stdout.splitlines()]


def _until_messages(vq, job_id: str, want: set[str], timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        got = _messages(vq, job_id)
        if want <= set(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def _held_lines_then_the_workers_own(got: list[str], job_id: str) -> None:
    """The lines the handler logged before it was held, then (logged while the job ran, so
    the job's) what the worker said about stopping it."""
    assert got[:3] == ["pool 1", "nested 1", "handler done logging"], got
    assert all(job_id in line for line in got[3:]), got


def test_a_handlers_thread_pool_and_its_threads_log_into_the_job(vq):
    """The default worker runs one job at a time: lines from the handler's pool, from
    threads those start, from a pool a previous job created and from a thread started below
    `threading` are all the job's."""
    vq.configure(job_types={"test-pool": POOLED})
    vq.start_daemon(workers=1)
    first = vq.submit("test-pool", {"pool": 3, "shared": 1}, "--user", "u")
    assert vq.wait_done(first)["status"] == "finished"
    second = vq.submit("test-pool", {"pool": 2, "shared": 2, "stray": 2}, "--user", "u")
    assert vq.wait_done(second)["status"] == "finished"
    got = _messages(vq, first)
    assert sorted(got) == sorted(["pool 1", "pool 2", "pool 3", "nested 1", "nested 2", "nested 3", "shared 1",
                                  "handler done logging"]), got  # fmt: skip
    assert got[-1] == "handler done logging"
    got = _messages(vq, second)  # the shared pool's thread was started by the first job: now it logs for this one
    assert sorted(got) == sorted(["pool 1", "pool 2", "nested 1", "nested 2", "shared 1", "shared 2", "stray 1",
                                  "stray 2", "handler done logging"]), got  # fmt: skip


def test_thread_workers_keep_their_own_pools_lines_and_drop_unplaceable_ones(vq, redis_conn):
    """Two jobs at once in one process: each has its own pool's lines, none has the
    other's, and a line from a thread no job started is nobody's."""
    vq.configure(job_types={"test-pool": {**POOLED, "concurrencyPerWorker": 2}})
    vq.start_daemon(workers=1)
    first = vq.submit("test-pool", {"gate": "both", "pool": 2, "stray": 2}, "--user", "a")
    second = vq.submit("test-pool", {"gate": "both", "pool": 3}, "--user", "b")
    assert handler_pid(redis_conn, first) == handler_pid(redis_conn, second)  # one process, two threads
    vq.open_gate("both")
    for job_id, pool in ((first, 2), (second, 3)):
        assert vq.wait_done(job_id)["status"] == "finished"
        want = [*(f"pool {n}" for n in range(1, pool + 1)), *(f"nested {n}" for n in range(1, pool + 1))]
        got = _messages(vq, job_id)
        assert sorted(got) == sorted([*want, "handler done logging"]), got


def test_a_cold_stop_writes_the_lines_the_periodic_write_has_not(vq, redis_conn):
    """The periodic write is off (data.hold): the job's lines reach Redis only because the
    requeue at the end of the grace period ends its handler, which writes them."""
    vq.configure(job_types={"test-pool": POOLED})
    daemon = vq.start_daemon("--grace", "1", workers=1)
    job_id = vq.submit("test-pool", {"hold": True, "pool": 1, "gate": "never"}, "--user", "u")
    handler_pid(redis_conn, job_id)
    time.sleep(1.0)  # at its gate
    assert _messages(vq, job_id) == []  # held in the worker's buffer
    vq.stop_daemon(daemon)
    _held_lines_then_the_workers_own(_messages(vq, job_id), job_id)


def test_a_cancel_now_writes_the_buffered_lines_in_process_and_in_a_forked_child(vq, redis_conn):
    for isolation in ("process", "fork"):
        vq.configure(job_types={"test-pool": {**POOLED, "isolation": isolation}})
        daemon = vq.start_daemon(workers=1)
        job_id = vq.submit("test-pool", {"hold": True, "pool": 1, "gate": "never"}, "--user", "u")
        handler_pid(redis_conn, job_id)
        time.sleep(1.0)
        assert _messages(vq, job_id) == [], isolation
        assert vq.run("cancel", job_id, "--now").returncode == 0
        assert vq.wait_done(job_id)["status"] == "canceled"
        _held_lines_then_the_workers_own(_messages(vq, job_id), job_id)
        vq.stop_daemon(daemon)


def test_a_worker_exiting_with_thread_jobs_still_running_writes_their_lines(vq, redis_conn):
    """Thread workers' jobs still running when the grace period is over die with their
    process: it writes what they logged first (job_logs.flush_all)."""
    vq.configure(job_types={"test-pool": {**POOLED, "concurrencyPerWorker": 2}}, daemon={"shutdownGrace": 1000})
    daemon = vq.start_daemon("--grace", "1", workers=1)
    ids = [vq.submit("test-pool", {"hold": True, "pool": 1, "gate": "never"}, "--user", u) for u in "ab"]
    for job_id in ids:
        handler_pid(redis_conn, job_id)
    time.sleep(1.0)
    assert [_messages(vq, job_id) for job_id in ids] == [[], []]
    vq.stop_daemon(daemon)
    for job_id in ids:
        _held_lines_then_the_workers_own(_messages(vq, job_id), job_id)
