"""Search (`--where`): jobs found by their data fields and built-in fields, through the history
database's indexes, from `vq history`, `vq jobs` and the HTTP history route."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.parse

from rq.job import Job

from tests.test_api import SECRET, serve

INDEXED = ["data.projectId", "data.model"]


def _ids(rows) -> set[str]:
    return {r["id"] for r in rows}


def _plan(vq, sql: str, params: tuple) -> str:
    db = sqlite3.connect(vq.data_dir / "history.db")
    try:
        return " | ".join(str(row[-1]) for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
    finally:
        db.close()


def test_where_finds_jobs_by_indexed_data_fields_through_an_index(vq):
    vq.configure(history={"indexedFields": INDEXED})
    vq.start_daemon()
    p1 = {vq.submit("test-noop", {"projectId": "p1", "model": "m1"}, "--user", "ann") for _ in range(3)}
    p2 = {vq.submit("test-noop", {"projectId": "p2", "model": "m1"}, "--user", "ann") for _ in range(2)}
    broken = vq.submit("test-broken", {"projectId": "p1", "model": "m2"}, "--user", "bob")
    batch = "\n".join(
        json.dumps({"jobType": "test-noop", "data": {"projectId": "p3", "userId": "cy"}}) for _ in range(4)
    )
    p3 = {o["id"] for o in vq.json("submit", "--batch", "-", input=batch)}  # the batch path (create.lua)
    for job_id in p1 | p2 | p3:
        assert vq.wait_for(job_id)["status"] == "finished"
    assert vq.wait_for(broken, timeout=60)["status"] == "failed"

    assert _ids(vq.json("history", "--where", "data.projectId=p1")) == p1 | {broken}
    assert _ids(vq.json("history", "--where", "data.projectId=p3", "--limit", "100")) == p3
    assert _ids(vq.json("history", "--where", "data.projectId=p1", "--where", "status=failed")) == {broken}
    assert _ids(vq.json("history", "-w", "data.model=m1", "-w", "data.projectId!=p1")) == p2
    assert _ids(vq.json("history", "--where", "data.projectId~p", "--where", "userId=bob")) == {broken}
    assert vq.json("history", "--where", "data.projectId=p1", "--user", "nobody") == []
    exported = vq.run("history", "export", "--format", "json", "--where", "data.projectId=p2")
    assert {json.loads(line)["id"] for line in exported.stdout.splitlines()} == p2
    assert "data" not in vq.json("history", "--where", "data.projectId=p2")[0]  # the copy is for search only

    # vq jobs: the same matches, read live from Redis
    live = vq.json("jobs", "--where", "data.projectId=p1")
    assert _ids(live) == p1 | {broken} and all(v["data"]["projectId"] == "p1" for v in live)
    assert _ids(vq.json("jobs", "--where", "data.projectId=p1", "--status", "failed")) == {broken}

    # an unindexed field: one line naming those that are, exit 2, from both commands
    for command in ("history", "jobs"):
        refused = vq.run(command, "--where", "data.prompt=x")
        assert refused.returncode == 2, refused.stderr
        assert "data.prompt is not an indexed field" in refused.stderr
        assert "data.projectId, data.model" in refused.stderr and "Traceback" not in refused.stderr
    bad = vq.run("history", "--where", "projectId")
    assert bad.returncode == 2 and "FIELD OP VALUE" in bad.stderr

    # each indexed field has an index over the data copy, and SQLite answers from it
    plan = _plan(vq, "SELECT id FROM render_jobs WHERE json_extract(data, '$.\"projectId\"') = ?", ("p1",))
    assert "USING INDEX idx_render_jobs_where_projectId" in plan, plan
    plan = _plan(vq, "SELECT id FROM render_jobs WHERE json_extract(data, '$.\"model\"') = ?", ("m1",))
    assert "USING INDEX idx_render_jobs_where_model" in plan, plan


def test_values_are_matched_literally_and_numbers_as_numbers(vq):
    vq.configure(history={"indexedFields": ["data.projectId", "data.size"]})
    vq.start_daemon()
    tricky = ["p1' OR '1'='1", 'x"); DROP TABLE render_jobs; --', "a%b", "a_b", "p1"]
    made = {value: vq.submit("test-noop", {"projectId": value}, "--user", "ann") for value in tricky}
    sized = {n: vq.submit("test-noop", {"size": n}, "--user", "ann") for n in (3, 10, 40)}
    text_size = vq.submit("test-noop", {"size": "10"}, "--user", "ann")
    for job_id in [*made.values(), *sized.values(), text_size]:
        vq.wait_for(job_id)
    for value, job_id in made.items():
        assert _ids(vq.json("history", "--where", f"data.projectId={value}")) == {job_id}, value
    assert _ids(vq.json("history", "--where", "data.projectId~a%")) == {made["a%b"]}  # not a LIKE pattern
    assert _ids(vq.json("history", "--where", "data.projectId~p1")) == {made["p1"], made["p1' OR '1'='1"]}
    assert _ids(vq.json("history", "--where", "data.size>5")) == {sized[10], sized[40]}
    assert _ids(vq.json("history", "--where", "data.size<=10")) == {sized[3], sized[10]}
    assert _ids(vq.json("history", "--where", "data.size=10")) == {sized[10], text_size}  # 10 and "10"
    assert len(vq.json("history", "--limit", "100")) == len(tricky) + 4  # the table is still there
    assert vq.json("history", "--where", "createdAt>2999-01-01") == []
    assert len(vq.json("history", "--where", "createdAt>2000-01-01T00:00:00Z", "--limit", "100")) == 9
    not_a_time = vq.run("history", "--where", "createdAt>yesterday")
    assert not_a_time.returncode == 2 and "not an ISO 8601 time" in not_a_time.stderr


def test_a_field_added_to_the_config_is_indexed_over_existing_rows(vq):
    vq.configure(history={"indexedFields": ["data.projectId"]})
    vq.start_daemon()
    old = vq.submit("test-noop", {"projectId": "p1", "model": "m7"}, "--user", "ann")
    vq.wait_for(old)
    refused = vq.run("history", "--where", "data.model=m7")
    assert refused.returncode == 2 and "indexed data fields: data.projectId;" in refused.stderr
    vq.configure(history={"indexedFields": ["data.projectId", "data.model"]})
    assert _ids(vq.json("history", "--where", "data.model=m7")) == {old}  # opening made the index
    assert "idx_render_jobs_where_model" in _plan(
        vq, "SELECT id FROM render_jobs WHERE json_extract(data, '$.\"model\"') = ?", ("m7",)
    )
    assert _ids(vq.json("history", "--where", "data.model=m7")) == {old}  # idempotent


def test_without_indexed_fields_no_data_is_copied(vq):
    vq.start_daemon()
    job = vq.submit("test-noop", {"projectId": "p1"}, "--user", "ann")
    vq.wait_for(job)
    refused = vq.run("history", "--where", "data.projectId=p1")
    assert refused.returncode == 2 and "history.indexedFields is empty" in refused.stderr
    assert _ids(vq.json("history", "--where", "userId=ann")) == {job}  # built-in fields need no entry
    db = sqlite3.connect(vq.data_dir / "history.db")
    try:
        assert db.execute("SELECT data FROM render_jobs WHERE id = ?", (job,)).fetchone() == (None,)
    finally:
        db.close()


def test_http_where_is_scoped_to_the_callers_own_jobs(vq):
    vq.configure(history={"indexedFields": INDEXED})
    api = serve(vq, jwt_secret=SECRET, rateLimit={"requests": 1000, "window": 60000})
    ann, bob = api.token("ann"), api.token("bob")
    mine = api.call("POST", "/api/jobs/test-noop", ann, {"userId": "ann", "projectId": "p1"}).body["id"]
    other = api.call("POST", "/api/jobs/test-noop", ann, {"userId": "ann", "projectId": "p2"}).body["id"]
    theirs = api.call("POST", "/api/jobs/test-noop", bob, {"userId": "bob", "projectId": "p1"}).body["id"]
    for job_id in (mine, other, theirs):
        vq.wait_for(job_id)

    def history(user: str, token: str, *terms: str):
        query = urllib.parse.urlencode([("where", t) for t in terms])
        return api.call("GET", f"/api/jobs/user/{user}/history?{query}", token)

    found = history("ann", ann, "data.projectId=p1")
    assert found.status == 200 and [j["id"] for j in found.body["jobs"]] == [mine]
    assert history("ann", ann, "data.projectId=p1", "userId=bob").body["jobs"] == []
    assert history("bob", ann, "data.projectId=p1").status == 404  # another user's history
    assert [j["id"] for j in history("ann", ann, "data.projectId=p2", "status=finished").body["jobs"]] == [other]
    refused = history("ann", ann, "data.prompt=x")
    assert refused.status == 422
    assert "data.projectId, data.model" in refused.body["error"]["message"], refused.body

    # GET /api/jobs/history: everyone's jobs for an operator, the caller's own for a user
    ops = api.token("ops", "operator")
    query = urllib.parse.urlencode([("where", "data.projectId=p1")])
    everyone = api.call("GET", f"/api/jobs/history?{query}", ops)
    assert everyone.status == 200 and {j["id"] for j in everyone.body["jobs"]} == {mine, theirs}
    own = api.call("GET", f"/api/jobs/history?{query}", ann)
    assert own.status == 200 and [j["id"] for j in own.body["jobs"]] == [mine]
    query = urllib.parse.urlencode([("where", "userId=bob")])
    assert api.call("GET", f"/api/jobs/history?{query}", ann).body["jobs"] == []
    assert api.call("GET", "/api/jobs/history?where=data.prompt%3Dx", ops).status == 422


def test_a_debounced_jobs_new_data_is_what_where_finds(vq):
    vq.configure(history={"indexedFields": ["data.projectId"]})
    vq.start_daemon()
    args = ("--user", "ann", "--unique-key", "k", "--debounce", "30s", "--json")
    first = json.loads(vq.run("submit", "test-noop", "--data", '{"projectId": "before"}', *args).stdout)
    again = json.loads(vq.run("submit", "test-noop", "--data", '{"projectId": "after"}', *args).stdout)
    assert again["id"] == first["id"] and again["uniqueOutcome"] == "debounced"
    assert _ids(vq.json("history", "--where", "data.projectId=after")) == {first["id"]}
    assert vq.json("history", "--where", "data.projectId=before") == []
    assert _ids(vq.json("jobs", "--where", "data.projectId=after")) == {first["id"]}


def test_a_sensitive_or_malformed_field_is_refused_in_the_config(vq):
    vq.configure(history={"indexedFields": ["data.projectId", "data.options.apiKey"]})
    refused = vq.run("history", "--where", "data.projectId=p1")
    assert refused.returncode == 2 and "data.options.apiKey is encrypted at rest" in refused.stderr
    vq.configure(history={"indexedFields": ["data.x') OR 1=1 --"]})
    refused = vq.run("history")
    assert refused.returncode == 2 and "is not a data field path" in refused.stderr


def test_jobs_where_shows_a_trimmed_match_from_the_history_and_no_removed_one(vq, redis_conn):
    vq.configure(history={"indexedFields": ["data.projectId"]}, queue={"defaultJobOptions": {"removeOnComplete": 1}})
    vq.start_daemon()
    first = vq.submit("test-noop", {"projectId": "p1"}, "--user", "ann")
    vq.wait_for(first)
    second = vq.submit("test-noop", {"projectId": "p1"}, "--user", "ann")
    vq.wait_for(second)
    removed = vq.submit("test-noop", {"projectId": "p1"}, "--user", "ann", "--delay", "1h")
    assert vq.run("rm", removed, "--yes").returncode == 0
    deadline = time.monotonic() + 60
    while redis_conn.exists(Job.key_for(first)) and time.monotonic() < deadline:
        time.sleep(0.1)  # the daemon's trim pass (removeOnComplete: 1 keeps the newest)
    assert not redis_conn.exists(Job.key_for(first))
    listed = {v["id"]: v for v in vq.json("jobs", "--where", "data.projectId=p1")}
    assert set(listed) == {first, second}
    assert listed[first]["trimmed"] is True and listed[first]["status"] == "finished"
    assert listed[second]["trimmed"] is False
    assert removed in _ids(vq.json("history", "--where", "data.projectId=p1"))  # the history keeps its row


def test_a_job_whose_data_is_too_large_is_still_found_by_its_indexed_fields(vq):
    """Data over history.maxDataBytes: the history keeps a projection of just the indexed
    fields that fit (the submit path and the batch path), so `--where` on them finds it."""
    vq.configure(history={"indexedFields": ["data.projectId", "data.options.size", "data.model"], "maxDataBytes": 200})
    vq.start_daemon()
    prompt = "a long prompt " * 100
    big = vq.submit("test-noop", {"projectId": "p9", "options": {"size": 512, "steps": 4}, "prompt": prompt},
                    "--user", "ann")  # fmt: skip
    huge_model = vq.submit("test-noop", {"projectId": "p9", "model": "m" * 300}, "--user", "ann")
    batch = json.dumps({"jobType": "test-noop", "data": {"projectId": "p8", "userId": "ann", "prompt": prompt}})
    (batched,) = [o["id"] for o in vq.json("submit", "--batch", "-", input=batch)]
    small = vq.submit("test-noop", {"projectId": "p9", "note": "short"}, "--user", "ann")
    for job_id in (big, huge_model, batched, small):
        vq.wait_for(job_id)
    assert _ids(vq.json("history", "--where", "data.projectId=p9")) == {big, huge_model, small}
    assert _ids(vq.json("history", "--where", "data.options.size=512")) == {big}
    assert _ids(vq.json("history", "--where", "data.projectId=p8")) == {batched}
    assert vq.json("history", "--where", "data.model~mmm") == []  # a 300-byte value does not fit in 200
    db = sqlite3.connect(vq.data_dir / "history.db")
    try:
        copies = dict(db.execute("SELECT id, data FROM render_jobs"))
    finally:
        db.close()
    assert json.loads(copies[big]) == {"projectId": "p9", "options": {"size": 512}}  # the projection only
    assert json.loads(copies[huge_model]) == {"projectId": "p9"}
    assert json.loads(copies[small]) == {"projectId": "p9", "note": "short"}  # small enough: the whole data


def test_reindex_makes_jobs_submitted_before_a_field_was_listed_searchable(vq, redis_conn):
    """Jobs submitted while the list was empty have no data copy, and one over
    history.maxDataBytes has a projection without a field listed later: `vq history
    reindex` copies them again from Redis; a job Redis no longer holds cannot be."""
    vq.configure(history={"maxDataBytes": 200})
    vq.start_daemon()
    before = {vq.submit("test-noop", {"projectId": "p1", "model": "m1"}, "--user", "ann") for _ in range(3)}
    gone = vq.submit("test-noop", {"projectId": "p1"}, "--user", "ann")
    for job_id in [*before, gone]:
        vq.wait_for(job_id)
    vq.configure(history={"indexedFields": ["data.projectId"], "maxDataBytes": 200})
    big = vq.submit("test-noop", {"projectId": "p2", "model": "m1", "prompt": "x" * 500}, "--user", "ann")
    vq.wait_for(big)
    assert vq.json("history", "--where", "data.projectId=p1") == []  # submitted before the field was listed
    redis_conn.delete(f"rq:job:{gone}")  # trimmed from Redis: its data is gone
    vq.configure(history={"indexedFields": ["data.projectId", "data.model"], "maxDataBytes": 200})
    assert _ids(vq.json("history", "--where", "data.model=m1")) == set()
    done = vq.run("history", "reindex")
    assert done.returncode == 0, done.stderr
    assert "4 of 4 jobs in Redis had their data copy written" in done.stdout, done.stdout
    assert re.search(r"^reindex: \d jobs looked at, \d data copies written$", done.stderr, re.M), done.stderr
    assert _ids(vq.json("history", "--where", "data.projectId=p1")) == before
    assert _ids(vq.json("history", "--where", "data.model=m1")) == before | {big}
    again = vq.json("history", "reindex")  # nothing left to do
    assert {k: again[k] for k in ("looked", "written", "unchanged", "notInHistory")} == {
        "looked": 4, "written": 0, "unchanged": 4, "notInHistory": 0
    }  # fmt: skip
    assert again["indexedFields"] == ["data.projectId", "data.model"]
    vq.configure(history={"indexedFields": []})
    refused = vq.run("history", "reindex")
    assert refused.returncode == 2 and "history.indexedFields is empty" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    mixed = vq.run("history", "reindex", "--where", "status=failed")
    assert mixed.returncode == 2 and "--where lists jobs: not with reindex" in mixed.stderr, mixed.stderr


def test_a_daemon_started_with_a_new_indexed_field_copies_the_data_of_jobs_redis_holds(vq):
    """No command needed: the archiver finds a field no reindex has run for and walks the
    jobs Redis holds itself, once, saying so in the daemon's log."""
    daemon = vq.start_daemon()
    before = {vq.submit("test-noop", {"projectId": "p1"}, "--user", "ann") for _ in range(3)}
    for job_id in before:
        vq.wait_for(job_id)
    vq.stop_daemon(daemon)
    vq.configure(history={"indexedFields": ["data.projectId"]})
    vq.start_daemon()
    deadline = time.monotonic() + 30
    while _ids(vq.json("history", "--where", "data.projectId=p1")) != before:
        assert time.monotonic() < deadline, vq.log_tails()
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while "archiver: reindex done" not in vq.daemon_log(1):
        assert time.monotonic() < deadline, vq.daemon_log(1)
        time.sleep(0.1)
    assert "3 data copies written" in vq.daemon_log(1)
    again = vq.json("history", "reindex")  # done already: nothing to write
    assert again["written"] == 0 and again["unchanged"] == 3
