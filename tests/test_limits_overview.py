"""`vq limits` (vq.limits.overview, also GET /api/limits and the web dashboard's limits
page): the users with running jobs are found from the jobs running now, not by a SCAN of
the keyspace, which took 1.8 s with a million jobs in Redis (scripts/bench/webui.py)."""

from __future__ import annotations

import time


def _scans(conn) -> int:
    return int(conn.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))


def test_limits_name_the_users_running_now_without_scanning_redis(vq, redis_conn):
    ann = vq.submit("test-sleep", {"seconds": 4, "steps": 4}, "--user", "ann")
    bob = vq.submit("test-sleep", {"seconds": 4, "steps": 4}, "--user", "bob")
    vq.start_daemon(workers=2)
    deadline = time.monotonic() + 20
    while {vq.json("show", j)["status"] for j in (ann, bob)} != {"started"} and time.monotonic() < deadline:
        time.sleep(0.1)
    scans = _scans(redis_conn)
    shown = vq.json("limits")
    assert _scans(redis_conn) == scans, "vq limits scanned the keyspace"
    running = {u["userId"]: u["running"] for u in shown["users"]}
    assert running == {"ann": 1, "bob": 1}, shown["users"]
    assert next(t for t in shown["types"] if t["jobType"] == "test-sleep")["running"] == 2
