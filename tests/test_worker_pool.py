"""The daemon's worker pool: autoscaling with the work that could start, and `vq workers`."""

from __future__ import annotations

import json
import os
import signal
import time


def _alive(vq) -> list[dict]:
    return [w for w in vq.json("workers") if w["alive"]]


def _wait_workers(vq, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = _alive(vq)
        if len(alive) == count:
            return alive
        time.sleep(0.3)
    raise AssertionError(f"{len(_alive(vq))} workers alive, expected {count}:\n{vq.daemon_log()}")


def _busy_children(vq, parent: int) -> int:
    """Busy workers that are children of this daemon process."""

    def ppid(pid: int) -> int | None:
        try:
            return int(open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[1])
        except OSError:
            return None

    return sum(1 for w in _alive(vq) if w["state"] == "busy" and ppid(w["pid"]) == parent)


def test_autoscaling_grows_to_the_free_slots_under_a_burst_and_shrinks_when_idle(vq):
    vq.configure(
        daemon={"autoscale": {"min": 1, "max": 3, "scaleDownAfter": 2000, "interval": 300}},
        concurrency={"type": {"test-sleep": 2}},
        queue={"defaultJobOptions": {"removeOnComplete": False}},
    )
    vq.start_daemon(workers=None)
    _wait_workers(vq, 1, 20)
    deadline = time.monotonic() + 15  # registered ("started", RQ's state at birth), then listening ("idle")
    while (idle := _alive(vq)[0])["state"] != "idle" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert idle["state"] == "idle" and idle["memoryMb"] and idle["memoryMb"] > 10 and idle["jobsDone"] == 0
    burst = "\n".join(
        json.dumps(
            {
                "jobType": "test-sleep",
                "userId": f"u{i % 6}",
                "subscription": "enterprise",
                "data": {"seconds": 0.4, "steps": 2},
            }
        )
        for i in range(24)
    )
    ids = [o["id"] for o in vq.json("submit", "--batch", "-", input=burst)]
    most = 0
    deadline = time.monotonic() + 60
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        most = max(most, len(_alive(vq)))
        pending = [j for j in pending if vq.json("show", j)["status"] != "finished"] if most >= 2 else pending
        time.sleep(0.2)
    assert not pending, f"{len(pending)} jobs not finished"
    assert most == 2, f"{most} workers at most: the type's two slots are all the work there is"
    log = vq.daemon_log()
    assert "autoscale: 1 -> 2 workers" in log and "could start now" in log
    shrunk = _wait_workers(vq, 1, 15)  # scaleDownAfter 2 s of doing nothing, then one is retired
    assert "idle past daemon.autoscale.scaleDownAfter" in vq.daemon_log()
    assert sum(w["jobsDone"] for w in vq.json("workers")) <= 24 and shrunk[0]["state"] == "idle"


def test_workers_lists_each_process_with_its_health(vq):
    vq.start_daemon(workers=2)
    rows = _wait_workers(vq, 2, 20)
    job = vq.submit("test-noop", {}, "--user", "u")
    vq.wait_for(job)
    time.sleep(0.5)
    rows = vq.json("workers")
    assert {r["host"] for r in rows} and all(r["pid"] and r["heartbeatAgeMs"] is not None for r in rows)
    assert sum(r["jobsDone"] for r in rows) == 1
    text = vq.run("workers").stdout
    assert "2 alive" in text and "memory MB" in text


def test_a_killed_worker_is_dropped_from_the_listing_when_its_daemon_replaces_it(vq):
    # kill -9 (or the daemon's own kill of a worker stopped past its lease) left the dead
    # worker's RQ key until its TTL ran out minutes later: `vq workers` said "1 alive, 1
    # silent", `vq health` "workers alive 1/2", for a process the daemon knew it had lost.
    vq.start_daemon(workers=1)
    [dead] = _wait_workers(vq, 1, 20)
    os.kill(dead["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not [w for w in _alive(vq) if w["pid"] != dead["pid"]]:
        assert time.monotonic() < deadline, vq.daemon_log()
        time.sleep(0.2)
    time.sleep(0.5)  # the replacement registers after the daemon noticed the death
    rows = vq.json("workers")
    assert [w["pid"] for w in rows if w["pid"] == dead["pid"]] == [], rows
    assert "1 alive, 0 busy, 0 silent" in vq.run("workers").stdout
    assert "workers alive 1/1" in vq.run("health").stdout


def test_a_host_that_drains_hands_its_work_to_the_others_without_loss(vq):
    """SIGTERM on one daemon: it takes no more jobs, its running ones get the grace period
    and are then requeued at the front; the other daemon runs everything that is left, and
    every job finishes exactly once."""
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": False}})
    draining = vq.start_daemon("--grace", "0.5", workers=2)
    staying = vq.start_daemon(workers=2)
    _wait_workers(vq, 4, 20)
    burst = "\n".join(
        json.dumps(
            {
                "jobType": "test-sleep",
                "userId": f"u{i}",
                "subscription": "enterprise",
                "data": {"seconds": 4.0, "steps": 8},
            }
        )
        for i in range(6)
    )
    ids = [o["id"] for o in vq.json("submit", "--batch", "-", input=burst)]
    deadline = time.monotonic() + 20
    while (
        _busy_children(vq, draining.pid) < 2
    ):  # both of its workers hold a job (a loaded machine is slow to hand them out)
        assert time.monotonic() < deadline, vq.json("workers")
        time.sleep(0.1)
    vq.stop_daemon(draining)
    assert draining.returncode == 0
    assert "requeueing jobs of" in vq.daemon_log(0)
    views = [vq.wait_for(job_id, timeout=60) for job_id in ids]
    assert {v["status"] for v in views} == {"finished"}
    survivor = {w["pid"] for w in _alive(vq)}
    # Jobs take 4 s; the draining host got SIGTERM as soon as both its workers held one, its
    # grace (at least 1.1 s) ran out before any of its jobs could finish: all finished on the
    # host that stayed.
    assert all(v["result"]["pid"] in survivor for v in views), ([v["result"]["pid"] for v in views], survivor)
    assert staying.poll() is None
    for job_id in ids:
        events = [t["event"] for t in vq.json("history", job_id)["transitions"]]
        assert events.count("finished") == 1, (job_id, events)


def test_a_queued_job_no_live_worker_serves_says_so(vq):
    # `vq show` of a job free to start gave no reason while no daemon ran (or none served
    # its type), as if it would start any moment; `vq health` already said "no live worker"
    job = vq.submit("test-noop", {}, "--user", "u")
    reason = "no live worker serves test-noop (is a vq daemon running? `vq doctor` checks)"
    assert vq.json("show", job)["waitReason"] == reason
    assert "no live worker serves test-noop" in vq.run("show", job).stdout
    vq.start_daemon("--queues", "test-echo", workers=1)
    _wait_workers(vq, 1, 20)
    assert vq.json("show", job)["waitReason"] == reason  # a daemon, but none of its workers take test-noop
    echo = vq.submit("test-echo", {}, "--user", "u")
    assert vq.wait_for(echo)["waitReason"] is None
