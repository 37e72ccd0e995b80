"""Result caching: an identical submission reuses a finished result, per user by default."""

from __future__ import annotations

import json


def test_identical_submission_reuses_the_result_without_running(vq):
    data = {"content": "AI makes video. Video needs AI.", "projectId": "p1"}
    vq.start_daemon()
    first = vq.wait_for(vq.submit("content-analysis", data, "--user", "ann"))
    assert first["status"] == "finished" and first["cached"] is False
    daemon = vq.daemons[0]
    vq.stop_daemon(daemon)  # no worker runs from here on: a hit must not need one
    again = vq.json("submit", "content-analysis", "--user", "ann", "--data", json.dumps({**data, "projectId": "p2"}))
    assert again["status"] == "finished" and again["cached"] is True and again["cachedFrom"] == first["id"]
    assert again["result"] == first["result"] and again["id"] != first["id"]
    assert vq.json("result", again["id"])["result"] == first["result"]
    other_user = vq.json("submit", "content-analysis", "--user", "bob", "--data", json.dumps(data))
    assert other_user["status"] == "queued", "one user's results never reach another"
    skipped = vq.json("submit", "content-analysis", "--user", "ann", "--data", json.dumps(data), "--skip-cache")
    assert skipped["status"] == "queued"
    in_options = vq.json(
        "submit", "content-analysis", "--user", "ann", "--data", json.dumps({**data, "options": {"skipCache": True}})
    )
    assert in_options["status"] == "queued"
    row = next(r for r in vq.json("queues") if r["jobType"] == "content-analysis")
    assert row["cacheHits"] == 1 and row["cacheMisses"] >= 2


def test_global_scope_and_disabled_cache(vq):
    vq.configure(
        job_types={
            "world-building": {"cache": {"ttl": 60000, "scope": "global"}},
            "content-analysis": {"cache": {"ttl": 0}},
        }
    )
    vq.start_daemon()
    world = vq.wait_for(vq.submit("world-building", {"prompt": "glass city"}, "--user", "ann"))
    shared = vq.json("submit", "world-building", "--user", "bob", "--data", json.dumps({"prompt": "glass city"}))
    assert shared["cached"] is True and shared["cachedFrom"] == world["id"]
    vq.wait_for(vq.submit("content-analysis", {"content": "one two"}, "--user", "ann"))
    assert vq.json("submit", "content-analysis", "--user", "ann", "--data", '{"content": "one two"}')["cached"] is False
