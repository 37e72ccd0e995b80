"""Limit groups' rates (config concurrency.groups.<name>.rate, vq/lua/groups.lua) and the jobs
waiting per group key (`vq limits`): the starts of one key never exceed its rate in any window,
on every host; a job a rate holds starts soon after the window allows it (no event wakes a
worker for it); a user a rate holds does not hold the others. Judged by the `tracked` handler's
own records of when each job started (tests/plugins.py)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.plugins import wait_active

TRACK = "test-track"


def _groups(vq, **groups) -> None:
    vq.configure(
        concurrency={"type": {TRACK: 20}, "groups": groups},
        queue={"defaultJobOptions": {"removeOnComplete": False}},
    )


def _started_at(redis_conn, ids) -> list[float]:
    """When each job's handler began, by its own clock, earliest first."""
    return sorted(float(redis_conn.hget("test:started-at", job_id)) for job_id in ids)


def _instant(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _group(vq, name: str) -> dict:
    return next(g for g in vq.json("limits")["groups"] if g["group"] == name)


def test_a_rate_holds_across_two_daemons_and_each_window_starts_on_time(vq, redis_conn):
    """3 starts per 2 s over 9 jobs on two daemons with 6 idle workers: never a 4th start
    within 2 s of three others, and each three start within a fraction of a second of the
    window allowing them (a worker that only looked once a second could be a second late)."""
    _groups(vq, model={"key": "data.model", "rate": "3/2s", "types": [TRACK]})
    ids = [
        vq.submit(TRACK, {"seconds": 0.05, "model": "sdxl"}, "--user", f"u{i % 3}", "-s", "enterprise")
        for i in range(9)
    ]
    vq.start_daemon(workers=3)
    vq.another_host("second").start_daemon(workers=3)
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=30)["status"] == "finished"
    starts = _started_at(redis_conn, ids)
    # startedAt: the worker's clock as it made the admission call that started the job. A
    # handler's first line comes some time after that, more on a busy machine: its own
    # record may be up to that much early against the others, and no more.
    views = {job_id: vq.json("show", job_id) for job_id in ids}
    late = max(float(redis_conn.hget("test:started-at", i)) - _instant(views[i]["startedAt"]) for i in ids)
    gaps = [round(starts[i + 3] - starts[i], 3) for i in range(len(starts) - 3)]
    assert min(gaps) > 1.95 - late, ("a 4th start within 2 s of three others", gaps, late)
    admitted = sorted(_instant(view["startedAt"]) for view in views.values())
    admitted_gaps = [round(admitted[i + 3] - admitted[i], 3) for i in range(len(admitted) - 3)]
    assert min(admitted_gaps) > 1.9, ("a 4th start within 2 s of three others", admitted_gaps)
    assert max(admitted_gaps) < 2.4, ("a start came late after the window allowed it", admitted_gaps)
    assert 3.9 < starts[-1] - starts[0] < 5.0, starts
    model = _group(vq, "model")
    assert model["defaultRate"] == "3/2s" and model["default"] is None


def test_an_idle_worker_starts_a_rate_held_job_when_the_window_allows_not_at_its_next_look(vq, redis_conn):
    """No event says a rate's window has moved on: admission tells the idle worker when the
    held job may start, and it looks again then. (Looking once a second, this one worker,
    whose job ends 0.4 s into each window, would start the next 0.4 s late.)"""
    _groups(vq, model={"key": "data.model", "rate": "1/1s", "types": [TRACK]})
    ids = [vq.submit(TRACK, {"seconds": 0.4, "model": "sdxl"}, "--user", "a", "-s", "enterprise") for _ in range(4)]
    vq.start_daemon(workers=1)
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=20)["status"] == "finished"
    admitted = sorted(_instant(vq.json("show", job_id)["startedAt"]) for job_id in ids)
    gaps = [round(later - earlier, 3) for earlier, later in zip(admitted, admitted[1:])]
    assert all(0.95 < gap < 1.2 for gap in gaps), gaps


def test_a_user_held_by_a_rate_does_not_hold_another_user_and_the_reason_names_the_rate(vq, redis_conn):
    _groups(
        vq,
        model={
            "key": "data.model",
            "limit": {"default": 4},
            "rate": {"default": "30/1m", "sdxl": "2/1m"},
            "types": [TRACK],
        },
    )
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": False}, "settings": {"lockDuration": 3000}})
    first = [vq.submit(TRACK, {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "enterprise") for _ in range(2)]
    vq.start_daemon(workers=4)
    wait_active(redis_conn, f"type:{TRACK}", 2)
    held = vq.submit(TRACK, {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "enterprise")
    behind = vq.submit(TRACK, {"model": "flux", "gate": "g"}, "--user", "a", "-s", "enterprise")
    other = vq.submit(TRACK, {"model": "flux", "gate": "g"}, "--user", "b", "-s", "pro")
    vq.wait_for(other, statuses=("started",), timeout=10)
    view = vq.json("show", held)
    assert (view["status"], view["waitReason"], view["position"]) == ("limited", "group model=sdxl: 2 starts in 1m", 1)
    view = vq.json("show", behind)
    assert (view["status"], view["position"]) == ("limited", 2), "the held job stays first in its user's line"
    assert view["waitReason"] == f"behind {held}, held by group model=sdxl: 2 starts in 1m"
    model = _group(vq, "model")
    rows = {row["key"]: row for row in model["keys"]}
    assert (rows["sdxl"]["running"], rows["sdxl"]["limit"], rows["sdxl"]["waiting"]) == (2, 4, 1)
    assert (rows["sdxl"]["starts"], rows["sdxl"]["rate"]) == (2, "2/1m")
    assert (rows["flux"]["running"], rows["flux"]["waiting"], rows["flux"]["starts"]) == (1, 1, 1)
    assert (model["default"], model["defaultRate"]) == (4, "30/1m")
    table = vq.run("limits")
    assert table.returncode == 0, table.stderr
    assert "starts/rate" in table.stdout and "2/2/1m" in table.stdout, table.stdout
    # Renewing the running jobs' leases (every sixth of lockDuration: 0.5 s) records no start.
    time.sleep(1.2)
    assert redis_conn.zcard("vq:starts:group:model:sdxl") == 2
    vq.open_gate("g")
    for job_id in (*first, other):
        assert vq.wait_for(job_id, timeout=20)["status"] == "finished"
    assert vq.json("show", held)["status"] == "limited", "the rate, not the running jobs, holds it"


def test_waiting_per_group_key_follows_cancel_remove_clear_and_admission(vq, redis_conn):
    _groups(vq, model={"key": "data.model", "limit": 1, "types": [TRACK]})
    running = vq.submit(TRACK, {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "pro")
    vq.start_daemon(workers=3)
    vq.wait_for(running, statuses=("started",))
    waiting = [vq.submit(TRACK, {"model": "sdxl", "gate": "g"}, "--user", f"u{i}", "-s", "pro") for i in range(5)]
    for job_id in waiting:
        vq.wait_for(job_id, statuses=("limited",), timeout=10)

    def counts() -> tuple[int, int]:
        """sdxl's (running, waiting); a key with neither is not listed."""
        rows = {r["key"]: (r["running"], r["waiting"]) for r in _group(vq, "model")["keys"]}
        return rows.get("sdxl", (0, 0))

    assert counts() == (1, 5)
    assert vq.run("cancel", waiting[0]).returncode == 0
    assert vq.run("rm", waiting[1]).returncode == 0
    assert counts() == (1, 3), "canceled and removed jobs no longer wait"
    redis_conn.delete(f"rq:job:{waiting[2]}")  # gone without any vq step: recovery's tidying drops it
    from vq import groups

    assert groups.tidy_waiting(redis_conn, "model") == 1
    assert counts() == (1, 2)
    late = vq.submit(TRACK, {"model": "sdxl", "gate": "g"}, "--user", "x", "-s", "pro", "--deadline", "1s")
    assert vq.wait_for(late, timeout=15)["error"]["category"] == "expired"
    assert counts() == (1, 2), "an expired job no longer waits"
    vq.open_gate("g")
    for job_id in (running, waiting[3], waiting[4]):
        assert vq.wait_for(job_id, timeout=20)["status"] == "finished"
    assert counts() == (0, 0), "admitted jobs no longer wait"
    again = vq.submit(TRACK, {"model": "sdxl", "seconds": 30}, "--user", "z", "-s", "pro")
    more = vq.submit(TRACK, {"model": "sdxl", "seconds": 30}, "--user", "y", "-s", "pro")
    vq.wait_for(again, statuses=("started",))
    vq.wait_for(more, statuses=("limited",), timeout=10)
    assert counts() == (1, 1)
    assert vq.run("clear", TRACK, "--yes").returncode == 0
    assert counts()[1] == 0, "cleared jobs no longer wait"
    vq.run("cancel", again)


def test_a_rate_only_group_shows_in_the_http_api_as_in_vq_limits(vq, redis_conn):
    from tests.test_api import SECRET, serve

    _groups(vq, proj={"key": "projectId", "rate": "1/1h", "types": [TRACK]})
    api = serve(vq, jwt_secret=SECRET)
    first = vq.submit(TRACK, {"seconds": 0.05}, "--user", "a", "--project", "p1", "-s", "pro")
    second = vq.submit(TRACK, {"seconds": 0.05}, "--user", "b", "--project", "p1", "-s", "pro")
    assert vq.wait_for(first, timeout=20)["status"] == "finished"
    vq.wait_reason(second, "group proj=p1: 1 starts in 1h")
    reply = api.call("GET", "/api/limits", api.token("ops", "operator"))
    assert reply.status == 200, reply.body
    assert reply.body["groups"] == vq.json("limits")["groups"]
    proj = next(g for g in reply.body["groups"] if g["group"] == "proj")
    assert proj["keys"] == [{"key": "p1", "running": 0, "limit": None, "waiting": 1, "rate": "1/1h", "starts": 1}]


def test_limits_set_group_rate_takes_effect_at_once_and_reset_restores_config(vq, redis_conn):
    _groups(vq, model={"key": "data.model", "rate": "100/1m", "types": [TRACK]})
    vq.start_daemon(workers=2)
    first = vq.submit(TRACK, {"model": "sdxl", "seconds": 0.05}, "--user", "a", "-s", "pro")
    assert vq.wait_for(first, timeout=20)["status"] == "finished"
    proc = vq.run("limits", "set", "group-rate", "model", "sdxl", "1/1h")
    assert proc.returncode == 0 and proc.stderr.strip() == "group-rate model sdxl: rate 1/1h", proc.stderr
    held = vq.submit(TRACK, {"model": "sdxl", "seconds": 0.05}, "--user", "b", "-s", "pro")
    vq.wait_for(held, statuses=("limited",), timeout=10)
    vq.wait_reason(held, "group model=sdxl: 1 starts in 1h")
    view = vq.json("limits")
    assert view["overrides"]["group-rate"] == {"model=sdxl": "1/1h"}
    model = next(g for g in view["groups"] if g["group"] == "model")
    assert [(r["key"], r["rate"], r["starts"], r["waiting"]) for r in model["keys"]] == [("sdxl", "1/1h", 1, 1)]
    assert vq.json("limits", "reset", "group-rate", "model", "sdxl")["override"] is False
    assert vq.wait_for(held, timeout=10)["status"] == "finished", "the config's 100/1m lets it start"


@pytest.mark.parametrize(
    "args, message",
    [
        (["set", "group-rate", "model", "sdxl", "5"], "RATE: '5' is not a rate: starts/window"),
        (["set", "group-rate", "model", "sdxl", "0/1m"], "RATE: '0/1m': starts must be from 1"),
        (["set", "group-rate", "model", "sdxl"], "expected: vq limits set group-rate NAME KEY RATE"),
        (["set", "group", "model", "sdxl", "1/1m"], "LIMIT: expected a whole number"),
        (["reset", "group-rate", "model"], "expected: vq limits reset group-rate NAME KEY"),
    ],
)
def test_bad_group_rates_are_refused_with_one_line(vq, args, message):
    _groups(vq, model={"key": "data.model", "rate": "100/1m", "types": [TRACK]})
    proc = vq.run("limits", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
