"""Idle workers wait for a wake token, not a timer (issue 28's worker scale): an idle worker
costs Redis about one command a second, and every event that makes jobs runnable still
starts them at once on as many idle workers as it made runnable; a token taken by a worker
that cannot use it is passed on, and a slot a dead worker's lease held is taken again as
the lease lapses."""

from __future__ import annotations

import time
from datetime import datetime

from tests.conftest import TEST_JOB_TYPES, _kill_tree
from vq import keys
from vq.rq_seam.worker import IDLE_LOOK_EVERY


def _limits(vq) -> None:
    vq.configure(
        concurrency={"type": {"test-track": 10}, "user": {"free": 10, "basic": 10, "pro": 10, "enterprise": 10}},
        queue={"defaultJobOptions": {"removeOnComplete": False}},
    )


def _idle(redis_conn, workers: int, timeout: float = 20) -> None:
    """Until `workers` workers have said they wait for a wake token (admission names them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_conn.scard(keys.IDLE_WORKERS) >= workers:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {workers} workers went idle")


def _calls(redis_conn, command: str) -> int:
    return int(redis_conn.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def _wait_s(vq, job_id: str) -> float:
    view = vq.wait_for(job_id, statuses=("started", "finished"), timeout=IDLE_LOOK_EVERY * 3)
    return (datetime.fromisoformat(view["startedAt"]) - datetime.fromisoformat(view["createdAt"])).total_seconds()


def test_an_idle_worker_costs_redis_about_one_command_a_second(vq, redis_conn):
    """Idle workers block on the wake list for up to IDLE_LOOK_EVERY seconds (each wait
    followed by one admission call), not one second as before."""
    vq.start_daemon(workers=4)
    _idle(redis_conn, 4)
    time.sleep(1)
    waits, began = _calls(redis_conn, "blpop"), time.monotonic()
    time.sleep(6)
    took = time.monotonic() - began
    waits = _calls(redis_conn, "blpop") - waits  # only idle workers wait on a list
    assert waits / 4 / took < 0.35, f"{waits} waits of 4 idle workers in {took:.1f} s (was one a second each)"


def test_a_resumed_type_starts_on_every_idle_worker_at_once(vq, redis_conn):
    """A resume may make many jobs runnable: every idle worker is woken, not one a second."""
    _limits(vq)
    vq.run("pause", "test-track")
    jobs = [vq.submit("test-track", {"gate": "resumed"}, "--user", f"u{i}") for i in range(4)]
    vq.start_daemon(workers=4)
    _idle(redis_conn, 4)
    time.sleep(0.5)
    resumed = time.monotonic()
    vq.run("resume", "test-track")
    for job_id in jobs:
        vq.wait_for(job_id, statuses=("started",), timeout=IDLE_LOOK_EVERY * 3)
    assert time.monotonic() - resumed < IDLE_LOOK_EVERY / 2, "the resumed jobs waited for the safety look"
    vq.open_gate("resumed")
    for job_id in jobs:
        assert vq.wait_for(job_id)["status"] == "finished"


def test_jobs_submitted_to_idle_workers_start_at_once_on_as_many_workers(vq, redis_conn):
    """One submission after another, and then several jobs held at a gate together: each
    starts within moments, and the held ones run side by side on the idle workers (the
    worker that gets one wakes the next)."""
    _limits(vq)
    vq.start_daemon(workers=3)
    _idle(redis_conn, 3)
    for n in range(3):
        assert _wait_s(vq, vq.submit("test-echo", {"n": n}, "--user", "e")) < 1.0
        _idle(redis_conn, 3)
    began = time.monotonic()
    held = [vq.submit("test-track", {"gate": "together"}, "--user", f"u{i}") for i in range(3)]
    for job_id in held:
        vq.wait_for(job_id, statuses=("started",), timeout=IDLE_LOOK_EVERY * 3)
    assert time.monotonic() - began < IDLE_LOOK_EVERY / 2
    vq.open_gate("together")
    for job_id in held:
        assert vq.wait_for(job_id)["status"] == "finished"


def test_a_token_a_worker_of_another_type_takes_is_passed_on(vq, redis_conn):
    """Idle workers of one type may take the token a job of another type pushed: they pass
    it on, so the job starts at once rather than at the next safety look."""
    _limits(vq)
    vq.start_daemon("--queues", "test-track", workers=3)
    vq.start_daemon("--queues", "test-echo", workers=1)
    _idle(redis_conn, 4)
    gaps = []
    for n in range(4):
        time.sleep(0.3)  # every worker back on the wake list, the echo one not first in line each time
        gaps.append(_wait_s(vq, vq.submit("test-echo", {"n": n}, "--user", "e")))
        _idle(redis_conn, 4)
    assert max(gaps) < 1.0, gaps


def test_a_token_a_worker_without_the_resources_takes_is_passed_on(vq, redis_conn):
    """A GPU job's token taken by an idle worker with no GPU (a mixed fleet: CPU workers
    beside a GPU one) is passed on, so the job starts at once on the GPU worker rather than
    at that worker's next safety look."""
    from tests.test_resources import _gpu_types

    _gpu_types(vq)
    vq.start_daemon(workers=3)  # no resources
    vq.start_daemon("--resources-per-worker", "gpu=1", workers=1)
    _idle(redis_conn, 4)
    gaps = []
    for n in range(4):
        time.sleep(0.3)  # every worker back on the wake list, the GPU one not first in line each time
        gaps.append(_wait_s(vq, vq.submit("test-gpu", {"seconds": 0.05}, "--user", f"g{n}")))
        _idle(redis_conn, 4)
    assert max(gaps) < 1.0, gaps


def _started_at(vq, redis_conn, job_id: str) -> float:
    """When the job's handler began (its own record: tests/plugins.py tracked), by this host's clock."""
    vq.wait_for(job_id, timeout=IDLE_LOOK_EVERY * 3)
    return float(redis_conn.hget("test:started-at", job_id))


def test_a_slot_freed_for_a_type_the_woken_worker_does_not_serve_is_passed_on(vq, redis_conn):
    """A finishing worker gives back its user's slot and wakes one idle worker. The job the
    slot lets start is the user's next one, of another type: an idle worker that serves
    other types takes the token, finds nothing and passes it on, so the job starts at once
    on the one worker that serves its type, not at that worker's next look (10 s)."""
    vq.configure(
        job_types={**TEST_JOB_TYPES, "test-other": {"handler": "tests.plugins:tracked", "attempts": 1}},
        concurrency={"type": {"test-track": 10, "test-other": 10}, "user": {"free": 1}},
    )
    vq.start_daemon("--queues", "test-track", workers=3)
    _idle(redis_conn, 3)
    vq.start_daemon("--queues", "test-other", workers=1)  # last on the wake list
    _idle(redis_conn, 4)
    holder = vq.submit("test-track", {"gate": "slot"}, "--user", "u")
    vq.wait_for(holder, statuses=("started",))
    waiting = vq.submit("test-other", {"seconds": 0.1}, "--user", "u")  # at the user's limit: in line
    vq.wait_reason(waiting, "user limit 1/1")
    _idle(redis_conn, 3)
    time.sleep(0.3)
    opened = time.time()
    vq.open_gate("slot")
    gap = _started_at(vq, redis_conn, waiting) - opened
    assert gap < 2.0, f"the user's next job started {gap:.1f} s after the slot was freed"


def test_a_slot_a_dead_workers_lease_held_is_taken_as_the_lease_lapses(vq, redis_conn):
    """A host dies (its daemon and worker SIGKILLed) while its job holds its user's only
    slot; stalled-job recovery is far off. The user's next job, in line on another host's
    idle worker, starts as the lease lapses: that worker's last look saw the lease that
    held the job back and looked again at its deadline, not at its next look (10 s)."""
    vq.configure(
        concurrency={"type": {"test-track": 10}, "user": {"free": 1}},
        queue={"settings": {"lockDuration": 2000, "stalledInterval": 60_000}},
    )
    doomed_host = vq.start_daemon(workers=1)
    _idle(redis_conn, 1)
    doomed = vq.submit("test-track", {"seconds": 60}, "--user", "u")
    vq.wait_for(doomed, statuses=("started",))
    vq.start_daemon(workers=1)
    _idle(redis_conn, 1)
    waiting = vq.submit("test-track", {"seconds": 0.1}, "--user", "u")
    vq.wait_reason(waiting, "user limit 1/1")
    time.sleep(0.3)
    _kill_tree(doomed_host)
    vq.daemons.remove(doomed_host)  # killed on purpose: not a failure of the test's daemons
    time.sleep(0.1)
    lapses_at = redis_conn.zscore(keys.running_user("u"), doomed) / 1000  # Redis's clock: this host's
    gap = _started_at(vq, redis_conn, waiting) - lapses_at
    assert gap < 2.0, f"the user's next job started {gap:.1f} s after the dead worker's lease lapsed"
