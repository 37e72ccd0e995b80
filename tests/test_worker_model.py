"""The worker model: long-lived processes that run jobs in themselves, a child process
per job for types that ask for it, threads for I/O-bound types, and replacement of a
process that grew too big."""

from __future__ import annotations

import json
import time

from tests.conftest import TEST_JOB_TYPES
from tests.plugins import wait_active


def _worker_pid(vq) -> int:
    """The pid of the daemon's one worker process: a test-sleep job runs in it and says."""
    pid_job = vq.submit("test-sleep", {"seconds": 0.05, "steps": 1}, "--user", "probe")
    return vq.wait_for(pid_job)["result"]["pid"]


def _batch(vq, job_type: str, data: dict, users: list[str]) -> list[str]:
    """Submitted in one call, so they are all waiting at once (one CLI start per job takes
    longer than a short job runs on a busy machine)."""
    lines = [json.dumps({"jobType": job_type, "userId": u, "subscription": "enterprise", "data": data}) for u in users]
    return [o["id"] for o in vq.json("submit", "--batch", "-", input="\n".join(lines))]


def test_an_io_type_runs_several_jobs_at_once_in_one_worker_process_within_its_limit(vq, redis_conn):
    vq.configure(
        job_types={
            **TEST_JOB_TYPES,
            "test-track": {"handler": "tests.plugins:tracked", "attempts": 1, "concurrencyPerWorker": 3},
        },
        concurrency={"type": {"test-track": 3}},
    )
    daemon = vq.start_daemon(workers=1)
    ids = _batch(vq, "test-track", {"gate": "three"}, ["u0", "u1", "u2"])
    for job_id in ids:
        vq.wait_for(job_id, statuses=("started",), timeout=10)
    wait_active(redis_conn, "type:test-track", 3)
    assert int(redis_conn.get("test:active:type:test-track:max")) == 3, "all three run at once"
    vq.open_gate("three")
    results = [vq.wait_for(i) for i in ids]
    assert [r["status"] for r in results] == ["finished"] * 3
    assert len({r["result"]["pid"] for r in results}) == 1, "one worker process ran them all"

    # The type's limit still holds: lowered to 2, never more than 2 at once.
    assert vq.run("limits", "set", "type", "test-track", "2").returncode == 0
    redis_conn.delete("test:active:type:test-track:max")
    ids = _batch(vq, "test-track", {"seconds": 0.6}, [f"v{i}" for i in range(5)])
    assert all(vq.wait_for(i)["status"] == "finished" for i in ids)
    assert int(redis_conn.get("test:active:type:test-track:max")) == 2
    assert vq.stop_daemon(daemon) == 0


def test_a_job_running_in_a_thread_still_times_out(vq):
    vq.configure(
        job_types={
            **TEST_JOB_TYPES,
            "test-sleep": {
                "handler": "tests.plugins:sleeper",
                "attempts": 1,
                "timeout": 1000,
                "concurrencyPerWorker": 2,
            },
        }
    )
    vq.start_daemon(workers=1)
    ids = [
        vq.submit("test-sleep", {"seconds": 20, "steps": 40}, "--user", f"u{i}", "--subscription", "enterprise")
        for i in range(2)
    ]
    started = time.monotonic()
    views = [vq.wait_for(i, timeout=20) for i in ids]
    assert [v["status"] for v in views] == ["failed", "failed"]
    assert all(v["error"]["category"] == "timeout" for v in views), views
    assert time.monotonic() - started < 10


def test_a_fork_type_runs_each_job_in_a_child_and_the_worker_survives_a_crash(vq):
    vq.start_daemon(workers=1)
    worker = _worker_pid(vq)
    first = vq.wait_for(vq.submit("test-forked", {"seconds": 0.05, "steps": 1}, "--user", "u"))
    crashed = vq.wait_for(vq.submit("test-crash", {}, "--user", "u"))
    second = vq.wait_for(vq.submit("test-forked", {"seconds": 0.05, "steps": 1}, "--user", "u"))
    assert first["status"] == second["status"] == "finished"
    assert first["result"]["pid"] != second["result"]["pid"], "a fresh child per job"
    assert worker not in (first["result"]["pid"], second["result"]["pid"])
    assert crashed["status"] == "failed"
    assert "terminated unexpectedly" in crashed["error"]["message"]
    assert _worker_pid(vq) == worker, "the crash took only the child down"


def test_a_worker_that_grew_past_its_memory_limit_is_replaced(vq):
    vq.configure(daemon={"shutdownGrace": 5000, "maxMemoryPerWorker": 200})
    daemon = vq.start_daemon(workers=1)
    before = _worker_pid(vq)
    hog = vq.wait_for(vq.submit("test-hog", {"mb": 300}, "--user", "u"))
    assert hog["status"] == "finished" and hog["result"]["pid"] == before
    time.sleep(1.0)
    assert _worker_pid(vq) != before
    assert "over daemon.maxMemoryPerWorker (200 MB): replaced after this job" in vq.daemon_log(0)
    assert vq.stop_daemon(daemon) == 0


def test_a_job_over_its_memory_or_cpu_limit_is_stopped_and_failed_as_resource(vq):
    vq.configure(
        job_types={
            "test-memcap": {"handler": "tests.plugins:hog", "attempts": 3, "maxMemory": 64},
            "test-cpucap": {"handler": "tests.plugins:spin", "attempts": 3, "maxCpuTime": 1000},
        },
        queue={"defaultJobOptions": {"removeOnComplete": False}},
    )
    vq.start_daemon(workers=1)
    big = vq.submit("test-memcap", {"mb": 300}, "--user", "u")
    small = vq.submit("test-memcap", {"mb": 8}, "--user", "u")
    spinning = vq.submit("test-cpucap", {"seconds": 20}, "--user", "u")
    view = vq.wait_for(big)
    assert view["status"] == "failed" and view["error"]["category"] == "resource" and view["attempts"] == 1
    assert "more than its 64 MB (job_types.test-memcap.maxMemory)" in view["error"]["message"]
    assert vq.wait_for(small)["status"] == "finished", "a job within its limit runs"
    started = time.monotonic()
    view = vq.wait_for(spinning, timeout=30)
    assert view["status"] == "failed" and view["error"]["category"] == "resource" and view["attempts"] == 1
    assert "more than its 1 s of CPU time (job_types.test-cpucap.maxCpuTime)" in view["error"]["message"]
    assert time.monotonic() - started < 10, "stopped at its limit, not at its own end"
    assert vq.wait_for(vq.submit("test-noop", {}, "--user", "u"))["status"] == "finished", "the worker carries on"


def test_a_worker_stops_at_once_when_its_command_channel_was_already_unsubscribed(redis_conn):
    """RQ unsubscribes a stopping worker from its command channel, then stops the listening
    thread, which redis-py 8 joins; a thread that read the UNSUBSCRIBE reply before it saw
    the stop waits 60 s for a subscription that never comes. That is the state here (made
    at once rather than by luck): the worker's teardown must not wait for it. (It made
    about one daemon stop in five, with an idle worker, take the whole grace period.)"""
    import threading

    from rq.serializers import JSONSerializer

    from vq.worker import VqWorker

    worker = VqWorker(["test-noop.normal"], connection=redis_conn, serializer=JSONSerializer, name="vq.test.stop")
    worker.subscribe()
    deadline = time.monotonic() + 5
    while not worker.pubsub.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.pubsub.unsubscribe()  # the listening thread reads the reply: it now waits to be subscribed again
    while worker.pubsub.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker.pubsub.subscribed
    stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
    started = time.monotonic()
    stopping.start()
    stopping.join(10)
    assert not stopping.is_alive(), "the worker's teardown waits for the pubsub thread"
    assert time.monotonic() - started < 3


def test_a_stop_during_the_admission_call_that_starts_a_job_runs_that_job_first(vq, redis_conn, monkeypatch):
    """An idle worker's admission call also starts the job it gets. A SIGTERM (a reload, a
    shutdown) that arrives while the call waits on Redis (here held by CLIENT PAUSE) must
    not abandon the job the call starts (left `started` by nobody until its lease lapsed):
    the worker runs it, then stops."""
    import os
    import signal
    import threading

    import redis
    from rq.exceptions import StopRequested
    from rq.serializers import JSONSerializer
    from rq.utils import now
    from rq.worker import WorkerStatus

    from vq import execution, limits
    from vq.config import load_settings
    from vq.submission import Submission, submit
    from vq.worker import VqWorker

    settings = load_settings(vq.config_path, env={})
    monkeypatch.setenv("VQ_CONFIG", str(vq.config_path))  # the in-process worker's runtime reads it
    monkeypatch.setattr(execution, "_runtime", None)
    limits.publish_config_limits(redis_conn, settings)
    job_id = submit(redis_conn, settings, Submission("test-noop", user_id="ann", subscription="enterprise"))
    worker = VqWorker(
        [f"test-noop.{p}" for p in ("high", "normal", "low")],
        connection=redis_conn,
        serializer=JSONSerializer,
        name="vq.test.signal",
    )
    worker.register_birth()
    worker.set_state(WorkerStatus.IDLE)  # written now: the dequeue's first write is the admission call
    worker.heartbeat()
    worker.last_cleaned_at = now()  # RQ's registry clean-up (a write too) not due
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    worker._install_signal_handlers()
    pauser = redis.Redis(connection_pool=redis.ConnectionPool(**redis_conn.connection_pool.connection_kwargs))
    try:
        pauser.client_pause(600, all=False)  # writes (the admission script) wait 0.6 s
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        taken = worker.dequeue_job_and_maintain_ttl(timeout=2)
        assert taken is not None and taken[0].id == job_id, "the job the call started is this worker's to run"
        worker.execute_job(*taken)
        assert redis_conn.hget(f"rq:job:{job_id}", "status") == b"finished"
        try:
            worker.dequeue_job_and_maintain_ttl(timeout=2)
            raise AssertionError("the worker took another job after the stop")
        except StopRequested:
            pass  # and then it stops
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        pauser.close()


def test_a_worker_forgets_each_finished_job_so_a_stop_past_its_grace_names_the_running_one(vq):
    # A job admission started and ended in its own step stayed in the worker's `executions`
    # (RQ's in-memory record of what it runs): `worker.execution` named the first job the
    # process ever ran, so the grace-period line named a job finished long before (and a
    # forked child was handed that stale execution).
    daemon = vq.start_daemon("--grace", "0.5", workers=1)
    for _ in range(2):
        vq.wait_for(vq.submit("test-noop", {}, "--user", "u"))
    held = vq.submit("test-track", {"gate": "never"}, "--user", "u")
    vq.wait_for(held, statuses=("started",))
    vq.stop_daemon(daemon)
    log = vq.daemon_log()
    said = [line for line in log.splitlines() if "grace period over, requeueing job" in line]
    assert said and all(f"requeueing job {held}" in line for line in said), said
