"""Admission: per-user and per-type limits hold across workers and daemons, users take
turns, long waits age upwards, and a killed worker's slots come back."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.plugins import handler_pid, wait_active


def _limits(vq, type_limit: int, tiers: dict | None = None, **settings) -> None:
    queue = settings.pop("queue", {})
    vq.configure(
        concurrency={
            "type": {"test-track": type_limit},
            "user": tiers or {"free": 1, "basic": 2, "pro": 5, "enterprise": 10},
        },
        queue={"defaultJobOptions": {"removeOnComplete": False}, **queue},
        **settings,
    )


class Sampler(threading.Thread):
    """Reads the live lease counts as fast as it can while the load runs."""

    def __init__(self, conn, keys_):
        super().__init__(daemon=True)
        self.conn, self.keys, self.max = conn, keys_, {k: 0 for k in keys_}
        self.samples, self.stop = 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            now = int(time.time() * 1000)
            with self.conn.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.zcount(key, now, "+inf")
                for key, count in zip(self.keys, pipe.execute()):
                    self.max[key] = max(self.max[key], count)
            self.samples += 1


def test_limits_hold_across_two_daemons_under_load(vq, redis_conn):
    _limits(vq, 3)
    users = {"f1": "free", "f2": "free", "b1": "basic", "b2": "basic", "p1": "pro", "e1": "enterprise"}
    ids = [
        vq.submit("test-track", {"seconds": 0.15}, "--user", u, "--subscription", tier)
        for _ in range(8)
        for u, tier in users.items()
    ]
    sampler = Sampler(redis_conn, ["vq:running:type:test-track"] + [f"vq:running:user:{u}" for u in users])
    sampler.start()
    try:
        vq.start_daemon(workers=3)
        vq.start_daemon(workers=3)
        for job_id in ids:
            assert vq.wait_for(job_id, timeout=60)["status"] == "finished"
    finally:
        sampler.stop.set()
        sampler.join()
    limit_of = {"free": 1, "basic": 2, "pro": 5, "enterprise": 10}
    assert sampler.samples > 100
    assert sampler.max["vq:running:type:test-track"] == 3, "the type limit is reached, never exceeded"
    assert int(redis_conn.get("test:active:type:test-track:max")) == 3, "really running at once, seen from inside"
    for user, tier in users.items():
        assert sampler.max[f"vq:running:user:{user}"] <= limit_of[tier], user
        assert int(redis_conn.get(f"test:active:user:{user}:max")) <= limit_of[tier], user
    view = vq.json("limits")
    row = next(t for t in view["types"] if t["jobType"] == "test-track")
    assert (row["running"], row["waiting"]) == (0, 0), "every count is back to zero"
    assert all(u["running"] == 0 and u["waiting"] == 0 for u in view["users"])


def test_a_user_over_its_limit_waits_with_a_reason_and_a_place_in_line(vq):
    _limits(vq, 5)
    first = vq.submit("test-track", {"gate": "first"}, "--user", "solo", "--subscription", "free")
    second = vq.submit("test-track", {"seconds": 0.1}, "--user", "solo", "--subscription", "free")
    third = vq.submit("test-track", {"seconds": 0.1}, "--user", "solo", "--subscription", "free")
    vq.start_daemon(workers=2)
    vq.wait_for(first, statuses=("started",))
    view = vq.wait_reason(second, "user limit 1/1")
    assert (view["status"], view["waitReason"], view["position"]) == ("limited", "user limit 1/1", 1)
    assert vq.json("show", third)["position"] == 2
    vq.open_gate("first")
    assert vq.wait_for(third, timeout=20)["status"] == "finished"


def test_a_basic_user_runs_two_at_once_and_no_more(vq, redis_conn):
    _limits(vq, 5)
    ids = [vq.submit("test-track", {"seconds": 0.5}, "--user", "b", "--subscription", "basic") for _ in range(5)]
    vq.start_daemon(workers=4)
    for job_id in ids:
        vq.wait_for(job_id, timeout=30)
    assert int(redis_conn.get("test:active:user:b:max")) == 2


def test_type_limit_reason_and_raising_it_at_runtime_takes_effect_at_once(vq, redis_conn):
    _limits(vq, 1)
    ids = [vq.submit("test-track", {"seconds": 4}, "--user", f"u{i}", "--subscription", "pro") for i in range(3)]
    vq.start_daemon(workers=3)
    vq.wait_for(ids[0], statuses=("started",))
    vq.wait_reason(ids[1], "type limit 1/1")
    assert vq.run("limits", "set", "type", "test-track", "3").returncode == 0
    for job_id in ids[1:]:
        vq.wait_for(job_id, statuses=("started",), timeout=20)
    wait_active(redis_conn, "type:test-track", 3)
    assert int(redis_conn.get("test:active:type:test-track:max")) == 3


def test_a_users_new_tier_and_own_limit_take_effect_at_once(vq, redis_conn):
    """Admission keeps each user's limit beside the type's (read together); a job naming a
    new tier, and a limit set at runtime, replace what it kept."""
    _limits(vq, 10)
    free = [vq.submit("test-track", {"gate": "first"}, "--user", "up", "--subscription", "free") for _ in range(3)]
    vq.start_daemon(workers=4)
    vq.wait_for(free[0], statuses=("started",))
    vq.wait_reason(free[1], "user limit 1/1")
    pro = vq.submit("test-track", {"gate": "first"}, "--user", "up", "--subscription", "pro")
    for job_id in (*free[1:], pro):  # pro's limit, 5: all four at once
        vq.wait_for(job_id, statuses=("started",), timeout=20)
    vq.open_gate("first")
    for job_id in (*free, pro):
        vq.wait_for(job_id, timeout=20)
    assert vq.run("limits", "set", "user", "up", "1").returncode == 0
    again = [vq.submit("test-track", {"gate": "again"}, "--user", "up", "--subscription", "pro") for _ in range(2)]
    vq.wait_for(again[0], statuses=("started",))
    vq.wait_reason(again[1], "user limit 1/1")
    vq.open_gate("again")
    assert vq.wait_for(again[1], timeout=20)["status"] == "finished"


def test_a_freed_slot_wakes_an_idle_worker_at_once(vq, redis_conn):
    """A worker with nothing it may run waits for a wake token, and the worker that frees a
    slot it does not use itself sends one: a free user's next job, of a type only another
    daemon serves, starts as soon as their running one ends (idle workers otherwise look
    again only every 10 s)."""
    from datetime import datetime

    _limits(vq, 5)
    vq.start_daemon("--queues", "test-track", workers=1)
    vq.start_daemon("--queues", "test-echo", workers=1)
    gaps = []
    for round_ in range(3):
        user = f"w{round_}"
        first = vq.submit("test-track", {"seconds": 1.5}, "--user", user, "--subscription", "free")
        second = vq.submit("test-echo", {"n": round_}, "--user", user, "--subscription", "free")
        ended = vq.wait_for(first, timeout=20)["finishedAt"]
        started = vq.wait_for(second, timeout=20)["startedAt"]
        gaps.append((datetime.fromisoformat(started) - datetime.fromisoformat(ended)).total_seconds())
    assert max(gaps) < 0.1, gaps  # milliseconds with the token; up to 10 s without
    names = {w.decode().removeprefix("rq:worker:") for w in redis_conn.smembers("rq:workers")}
    deadline = time.monotonic() + 5
    while not names <= {m.decode() for m in redis_conn.smembers("vq:idle-workers")} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert names <= {m.decode() for m in redis_conn.smembers("vq:idle-workers")}, (
        "idle workers are named where admission wakes them from"
    )
    assert redis_conn.smembers("vq:inbox") <= {b"idle", b"vq:ring:test-echo:normal", b"vq:ring:test-track:normal"}, (
        "not in the set every admission call reads"
    )


def test_users_take_turns_a_flood_does_not_delay_a_single_job(vq, redis_conn):
    _limits(vq, 1)
    heavy = [
        vq.submit("test-track", {"seconds": 0.05}, "--user", "heavy", "--subscription", "enterprise") for _ in range(30)
    ]
    light = [
        vq.submit("test-track", {"seconds": 0.05}, "--user", f"light{i}", "--subscription", "enterprise")
        for i in range(5)
    ]
    vq.start_daemon(workers=2)
    for job_id in heavy + light:
        vq.wait_for(job_id, timeout=60)
    order = [i.decode() for i in redis_conn.lrange("test:started", 0, -1)]
    positions = sorted(order.index(j) for j in light)
    assert positions[-1] <= len(light) + 1, f"light users' jobs started at {positions} of {len(order)}"


def test_long_waiting_low_priority_jobs_age_upwards(vq, redis_conn):
    _limits(vq, 1, priority={"agingThreshold": 1000})
    low = vq.submit("test-track", {"seconds": 0.2}, "--user", "u", "--subscription", "enterprise", "--priority", "low")
    normal = [
        vq.submit("test-track", {"seconds": 0.2}, "--user", "u", "--subscription", "enterprise", "--priority", "normal")
        for _ in range(30)
    ]
    vq.start_daemon(workers=1)
    vq.wait_for(low, timeout=30)
    order = [i.decode() for i in redis_conn.lrange("test:started", 0, -1)]
    assert order.index(low) < 25, f"the low job started {order.index(low)}th of {len(normal) + 1}"
    for job_id in normal:
        vq.wait_for(job_id, timeout=30)


def test_a_job_aged_to_high_still_counts_as_waiting_since_it_was_enqueued(vq, redis_conn):
    """Aging moves a job's place in line, not its wait: `vq queues` still counts it and
    `vq health` measures its wait from when it was enqueued, not from its last move."""
    _limits(vq, 1, priority={"agingThreshold": 1000})
    vq.start_daemon(workers=1)
    vq.run("pause", "test-track")
    job = vq.submit("test-track", {}, "--user", "u", "--subscription", "enterprise", "--priority", "low")
    submitted = time.monotonic()
    deadline = submitted + 15
    while redis_conn.hget("vq:aged", job) != b"high":
        assert time.monotonic() < deadline, "the low job was not aged to high"
        time.sleep(0.1)
    time.sleep(0.5)
    row = next(r for r in vq.json("queues") if r["jobType"] == "test-track")
    assert (row["queued"], row["limited"]) == (1, 0)  # the type is paused: it waits for the resume, not a slot
    report = json.loads(vq.run("health", "--json").stdout)
    track = next(r for r in report["queues"] if r["jobType"] == "test-track")
    assert track["backlogAgeMs"] >= (time.monotonic() - submitted - 0.5) * 1000 - 300
    vq.run("resume", "test-track")
    assert vq.wait_for(job)["status"] == "finished"


def test_waiting_lines_are_found_even_when_their_hint_is_lost(vq, redis_conn):
    """Admission looks only at the lines vq:inbox lists while it finds work there; lines it
    does not list (the set was lost, or an older vq made them) are found by the full look
    an idle worker makes, and listed again."""
    _limits(vq, 5)
    vq.start_daemon(workers=1)
    vq.run("pause", "test-track")
    ids = [vq.submit("test-track", {}, "--user", f"u{i}", "--subscription", "pro") for i in range(3)]
    deadline = time.monotonic() + 10
    while redis_conn.llen("vq:ring:test-track:normal") < 3:
        assert time.monotonic() < deadline, "the jobs were not routed into their users' lines"
        time.sleep(0.1)
    assert redis_conn.sismember("vq:inbox", "vq:ring:test-track:normal")
    redis_conn.delete("vq:inbox")
    vq.run("resume", "test-track")
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=10)["status"] == "finished"
    assert not redis_conn.sismember("vq:inbox", "vq:ring:test-track:normal"), "an emptied line is unlisted"


def test_a_call_that_serves_nobody_keeps_the_turn_order(vq, redis_conn):
    """Admission moves each user it looks at to the back of the ring; a call that serves
    nobody (the type is full, or every user is at their limit) must leave the order as it
    found it, or the next slot would go to whoever the idle calls happened to leave first."""
    from vq.admission import Admission, release

    _limits(vq, 5)
    vq.run("limits", "set", "type", "test-track", "1")
    for user in ("a", "b", "c"):
        vq.submit("test-track", {}, "--user", user, "--subscription", "pro")
    admission = Admission(redis_conn, 30_000)
    first = admission.admit(["test-track"])
    assert first.user == "a"
    for _ in range(3):
        assert admission.admit(["test-track"]) is None, "the type is full"
    release(redis_conn, first.job_id, "test-track", "a")
    second = admission.admit(["test-track"])
    assert second.user == "b", "b's turn, however often the full type was looked at"
    release(redis_conn, second.job_id, "test-track", "b")

    vq.run("limits", "set", "type", "test-track", "10")
    for user in ("d", "e"):
        for _ in range(2):
            vq.submit("test-track", {}, "--user", user, "--subscription", "free")
    running = [admission.admit(["test-track"]) for _ in range(3)]
    assert [r.user for r in running] == ["c", "d", "e"]
    assert admission.admit(["test-track"]) is None, "d and e are at their limit of 1"
    for done in running:
        release(redis_conn, done.job_id, "test-track", done.user)
    assert admission.admit(["test-track"]).user == "d", "d's turn: the look round everyone changed nothing"


def test_one_admission_call_routes_the_arrivals_of_many_new_users(vq, redis_conn):
    """Routing writes each new user's tier in chunks (Lua's unpack has a limit): 600 users
    whose jobs arrive in three lists at once are all routed by one call, none lost."""
    from vq.admission import Admission, count_waiting
    from vq.config import load_settings
    from vq.submission import Submission, submit_each

    settings = load_settings(vq.config_path, env={})
    subs = [
        Submission(job_type="test-track", user_id=f"user-{p}-{n}", subscription="pro", priority=p, privileged=True)
        for p in ("high", "normal", "low")
        for n in range(200)
    ]
    assert all(o["ok"] for o in submit_each(redis_conn, settings, subs, lambda s: s))
    vq.run("pause", "test-track")
    assert Admission(redis_conn, 30_000).admit(["test-track"]) is None, "paused: routed, none admitted"
    assert count_waiting(redis_conn, "test-track") == 600
    assert redis_conn.hlen("vq:usertier") == 600
    assert redis_conn.hget("vq:usertier", "user-low-199") == b"pro"


def test_a_killed_worker_frees_its_slots_and_its_job_runs_again(vq, redis_conn):
    _limits(vq, 1, queue={"settings": {"lockDuration": 1500, "stalledInterval": 1000, "maxStalledCount": 1}})
    doomed = vq.submit("test-track", {"seconds": 30}, "--user", "u", "--subscription", "pro")
    vq.start_daemon(workers=2)
    vq.wait_for(doomed, statuses=("started",))
    pid = handler_pid(redis_conn, doomed)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    deadline = killed_at + 10
    while time.monotonic() < deadline:
        view = vq.json("show", doomed)
        if view["status"] == "started" and int(redis_conn.get(f"test:pid:{doomed}")) != pid:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the stalled job was not run again: {view['status']}")
    assert time.monotonic() - killed_at < 1.5 + 1.0 + 2.0, "within the lease and the stalled interval"
    assert "stalled" in vq.daemon_log(0)
    vq.json("cancel", doomed)
    assert vq.wait_for(doomed, timeout=10)["status"] == "canceled"
    time.sleep(0.3)
    row = next(t for t in vq.json("limits")["types"] if t["jobType"] == "test-track")
    assert row["running"] == 0


def test_a_job_that_stalls_too_often_fails(vq, redis_conn):
    _limits(vq, 1, queue={"settings": {"lockDuration": 1000, "stalledInterval": 1000, "maxStalledCount": 0}})
    doomed = vq.submit("test-track", {"seconds": 30}, "--user", "u", "--subscription", "pro")
    vq.start_daemon(workers=1)
    vq.wait_for(doomed, statuses=("started",))
    os.kill(handler_pid(redis_conn, doomed), signal.SIGKILL)
    view = vq.wait_for(doomed, timeout=10)
    assert view["status"] == "failed" and view["error"]["category"] == "stalled"


@pytest.mark.parametrize(
    "args, message",
    [
        (["set", "type", "test-track", "0"], "at least 1"),
        (["set", "type", "test-track", "-3"], "at least 1"),
        (["set", "tier", "gold", "3"], "unknown subscription tier 'gold'"),
        (["set", "planet", "x", "3"], "limit kind 'planet'"),
    ],
)
def test_bad_limits_are_refused_with_one_line(vq, args, message):
    """(An unknown type is 'no such type', exit 4, as everywhere: tests/test_bad_input.py.)"""
    proc = vq.run("limits", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _start_order(redis_conn) -> list[str]:
    return [i.decode() for i in redis_conn.lrange("test:started", 0, -1)]


def _shares(vq, redis_conn, users: dict[str, list[str]], first: int) -> dict[str, int]:
    """How many of the first `first` starts (by the handler's own record) each user had."""
    for ids in users.values():
        for job_id in ids:
            vq.wait_for(job_id, timeout=60)
    owner = {job_id: user for user, ids in users.items() for job_id in ids}
    counts = dict.fromkeys(users, 0)
    for job_id in _start_order(redis_conn)[:first]:
        counts[owner[job_id]] += 1
    return counts


def _flood(vq, user: str, count: int, **fields: str) -> list[str]:
    line = json.dumps({"jobType": "test-track", "userId": user, "data": {"seconds": 0}, **fields})
    return [o["id"] for o in vq.json("submit", "--batch", "-", input="\n".join([line] * count))]


def test_weighted_users_get_starts_in_proportion_to_their_weights(vq, redis_conn):
    """concurrency.userWeights: three users flood one type through one slot; over whole
    rounds each starts as many jobs as its weight per round (1 : 2 : 4), in the handler's
    own record of what started."""
    _limits(vq, 1)
    vq.configure(concurrency={"userWeights": {"heavy": 4, "mid": 2}})
    users = {user: _flood(vq, user, 14) for user in ("light", "mid", "heavy")}
    vq.start_daemon(workers=1)
    assert _shares(vq, redis_conn, users, 14) == {"light": 2, "mid": 4, "heavy": 8}


def test_a_tier_weight_set_at_runtime_applies_and_shows_in_limits(vq, redis_conn):
    """`vq limits set tier-weight pro 3`, with no weights in config: a pro user then takes
    three starts per turn to a basic user's one (both asked for normal priority)."""
    _limits(vq, 1)
    said = vq.run("limits", "set", "tier-weight", "pro", "3")
    assert said.returncode == 0 and said.stderr.strip() == "tier-weight pro: weight 3", said.stderr
    users = {
        "basic-user": _flood(vq, "basic-user", 8, subscription="basic", priority="normal"),
        "pro-user": _flood(vq, "pro-user", 8, subscription="pro", priority="normal"),
    }
    vq.run("pause", "test-track")
    vq.start_daemon(workers=1)  # routes the waiting jobs into their users' lines, starts none
    deadline = time.monotonic() + 15
    while len((shown := vq.json("limits"))["users"]) < 2:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert shown["tierWeights"] == {"free": 1, "basic": 1, "pro": 3, "enterprise": 1}
    assert {u["userId"]: u["weight"] for u in shown["users"]} == {"basic-user": 1, "pro-user": 3}
    vq.run("resume", "test-track")
    assert _shares(vq, redis_conn, users, 8) == {"basic-user": 2, "pro-user": 6}
    assert vq.run("limits", "reset", "tier-weight", "pro").returncode == 0
    assert vq.json("limits")["tierWeights"]["pro"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tier-weight", "gold", "2"), "unknown subscription tier 'gold'"),
        (("user-weight", "alice", "0"), "at least 1"),
        (("user-weight", "alice", "1001"), "weight must be from 1 to 1000"),
    ],
)
def test_a_bad_weight_is_one_line_and_exit_2(vq, args, message):
    result = vq.run("limits", "set", *args)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_bad_weight_in_config_is_one_line(vq):
    vq.configure(concurrency={"weights": {"gold": 2}})
    result = vq.run("limits")
    assert result.returncode == 2 and "concurrency.weights" in result.stderr and "'gold'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
