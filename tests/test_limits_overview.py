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


def test_limits_set_and_reset_from_the_cli_are_audited_as_the_dashboards_are(vq):
    """A limit change is an operator's action: `vq limits set|reset` writes an audit record
    (action limits-set / limits-reset, the change in its detail), as the web dashboard's does."""
    assert vq.run("limits", "set", "type", "test-echo", "3").returncode == 0
    assert vq.run("limits", "reset", "type", "test-echo").returncode == 0
    records = [r for r in vq.json("audit", "--since", "1h") if r["action"].startswith("limits-")]
    assert [(r["action"], r["job_type"], r["detail"].get("kind"), r["detail"].get("value")) for r in records] == [
        ("limits-reset", "test-echo", "type", None),  # newest first
        ("limits-set", "test-echo", "type", 3),
    ], records
    assert all(r["actor"].startswith("cli:") and r["role"] == "operator" for r in records), records


def test_an_audit_action_no_record_has_is_named_with_the_recorded_ones(vq):
    """`vq audit --action cancelled` (a typo) said only "no audit records", as if nobody had
    canceled anything; it names the actions the trail holds."""
    assert vq.run("limits", "set", "type", "test-echo", "3").returncode == 0
    proc = vq.run("audit", "--action", "cancelled")
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.strip() == "no audit records: no record has action 'cancelled' (recorded: limits-set)"
    proc = vq.run("audit", "--action", "limits-set", "--since", "2020-01-01T00:00:00Z", "--actor", "nobody")
    assert proc.stderr.strip() == "no audit records"
