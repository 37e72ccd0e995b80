"""Unique, throttled and debounced jobs (`--unique-key`, README: Unique jobs), against real
daemons and concurrent submitter processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime

import pytest

from tests.plugins import handler_pid


def _submit(vq, job_type: str, data: dict, *extra: str) -> dict:
    """`vq submit --json`: the job's view, with `deduplicated` and `uniqueOutcome`."""
    proc = vq.run("submit", job_type, "--data", json.dumps(data), *extra, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_simple_key_returns_the_waiting_then_the_running_job_and_frees_when_it_ends(vq, redis_conn):
    args = ("--user", "ann", "--unique-key", "report-7")
    first = _submit(vq, "test-track", {"gate": "g"}, *args)
    assert first["deduplicated"] is False and first["uniqueOutcome"] == "created"
    waiting = _submit(vq, "test-track", {"gate": "other"}, *args)
    assert waiting["id"] == first["id"] and waiting["deduplicated"] is True and waiting["uniqueOutcome"] == "existing"
    assert waiting["data"] == {"gate": "g"}  # simple mode keeps the first job's data
    vq.start_daemon()
    handler_pid(redis_conn, first["id"])
    running = _submit(vq, "test-track", {"gate": "g"}, *args)
    assert running["id"] == first["id"] and running["status"] == "started" and running["deduplicated"] is True
    shown = vq.json("show", first["id"])
    assert shown["unique"]["key"] == "report-7" and shown["unique"]["mode"] == "simple"
    assert shown["unique"]["scope"] == "user"
    table = vq.run("show", first["id"]).stdout
    assert "report-7" in table and "simple" in table
    vq.open_gate("g")
    assert vq.wait_done(first["id"])["status"] == "finished"
    after = _submit(vq, "test-noop", {}, *args)
    assert after["id"] != first["id"] and after["deduplicated"] is False


def test_the_key_is_released_when_its_job_is_canceled_or_fails(vq):
    args = ("--user", "ann", "--unique-key", "k1")
    first = vq.submit("test-noop", {}, *args)
    assert vq.submit("test-noop", {}, *args) == first
    assert vq.run("cancel", first).returncode == 0
    second = vq.submit("test-broken", {}, *args)
    assert second != first
    vq.start_daemon()
    assert vq.wait_done(second)["status"] == "failed"
    third = vq.submit("test-broken", {}, *args)
    assert third not in (first, second)


def test_the_key_is_released_when_its_job_is_removed_or_expires(vq):
    args = ("--user", "ann", "--unique-key", "k2")
    first = vq.submit("test-noop", {}, *args)
    assert vq.run("rm", first).returncode == 0
    second = vq.submit("test-noop", {}, *args, "--deadline", "1s")
    assert second != first and vq.submit("test-noop", {}, *args) == second
    assert vq.run("pause", "test-noop").returncode == 0
    vq.start_daemon()
    assert vq.wait_for(second, ("canceled",), timeout=30)["error"]["category"] == "expired"
    assert vq.submit("test-noop", {}, *args) not in (first, second)


def test_the_key_of_a_job_that_stalled_for_good_is_released(vq, redis_conn):
    vq.configure(queue={"settings": {"lockDuration": 1000, "stalledInterval": 1000, "maxStalledCount": 0}})
    args = ("--user", "ann", "--unique-key", "crashy")
    doomed = vq.submit("test-track", {"seconds": 30}, *args)
    vq.start_daemon(workers=1)
    handler_pid(redis_conn, doomed)
    assert vq.submit("test-track", {"seconds": 30}, *args) == doomed  # running: held
    os.kill(handler_pid(redis_conn, doomed), signal.SIGKILL)  # its worker dies mid-job
    view = vq.wait_for(doomed, timeout=20)
    assert view["status"] == "failed" and view["error"]["category"] == "stalled"
    assert vq.submit("test-noop", {}, *args) != doomed


def test_concurrent_submitters_on_two_hosts_make_one_job(vq, redis_conn):
    other = vq.another_host("b")
    vq.start_daemon()
    other.start_daemon()
    args = ("--user", "ann", "--unique-key", "once")
    ids: list[str] = []
    lock = threading.Lock()

    def submitter(host) -> None:
        for _ in range(5):
            job_id = host.submit("test-track", {"gate": "two"}, *args)
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=submitter, args=(host,)) for host in (vq, other, vq, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 20 and len(set(ids)) == 1
    assert redis_conn.zcard("vq:user:ann:jobs") == 1  # one job made, whatever the race
    vq.open_gate("two")
    assert vq.wait_done(ids[0])["status"] == "finished"


def test_the_key_is_per_user_unless_the_scope_is_global(vq):
    ann = vq.submit("test-noop", {}, "--user", "ann", "--unique-key", "shared")
    bob = vq.submit("test-noop", {}, "--user", "bob", "--unique-key", "shared")
    assert ann != bob
    # user ids may hold ':': user a:b's key c is not user a's key b:c
    assert vq.submit("test-noop", {}, "--user", "a:b", "--unique-key", "c") != vq.submit(
        "test-noop", {}, "--user", "a", "--unique-key", "b:c"
    )
    globally = ("--unique-key", "g", "--unique-scope", "global")
    assert vq.submit("test-noop", {}, "--user", "ann", *globally) == vq.submit(
        "test-noop", {}, "--user", "bob", *globally
    )
    vq.configure(limits={"uniqueScope": "global"})
    one = vq.submit("test-noop", {}, "--user", "ann", "--unique-key", "site")
    assert vq.submit("test-noop", {}, "--user", "bob", "--unique-key", "site") == one
    assert vq.json("show", one)["unique"]["scope"] == "global"


def test_throttle_returns_the_last_job_inside_the_window_and_a_new_one_after(vq, redis_conn):
    args = ("--user", "ann", "--unique-key", "sync", "--unique-for", "1m")
    vq.start_daemon()
    first = vq.submit("test-noop", {}, *args)
    assert vq.wait_done(first)["status"] == "finished"
    inside = _submit(vq, "test-noop", {}, *args)
    assert inside["id"] == first and inside["deduplicated"] is True  # ended, but the window is open
    assert inside["unique"]["mode"] == "throttle" and inside["unique"]["forMs"] == 60_000
    short = ("--user", "ann", "--unique-key", "tick", "--unique-for", "1500ms")
    one = vq.submit("test-noop", {}, *short)
    assert vq.submit("test-noop", {}, *short) == one
    deadline = time.monotonic() + 10
    while redis_conn.exists("vq:unique:test-noop:ann|tick") and time.monotonic() < deadline:
        time.sleep(0.05)  # the window is the key's expiry
    assert vq.submit("test-noop", {}, *short) != one


def test_debounce_from_two_hosts_at_once_leaves_one_job_with_the_last_data(vq, redis_conn):
    args = ("--user", "ann", "--unique-key", "search-index", "--debounce", "1500ms", "--debounce-max", "20s")
    first = _submit(vq, "test-echo", {"n": -1}, *args)
    assert first["status"] == "scheduled" and first["uniqueOutcome"] == "created"
    ids: list[str] = []
    outcomes: list[str] = []
    lock = threading.Lock()

    other = vq.another_host("b")

    def submitter(host, offset: int) -> None:
        for n in range(offset, offset + 4):
            view = _submit(host, "test-echo", {"n": n}, *args)
            with lock:
                ids.append(view["id"])
                outcomes.append(view["uniqueOutcome"])

    threads = [threading.Thread(target=submitter, args=(host, k * 10)) for k, host in enumerate((vq, other))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(ids) == {first["id"]} and set(outcomes) == {"debounced"}
    last = _submit(vq, "test-echo", {"n": "last"}, *args)
    assert last["id"] == first["id"] and last["data"] == {"n": "last"}
    assert last["unique"]["submissions"] == 10
    told = [e for _id, e in redis_conn.xrange("vq:events") if e[b"jobId"] == first["id"].encode()]
    assert [e[b"event"] for e in told].count(b"debounced") == 9  # for whoever follows the job
    assert _instant(last["scheduledFor"]) > _instant(first["scheduledFor"])  # pushed back
    vq.start_daemon()
    other.start_daemon()
    done = vq.wait_done(first["id"])
    assert done["status"] == "finished" and done["result"]["echo"] == {"n": "last"}


def test_debounce_max_bounds_the_delay_and_a_started_job_is_not_joined(vq, redis_conn):
    args = ("--user", "ann", "--unique-key", "k", "--debounce", "3s", "--debounce-max", "3500ms")
    first = _submit(vq, "test-track", {"gate": "d"}, *args)
    began = _instant(first["unique"]["firstSubmittedAt"])
    time.sleep(1.0)  # time has to pass for the bound to bite (not a synchronisation)
    again = _submit(vq, "test-track", {"gate": "d"}, *args)
    assert again["id"] == first["id"] and again["uniqueOutcome"] == "debounced"
    assert _instant(again["scheduledFor"]) == pytest.approx(began + 3.5, abs=0.05)  # not now + 3 s
    vq.start_daemon()
    handler_pid(redis_conn, first["id"], timeout=20)
    late = _submit(vq, "test-track", {"gate": "d"}, *args)
    assert late["id"] != first["id"] and late["uniqueOutcome"] == "created" and late["status"] == "scheduled"
    vq.open_gate("d")


def test_batch_lines_may_carry_a_unique_key(vq, tmp_path):
    lines = [
        {"jobType": "test-noop", "userId": "ann", "data": {}, "uniqueKey": "b1"},
        {"jobType": "test-noop", "userId": "ann", "data": {}},
        {"jobType": "test-noop", "userId": "ann", "data": {}, "uniqueKey": "b1"},
        {"jobType": "test-noop", "userId": "ann", "data": {}, "uniqueKey": "b1", "debounce": "1s", "uniqueFor": "1m"},
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    proc = vq.run("submit", "--batch", str(path), "--json")
    assert proc.returncode == 2, proc.stderr  # the last line is refused, the others made
    outcomes = json.loads(proc.stdout)
    assert outcomes[0]["unique"] == "created" and outcomes[2]["unique"] == "existing"
    assert outcomes[0]["id"] == outcomes[2]["id"] != outcomes[1]["id"]
    assert not outcomes[3]["ok"] and "debounce" in outcomes[3]["error"]


def test_a_template_can_carry_the_unique_options(vq):
    vq.configure(
        templates={"nightly": {"jobType": "test-noop", "data": {}, "options": {"uniqueKey": "n", "uniqueFor": "1h"}}}
    )
    first = _submit(vq, "test-noop", {}, "--template", "nightly", "--user", "ann")
    again = _submit(vq, "test-noop", {}, "--template", "nightly", "--user", "ann")
    assert again["id"] == first["id"] and again["unique"]["mode"] == "throttle"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--unique-for", "1m"), "--unique-for: only with --unique-key"),
        (("--unique-key", "k", "--debounce", "1s", "--unique-for", "1m"), "not both"),
        (("--unique-key", "k", "--debounce-max", "1m"), "debounceMax: only with debounce"),
        (("--unique-key", "k", "--debounce", "-5s"), "--debounce: '-5s' is not a duration"),
        (("--unique-key", "k", "--unique-for", "0s"), "uniqueFor: must be longer than 0"),
        (("--unique-key", "k" * 201), "uniqueKey: longer than 200"),
        (("--unique-key", "a b"), "not a valid key"),
        (("--unique-key", "k", "--debounce", "2s", "--debounce-max", "1s"), "shorter than debounce"),
        (("--unique-key", "k", "--debounce", "2s", "--delay", "1m"), "not with delay"),
        (("--unique-key", "k", "--unique-scope", "team"), "not one of user, global"),
    ],
)
def test_bad_unique_input_is_one_line_and_exit_2(vq, extra, says):
    proc = vq.run("submit", "test-noop", "--user", "ann", *extra)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_http_answers_201_then_200_with_the_existing_job_and_refuses_bad_input(vq):
    from tests.test_api import SECRET, serve

    api = serve(vq, jwt_secret=SECRET)
    ann = api.token("ann")
    body = {"data": {"n": 1}, "uniqueKey": "export", "uniqueFor": "10m"}
    created = api.call("POST", "/api/jobs/test-noop", ann, body)
    assert created.status == 201 and created.body["deduplicated"] is False, created.body
    again = api.call("POST", "/api/jobs/test-noop", ann, body)
    assert again.status == 200 and again.body["deduplicated"] is True and again.body["id"] == created.body["id"]
    assert again.body["uniqueOutcome"] == "existing"
    shown = api.call("GET", f"/api/jobs/test-noop/{created.body['id']}", ann).body
    assert shown["unique"]["mode"] == "throttle" and shown["unique"]["key"] == "export"
    assert shown["unique"]["forMs"] == 600_000
    plain = api.call("POST", "/api/jobs/test-noop", ann, {"data": {}})
    assert plain.status == 201 and "deduplicated" not in plain.body  # no key: the answer is as before
    for bad, field in (
        ({"uniqueKey": "k", "debounce": -5000}, "debounce"),
        ({"uniqueKey": "k", "debounce": "1s", "uniqueFor": "1m"}, "uniqueFor"),
        ({"uniqueFor": "1m"}, "uniqueFor"),
        ({"uniqueKey": "x" * 201}, "uniqueKey"),
    ):
        reply = api.call("POST", "/api/jobs/test-noop", ann, {"data": {}, **bad})
        assert reply.status == 422 and reply.body["error"]["field"] == field, reply.body
    refused = api.call("POST", "/api/jobs/test-noop", ann, {"data": {}, "uniqueKey": "k", "uniqueScope": "global"})
    assert refused.status == 403  # only an operator chooses another scope than the configured one
    ops = api.token("ops", "operator")
    chosen = {"data": {}, "userId": "ann", "uniqueKey": "k9", "uniqueScope": "global"}
    assert api.call("POST", "/api/jobs/test-noop", ops, chosen).body["unique"]["scope"] == "global"  # an operator may
    bulk = api.call(
        "POST",
        "/api/jobs/bulk",
        ann,
        {"jobs": [{"jobType": "test-noop", "data": {}, "uniqueKey": "b", "delay": 60_000}] * 2},
    ).body
    assert [r["unique"] for r in bulk["results"]] == ["created", "existing"]
    assert bulk["results"][0]["id"] == bulk["results"][1]["id"]
    doc = api.call("GET", "/openapi.json", ops).body
    create = doc["paths"]["/api/jobs/{jobType}"]["post"]["responses"]
    assert {"200", "201"} <= set(create)
    job = doc["components"]["schemas"]["Job"]["properties"]
    assert {"unique", "deduplicated", "uniqueOutcome"} <= set(job)


def test_a_recurring_definition_with_a_unique_key_does_not_pile_up_runs(vq):
    proc = vq.run("recurring", "add", "test-noop", "--cron", "0 0 1 1 *", "--user", "ann", "--unique-key", "nightly")
    assert proc.returncode == 0, proc.stderr
    definition = proc.stdout.strip()
    first = vq.run("recurring", "run", definition).stdout.strip()
    assert vq.run("recurring", "run", definition).stdout.strip() == first  # the last run still waits
    assert vq.json("show", first)["unique"]["key"] == "nightly"
    vq.start_daemon()
    assert vq.wait_done(first)["status"] == "finished"
    assert vq.run("recurring", "run", definition).stdout.strip() != first
    bad = vq.run("recurring", "add", "test-noop", "--cron", "0 0 1 1 *", "--user", "ann", "--unique-for", "1m")
    assert bad.returncode == 2 and "--unique-for: only with --unique-key" in bad.stderr


def test_a_global_key_held_by_another_users_job_answers_its_id_not_its_data(vq):
    from tests.test_api import SECRET, serve

    vq.configure(limits={"uniqueScope": "global"})
    api = serve(vq, jwt_secret=SECRET)
    body = {"data": {"secret": "ann's"}, "uniqueKey": "site-rebuild", "delay": 60_000}
    ann = api.call("POST", "/api/jobs/test-noop", api.token("ann"), body)
    assert ann.status == 201, ann.body
    bob = api.call("POST", "/api/jobs/test-noop", api.token("bob"), {**body, "data": {"secret": "bob's"}})
    assert bob.status == 200 and bob.body["id"] == ann.body["id"] and bob.body["deduplicated"] is True
    assert "data" not in bob.body and "userId" not in bob.body  # another user's job: not shown to bob
    assert bob.body["unique"]["scope"] == "global"
