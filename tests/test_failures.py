"""Error categories, the dead-letter queue and idempotent submission."""

from __future__ import annotations

import random
from datetime import datetime

from vq.config import Backoff
from vq.jobtypes import JobType


def test_rate_limit_waits_exactly_retry_after_without_spending_an_attempt(vq, redis_conn):
    vq.start_daemon()
    job_id = vq.submit("test-ratelimited", {"retry_after": 2}, "--user", "u")
    done = vq.wait_for(job_id, timeout=20)
    assert done["status"] == "finished", done["error"]
    runs = [float(t) for t in redis_conn.lrange(f"test:runs:{job_id}", 0, -1)]
    assert len(runs) == 2
    assert runs[1] - runs[0] >= 2.0, "never before the provider's retry-after"
    assert runs[1] - runs[0] < 4.5
    assert done["attempts"] == 1 and done["maxAttempts"] == 1, "the rate-limited run was not charged"


def test_unknown_exceptions_follow_the_types_rule(vq):
    vq.start_daemon()
    job_id = vq.submit("test-odd", {}, "--user", "u")
    view = vq.wait_for(job_id)
    assert view["status"] == "failed"
    assert view["error"]["category"] == "permanent" and view["error"]["type"] == "KeyError"
    assert view["attempts"] == 1, "configured as permanent: not retried"


def test_backoff_is_exponential_capped_with_jitter_never_shorter():
    jt = JobType("x", "", "m:f", 1000, 5, Backoff(delay=2000, factor=2, max=10_000, jitter=0.5), 1, False)
    for seed in range(20):
        intervals = jt.retry_intervals(random.Random(seed))
        assert [2, 4, 8, 10] <= intervals <= [3, 6, 12, 15], intervals
    assert JobType("x", "", "m:f", 1000, 3, Backoff(delay=2000, jitter=0), 1, False).retry_intervals() == [2, 4]


def test_backoff_waits_its_milliseconds_not_whole_seconds(vq):
    """`delay: 200` waits 200 ms, then 400 ms (RQ's Retry would round each up to a second)."""
    vq.configure(
        job_types={
            "test-quick-retry": {
                "handler": "tests.plugins:flaky",
                "attempts": 3,
                "backoff": {"type": "exponential", "delay": 200, "jitter": 0},
            }
        }
    )
    vq.start_daemon()
    job_id = vq.submit("test-quick-retry", {"succeed_on": 3}, "--user", "u")
    assert vq.wait_for(job_id)["status"] == "finished"
    starts = [
        datetime.fromisoformat(t["at"].replace("Z", "+00:00"))
        for t in vq.json("history", job_id)["transitions"]
        if t["event"] == "started"
    ]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    assert len(gaps) == 2, gaps
    assert 0.2 <= gaps[0] < 0.6 and 0.4 <= gaps[1] < 0.8, f"waits of 200 and 400 ms, got {gaps}"
    assert all(gap < 1.0 for gap in gaps), gaps


def test_dead_letter_queue_list_retry_purge(vq):
    vq.start_daemon()
    dead = [vq.submit("test-broken", {"n": i}, "--user", "u") for i in range(3)]
    for job_id in dead:
        vq.wait_for(job_id)
    listed = vq.json("dlq", "list")
    assert {v["id"] for v in listed} == set(dead)
    assert all(v["error"]["category"] == "permanent" and "input can never work" in v["traceback"] for v in listed)
    assert vq.json("dlq", "retry", dead[0])[0]["id"] == dead[0]
    assert vq.wait_for(dead[0])["attempts"] == 1
    assert vq.run("dlq", "retry").returncode == 2, "an ID or --all is required"
    retried = vq.json("dlq", "retry", "--all", "--type", "test-broken", "--yes")
    assert len(retried) == 3
    for job_id in dead:
        vq.wait_for(job_id)
    assert vq.json("dlq", "purge", "--older-than", "1h", "--yes")["removed"] == 0, "they are all recent"
    assert vq.json("dlq", "purge", "--yes")["removed"] == 3
    assert vq.json("dlq", "list") == []
    assert vq.run("show", dead[1]).returncode == 4


def test_idempotency_key_returns_the_same_job(vq):
    first = vq.submit("test-noop", {}, "--user", "u", "--idempotency-key", "order-42")
    again = vq.submit("test-noop", {}, "--user", "u", "--idempotency-key", "order-42")
    other_user = vq.submit("test-noop", {}, "--user", "v", "--idempotency-key", "order-42")
    assert first == again and other_user != first
    assert len(vq.json("jobs", "--user", "u")) == 1
    vq.json("rm", first)
    assert vq.submit("test-noop", {}, "--user", "u", "--idempotency-key", "order-42") != first
    proc = vq.run("submit", "test-noop", "--user", "u", "--idempotency-key", "bad key!")
    assert proc.returncode == 2 and "idempotencyKey" in proc.stderr
