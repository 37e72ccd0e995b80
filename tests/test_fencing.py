"""Fenced leases under the faults that are not kills: a worker stopped (SIGSTOP) past its
lease, Redis paused (CLIENT PAUSE) past it, and a worker whose lease passed to another
holder while it was away. Limits are judged by the handlers' own records (scripts/chaos/stamps.py),
not by vq's view of them."""

from __future__ import annotations

import os
import signal
import time

import pytest

from scripts.chaos.stamps import most_at_once, runs

STAMP_TYPE = {"handler": "scripts.chaos.stamps:stamped", "attempts": 1, "timeout": 120000}


def _configure(vq, limit: int, lease_ms: int = 3000) -> None:
    vq.configure(
        job_types={"test-stamp": STAMP_TYPE},
        concurrency={"type": {"test-stamp": limit}, "user": {"free": 1, "basic": 2, "pro": 5, "enterprise": 10}},
        queue={
            "defaultJobOptions": {"removeOnComplete": False},
            "settings": {"lockDuration": lease_ms, "stalledInterval": 1000, "maxStalledCount": 1},
        },
    )


def _wait_runs(path, count: int, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(path)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} runs did not start within {timeout}s: {runs(path)}")


def _freeze(pid: int, seconds: float) -> float:
    """SIGSTOP the process for `seconds`, then SIGCONT it (if it is still there); returns
    when it was stopped (epoch seconds)."""
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.time()
    try:
        time.sleep(seconds)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    return stopped_at


def _events(redis_conn, job_id: str) -> list[tuple[str, float]]:
    return [
        (fields[b"event"].decode(), int(fields[b"ts"]) / 1000)
        for _id, fields in redis_conn.xrange("vq:events")
        if fields[b"jobId"].decode() == job_id
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_a_worker_stopped_past_its_lease_is_killed_before_the_lease_lapses(vq, redis_conn, tmp_path):
    """Type limit 1, lease 3 s, the worker running the first job stopped with SIGSTOP for 8 s:
    its daemon kills it before the lease can lapse, so the job recovery gives to the other
    worker never runs beside it, and the job is never `queued` while a handler runs it."""
    stamps = tmp_path / "stamps.log"
    _configure(vq, limit=1)
    first = vq.submit("test-stamp", {"seconds": 4, "stamps": str(stamps)}, "--user", "u", "--subscription", "pro")
    second = vq.submit("test-stamp", {"seconds": 1, "stamps": str(stamps)}, "--user", "u", "--subscription", "pro")
    vq.start_daemon(workers=2)
    frozen = _wait_runs(stamps, 1)[0]
    assert frozen.job_id == first
    time.sleep(0.3)
    stopped_at = _freeze(frozen.pid, 8)
    for job_id in (first, second):
        assert vq.wait_for(job_id, timeout=40)["status"] == "finished", vq.daemon_log()[-3000:]
    all_runs = runs(stamps)
    assert most_at_once(all_runs) == {"test-stamp": 1}, all_runs
    assert not _alive(frozen.pid), "the stopped worker was killed"
    log = vq.daemon_log()
    assert "held a job's lease past its deadline" in log and "killed" in log
    # Killed within the lease: it stopped stamping when it was stopped, and the job was put
    # back in line (its `stalled` event) only after that, never while its handler ran.
    frozen_runs = [r for r in all_runs if r.pid == frozen.pid]
    assert frozen_runs and all(r.last <= stopped_at + 0.1 for r in frozen_runs), frozen_runs
    stalled = [at for event, at in _events(redis_conn, first) if event == "stalled"]
    assert stalled and min(stalled) > stopped_at + 2.4, (stalled, stopped_at)  # not before the lease's end
    assert [r.job_id for r in all_runs].count(first) == 2  # run again, once, after recovery


def test_redis_paused_past_the_lease_stops_running_jobs_and_the_limit_holds(vq, redis_conn, tmp_path):
    """CLIENT PAUSE 9 s with a 3 s lease and type limit 2: the workers cannot renew, so they
    stop their jobs before the leases lapse; when Redis answers again, admission hands the
    slots to waiting jobs and nothing ran beside them. Every job finishes in the end."""
    stamps = tmp_path / "stamps.log"
    _configure(vq, limit=2)
    jobs = [
        vq.submit("test-stamp", {"seconds": 5, "stamps": str(stamps)}, "--user", f"u{i}", "--subscription", "pro")
        for i in range(4)
    ]
    vq.start_daemon(workers=3)
    _wait_runs(stamps, 2)
    time.sleep(0.5)
    paused_at = time.time()
    redis_conn.execute_command("CLIENT", "PAUSE", 9000, "ALL")
    time.sleep(9.5)
    for job_id in jobs:
        assert vq.wait_for(job_id, timeout=60)["status"] == "finished", vq.daemon_log()[-3000:]
    all_runs = runs(stamps)
    assert most_at_once(all_runs) == {"test-stamp": 2}, all_runs
    # The runs the pause caught stopped within the lease, long before Redis answered again.
    caught = [r for r in all_runs if r.start < paused_at]
    assert caught and all(r.last < paused_at + 3.0 for r in caught), (paused_at, caught)
    assert "lease lost" in vq.daemon_log()
    assert int(redis_conn.get("vq:fence:lost") or 0) >= len(caught)


def test_a_stale_worker_writes_nothing(vq, redis_conn, tmp_path):
    """A worker whose lease passed to another holder while it ran (the token in the job's
    hash is no longer its own): its progress is refused and stops it, its end is not
    written, and the refusals are counted and logged. The job's state is the new holder's."""
    stamps = tmp_path / "stamps.log"
    _configure(vq, limit=2, lease_ms=30000)  # renewals every 5 s: the writes meet the new token first
    with_progress = vq.submit(
        "test-stamp", {"seconds": 3, "progress": True, "stamps": str(stamps)}, "--user", "a", "--subscription", "pro"
    )
    without = vq.submit("test-stamp", {"seconds": 1.5, "stamps": str(stamps)}, "--user", "b", "--subscription", "pro")
    vq.start_daemon(workers=2)
    _wait_runs(stamps, 2)
    for job_id in (with_progress, without):
        redis_conn.hset(f"rq:job:{job_id}", "vq_lease", "another-holder")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([r for r in runs(stamps)]) < 2:
        time.sleep(0.1)
    time.sleep(2.5)  # both handlers have ended (interrupted or done)
    for job_id in (with_progress, without):
        view = vq.json("show", job_id)
        assert view["status"] == "started", view  # still the new holder's: not finished, failed or requeued
        assert view.get("result") is None
    assert int(redis_conn.get("vq:fence:refused") or 0) >= 2
    metrics = {f["name"]: f for f in vq.json("metrics")}
    assert metrics["vq_fence_stale_writes_refused"]["samples"][0]["value"] >= 2
    log = vq.daemon_log()
    assert log.count("stale write refused") >= 2, log[-3000:]
    assert "result discarded" in log
    assert "Traceback" not in log
    progress_run = next(r for r in runs(stamps) if r.job_id == with_progress)
    assert progress_run.last - progress_run.start < 2.0, "the refused progress report stopped the handler"


@pytest.mark.parametrize(
    "how, jobs", [({"isolation": "fork"}, 1), ({"concurrencyPerWorker": 2}, 2)], ids=["forked-child", "thread-worker"]
)
def test_jobs_outside_the_main_thread_are_stopped_too(vq, redis_conn, tmp_path, how, jobs):
    """The same pause with the job in a forked child (the worker kills it) or in a thread
    worker beside the main one (LeaseLost raised into that thread)."""
    stamps = tmp_path / "stamps.log"
    _configure(vq, limit=jobs)
    vq.configure(job_types={"test-stamp": {**STAMP_TYPE, **how}})
    ids = [
        vq.submit("test-stamp", {"seconds": 6, "stamps": str(stamps)}, "--user", f"u{i}", "--subscription", "pro")
        for i in range(jobs)
    ]
    vq.start_daemon(workers=1)
    _wait_runs(stamps, jobs)
    time.sleep(0.3)
    paused_at = time.time()
    redis_conn.execute_command("CLIENT", "PAUSE", 6000, "ALL")
    time.sleep(6.5)
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=60)["status"] == "finished", vq.daemon_log()[-3000:]
    all_runs = runs(stamps)
    assert most_at_once(all_runs) == {"test-stamp": jobs}, all_runs
    caught = [r for r in all_runs if r.start < paused_at]
    assert len(caught) == jobs and all(r.last < paused_at + 3.0 for r in caught), (paused_at, caught)
    if jobs == 2:
        assert len({r.pid for r in caught}) == 1, "both ran in the one worker process, one in a thread"


def test_a_worker_stopped_while_it_holds_a_group_slot_never_runs_beside_the_next(vq, tmp_path):
    """A limit group of one slot (`data.model` sdxl) and a type limit that does not bind: the
    worker running the first sdxl job is stopped with SIGSTOP past its 3 s lease. Its daemon
    kills it before the lease lapses, so the second sdxl job, which waits for the group's
    slot, never runs beside it (the handlers' own stamps), and both finish."""
    stamps = tmp_path / "stamps.log"
    _configure(vq, limit=10)
    vq.configure(
        concurrency={
            "type": {"test-stamp": 10},
            "groups": {"model": {"key": "data.model", "limit": 1, "types": ["test-stamp"]}},
        }
    )
    data = {"model": "sdxl", "stamps": str(stamps)}
    first = vq.submit("test-stamp", {**data, "seconds": 4}, "--user", "a", "--subscription", "pro")
    second = vq.submit("test-stamp", {**data, "seconds": 1}, "--user", "b", "--subscription", "pro")
    vq.start_daemon(workers=2)
    frozen = _wait_runs(stamps, 1)[0]
    assert frozen.job_id == first
    assert vq.json("show", second)["waitReason"] == "group model=sdxl: 1/1 running"
    _freeze(frozen.pid, 7)
    for job_id in (first, second):
        assert vq.wait_for(job_id, timeout=40)["status"] == "finished", vq.daemon_log()[-3000:]
    all_runs = runs(stamps)
    assert most_at_once(all_runs) == {"test-stamp": 1}, all_runs
    assert not _alive(frozen.pid), "the stopped worker was killed"


def test_a_worker_stopped_while_it_holds_the_only_gpu_never_runs_beside_the_next(vq, tmp_path):
    """One GPU (`--resources gpu=1` over two workers: one has it) and two jobs that need it:
    the worker running the first is stopped with SIGSTOP past its 3 s lease. Its daemon kills
    it before the lease lapses, so the second job, which waits for the GPU, never runs beside
    it (the handlers' own stamps); the first is recovered, and both finish on the GPU."""
    stamps = tmp_path / "stamps.log"
    _configure(vq, limit=10)
    vq.configure(job_types={"test-stamp": {**STAMP_TYPE, "resources": {"gpu": 1}}})
    data = {"stamps": str(stamps)}
    first = vq.submit("test-stamp", {**data, "seconds": 4}, "--user", "a", "--subscription", "pro")
    second = vq.submit("test-stamp", {**data, "seconds": 1}, "--user", "b", "--subscription", "pro")
    vq.start_daemon("--resources", "gpu=1", workers=2)
    frozen = _wait_runs(stamps, 1)[0]
    assert frozen.job_id == first
    assert "gpu" in (vq.json("show", second)["waitReason"] or ""), vq.json("show", second)
    _freeze(frozen.pid, 7)
    for job_id in (first, second):
        view = vq.wait_for(job_id, timeout=40)
        assert view["status"] == "finished", vq.daemon_log()[-3000:]
        assert view["resources"] == {"gpu": 1} and view["resourcesHeld"] is None  # given back
    all_runs = runs(stamps)
    assert most_at_once(all_runs) == {"test-stamp": 1}, all_runs
    assert not _alive(frozen.pid), "the stopped worker was killed"
