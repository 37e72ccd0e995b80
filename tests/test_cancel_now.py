"""`vq cancel --now`: a running job interrupted within a second on whatever host runs it
(in the worker's main thread, in a forked child, in a thread worker), its slot freed,
its clean-up run, not retried, its dependents canceled; real daemons sharing one Redis."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.plugins import handler_pid, wait_active
from vq import keys

CANCELABLE = {"handler": "tests.plugins:cancelable", "attempts": 3, "timeout": 60000}
ONE_PER_USER = {"user": {"free": 1, "basic": 1, "pro": 1, "enterprise": 1}}


def _events(conn, job_id: str, name: str) -> list[dict]:
    """The job's events of that name, each with its fields and its time (`ts`, ms)."""
    return [
        {**json.loads(fields.get(b"fields", b"{}")), "ts": fields[b"ts"].decode()}
        for _id, fields in conn.xrange(keys.EVENTS)
        if fields.get(b"jobId") == job_id.encode() and fields.get(b"event") == name.encode()
    ]


def _took_ms(conn, job_id: str) -> int:
    """From the cancel request to the job's end, by the two events' times."""
    asked = _events(conn, job_id, "cancel-requested")[-1]
    ended = _events(conn, job_id, "canceled")[-1]
    return int(ended["ts"]) - int(asked["ts"])


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[-1].startswith("Z"):  # a zombie is gone too
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_cancel_now_interrupts_a_job_on_the_other_daemon_frees_its_slot_and_cleans_up(vq, redis_conn, tmp_path):
    vq.configure(job_types={"test-cancelable": CANCELABLE}, concurrency=ONE_PER_USER)
    vq.start_daemon("--queues", "test-noop", workers=1)  # this host never runs the job
    vq.another_host("host-b").start_daemon(workers=2)
    marker = tmp_path / "cleanup.txt"
    first = vq.submit("test-cancelable", {"seconds": 60, "cleanup": str(marker)}, "--user", "ann")
    after = vq.submit("test-cancelable", {"seconds": 0.1}, "--user", "ann")
    dependent = vq.submit("test-noop", {}, "--user", "bob", "--depends-on", first)
    pid = handler_pid(redis_conn, first)
    assert redis_conn.get(f"test:thread:{first}") == b"main"
    assert vq.json("show", after)["status"] in ("queued", "limited"), "ann's one slot is taken"

    began = time.monotonic()
    view = vq.json("cancel", first, "--now", "--reason", "wrong prompt")
    assert time.monotonic() - began < 4
    assert view["status"] == "canceled", "the answer waits for the end"
    assert _took_ms(redis_conn, first) < 1000
    assert view["error"]["message"] == "wrong prompt" and view["error"]["canceledBy"].startswith("cli:")
    assert view["attempts"] == 1, "not retried, although its type allows 3 attempts"
    assert marker.read_text() == f"cleaned up {first}", "its on_cancel clean-up ran"
    os.kill(pid, 0)  # the worker process was interrupted, not killed
    canceled = _events(redis_conn, first, "canceled")[-1]
    assert canceled["reason"] == "wrong prompt" and canceled["actor"].startswith("cli:") and canceled["now"] is True
    assert vq.wait_for(after, timeout=10)["status"] == "finished", "its slot was freed at once"
    assert vq.wait_for(dependent)["status"] == "canceled"
    time.sleep(1.5)  # a retry would have started by now
    assert vq.json("show", first)["status"] == "canceled"
    assert int(redis_conn.get("test:active:type:test-cancelable") or 0) == 0


def test_cancel_now_ends_a_forked_jobs_child_after_its_cleanup(vq, redis_conn, tmp_path):
    vq.configure(job_types={"test-cancelable-fork": {**CANCELABLE, "isolation": "fork"}})
    vq.start_daemon(workers=1)
    marker = tmp_path / "cleanup.txt"
    job_id = vq.submit("test-cancelable-fork", {"seconds": 60, "cleanup": str(marker)}, "--user", "ann")
    child = handler_pid(redis_conn, job_id)
    wait_active(redis_conn, "type:test-cancelable-fork", 1)
    view = vq.json("cancel", job_id, "--now")
    assert view["status"] == "canceled" and view["attempts"] == 1
    assert _took_ms(redis_conn, job_id) < 1000
    assert _gone(child), "the job's child process is gone"
    assert marker.read_text() == f"cleaned up {job_id}", "its clean-up ran in the child first"
    nxt = vq.submit("test-cancelable-fork", {"seconds": 0.1}, "--user", "ann")
    assert vq.wait_for(nxt)["status"] == "finished", "the worker goes on"
    assert vq.json("show", job_id)["status"] == "canceled", "not retried"


def test_a_forked_child_the_interrupt_does_not_reach_is_killed(vq, redis_conn):
    vq.configure(job_types={"test-cancelable-fork": {**CANCELABLE, "isolation": "fork"}})
    vq.start_daemon(workers=1)
    job_id = vq.submit("test-cancelable-fork", {"seconds": 60, "deaf": True}, "--user", "ann")
    child = handler_pid(redis_conn, job_id)
    vq.run("cancel", job_id, "--now")
    view = vq.wait_for(job_id, timeout=15)
    assert (view["status"], view["attempts"]) == ("canceled", 1)
    assert _gone(child)


def test_cancel_now_interrupts_jobs_in_a_thread_worker_and_its_main_thread(vq, redis_conn, tmp_path):
    vq.configure(job_types={"test-cancelable-io": {**CANCELABLE, "concurrencyPerWorker": 2}})
    vq.start_daemon(workers=1)  # one process: its main worker and one thread worker
    marker = tmp_path / "cleanup.txt"
    ids = [
        vq.submit("test-cancelable-io", {"seconds": 60, "step": 0.05, "cleanup": str(marker)}, "--user", u)
        for u in ("ann", "bob")
    ]
    wait_active(redis_conn, "type:test-cancelable-io", 2)
    where = {redis_conn.get(f"test:thread:{i}"): i for i in ids}
    assert set(where) == {b"main", b"thread"}
    in_thread = where[b"thread"]
    view = vq.json("cancel", in_thread, "--now")
    assert view["status"] == "canceled" and view["attempts"] == 1
    assert _took_ms(redis_conn, in_thread) < 1000
    assert marker.read_text() == f"cleaned up {in_thread}"
    assert vq.json("show", where[b"main"])["status"] == "started", "the other job runs on"
    view = vq.json("cancel", where[b"main"], "--now")
    assert view["status"] == "canceled"
    assert marker.read_text() == f"cleaned up {where[b'main']}"


def test_a_handler_that_swallows_the_interruption_and_returns_still_ends_canceled(vq, redis_conn, tmp_path):
    vq.configure(job_types={"test-cancelable": CANCELABLE})
    vq.start_daemon(workers=1)
    marker = tmp_path / "cleanup.txt"
    job_id = vq.submit("test-cancelable", {"seconds": 60, "swallow": True, "cleanup": str(marker)}, "--user", "ann")
    handler_pid(redis_conn, job_id)
    view = vq.json("cancel", job_id, "--now")
    assert (view["status"], view["attempts"], view["result"]) == ("canceled", 1, None)
    assert marker.read_text() == f"cleaned up {job_id}"
    canceled = next(t for t in vq.json("history", job_id)["transitions"] if t["event"] == "canceled")
    assert "canceled by operator" in canceled["reason"] and "by cli:" in canceled["reason"]
    assert canceled["reason"].endswith("interrupted"), "the history says who canceled it, and how"


def test_cancel_now_on_a_waiting_job_is_a_plain_cancel_and_on_an_ended_one_a_conflict(vq, redis_conn):
    vq.configure(job_types={"test-cancelable": CANCELABLE})
    waiting = vq.submit("test-cancelable", {"seconds": 1}, "--user", "ann", "--delay", "1h")
    dependent = vq.submit("test-noop", {}, "--user", "ann", "--depends-on", waiting)
    view = vq.json("cancel", waiting, "--now")
    assert view["status"] == "canceled" and view["attempts"] == 0
    assert vq.json("show", dependent)["status"] == "canceled"
    proc = vq.run("cancel", waiting, "--now")
    assert proc.returncode == 2 and "already canceled" in proc.stderr
    proc = vq.run("cancel", "--all", "--user", "ann", "--now")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--now" in proc.stderr
    vq.start_daemon(workers=1)
    done = vq.submit("test-noop", {}, "--user", "ann")
    vq.wait_for(done)
    proc = vq.run("cancel", done, "--now")
    assert proc.returncode == 2 and "already finished" in proc.stderr


def test_a_missed_message_is_caught_by_the_lease_renewal(vq, redis_conn):
    """The request's mark in the job's hash without its pub/sub message (as a worker that was
    reconnecting would miss it): the next lease renewal (every lockDuration / 6) stops the job."""
    vq.configure(job_types={"test-cancelable": CANCELABLE}, queue={"settings": {"lockDuration": 3000}})
    vq.start_daemon(workers=1)
    job_id = vq.submit("test-cancelable", {"seconds": 60}, "--user", "ann")
    handler_pid(redis_conn, job_id)
    with redis_conn.pipeline() as pipe:
        pipe.set(keys.cancel_request(job_id), "asked while the worker was away")
        pipe.hset(keys.rq_job(job_id), keys.CANCEL_NOW_FIELD, "1")
        pipe.execute()
    view = vq.wait_for(job_id, timeout=5)
    assert (view["status"], view["error"]["message"]) == ("canceled", "asked while the worker was away")


def test_a_cancel_racing_the_end_of_short_jobs_never_lands_outside_the_handler(vq, redis_conn):
    """Cancels sent as short jobs start and end: each job ends finished or canceled (never
    failed, never retried), and the worker keeps going (an interruption raised in RQ's or
    vq's bookkeeping after the handler returned would fail the job or kill the worker)."""
    from vq import jobs
    from vq.config import load_settings
    from vq.connection import make_client
    from vq.errors import Conflict

    vq.configure(job_types={"test-cancelable": CANCELABLE})
    conn = make_client(load_settings(vq.config_path))
    ids = [vq.submit("test-cancelable", {"seconds": 0.005 * (i % 20)}, "--user", "ann") for i in range(40)]
    vq.start_daemon(workers=1)  # they run one after the other, each canceled as it starts
    for job_id in ids:
        while redis_conn.hget(keys.rq_job(job_id), "status") in (b"queued", None):
            time.sleep(0.001)
        try:
            jobs.cancel(conn, job_id, "race", now=True)
        except Conflict:
            pass  # it had ended already
    ended = {job_id: vq.wait_for(job_id, timeout=20) for job_id in ids}
    statuses = [v["status"] for v in ended.values()]
    assert set(statuses) <= {"finished", "canceled"}, ended
    assert statuses.count("canceled") >= 10, "most are interrupted: the race is real"
    assert all(v["attempts"] == 1 for v in ended.values())
    # No traceback but Python's own report of an interrupt that landed in a destructor run
    # inside the handler (a garbage Redis client's __del__), which Python swallows: the job
    # still ends as above, by the cancel check after its handler returned.
    log = vq.daemon_log()
    assert log.count("Traceback") == log.count("Exception ignored in"), log[-3000:]


def _running_of(vq, job_type: str, user: str) -> tuple[int, int]:
    """`vq limits`: how many jobs of the type, and of the user, hold a slot now."""
    view = vq.json("limits")
    row = next(t for t in view["types"] if t["jobType"] == job_type)
    users = [u for u in view["users"] if u["userId"] == user]
    return row["running"], (users[0]["running"] if users else 0)


@pytest.mark.parametrize(
    "data, workers_type",
    [
        ({"stubborn": 1}, "test-cancelable"),
        ({"in_del": True}, "test-cancelable"),
        ({"stubborn": 1, "step": 0.05}, "test-cancelable-io"),
        ({"stubborn": 1}, "test-cancelable-fork"),
    ],
    ids=["caught", "in-a-destructor", "caught-in-a-thread", "caught-in-a-forked-child"],
)
def test_an_interruption_the_handler_swallows_is_raised_again_until_it_stops(
    vq, redis_conn, tmp_path, data, workers_type
):
    """The interruption caught by the handler (`except BaseException: pass`; in the main
    thread, a thread worker or a forked child) or swallowed by Python in a destructor it was
    sleeping in (as CI saw in a Redis client's __del__): the
    handler, which would sleep on for a minute, is interrupted again and the job ends
    canceled within 2 s of `vq cancel --now`; its slots are free (`vq limits`) and the
    user's next job starts."""
    types = {
        "test-cancelable": CANCELABLE,
        "test-cancelable-io": {**CANCELABLE, "concurrencyPerWorker": 2},
        "test-cancelable-fork": {**CANCELABLE, "isolation": "fork"},
    }
    vq.configure(job_types={workers_type: types[workers_type]}, concurrency=ONE_PER_USER)
    vq.start_daemon(workers=1)
    marker = tmp_path / "cleanup.txt"
    users = ["ann", "bob"] if workers_type == "test-cancelable-io" else ["ann"]  # one runs in the thread worker
    ids = {
        vq.submit(workers_type, {"seconds": 60, "cleanup": str(marker), **data}, "--user", user): user for user in users
    }
    wait_active(redis_conn, f"type:{workers_type}", len(users))
    job_id = next(i for i in ids if len(users) == 1 or redis_conn.get(f"test:thread:{i}") == b"thread")
    user = ids[job_id]
    after = vq.submit(workers_type, {"seconds": 0.1}, "--user", user)
    assert _running_of(vq, workers_type, user)[1] == 1
    began = time.monotonic()
    vq.run("cancel", job_id, "--now")
    view = vq.wait_for(job_id, timeout=10)
    took = time.monotonic() - began
    assert (view["status"], view["attempts"], view["result"]) == ("canceled", 1, None), view
    assert took < 2.5 and _took_ms(redis_conn, job_id) < 2000, f"took {took:.1f}s: the handler slept on"
    swallowed = [s.decode() for s in redis_conn.lrange(f"test:swallowed:{job_id}", 0, -1)]
    assert swallowed == (["del"] if data.get("in_del") else ["CanceledNow"]), "the first interruption was swallowed"
    if data.get("in_del"):
        assert "Exception ignored in" in vq.daemon_log(), "Python swallowed it in the destructor"
    assert marker.read_text() == f"cleaned up {job_id}"
    assert vq.wait_for(after, timeout=10)["status"] == "finished", "the user's slot was freed"
    assert _running_of(vq, workers_type, user)[1] == 0
    if workers_type != "test-cancelable-fork":  # a forked child is signalled again without a word
        assert "interrupting it again" in vq.daemon_log()


def test_a_canceled_handler_that_caught_the_interruption_is_stopped_at_its_next_ctx_call(vq, redis_conn):
    """A handler that catches the interruption and calls ctx.log (or ctx.progress, ctx.checkpoint,
    ctx.canceled): CanceledNow is raised there again; it does not get to its next line."""
    vq.configure(job_types={"test-cancelable": CANCELABLE})
    vq.start_daemon(workers=1)
    job_id = vq.submit("test-cancelable", {"seconds": 60, "stubborn": 1, "then_log": True}, "--user", "ann")
    handler_pid(redis_conn, job_id)
    vq.run("cancel", job_id, "--now")
    view = vq.wait_for(job_id, timeout=10)
    assert view["status"] == "canceled"
    assert _took_ms(redis_conn, job_id) < 500, "stopped at its log line, not by the next interruption"
    assert redis_conn.lrange(f"test:swallowed:{job_id}", 0, -1) == [b"CanceledNow", b"raised at ctx.log"]
    assert "interrupting it again" not in vq.daemon_log()


def test_the_cancel_cleanup_budget_is_daemon_cancel_cleanup(vq, redis_conn, tmp_path):
    """daemon.cancelCleanup (ms): a clean-up that takes 3 s is left behind after 0.5 s, and
    the job's end (and its slots) does not wait for it."""
    vq.configure(job_types={"test-cancelable": CANCELABLE}, daemon={"cancelCleanup": 500})
    vq.start_daemon(workers=1)
    marker = tmp_path / "cleanup.txt"
    job_id = vq.submit(
        "test-cancelable", {"seconds": 60, "cleanup": str(marker), "cleanup_seconds": 3}, "--user", "ann"
    )
    handler_pid(redis_conn, job_id)
    view = vq.json("cancel", job_id, "--now")
    assert view["status"] == "canceled"
    assert 400 <= _took_ms(redis_conn, job_id) < 1500
    assert not marker.exists()
    assert "still running after 0.5s; left behind" in vq.daemon_log()
