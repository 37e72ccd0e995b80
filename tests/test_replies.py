"""vq/replies.py reads real Redis replies (bytes, as vq's clients get them) as text, and
refuses a sorted-set range of the other shape instead of mixing members with pairs."""

from __future__ import annotations

import pytest

from vq.replies import members, optional_text, scored, text, text_hash, texts


def test_replies_read_as_text(redis_conn):
    redis_conn.set("t:one", "é")
    redis_conn.sadd("t:set", "a", "b")
    redis_conn.hset("t:hash", mapping={"runs": 3, "lastJobId": "j1"})
    assert text(redis_conn.get("t:one")) == "é" and text("already") == "already"
    assert optional_text(redis_conn.get("t:missing")) is None
    assert sorted(texts(redis_conn.smembers("t:set"))) == ["a", "b"]
    assert text_hash(redis_conn.hgetall("t:hash")) == {"runs": "3", "lastJobId": "j1"}


def test_sorted_set_ranges_with_and_without_scores(redis_conn):
    redis_conn.zadd("t:z", {"late": 2.5, "early": 1})
    assert members(redis_conn.zrange("t:z", 0, -1)) == ["early", "late"]
    assert scored(redis_conn.zrange("t:z", 0, -1, withscores=True)) == [("early", 1.0), ("late", 2.5)]
    assert scored(redis_conn.zrevrangebyscore("t:z", "+inf", 2, withscores=True)) == [("late", 2.5)]
    with pytest.raises(TypeError):
        scored(redis_conn.zrange("t:z", 0, -1))
    with pytest.raises(TypeError):
        members(redis_conn.zrange("t:z", 0, -1, withscores=True))
