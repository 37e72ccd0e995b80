"""Limit groups (config concurrency.groups, vq/groups.py): jobs sharing a field's value share a
group's slots on every host, beside their user's and their type's; a user blocked by a group
does not block the others; limits change at runtime; a killed worker's group slot comes back.
Limits are judged by the `tracked` handler's own records of what ran at once."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.plugins import handler_pid

MODEL = {"key": "data.model", "limit": {"default": 2, "sdxl": 1}, "types": ["test-track"]}


def _groups(vq, type_limit: int = 10, queue: dict | None = None, **groups) -> None:
    vq.configure(
        concurrency={"type": {"test-track": type_limit}, "groups": groups or {"model": MODEL}},
        queue={"defaultJobOptions": {"removeOnComplete": False}, **(queue or {})},
    )


def _max(redis_conn, name: str) -> int:
    return int(redis_conn.get(f"test:active:{name}:max") or 0)


def test_a_jobs_group_keys_are_stored_at_submission(vq, redis_conn):
    _groups(
        vq,
        model=MODEL,
        proj={"key": ["projectId", "data.model"], "limit": 3},
        other={"key": "data.model", "limit": 1, "types": ["test-noop"]},
    )
    both = vq.submit("test-track", {"model": "sdxl"}, "--user", "u", "--project", "p1")
    no_project = vq.submit("test-track", {"model": "flux"}, "--user", "u")
    no_model = vq.submit("test-track", {"size": 3}, "--user", "u", "--project", "p1")
    delayed = vq.submit("test-track", {"model": "sdxl"}, "--user", "u", "--delay", "1h")
    dependent = vq.submit("test-track", {"model": "flux"}, "--user", "u", "--depends-on", both)
    lines = [{"jobType": "test-track", "userId": "u", "data": {"model": m}} for m in ("sdxl", {"nested": 1})]
    batch = vq.run("submit", "--batch", "-", input="\n".join(json.dumps(line) for line in lines))
    assert batch.returncode == 0, batch.stderr
    in_batch, not_plain = batch.stdout.split()
    ids = (both, no_project, no_model, delayed, dependent, in_batch, not_plain)
    stored = {i: json.loads(redis_conn.hget(f"rq:job:{i}", "vq_groups") or "{}") for i in ids}
    assert stored == {
        both: {"model": "sdxl", "proj": "p1|sdxl"},
        no_project: {"model": "flux"},
        no_model: {},
        delayed: {"model": "sdxl"},
        dependent: {"model": "flux"},
        in_batch: {"model": "sdxl"},
        not_plain: {},
    }, "a missing (or not plain) key field leaves the job out of that group; `other` names another type"


def test_a_group_limit_holds_across_two_daemons_under_load(vq, redis_conn):
    _groups(vq)
    models = ["sdxl", "flux", None]
    ids = [
        vq.submit("test-track", {"seconds": 0.15, **({"model": m} if m else {})}, "--user", f"u{i}", "-s", "enterprise")
        for i in range(6)
        for m in models
        for _ in range(2)
    ]
    vq.start_daemon(workers=3)
    vq.another_host("second").start_daemon(workers=3)
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=60)["status"] == "finished"
    assert _max(redis_conn, "group:model=sdxl") == 1, "sdxl's own limit, reached and never exceeded"
    assert _max(redis_conn, "group:model=flux") == 2, "the group's default for every other model"
    assert _max(redis_conn, "type:test-track") > 2, "jobs without a model are not held by the group"
    view = vq.json("limits")
    model = next(g for g in view["groups"] if g["group"] == "model")
    assert model["default"] == 2 and model["keyedOn"] == ["data.model"]
    assert {row["key"]: (row["running"], row["limit"]) for row in model["keys"]} == {"sdxl": (0, 1)}


def test_a_user_blocked_by_a_group_does_not_block_another_user(vq, redis_conn):
    _groups(vq)
    running = vq.submit("test-track", {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "pro")
    vq.start_daemon(workers=3)
    vq.wait_for(running, statuses=("started",))
    blocked = vq.submit("test-track", {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "pro")
    behind = vq.submit("test-track", {"model": "flux", "gate": "g"}, "--user", "a", "-s", "pro")
    other = vq.submit("test-track", {"model": "flux", "gate": "g"}, "--user", "b", "-s", "pro")
    vq.wait_for(other, statuses=("started",), timeout=10)
    time.sleep(0.5)
    view = vq.json("show", blocked)
    assert (view["status"], view["waitReason"], view["position"]) == ("limited", "group model=sdxl: 1/1 running", 1)
    view = vq.json("show", behind)
    assert (view["status"], view["position"]) == ("limited", 2), "the blocked job stays first in its user's line"
    assert view["waitReason"] == f"behind {blocked}, held by group model=sdxl: 1/1 running"
    vq.open_gate("g")
    for job_id in (running, blocked, behind, other):
        assert vq.wait_for(job_id, timeout=20)["status"] == "finished"
    assert _max(redis_conn, "group:model=sdxl") == 1


def test_a_job_with_a_deadline_held_by_a_full_group_keeps_its_place_first(vq, redis_conn):
    """Earliest deadline first and limit groups together: the dated job a full group holds
    goes back to the front of its user's line (its deadline order), not behind the rest."""
    _groups(vq)
    running = vq.submit("test-track", {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "pro")
    vq.start_daemon(workers=3)
    vq.wait_for(running, statuses=("started",))
    vq.run("pause", "test-track")  # both in line before admission looks again
    plain = vq.submit("test-track", {"model": "flux", "gate": "g"}, "--user", "a", "-s", "pro")
    dated = vq.submit("test-track", {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "pro", "--deadline", "10m")
    later = vq.submit("test-track", {"model": "flux", "gate": "g"}, "--user", "a", "-s", "pro", "--deadline", "20m")
    vq.run("resume", "test-track")
    time.sleep(0.5)
    view = vq.json("show", dated)
    assert (view["status"], view["waitReason"], view["position"]) == ("limited", "group model=sdxl: 1/1 running", 1)
    for behind, position in ((later, 2), (plain, 3)):
        view = vq.json("show", behind)
        assert (view["status"], view["position"]) == ("limited", position)
        assert view["waitReason"] == f"behind {dated}, held by group model=sdxl: 1/1 running"
    vq.open_gate("g")
    for job_id in (running, dated, later, plain):
        assert vq.wait_for(job_id, timeout=20)["status"] == "finished"
    # Admission's order (its start times); two workers may reach their handler's first line
    # in either order.
    started = [vq.json("show", job_id)["startedAt"] for job_id in (dated, later, plain)]
    assert started == sorted(started), ("deadline order, once the group had room", started)
    assert _max(redis_conn, "group:model=sdxl") == 1


def test_limits_set_group_takes_effect_at_once_and_reset_restores_config(vq, redis_conn):
    _groups(vq)
    ids = [vq.submit("test-track", {"model": "sdxl", "gate": "g"}, "--user", f"u{i}", "-s", "pro") for i in range(3)]
    vq.start_daemon(workers=3)
    vq.wait_for(ids[0], statuses=("started",))
    time.sleep(0.5)
    assert [vq.json("show", i)["status"] for i in ids[1:]] == ["limited", "limited"]
    proc = vq.run("limits", "set", "group", "model", "sdxl", "3")
    assert proc.returncode == 0 and proc.stderr.strip() == "group model sdxl: limit 3", proc.stderr
    for job_id in ids[1:]:
        vq.wait_for(job_id, statuses=("started",), timeout=5)
    model = next(g for g in vq.json("limits")["groups"] if g["group"] == "model")
    assert {row["key"]: (row["running"], row["limit"]) for row in model["keys"]} == {"sdxl": (3, 3)}
    assert vq.json("limits", "reset", "group", "model", "sdxl")["override"] is False
    model = next(g for g in vq.json("limits")["groups"] if g["group"] == "model")
    assert {row["key"]: row["limit"] for row in model["keys"]} == {"sdxl": 1}
    vq.open_gate("g")
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=20)["status"] == "finished"
    assert _max(redis_conn, "group:model=sdxl") == 3


def test_a_killed_workers_group_slot_is_kept_while_renewed_and_reclaimed_when_it_lapses(vq, redis_conn):
    _groups(vq, queue={"settings": {"lockDuration": 1000, "stalledInterval": 1000, "maxStalledCount": 0}})
    doomed = vq.submit("test-track", {"model": "sdxl", "seconds": 30}, "--user", "a", "-s", "pro")
    waiting = vq.submit("test-track", {"model": "sdxl", "gate": "g"}, "--user", "b", "-s", "pro")
    redis_conn.zadd("vq:running:group:model:flux", {"ghost": 1})  # a lapsed lease whose job is gone
    vq.start_daemon(workers=2)
    vq.wait_for(doomed, statuses=("started",))
    time.sleep(2.5)  # past lockDuration: only the renewals keep the group's slot
    assert vq.json("show", waiting)["waitReason"] == "group model=sdxl: 1/1 running"
    os.kill(handler_pid(redis_conn, doomed), signal.SIGKILL)
    assert vq.wait_for(doomed, timeout=10)["error"]["category"] == "stalled"
    vq.wait_for(waiting, statuses=("started",), timeout=10)
    now = int(time.time() * 1000)
    assert redis_conn.zrangebyscore("vq:running:group:model:sdxl", now, "+inf") == [waiting.encode()]
    assert redis_conn.zscore("vq:running:group:model:flux", "ghost") is None, "recovery drops lapsed leases"
    vq.open_gate("g")
    assert vq.wait_for(waiting, timeout=20)["status"] == "finished"
    assert redis_conn.zcard("vq:running:group:model:sdxl") == 0, "the finished job's slot is given back"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["set", "group", "model", "sdxl", "0"], 2, "at least 1"),
        (["set", "group", "model", "sdxl"], 2, "expected: vq limits set group NAME KEY LIMIT"),
        (["set", "type", "test-track", "sdxl", "2"], 2, "expected: vq limits set type NAME LIMIT"),
        (["reset", "group", "model"], 2, "expected: vq limits reset group NAME KEY"),
        (["set", "group", "planet", "x", "2"], 4, "no limit group 'planet' (groups: model)"),
    ],
)
def test_bad_group_limits_are_refused_with_one_line(vq, args, code, message):
    _groups(vq)
    proc = vq.run("limits", *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.parametrize(
    "group, message",
    [
        ({"key": "data", "limit": 2}, "concurrency.groups.bad.key: 'data' is not userId, projectId or data.<path>"),
        ({"key": ["projectId", "model"], "limit": 2}, "concurrency.groups.bad.key: 'model' is not userId"),
        ({"key": "data.model", "limit": {"sdxl": 0}}, "concurrency.groups.bad.limit: sdxl: must be at least 1, got 0"),
        ({"key": "data.model"}, "concurrency.groups.bad.limit: missing: a group needs a limit, a rate or both"),
        (
            {"key": "data.model", "rate": "30 per minute"},
            "groups.bad.rate: '30 per minute' is not a rate: starts/window",
        ),
        ({"key": "data.model", "rate": {"sdxl": "0/1m"}}, "groups.bad.rate: sdxl: '0/1m': starts must be from 1"),
        (
            {"key": "data.model", "rate": {"sdxl": "5/2d"}},
            "groups.bad.rate: sdxl: '5/2d': the window must be from 1ms to 1d",
        ),
        ({"key": "data.model", "rate": 30}, "concurrency.groups.bad.rate: "),
        ({"key": "data.model", "limit": 1, "types": ["nope"]}, "groups.bad.types: no job type 'nope'"),
        ({"key": "data.model", "limit": 1, "size": 3}, "concurrency.groups.bad.size: unknown key"),
    ],
)
def test_a_bad_group_in_config_is_one_clear_line(vq, group, message):
    vq.configure(concurrency={"groups": {"bad": group}})
    proc = vq.run("limits")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_http_api_shows_what_vq_limits_shows(vq):
    from tests.test_api import SECRET, serve

    _groups(vq)
    api = serve(vq, jwt_secret=SECRET)
    job = vq.submit("test-track", {"model": "sdxl", "gate": "g"}, "--user", "a", "-s", "pro")
    vq.wait_for(job, statuses=("started",))
    assert api.call("GET", "/api/limits", api.token("a", "user")).status == 403
    reply = api.call("GET", "/api/limits", api.token("ops", "operator"))
    assert reply.status == 200, reply.body
    assert reply.body["groups"] == vq.json("limits")["groups"]
    model = next(g for g in reply.body["groups"] if g["group"] == "model")
    assert {row["key"]: (row["running"], row["limit"]) for row in model["keys"]} == {"sdxl": (1, 1)}
    vq.open_gate("g")
    assert vq.wait_for(job, timeout=20)["status"] == "finished"


def test_an_override_of_a_group_gone_from_the_config_can_still_be_reset(vq):
    _groups(vq)
    assert vq.run("limits", "set", "group", "model", "sdxl", "3").returncode == 0
    vq.configure(concurrency={"groups": {}})
    assert vq.run("limits", "set", "group", "model", "sdxl", "4").returncode == 4
    assert vq.json("limits", "reset", "group", "model", "sdxl") == {
        "kind": "group",
        "name": "model",
        "key": "sdxl",
        "limit": None,
        "override": False,
    }
    assert vq.run("limits", "reset", "group", "model", "sdxl").returncode == 4, "nothing left to drop"
