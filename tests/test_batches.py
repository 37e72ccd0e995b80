"""Batches with callbacks, against real daemons: on success, on complete and on death each
fire exactly once (a callback job created once, a webhook POSTed once), with two daemons
racing on a batch's last jobs and with a worker killed in the middle of its last job."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.conftest import _kill_tree
from tests.plugins import handler_pid, wait_active
from tests.test_webhooks import LOOPBACK, Receiver
from vq import keys

CALLBACK_TYPE = "test-noop"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def _lines(*jobs: dict) -> str:
    return "\n".join(json.dumps(j) for j in jobs) + "\n"


def _write(tmp_path, name: str, *jobs: dict) -> str:
    path = tmp_path / name
    path.write_text(_lines(*jobs))
    return str(path)


def _callback(kind: str) -> str:
    return json.dumps({"jobType": CALLBACK_TYPE, "data": {"note": kind}})


def _wait_batch(vq, batch_id: str, until, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    view: dict = {}
    while time.monotonic() < deadline:
        vq.check_daemons()
        view = vq.json("batch", "show", batch_id)
        if until(view):
            return view
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id}: {view}\n{vq.log_tails()}")


def _delivered(*kinds: str):
    return lambda v: all((v["callbacks"].get(k) or {}).get("delivered") for k in kinds)


def _callback_jobs(redis_conn) -> list[dict]:
    """Every job of the callback type, with its data (the batch's summary in data.batch)."""
    found = []
    for key in redis_conn.scan_iter("rq:job:*"):
        if b":" in key[len("rq:job:") :]:
            continue
        meta = json.loads(redis_conn.hget(key, "meta") or "{}")
        if meta.get("jobType") == CALLBACK_TYPE:
            found.append({"id": key.decode()[len("rq:job:") :], "meta": meta})
    return found


def test_all_succeed_fires_success_and_complete_once_each(vq, receiver, redis_conn, tmp_path):
    vq.configure(webhooks={"backoff": 100, "allowNetworks": LOOPBACK})
    vq.start_daemon()
    echoes = [{"jobType": "test-echo", "data": {"n": i}} for i in range(4)]
    forked = {"jobType": "test-forked", "data": {"seconds": 0.1, "steps": 1}}  # RQ's own end, in a child
    jobs = _write(tmp_path, "jobs.jsonl", *echoes, forked)
    view = vq.json(
        "batch",
        "create",
        jobs,
        "--user",
        "alice",
        "--description",
        "five jobs",
        "--meta",
        '{"project": "p1"}',
        "--on-success",
        _callback("success"),
        "--on-complete",
        receiver.url + "/complete",
    )
    batch_id = view["id"]
    assert view["counts"]["total"] == 5 and not view["open"]
    done = _wait_batch(vq, batch_id, _delivered("success", "complete"))
    assert done["counts"] == {"total": 5, "done": 5, "failed": 0, "canceled": 0, "pending": 0}
    assert done["complete"]
    (posted,) = receiver.wait_for("/complete")
    body = json.loads(posted["body"])
    assert body["event"] == "batch.complete"
    assert body["batch"]["id"] == batch_id and body["batch"]["counts"]["done"] == 5
    assert body["batch"]["description"] == "five jobs" and body["batch"]["meta"] == {"project": "p1"}
    assert sorted(body["batch"]["jobIds"]) == sorted(j["id"] for j in done["jobs"])
    assert vq.json("show", done["jobs"][0]["id"])["batchId"] == batch_id
    callback = vq.wait_done(f"{batch_id}-success")
    assert callback["status"] == "finished" and callback["userId"] == "alice"
    assert callback["data"]["batch"]["counts"]["done"] == 5
    assert callback["data"]["batch"]["event"] == "batch.success"
    time.sleep(1.5)  # a second delivery would come within the chore's next runs
    assert len(receiver.received) == 1
    assert [j["id"] for j in _callback_jobs(redis_conn)] == [f"{batch_id}-success"]


def test_a_job_failing_for_good_fires_death_and_complete_not_success(vq, receiver, tmp_path):
    vq.configure(webhooks={"backoff": 100, "allowNetworks": LOOPBACK})
    vq.start_daemon()
    jobs = _write(
        tmp_path,
        "jobs.jsonl",
        {"jobType": "test-echo", "data": {"n": 1}},
        {"jobType": "test-broken", "data": {}},
        {"jobType": "test-broken", "data": {}},
        {"jobType": "test-echo", "data": {"n": 2}},
    )
    batch_id = vq.json(
        "batch",
        "create",
        jobs,
        "--user",
        "bob",
        "--on-success",
        receiver.url + "/success",
        "--on-complete",
        receiver.url + "/complete",
        "--on-death",
        receiver.url + "/death",
    )["id"]
    done = _wait_batch(vq, batch_id, _delivered("complete", "death"))
    assert done["counts"] == {"total": 4, "done": 2, "failed": 2, "canceled": 0, "pending": 0}
    receiver.wait_for("/death")
    time.sleep(1.5)
    paths = sorted(r["path"] for r in receiver.received)
    assert paths == ["/complete", "/death"]  # death once for two failures; no success
    assert not done["callbacks"]["success"]["fired"]


def test_an_open_batch_completes_only_once_closed(vq, tmp_path):
    vq.start_daemon()
    first = _write(tmp_path, "first.jsonl", {"jobType": "test-echo", "data": {"n": 1}})
    plain = vq.run("batch", "create", first, "--user", "carol", "--open", "--on-complete", _callback("c"))
    assert plain.returncode == 0, plain.stderr
    batch_id = plain.stdout.strip()  # the id alone, for `id=$(vq batch create ...)`
    assert len(batch_id) == 32
    _wait_batch(vq, batch_id, lambda v: v["counts"]["done"] == 1)
    more = _write(tmp_path, "more.jsonl", *({"jobType": "test-echo", "data": {"n": i}} for i in range(2, 4)))
    added = vq.json("batch", "add", batch_id, more)
    assert added["counts"]["total"] == 3
    _wait_batch(vq, batch_id, lambda v: v["counts"]["done"] == 3)
    time.sleep(1)  # the chore would have delivered by now
    assert not vq.json("batch", "show", batch_id)["callbacks"]["complete"]["fired"]
    closed = vq.json("batch", "close", batch_id)
    assert not closed["open"]
    _wait_batch(vq, batch_id, _delivered("complete"))
    table = vq.run("batch", "show", batch_id)
    assert table.returncode == 0, table.stderr
    assert "total 3  done 3  failed 0  canceled 0  pending 0" in table.stdout
    assert f"on complete: {CALLBACK_TYPE}  delivered {batch_id}-complete" in table.stdout
    assert sum(1 for line in table.stdout.splitlines() if "done" in line and len(line.split()) >= 2) >= 3
    assert vq.wait_done(f"{batch_id}-complete")["status"] == "finished"
    refused = vq.run("batch", "add", batch_id, more)
    assert refused.returncode == 2 and "closed" in refused.stderr and "Traceback" not in refused.stderr


def test_two_daemons_racing_on_the_last_jobs_fire_once(vq, receiver, redis_conn, tmp_path):
    vq.configure(webhooks={"backoff": 100, "allowNetworks": LOOPBACK})
    vq.start_daemon(workers=2)
    vq.another_host("b").start_daemon(workers=2)
    for round_ in range(3):
        gate = f"last-{round_}"
        jobs = _write(
            tmp_path,
            f"jobs{round_}.jsonl",
            *({"jobType": "test-track", "data": {"gate": gate}} for _ in range(4)),
        )
        batch_id = vq.json(
            "batch",
            "create",
            jobs,
            "--user",
            f"dora{round_}",
            "--subscription",
            "enterprise",
            "--on-complete",
            receiver.url + f"/complete/{round_}",
            "--on-success",
            _callback("s"),
        )["id"]
        wait_active(redis_conn, "type:test-track", 4, timeout=20)
        assert int(redis_conn.get("test:active:type:test-track") or 0) == 4  # on both hosts' two workers
        vq.open_gate(gate)  # they end at the same moment
        _wait_batch(vq, batch_id, _delivered("complete", "success"))
        redis_conn.delete(f"test:gate:{gate}")
    time.sleep(1.5)
    assert sorted(r["path"] for r in receiver.received) == [f"/complete/{i}" for i in range(3)]
    assert len(_callback_jobs(redis_conn)) == 3


def test_a_worker_killed_in_the_last_job_still_fires_once(vq, redis_conn, tmp_path):
    vq.configure(queue={"settings": {"lockDuration": 1500, "stalledInterval": 1000, "maxStalledCount": 0}})
    daemon = vq.start_daemon(workers=1)
    jobs = _write(
        tmp_path,
        "jobs.jsonl",
        {"jobType": "test-echo", "data": {"n": 1}},
        {"jobType": "test-track", "data": {"seconds": 60}},
    )
    batch_id = vq.json(
        "batch", "create", jobs, "--user", "erin", "--on-complete", _callback("c"), "--on-death", _callback("d")
    )["id"]
    view = _wait_batch(vq, batch_id, lambda v: v["counts"]["done"] == 1)
    sleeper = next(j["id"] for j in view["jobs"] if j["outcome"] is None)
    os.kill(handler_pid(redis_conn, sleeper), signal.SIGKILL)  # the worker dies mid-job
    done = _wait_batch(vq, batch_id, _delivered("complete", "death"), timeout=60)
    assert done["counts"]["failed"] == 1 and done["counts"]["done"] == 1
    assert sorted(j["id"] for j in _callback_jobs(redis_conn)) == sorted([f"{batch_id}-complete", f"{batch_id}-death"])
    assert daemon.poll() is None


def test_a_daemon_killed_after_the_claim_leaves_the_callback_to_the_next(vq, redis_conn, tmp_path):
    """The count claims the callback as the last job ends; the daemon that would deliver it is
    SIGKILLed first (its delivery chore made to wait): the next daemon delivers it, once."""
    vq.configure(daemon={"shutdownGrace": 5000, "chores": {"batch-callbacks": 600_000}})
    first = vq.start_daemon(workers=1)
    # Its chore's first run (at start) is over before the batch exists: else, on a loaded
    # machine, that run could come after the claim and take the callback under its lease.
    deadline = time.monotonic() + 30
    while not redis_conn.exists("vq:chore:deliver-batch-callbacks"):
        assert time.monotonic() < deadline, "the first daemon's callback chore never ran"
        time.sleep(0.05)
    jobs = _write(tmp_path, "jobs.jsonl", {"jobType": "test-echo", "data": {"n": 1}})
    batch_id = vq.json("batch", "create", jobs, "--user", "fay", "--on-complete", _callback("c"))["id"]
    claimed = _wait_batch(vq, batch_id, lambda v: v["callbacks"]["complete"]["fired"])
    assert claimed["callbacks"]["complete"]["delivered"] is None
    _kill_tree(first)  # the daemon and its workers, at once
    vq.daemons.remove(first)  # killed on purpose: not a failure of the test's daemons
    # Its chore lock is held for 0.9 of the (here long) interval: a dead daemon's lapses that soon.
    redis_conn.delete("vq:chore:deliver-batch-callbacks")
    vq.configure(daemon={"chores": {"batch-callbacks": 200}})
    vq.start_daemon(workers=1)
    _wait_batch(vq, batch_id, _delivered("complete"))
    assert vq.wait_done(f"{batch_id}-complete")["status"] == "finished"
    assert [j["id"] for j in _callback_jobs(redis_conn)] == [f"{batch_id}-complete"]


def test_a_callback_delivered_twice_makes_one_job(vq, redis_conn, tmp_path):
    """A taker that dies after submitting the callback job but before marking it delivered:
    the next delivery finds the job by its fixed id and makes no second one."""
    from vq import batch_callbacks, keys
    from vq.config import load_settings

    daemon = vq.start_daemon(workers=1)
    jobs = _write(tmp_path, "jobs.jsonl", {"jobType": "test-echo", "data": {"n": 1}})
    batch_id = vq.json("batch", "create", jobs, "--user", "gus", "--on-success", _callback("s"))["id"]
    _wait_batch(vq, batch_id, _delivered("success"))
    vq.stop_daemon(daemon)  # else its callback chore (every 500 ms) may take the entry first
    redis_conn.zadd(keys.BATCHES_DUE, {f"{batch_id}|success": 0})  # as if never marked delivered
    settings = load_settings(vq.config_path)
    assert batch_callbacks.deliver_jobs(redis_conn, settings) == 1
    assert [j["id"] for j in _callback_jobs(redis_conn)] == [f"{batch_id}-success"]
    assert redis_conn.zcard(keys.BATCHES_DUE) == 0


def test_http_batches_are_the_caller_s_own(vq, tmp_path):
    from tests.test_api import SECRET, serve

    api = serve(vq, jwt_secret=SECRET, rateLimit={"requests": 1000, "window": 60000})
    ann, bob, operator = api.token("ann"), api.token("bob"), api.token("ops", "operator")
    body = {
        "jobs": [{"jobType": "test-echo", "data": {"n": 1}}],
        "callbacks": {"success": {"jobType": CALLBACK_TYPE, "data": {}}},
        "description": "ann's",
        "open": True,
    }
    created = api.call("POST", "/api/batches", ann, body)
    assert created.status == 201, created.body
    batch_id = created.body["id"]
    assert created.body["userId"] == "ann" and created.body["open"]
    assert api.call("GET", f"/api/batches/{batch_id}", bob).status == 404  # not bob's
    # The listing: a user's token lists its own batches only; an operator's, everyone's.
    bobs = api.call("POST", "/api/batches", bob, {"jobs": body["jobs"], "open": True})
    assert bobs.status == 201, bobs.body
    listed = api.call("GET", "/api/batches", ann)
    assert listed.status == 200 and [b["id"] for b in listed.body["batches"]] == [batch_id], listed.body
    assert listed.body["total"] == 1 and listed.body["page"] == 1
    first = listed.body["batches"][0]
    assert first["state"] == "open" and first["counts"]["total"] == 1 and "jobs" not in first
    assert first["callbacks"]["success"]["fired"] is False and first["description"] == "ann's"
    everyone = api.call("GET", "/api/batches", operator).body
    assert [b["id"] for b in everyone["batches"]] == [bobs.body["id"], batch_id]  # newest first
    assert [b["id"] for b in api.call("GET", "/api/batches?userId=ann", operator).body["batches"]] == [batch_id]
    assert api.call("GET", "/api/batches?limit=1&page=2", operator).body["batches"][0]["id"] == batch_id
    assert api.call("GET", "/api/batches?status=complete", operator).body == {
        "batches": [],
        "total": 0,
        "offset": 0,
        "page": 1,
        "limit": 50,
    }
    others = api.call("GET", "/api/batches?userId=bob", ann)
    assert others.status == 403 and others.body["error"]["message"].startswith("userId:"), others.body
    assert api.call("GET", "/api/batches?status=finished", ann).status == 422
    assert api.call("GET", "/api/batches?limit=0", ann).status == 422
    assert api.call("POST", f"/api/batches/{batch_id}/close", bob).status == 404
    added = api.call("POST", f"/api/batches/{batch_id}/jobs", ann, {"jobs": [{"jobType": "test-echo", "data": {}}]})
    assert added.status == 200 and added.body["counts"]["total"] == 2
    assert api.call("GET", f"/api/batches/{batch_id}", operator).status == 200
    closed = api.call("POST", f"/api/batches/{batch_id}/close", ann)
    assert closed.status == 200 and not closed.body["open"]
    deadline = time.monotonic() + 30
    while not api.call("GET", f"/api/batches/{batch_id}", ann).body["callbacks"]["success"]["delivered"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api.call("GET", f"/api/jobs/{CALLBACK_TYPE}/{batch_id}-success", ann).body["userId"] == "ann"
    again = api.call("POST", f"/api/batches/{batch_id}/close", ann)
    assert again.status == 409 and again.body["error"]["code"] == "conflict"
    # Bad input: a 4xx with one JSON error naming the item.
    as_bob = api.call("POST", "/api/batches", ann, {"jobs": [{"jobType": "test-echo", "userId": "bob", "data": {}}]})
    assert as_bob.status == 403, as_bob.body
    unknown = api.call("POST", "/api/batches", ann, {"jobs": [{"jobType": "no-such-type", "data": {}}]})
    assert unknown.status in (400, 404, 422) and unknown.body["error"]["message"].startswith("jobs[0]:")
    hook = api.call(
        "POST", "/api/batches", ann, {"jobs": body["jobs"], "callbacks": {"death": {"url": "http://127.0.0.1/x"}}}
    )
    assert hook.status == 422 and hook.body["error"]["message"].startswith("onDeath: 127.0.0.1 is a loopback")
    assert api.call("POST", "/api/batches", ann, {"jobs": []}).status == 422
    assert api.call("GET", "/api/batches/" + "0" * 32, ann).status == 404


def test_batch_list_newest_first_by_state_and_user_a_page_at_a_time(vq, tmp_path):
    """No daemon: a delayed job keeps its batch pending; canceling a batch's only job completes it."""
    delayed = _write(tmp_path, "delayed.jsonl", {"jobType": "test-echo", "delay": "1h", "data": {}})
    running = vq.json("batch", "create", delayed, "--user", "alice", "--description", "[red]not red[/]")["id"]
    taking = vq.json("batch", "create", delayed, "--user", "bob", "--open")["id"]
    made = vq.json("batch", "create", delayed, "--user", "alice", "--on-complete", _callback("c"))
    assert vq.run("cancel", made["jobs"][0]["id"]).returncode == 0
    complete = made["id"]

    def listed(*args: str) -> list[str]:
        return [b["id"] for b in vq.json("batch", "list", *args)["batches"]]

    everything = vq.json("batch", "list")
    assert [b["id"] for b in everything["batches"]] == [complete, taking, running]
    assert (everything["total"], everything["offset"], everything["page"], everything["limit"]) == (3, 0, 1, 50)
    states = {b["id"]: (b["state"], b["counts"]["pending"], b["counts"]["canceled"]) for b in everything["batches"]}
    assert states == {running: ("closed", 1, 0), taking: ("open", 1, 0), complete: ("complete", 0, 1)}
    assert "jobs" not in everything["batches"][0]
    assert everything["batches"][0]["callbacks"]["complete"]["fired"] is True
    assert listed("--status", "open") == [taking]
    assert listed("--status", "closed") == [running]
    assert listed("--status", "complete") == [complete]
    assert listed("--user", "alice") == [complete, running]
    assert listed("--user", "alice", "--status", "closed") == [running]
    second = vq.json("batch", "list", "--limit", "2", "--page", "2")
    assert [b["id"] for b in second["batches"]] == [running] and second["total"] == 3 and second["offset"] == 2
    past = vq.json("batch", "list", "--limit", "2", "--page", "99")  # the total was its offset, 196
    assert past["batches"] == [] and past["total"] == 3, past
    assert vq.json("batch", "show", complete)["state"] == "complete"
    shown = vq.run("show", made["jobs"][0]["id"]).stdout  # vq show names the job's batch
    assert "batch" in shown and complete in shown
    # For people: a table with the state, the counts, the callbacks fired, and which of how many.
    page = vq.run("batch", "list", "--limit", "2")
    assert page.returncode == 0, page.stderr
    assert complete in page.stdout and taking in page.stdout and running not in page.stdout
    assert "1/1 fired" in page.stdout and "0/0/1/0" in page.stdout and "1–2 of 3" in page.stdout
    assert "[red]not red[/]" in vq.run("batch", "list", "--user", "alice").stdout  # literal, not markup
    nobody = vq.run("batch", "list", "--user", "nobody")
    assert nobody.returncode == 0 and "no batches (0 of 0)" in nobody.stdout
    assert vq.json("batch", "list", "--user", "nobody") == {
        "batches": [],
        "total": 0,
        "offset": 0,
        "page": 1,
        "limit": 50,
    }


def test_the_listing_forgets_a_batch_whose_keys_expired_and_keeps_an_old_open_one(vq, redis_conn):
    """The index's entries go with their batch: at the next listing that meets them, or the
    sweep-batches chore's trim, which checks only entries older than a batch is kept."""
    from vq import batch_counts, batch_lists, batches, keys
    from vq.config import load_settings
    from vq.submission import Submission

    settings = load_settings(vq.config_path)

    def new(user: str, open_: bool = False) -> str:
        made = batches.create(
            redis_conn,
            settings,
            batches.NewBatch(user_id=user, open=open_),
            [("job", Submission("test-echo", data={}, delay_ms=3_600_000))],
        )
        return made["id"]

    expired, kept, old_open, old_gone = new("ann"), new("ann"), new("bob", open_=True), new("bob")
    for batch_id in (expired, old_gone):  # as EXPIRE would leave them, a week after they completed
        redis_conn.delete(keys.batch(batch_id), keys.batch_jobs(batch_id), keys.batch_ended(batch_id))
    listing = batch_lists.page_batches(redis_conn, user="ann")
    assert [b["id"] for b in listing["batches"]] == [kept] and listing["total"] == 1
    assert redis_conn.zrange(keys.user_batches("ann"), 0, -1) == [kept.encode()]
    assert f"{expired}|ann".encode() not in redis_conn.zrange(keys.BATCHES_INDEX, 0, -1)
    old = int(time.time() * 1000) - (batch_counts.KEEP_SECONDS + 60) * 1000
    for batch_id in (old_open, old_gone):
        redis_conn.zadd(keys.BATCHES_INDEX, {f"{batch_id}|bob": old})
        redis_conn.zadd(keys.user_batches("bob"), {batch_id: old})
    assert batch_lists.trim(redis_conn) == 1
    assert [b["id"] for b in batch_lists.page_batches(redis_conn)["batches"]] == [kept, old_open]
    assert redis_conn.zrange(keys.user_batches("bob"), 0, -1) == [old_open.encode()]
    assert batch_lists.trim(redis_conn) == 0


@pytest.mark.parametrize(
    "args, says, code",
    [
        (["create", "{missing}", "--user", "u"], "no such file", 2),
        (["create", "{bad}", "--user", "u"], "line 2: not valid JSON", 2),
        (["create", "{unknown_type}", "--user", "u"], "FILE: line 1: unknown job type", 4),
        (["create", "{good}", "--user", "u", "--on-success", "ftp://x"], "onSuccess", 2),
        (["create", "{good}", "--user", "u", "--on-death", "{not json"], "onDeath: not valid JSON", 2),
        (
            ["create", "{good}", "--user", "u", "--on-complete", "test-echo"],
            "onComplete: expected a webhook URL (http:// or https://) or a job as JSON",
            2,
        ),
        (["create", "{good}", "--user", "u", "--on-complete", '{"jobType": "no-such-type"}'], "onComplete:", 4),
        (["create", "{good}", "--user", "u", "--meta", "[1]"], "expected a JSON object", 2),
        (["create", "{good}"], "--user: missing", 2),
        (["create", "{other_user}", "--user", "u"], "is not the batch's user", 2),
        (["create", "{unique}", "--user", "u"], "line 1: uniqueKey: not for a job in a batch", 2),
        (["show", "nope"], "no such batch", 4),
        (["close", "0" * 32], "no such batch", 4),
        (["add", "0" * 32, "{good}"], "no such batch", 4),
        (["list", "--status", "finished"], "--status: 'finished' is not one of open, closed, complete", 2),
        (["list", "--page", "0"], "--page and --limit must be at least 1", 2),
    ],
)
def test_bad_input_is_one_line_and_exit_2_or_4_when_not_found(vq, tmp_path, args, says, code):
    files = {
        "missing": str(tmp_path / "none.jsonl"),
        "good": _write(tmp_path, "good.jsonl", {"jobType": "test-echo", "data": {}}),
        "unknown_type": _write(tmp_path, "unknown.jsonl", {"jobType": "no-such-type", "data": {}}),
        "other_user": _write(tmp_path, "other.jsonl", {"jobType": "test-echo", "userId": "x", "data": {}}),
        "unique": _write(tmp_path, "unique.jsonl", {"jobType": "test-echo", "uniqueKey": "k", "data": {}}),
    }
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"jobType": "test-echo", "data": {}}\n{oops\n')
    files["bad"] = str(bad)
    proc = vq.run("batch", *(a.format(**files) if a.startswith("{") and a[1:-1] in files else a for a in args))
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_script_counts_each_job_once_and_never_a_retry(redis_conn):
    """The count itself (vq/lua/batch_sync.lua), on a real Redis: a job counted twice counts
    once, a job waiting for its retry does not count, and each callback is claimed once."""
    from vq import batch_counts, keys

    batch_id = "b" * 32
    redis_conn.hset(
        keys.batch(batch_id),
        mapping={
            "id": batch_id,
            "userId": "u",
            "closed": "1",
            "cb:complete": "{}",
            "cb:death": "{}",
            "cb:success": "{}",
        },
    )
    redis_conn.sadd(keys.batch_jobs(batch_id), "ja", "jb")
    redis_conn.hset(keys.rq_job("ja"), "status", "finished")
    redis_conn.hset(keys.rq_job("jb"), "status", "scheduled")  # failed once, its retry due
    assert batch_counts.sync(redis_conn, batch_id, "end", ["ja", "jb"]) == (1, [])
    assert batch_counts.sync(redis_conn, batch_id, "end", ["ja"]) == (1, [])
    assert redis_conn.hget(keys.batch(batch_id), "done") == b"1"
    assert redis_conn.hget(keys.batch(batch_id), "failed") is None
    redis_conn.hset(keys.rq_job("jb"), "status", "failed")  # out of retries
    assert batch_counts.sync(redis_conn, batch_id, "end", ["jb"]) == (1, ["death", "complete"])
    assert batch_counts.sync(redis_conn, batch_id, "end", ["ja", "jb"]) == (1, [])
    assert batch_counts.sync(redis_conn, batch_id, "end", ["not-a-member"]) == (1, [])
    assert sorted(m.decode() for m in redis_conn.zrange(keys.BATCHES_DUE, 0, -1)) == [
        f"{batch_id}|complete",
        f"{batch_id}|death",
    ]
    assert batch_counts.sync(redis_conn, batch_id, "close", []) == (-3, [])
    assert batch_counts.sync(redis_conn, "c" * 32, "end", ["ja"]) == (-1, [])


def test_canceling_and_removing_waiting_jobs_count_as_canceled(vq, tmp_path):
    vq.start_daemon()
    jobs = _write(
        tmp_path,
        "jobs.jsonl",
        {"jobType": "test-echo", "data": {"n": 1}},
        {"jobType": "test-echo", "delay": "1h", "data": {"n": 2}},
        {"jobType": "test-echo", "delay": "1h", "data": {"n": 3}},
    )
    view = vq.json(
        "batch", "create", jobs, "--user", "hal", "--on-complete", _callback("c"), "--on-success", _callback("s")
    )
    waiting = [j["id"] for j in view["jobs"] if j.get("status") == "scheduled"]
    assert len(waiting) == 2
    assert vq.run("cancel", waiting[0]).returncode == 0
    assert vq.run("rm", waiting[1]).returncode == 0
    done = _wait_batch(vq, view["id"], _delivered("complete"))
    assert done["counts"] == {"total": 3, "done": 1, "failed": 0, "canceled": 2, "pending": 0}
    assert not done["callbacks"]["success"]["fired"]


def test_the_sweep_counts_an_end_a_crash_kept_from_the_count(redis_conn):
    """A job whose end was written but not counted (its writer killed in between): the sweep
    counts it, and the callback it completes is claimed, once."""
    from vq import batch_counts, keys

    batch_id = "d" * 32
    redis_conn.hset(keys.batch(batch_id), mapping={"id": batch_id, "userId": "u", "closed": "1", "cb:complete": "{}"})
    redis_conn.sadd(keys.BATCHES_ACTIVE, batch_id)
    redis_conn.sadd(keys.batch_jobs(batch_id), "jc")
    redis_conn.hset(keys.rq_job("jc"), "status", "finished")  # ended; never counted
    assert batch_counts.sweep(redis_conn) == 1
    assert redis_conn.hget(keys.batch(batch_id), "completedAt") is not None
    assert redis_conn.zrange(keys.BATCHES_DUE, 0, -1) == [f"{batch_id}|complete".encode()]
    assert not redis_conn.sismember(keys.BATCHES_ACTIVE, batch_id)
    assert batch_counts.sweep(redis_conn) == 0


def test_a_webhook_callback_is_refused_when_no_notifier_would_send_it(vq, tmp_path):
    vq.configure(webhooks={"enabled": False})
    jobs = _write(tmp_path, "jobs.jsonl", {"jobType": "test-echo", "data": {}})
    proc = vq.run("batch", "create", jobs, "--user", "ivy", "--on-complete", "https://hooks.example.com/vq")
    assert proc.returncode == 2 and "onComplete: webhooks.enabled is false" in proc.stderr, proc.stderr


def test_a_batch_is_found_by_the_12_characters_the_dashboard_shows(vq, redis_conn, tmp_path):
    """`vq tui` lists batches by their first 12 characters; `vq batch show|add|close` take such
    a prefix (8 at least) as they take a job's, and say when it is ambiguous (exit 2)."""
    jobs = _write(tmp_path, "jobs.jsonl", {"jobType": "test-echo", "data": {}})
    batch_id = vq.json("batch", "create", jobs, "--user", "ann", "--open")["id"]

    assert vq.json("batch", "show", batch_id[:12])["id"] == batch_id
    assert vq.json("batch", "add", batch_id[:8], jobs)["counts"]["total"] == 2
    shown = vq.run("batch", "close", batch_id[:12])
    assert shown.returncode == 0 and batch_id in shown.stdout, shown.stderr
    assert vq.json("batch", "show", batch_id[:12])["state"] in ("closed", "complete")

    short = vq.run("batch", "show", batch_id[:7])
    assert short.returncode == 4 and "no such batch" in short.stderr
    twin = batch_id[:8] + "0" * 24 if batch_id[8:] != "0" * 24 else batch_id[:8] + "1" * 24
    redis_conn.zadd(keys.BATCHES_INDEX, {f"{twin}|bob": 1})  # another batch starting the same
    both = vq.run("batch", "show", batch_id[:8])
    assert both.returncode == 2 and "ambiguous" in both.stderr and batch_id in both.stderr, both.stderr
    assert len(both.stderr.strip().splitlines()) == 1
    assert vq.json("batch", "show", batch_id[:12])["id"] == batch_id


def test_batch_show_names_each_jobs_type(vq, tmp_path):
    """A batch of mixed types: `vq batch show` says which job is which, in the table and in --json."""
    jobs = _write(tmp_path, "mixed.jsonl", {"jobType": "test-echo", "data": {"n": 1}}, {"jobType": "test-noop"})
    made = vq.json("batch", "create", jobs, "--user", "ivy")
    types = {j["id"]: j["jobType"] for j in made["jobs"]}
    assert sorted(types.values()) == ["test-echo", "test-noop"]
    shown = vq.run("batch", "show", made["id"]).stdout
    assert "type" in shown
    for job_id, job_type in types.items():
        row = next(line for line in shown.splitlines() if job_id in line)
        assert job_type in row and "queued" in row, row
