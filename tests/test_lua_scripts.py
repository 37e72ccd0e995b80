"""The admission scripts alone, against a real Redis: no daemon, no worker process, only
the calls vq/admission.py makes (vq/lua/admit_*.lua, renew.lua, limits.lua), for the cases
where a slip costs a user: the last slot, two workers at once, a stale lease, an empty ring."""

from __future__ import annotations

import json
import threading
import time

import redis

from vq import keys
from vq.admission import Admission, Start, forget_gone_idle_workers, migrate_legacy_idle, parse_admitted, release
from vq.job_end import JobEnd
from vq.limits import rebuild_effective

TYPE = "t-lua"


def _end(job_id: str, token: str, fields=("status", "finished", "result", "{}"), event=None) -> JobEnd:
    """The end a worker sends for a TYPE job at normal priority (its `finished` event by default)."""
    return JobEnd(
        id=job_id,
        key=keys.rq_job(job_id),
        fields=list(fields),
        ttl=60,
        registry=keys.rq_finished(keys.queue_name(TYPE, "normal")),
        event=event or ["event", "finished", "jobId", job_id],
        dependents=keys.rq_dependents(job_id),
        token=token,
    )


def _job(
    conn, job_id: str, user: str, priority: str = "normal", tier: str = "free", job_type: str = TYPE, **more
) -> None:
    """A queued job as vq's submission leaves it: RQ's hash, its id on its queue's list,
    the list marked for admission. `more`: meta fields (deadline, onDeadline)."""
    queue = keys.queue_name(job_type, priority)
    meta = {"userId": user, "subscription": tier, "jobType": job_type, "attempts": 0, **more}
    conn.hset(
        keys.rq_job(job_id),
        mapping={
            "status": "queued",
            "meta": json.dumps(meta),
            "origin": queue,
            "enqueued_at": "2026-12-06T03:00:00.000000Z",
            "timeout": "60",
        },
    )
    conn.rpush(keys.rq_queue(queue), job_id)
    conn.sadd(keys.INBOX, queue)


def _idle(conn, *workers: str) -> None:
    """These workers wait for a wake token, as an admission call that found nothing for them
    leaves it: named in the idle set, with the inbox's hint that someone idles."""
    conn.sadd(keys.IDLE_WORKERS, *workers)
    conn.sadd(keys.INBOX, keys.INBOX_IDLE_HINT)


def _limits(conn, type_limit: int = 100, tiers: dict | None = None, users: dict | None = None) -> None:
    conn.hset(keys.limits("type"), TYPE, type_limit)
    conn.hset(keys.limits("tier"), mapping=tiers or {"free": 1, "basic": 2, "pro": 5, "enterprise": 10})
    if users:
        conn.hset(keys.limits("user"), mapping=users)
    rebuild_effective(conn)


def _drain(admission: Admission, types=(TYPE,)) -> list[str]:
    out = []
    while (admitted := admission.admit(list(types))) is not None:
        out.append(admitted.job_id)
    return out


def _running(conn, key: str) -> int:
    return conn.zcount(key, int(time.time() * 1000), "+inf")


def test_the_last_slot_goes_to_one_job_and_comes_back_when_it_ends(redis_conn):
    _limits(redis_conn, type_limit=2, tiers={"free": 5})
    for i in range(4):
        _job(redis_conn, f"j{i}", f"u{i}")
    admission = Admission(redis_conn, lease_ms=30_000)
    first = _drain(admission)
    assert first == ["j0", "j1"], "the type's two slots, in arrival order"
    assert _running(redis_conn, keys.running_type(TYPE)) == 2
    assert admission.admit([TYPE]) is None, "no third job while both slots are held"
    release(redis_conn, "j0", TYPE, "u0")
    assert _drain(admission) == ["j2"], "the freed slot goes to exactly one waiting job"
    assert redis_conn.zcard(keys.wait_since(TYPE, "normal")) == 1, "j3 still waits, in line"


def test_a_user_at_their_tier_limit_waits_while_another_user_runs(redis_conn):
    _limits(redis_conn, tiers={"free": 1, "pro": 5})
    for i in range(3):
        _job(redis_conn, f"f{i}", "free-user", tier="free")
        _job(redis_conn, f"p{i}", "pro-user", tier="pro")
    admitted = _drain(Admission(redis_conn, lease_ms=30_000))
    assert sorted(admitted) == ["f0", "p0", "p1", "p2"], "free gets its one slot, pro all three jobs"
    assert redis_conn.llen(keys.waiting_list(TYPE, "normal", "free-user")) == 2


def test_users_take_turns_and_priority_comes_first(redis_conn):
    _limits(redis_conn, tiers={"free": 10})
    for i in range(3):
        _job(redis_conn, f"a{i}", "alice")
    _job(redis_conn, "b0", "bob")
    _job(redis_conn, "h0", "carol", priority="high")
    assert _drain(Admission(redis_conn, lease_ms=30_000)) == ["h0", "a0", "b0", "a1", "a2"]


def test_two_workers_at_once_never_take_more_than_the_limit(redis_server):
    conns = [redis.Redis.from_url(redis_server.url) for _ in range(2)]
    conns[0].flushall()
    _limits(conns[0], type_limit=3, tiers={"free": 100})
    for i in range(60):
        _job(conns[0], f"j{i}", f"u{i % 7}")
    taken: list[list[str]] = [[], []]
    go = threading.Barrier(2)

    def work(index: int) -> None:
        admission = Admission(conns[index], lease_ms=30_000)
        go.wait()
        for _ in range(50):
            admitted = admission.admit([TYPE])
            if admitted is not None:
                taken[index].append(admitted.job_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everyone = taken[0] + taken[1]
    assert len(everyone) == 3 and len(set(everyone)) == 3, "three slots, three distinct jobs, whoever asked"
    assert _running(conns[0], keys.running_type(TYPE)) == 3
    for conn in conns:
        conn.close()


def test_a_lapsed_lease_frees_its_slot_and_cannot_be_renewed_or_end_the_job(redis_conn):
    _limits(redis_conn, type_limit=1, tiers={"free": 5})
    _job(redis_conn, "old", "u1")
    _job(redis_conn, "new", "u2")
    short = Admission(redis_conn, lease_ms=150)
    stale = short.admit([TYPE], start=Start("w-old", "x", 420, busy=False))
    assert stale.job_id == "old" and stale.started
    assert short.admit([TYPE]) is None, "its slot is held while the lease is live"
    assert short.renew("old", TYPE, "u1", stale.token) == 1, "the holder renews a live lease"
    time.sleep(0.3)
    assert short.renew("old", TYPE, "u1", stale.token) == 0, "a lapsed lease is never revived"
    taker = Admission(redis_conn, lease_ms=30_000)
    fresh = taker.admit([TYPE])
    assert fresh.job_id == "new", "the lapsed lease no longer counts against the limit"

    # The old job is given to another worker (stalled-job recovery gives it a new token); the
    # first worker's end, under the old token, is refused and gives back no slot.
    redis_conn.hset(keys.rq_job("old"), keys.LEASE_FIELD, "someone-else")
    end = _end("old", stale.token, fields=["status", "finished"])
    with redis_conn.pipeline(transaction=False) as pipe:
        short.admit_in(pipe, [], give_back=("old", TYPE, "u1"), finish=end)
        reply = pipe.execute(raise_on_error=False)[0]
    has_dependents, admitted, refused = short.parse_admitted(reply)
    assert refused and not has_dependents and admitted is None
    assert redis_conn.hget(keys.rq_job("old"), "status") == b"started", "nothing of the stale end written"
    assert int(redis_conn.get(keys.STALE_REFUSED)) == 1
    assert redis_conn.zscore(keys.running_type(TYPE), "new") is not None, "the new holder keeps its slot"


def test_a_job_end_is_written_and_the_next_job_started_in_one_call(redis_conn):
    _limits(redis_conn, type_limit=1, tiers={"free": 5})
    _job(redis_conn, "first", "u1")
    _job(redis_conn, "second", "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    first = admission.admit([TYPE], start=Start("w1", "x", 420, busy=False))
    redis_conn.sadd(keys.rq_dependents("first"), "child")
    end = _end(
        "first",
        first.token,
        fields=["status", "finished", "ended_at", "2026-12-06T03:00:01.000000Z", "result", "42"],
        event=["event", "finished", "jobId", "first", "jobType", TYPE, "ts", "1", "fields", "{}"],
    )
    with redis_conn.pipeline(transaction=False) as pipe:
        admission.admit_in(
            pipe, [TYPE], start=Start("w1", "y", 420, busy=True), give_back=("first", TYPE, "u1"), finish=end
        )
        reply = pipe.execute(raise_on_error=False)[0]
    has_dependents, admitted, refused = admission.parse_admitted(reply)
    assert has_dependents and not refused
    assert redis_conn.hget(keys.rq_job("first"), "status") == b"finished"
    assert redis_conn.hget(keys.rq_job("first"), "result") == b"42"
    assert 0 < redis_conn.ttl(keys.rq_job("first")) <= 60, "the ended job expires"
    assert redis_conn.zscore(keys.rq_finished(keys.queue_name(TYPE, "normal")), "first") is not None
    assert admitted.job_id == "second" and admitted.started, "the freed slot went to the next job"
    job = redis_conn.hgetall(keys.rq_job("second"))
    assert job[b"status"] == b"started" and job[b"worker_name"] == b"w1"
    assert job[keys.LEASE_FIELD.encode()].decode() == admitted.token
    assert json.loads(job[b"meta"])["attempts"] == 1
    events = [fields[b"event"] for _id, fields in redis_conn.xrange(keys.EVENTS)]
    assert events == [b"started", b"finished", b"started"]


def test_an_empty_ring_leaves_the_inbox_and_an_idle_worker_says_it_waits(redis_conn):
    _limits(redis_conn, tiers={"free": 5})
    _job(redis_conn, "gone", "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE], start=None) is not None  # route and admit it: its ring is now empty
    ring = keys.ring(TYPE, "normal")
    assert not redis_conn.exists(ring)
    redis_conn.sadd(keys.INBOX, ring)  # a stale hint: the ring is named but has nobody
    assert admission.admit([TYPE], start=Start("w-idle", "x", 420, busy=False)) is None
    assert redis_conn.smembers(keys.INBOX) == {keys.INBOX_IDLE_HINT.encode()}, (
        "the empty ring left the inbox; the hint that some worker idles is there"
    )
    assert redis_conn.smembers(keys.IDLE_WORKERS) == {b"w-idle"}, "the worker that found nothing is marked idle"


def test_a_canceled_job_in_line_is_skipped_and_its_user_leaves_the_ring(redis_conn):
    _limits(redis_conn, type_limit=1, tiers={"free": 5})
    _job(redis_conn, "runs", "u0")
    _job(redis_conn, "canceled", "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE]).job_id == "runs"
    redis_conn.hset(keys.rq_job("canceled"), "status", "canceled")
    release(redis_conn, "runs", TYPE, "u0")
    assert admission.admit([TYPE]) is None, "a canceled job is never admitted"
    assert not redis_conn.exists(keys.ring(TYPE, "normal")), "its user had nothing else: out of the ring"
    assert _running(redis_conn, keys.running_type(TYPE)) == 0, "no slot is leased for it"


def test_a_paused_type_admits_nothing_until_resumed(redis_conn):
    _limits(redis_conn, tiers={"free": 5})
    _job(redis_conn, "j", "u")
    redis_conn.sadd(keys.PAUSED, TYPE)
    rebuild_effective(redis_conn)
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE]) is None
    redis_conn.srem(keys.PAUSED, TYPE)
    rebuild_effective(redis_conn)
    assert admission.admit([TYPE]).job_id == "j"


def test_a_long_wait_moves_a_job_up_a_level(redis_conn):
    _limits(redis_conn, type_limit=1, tiers={"free": 5})
    _job(redis_conn, "busy", "u0", priority="high")
    _job(redis_conn, "old-low", "u1", priority="low")
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE]).job_id == "busy"  # routes old-low into its line, too
    time.sleep(0.05)
    assert admission.promote_aged([TYPE], threshold_ms=10) == 1
    assert redis_conn.hget(keys.AGED, "old-low") == b"normal"
    assert redis_conn.lrange(keys.waiting_list(TYPE, "normal", "u1"), 0, -1) == [b"old-low"]
    assert keys.ring(TYPE, "normal").encode() in redis_conn.smembers(keys.INBOX)


def test_a_redis_that_lost_the_script_still_gets_the_job_end_and_its_slots_back(redis_conn):
    _limits(redis_conn, type_limit=1, tiers={"free": 5})
    _job(redis_conn, "first", "u1")
    _job(redis_conn, "second", "u2")
    admission = Admission(redis_conn, lease_ms=30_000)
    first = admission.admit([TYPE], start=Start("w1", "x", 420, busy=False))
    redis_conn.script_flush()  # a restarted Redis: the pipeline's EVALSHA answers NOSCRIPT
    end = _end("first", first.token, fields=["status", "finished"])
    give_back = ("first", TYPE, "u1")
    with redis_conn.pipeline(transaction=False) as pipe:
        admission.admit_in(pipe, [TYPE], start=Start("w1", "y", 420, busy=True), give_back=give_back, finish=end)
        reply = pipe.execute(raise_on_error=False)[0]
    _has_dependents, admitted, refused = admission.parse_admitted(reply, give_back, end)
    assert admitted is None and not refused, "nothing admitted on the way: the worker asks again"
    assert redis_conn.hget(keys.rq_job("first"), "status") == b"finished"
    assert _running(redis_conn, keys.running_type(TYPE)) == 0, "its slot is back"
    assert admission.admit([TYPE]).job_id == "second"


def _ms(offset_ms: int) -> int:
    return int(time.time() * 1000) + offset_ms


def test_earliest_deadline_first_within_a_line_and_users_keep_their_turns(redis_conn):
    _limits(redis_conn, tiers={"free": 10})
    _job(redis_conn, "a-plain", "alice")
    _job(redis_conn, "a-later", "alice", deadline=_ms(3_600_000))
    _job(redis_conn, "a-sooner", "alice", deadline=_ms(600_000))
    _job(redis_conn, "b0", "bob")
    assert _drain(Admission(redis_conn, lease_ms=30_000)) == ["a-sooner", "b0", "a-later", "a-plain"]
    assert not redis_conn.exists(keys.ring(TYPE, "normal")), "both lines empty: nobody left in the ring"


def test_a_job_past_its_deadline_is_expired_at_admission_unless_its_type_runs_late(redis_conn):
    _limits(redis_conn, tiers={"free": 10})
    _job(redis_conn, "late", "u", deadline=_ms(-1))
    _job(redis_conn, "runs-late", "v", deadline=_ms(-1), onDeadline="run")
    _job(redis_conn, "told", "w", deadline=_ms(-1), webhookUrl="https://example.com/hook")
    admission = Admission(redis_conn, lease_ms=30_000)
    assert _drain(admission) == ["runs-late"]
    job = redis_conn.hgetall(keys.rq_job("late"))
    meta = json.loads(job[b"meta"])
    assert job[b"status"] == b"canceled" and meta["error"]["category"] == "expired"
    assert redis_conn.zscore(keys.rq_canceled(keys.queue_name(TYPE, "normal")), "late") is not None
    assert _running(redis_conn, keys.running_user("u")) == 0, "no slot is leased for it"
    event = [e for _id, e in redis_conn.xrange(keys.EVENTS) if e[b"jobId"] == b"late"][-1]
    assert event[b"event"] == b"canceled" and json.loads(event[b"fields"])["category"] == "expired"
    hooks = [(e[b"jobId"], e[b"url"], e[b"event"]) for _id, e in redis_conn.xrange(keys.WEBHOOK_EVENTS)]
    assert hooks == [(b"told", b"https://example.com/hook", b"canceled")], "its webhook hears of it"


def test_a_job_with_a_deadline_ages_into_the_next_levels_deadline_order(redis_conn):
    _limits(redis_conn, type_limit=1, tiers={"free": 5})
    _job(redis_conn, "busy", "u0", priority="high")
    _job(redis_conn, "old-low", "u1", priority="low", deadline=_ms(600_000))
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE]).job_id == "busy"
    time.sleep(0.05)
    assert admission.promote_aged([TYPE], threshold_ms=10) == 1
    assert redis_conn.zrange(keys.deadline_line(TYPE, "normal", "u1"), 0, -1) == [b"old-low"]
    assert not redis_conn.exists(keys.deadline_line(TYPE, "low", "u1"))
    assert redis_conn.lrange(keys.ring(TYPE, "normal"), 0, -1) == [b"u1"]
    assert not redis_conn.exists(keys.ring(TYPE, "low"))
    release(redis_conn, "busy", TYPE, "u0")
    assert admission.admit([TYPE]).job_id == "old-low"


def test_the_same_end_run_again_writes_nothing_twice(redis_conn):
    """redis-py runs a command again when its connection drops before the answer (as when
    Redis restarts): the job's end, sent a second time as the same call, adds no second
    `finished` event and gives back no slot twice."""
    _limits(redis_conn, type_limit=1, tiers={"free": 5})
    _job(redis_conn, "first", "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    first = admission.admit([TYPE], start=Start("w1", "x", 420, busy=False))
    end = _end("first", first.token, fields=["status", "finished", "result", "42"])
    for _ in range(2):  # the call, then the same call again
        with redis_conn.pipeline(transaction=False) as pipe:
            admission.admit_in(pipe, [], give_back=("first", TYPE, "u1"), finish=end)
            _has, _admitted, refused = admission.parse_admitted(pipe.execute(raise_on_error=False)[0])
        assert not refused
    events = [fields[b"event"] for _id, fields in redis_conn.xrange(keys.EVENTS)]
    assert events == [b"started", b"finished"], events
    assert _running(redis_conn, keys.running_type(TYPE)) == 0


def test_the_same_admission_run_again_hands_out_the_same_job(redis_conn):
    """redis-py runs a command again when its connection drops before the answer: the call
    that ends a job and starts the next, and an idle worker's call, each run twice with the
    same arguments, start one job, not two (the second left `started` with no worker)."""
    _limits(redis_conn, type_limit=5, tiers={"free": 5})
    for name in ("a", "b", "c", "d"):
        _job(redis_conn, name, "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    idle_call = admission._admit_args([TYPE], Start("w1", "x", 420, busy=False))
    first, again = (admission._admit(args=idle_call) for _ in range(2))
    assert parse_admitted(first).job_id == parse_admitted(again).job_id == "a"
    a = parse_admitted(first)
    end = _end("a", a.token)
    end_call = admission._admit_args([TYPE], Start("w1", "y", 420, busy=True), ("a", TYPE, "u1"), end)
    first, again = (admission._admit(args=end_call) for _ in range(2))
    assert parse_admitted(first).job_id == parse_admitted(again).job_id == "b"
    assert parse_admitted(again).token == parse_admitted(first).token
    assert _running(redis_conn, keys.running_type(TYPE)) == 1  # b only
    assert {redis_conn.hget(keys.rq_job(j), "status") for j in ("c", "d")} == {b"queued"}
    started = [f[b"jobId"] for _id, f in redis_conn.xrange(keys.EVENTS) if f[b"event"] == b"started"]
    assert started == [b"a", b"b"]


def _commands(conn) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (Lua's included)."""
    return {k.removeprefix("cmdstat_").upper(): v["calls"] for k, v in conn.info("commandstats").items()}


def test_a_job_end_and_the_next_start_read_the_ended_hash_once_and_pop_no_deadline_zset(redis_conn):
    """Commands per job (issue 28: at most 24): the call that ends a job and starts the next
    reads the ended job's hash once (its fence and what it holds, to give back), and, for a
    type none of whose jobs has a deadline, pops the user's plain list without a ZPOPMIN."""
    _limits(redis_conn, tiers={"free": 5})
    _job(redis_conn, "first", "u1")
    _job(redis_conn, "second", "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    first = admission.admit([TYPE], start=Start("w1", "x", 420, busy=False))
    end = _end("first", first.token)
    redis_conn.config_resetstat()
    reply = admission._admit(
        args=admission._admit_args([TYPE], Start("w1", "y", 420, busy=True), ("first", TYPE, "u1"), end)
    )
    assert parse_admitted(reply).job_id == "second"
    calls = _commands(redis_conn)
    assert "ZPOPMIN" not in calls, "no job of the type has a deadline: no zset to pop"
    assert calls["HMGET"] == 2, "the ended job's hash once, the limits once"
    assert "LLEN" not in calls and calls["EXISTS"] == 1, "the line's two structures in one EXISTS"


def test_a_rebuild_of_the_limits_keeps_jobs_with_a_deadline_first_in_line(redis_conn):
    """Routing marks a type whose lines hold jobs with a deadline (dated:<type> in the
    effective hash); a rebuild of the limits (a pause, `vq limits set`) keeps the mark, so
    those jobs still go first."""
    _limits(redis_conn, tiers={"free": 10})
    _job(redis_conn, "plain", "alice")
    _job(redis_conn, "dated", "alice", deadline=_ms(600_000))
    admission = Admission(redis_conn, lease_ms=30_000)
    redis_conn.sadd(keys.PAUSED, TYPE)
    rebuild_effective(redis_conn)
    assert admission.admit([TYPE]) is None  # routed into alice's line, paused
    redis_conn.srem(keys.PAUSED, TYPE)
    rebuild_effective(redis_conn)  # resumed: the mark routing set survives the rebuild
    assert _drain(admission) == ["dated", "plain"]


def test_an_idle_worker_that_takes_the_last_waiting_job_wakes_nobody(redis_conn):
    """The wake chain goes on only while jobs wait: a worker woken for one job that takes it
    wakes no other idle worker (whose call would find nothing); with more waiting it does."""
    _limits(redis_conn, tiers={"free": 5})
    _idle(redis_conn, "w2")  # another worker waits for a token
    _job(redis_conn, "only", "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE], start=Start("w1", "x", 420, busy=False)).job_id == "only"
    assert redis_conn.llen(keys.WAKE) == 0, "nothing waits: w2 is not woken"
    _job(redis_conn, "a", "u2")
    _job(redis_conn, "b", "u3")
    assert admission.admit([TYPE], start=Start("w1", "y", 420, busy=False)).job_id == "a"
    assert redis_conn.llen(keys.WAKE) == 1, "b waits: w2 is woken for it"


def test_a_finishing_worker_wakes_an_idle_one_only_when_a_job_waits(redis_conn):
    """Freed slots are announced to idle workers only when some job waits in a line (or
    unrouted, for a type the finishing worker does not serve): with nothing waiting the
    woken worker's call would find nothing."""
    _limits(redis_conn, tiers={"free": 1})
    _job(redis_conn, "a", "u1")
    admission = Admission(redis_conn, lease_ms=30_000)
    _idle(redis_conn, "w2")

    def end_of(admitted):
        return _end(admitted.job_id, admitted.token)

    a = admission.admit([TYPE], start=Start("w1", "x", 420, busy=False))
    other = "t-other"
    reply = admission._admit(args=admission._admit_args([other], None, ("a", TYPE, "u1"), end_of(a)))
    assert parse_admitted(reply) is None
    assert redis_conn.llen(keys.WAKE) == 0, "nothing waits: w2 is not woken"
    _job(redis_conn, "b", "u1")
    _job(redis_conn, "c", "u1")  # u1's limit is 1: c waits in line for b's slot
    b = admission.admit([TYPE], start=Start("w1", "y", 420, busy=False))
    assert b.job_id == "b"
    redis_conn.delete(keys.WAKE)  # the token b's hand-out pushed for c (the chain)
    reply = admission._admit(args=admission._admit_args([other], None, ("b", TYPE, "u1"), end_of(b)))
    assert redis_conn.llen(keys.WAKE) == 1, "c waits for the freed slot: w2 is woken"


def test_a_give_back_token_names_its_slots_goes_out_only_for_a_waiting_job_and_is_passed_on(redis_conn):
    """A finishing worker wakes an idle one only when a job waits that its slots may let
    start, with a token naming them (type, user); an idle worker of another type that takes
    it and finds nothing passes it on, and one that serves the waiting job's type gets it."""
    _limits(redis_conn)  # free: 1 at once
    admission = Admission(redis_conn, 30_000)
    _idle(redis_conn, "w-third", "w-other")
    _job(redis_conn, "a", "u1")
    assert admission.admit([TYPE]).job_id == "a"

    def give_back(job_id: str) -> None:
        with redis_conn.pipeline(transaction=False) as pipe:
            admission.admit_in(pipe, [TYPE], give_back=(job_id, TYPE, "u1"))
            pipe.execute()

    assert redis_conn.lrange(keys.WAKE, 0, -1) == []
    give_back("a")
    assert redis_conn.lrange(keys.WAKE, 0, -1) == [], "nothing waits: nobody is woken"
    _job(redis_conn, "b", "u1")
    assert admission.admit([TYPE]).job_id == "b"
    _job(redis_conn, "c", "u1", job_type="t-other")
    assert admission.admit(["t-other"]) is None, "u1 at their limit: c waits in line"
    give_back("b")
    token = redis_conn.lpop(keys.WAKE).decode()
    assert json.loads(token) == [0, TYPE, "u1", 0]
    third = admission.admit_or_due(["t-third"], start=Start("w-third", "x", 420, busy=False), woken=token)
    assert third == (None, None)
    passed = redis_conn.lpop(keys.WAKE).decode()
    assert json.loads(passed) == [1, TYPE, "u1", 0], "passed on, one hop more"
    other, _ = admission.admit_or_due(["t-other"], start=Start("w-other", "y", 420, busy=False), woken=passed)
    assert other is not None and other.job_id == "c"


def test_an_idle_look_at_a_job_a_live_lease_holds_answers_when_the_lease_lapses(redis_conn):
    """The job waits for its user's slot, which a live lease holds: the idle caller is told
    to look again when that lease would lapse unless renewed (a dead holder's lapses then)."""
    _limits(redis_conn)
    admission = Admission(redis_conn, 3_000)
    _job(redis_conn, "a", "u1")
    _job(redis_conn, "b", "u1")
    assert admission.admit([TYPE]).job_id == "a"
    admitted, due = admission.admit_or_due([TYPE])
    assert admitted is None and due is not None and 2.5 < due <= 3.01, due
    redis_conn.zadd(keys.running_user("u1"), {"a": int(time.time() * 1000) - 1})  # lapsed: its holder died
    assert admission.admit([TYPE]).job_id == "b"


def _calls(conn, command: str) -> int:
    return conn.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


def test_idle_workers_are_not_in_the_inbox_every_call_reads(redis_conn):
    """Issue 28: each admission call reads vq:inbox whole (SMEMBERS, then a loop in Lua), so
    what it holds must not grow with idle workers: they are named in a set of their own,
    which a call only counts, and a freed slot still wakes one of them."""
    _limits(redis_conn, tiers={"free": 1})
    admission = Admission(redis_conn, lease_ms=30_000)
    idle = [f"w-{n:03d}" for n in range(200)]
    for name in idle:
        assert admission.admit([TYPE], start=Start(name, "x", 420, busy=False)) is None
    assert redis_conn.scard(keys.IDLE_WORKERS) == 200, "every worker that found nothing is marked idle"
    assert redis_conn.smembers(keys.INBOX) == {keys.INBOX_IDLE_HINT.encode()}, "one hint, not 200 marks"
    _job(redis_conn, "a", "u1")
    _job(redis_conn, "b", "u1")  # u1's limit is 1: b waits for a's slot
    redis_conn.config_resetstat()
    a = admission.admit([TYPE], start=Start("w-000", "y", 420, busy=False))
    assert a.job_id == "a"
    assert _calls(redis_conn, "smembers") == 1 and _calls(redis_conn, "scard") <= 1, "the idle set is only counted"
    assert redis_conn.scard(keys.IDLE_WORKERS) == 199, "the worker that got a job is no longer idle"
    redis_conn.delete(keys.WAKE)
    with redis_conn.pipeline(transaction=False) as pipe:
        admission.admit_in(pipe, ["t-other"], give_back=("a", TYPE, "u1"))
        pipe.execute()
    assert redis_conn.llen(keys.WAKE) == 1, "b waits for the freed slot: an idle worker is woken"


def test_a_drain_with_nobody_idle_never_reads_the_idle_set(redis_conn):
    """A finishing worker's call that frees slots looks for idle workers only when the
    inbox's hint says some may idle; a hint left after the last idle worker got a job
    leaves the inbox at the first look that finds the set empty."""
    _limits(redis_conn, tiers={"free": 1})
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE], start=Start("w1", "x", 420, busy=False)) is None  # w1 idles
    _job(redis_conn, "a", "u1")
    a = admission.admit([TYPE], start=Start("w1", "y", 420, busy=False))
    assert a.job_id == "a" and redis_conn.scard(keys.IDLE_WORKERS) == 0
    assert redis_conn.sismember(keys.INBOX, keys.INBOX_IDLE_HINT), "nothing else waited: the hint stays"
    _job(redis_conn, "b", "u1")
    with redis_conn.pipeline(transaction=False) as pipe:  # a's end frees u1's slot for b: is anyone idle?
        admission.admit_in(pipe, ["t-other"], give_back=("a", TYPE, "u1"))
        pipe.execute()
    assert redis_conn.llen(keys.WAKE) == 0, "nobody idles: no token"
    assert not redis_conn.sismember(keys.INBOX, keys.INBOX_IDLE_HINT), "the stale hint left the inbox"
    admission.admit([TYPE], start=Start("w1", "z", 420, busy=False))  # b
    _job(redis_conn, "c", "u1")
    assert admission.admit([TYPE]) is None  # routed into u1's line: b holds u1's slot
    redis_conn.config_resetstat()
    with redis_conn.pipeline(transaction=False) as pipe:
        admission.admit_in(pipe, [TYPE], start=Start("w1", "v", 420, busy=True), give_back=("b", TYPE, "u1"))
        assert admission.parse_admitted(pipe.execute()[0])[1].job_id == "c"
    for command in ("scard", "srem", "sadd", "smembers"):
        assert _calls(redis_conn, command) == (1 if command == "smembers" else 0), command


def test_an_older_vqs_idle_marks_in_the_inbox_move_to_the_idle_set(redis_conn):
    """An upgrade: marks an older vq left in vq:inbox (`idle:<worker>`) move out at the
    daemon's start (migrate_legacy_idle), or at the first admission call that meets one (a
    worker of the older vq still running), and such a worker is still woken."""
    redis_conn.sadd(keys.INBOX, keys.LEGACY_INBOX_IDLE + "old-1", keys.LEGACY_INBOX_IDLE + "old-2", "q.normal")
    assert migrate_legacy_idle(redis_conn) == 2
    assert redis_conn.smembers(keys.INBOX) == {b"q.normal", keys.INBOX_IDLE_HINT.encode()}
    assert redis_conn.smembers(keys.IDLE_WORKERS) == {b"old-1", b"old-2"}
    assert migrate_legacy_idle(redis_conn) == 0
    redis_conn.delete(keys.INBOX, keys.IDLE_WORKERS)

    _limits(redis_conn, tiers={"free": 1})
    admission = Admission(redis_conn, lease_ms=30_000)
    _job(redis_conn, "a", "u1")
    _job(redis_conn, "b", "u1")
    a = admission.admit([TYPE])
    assert a.job_id == "a"
    redis_conn.sadd(keys.INBOX, keys.LEGACY_INBOX_IDLE + "old-3")  # an older worker, meanwhile
    with redis_conn.pipeline(transaction=False) as pipe:
        admission.admit_in(pipe, ["t-other"], give_back=("a", TYPE, "u1"))
        pipe.execute()
    assert redis_conn.llen(keys.WAKE) == 1, "b waits for the freed slot: the older vq's idle worker is woken"
    assert keys.INBOX_IDLE_HINT.encode() in redis_conn.smembers(keys.INBOX)
    assert not [m for m in redis_conn.smembers(keys.INBOX) if m.startswith(keys.LEGACY_INBOX_IDLE.encode())]
    assert redis_conn.smembers(keys.IDLE_WORKERS) == {b"old-3"}


def test_the_idle_marks_of_gone_workers_are_dropped(redis_conn):
    """The `forget-idle-marks` chore drops the marks of workers whose RQ key has expired."""
    _idle(redis_conn, "alive", "gone")
    redis_conn.hset(keys.rq_worker("alive"), "state", "idle")
    assert forget_gone_idle_workers(redis_conn) == 1
    assert redis_conn.smembers(keys.IDLE_WORKERS) == {b"alive"}


def test_a_worker_woken_for_a_job_another_took_touches_no_idle_set(redis_conn):
    """A token's job taken by a worker already awake: the woken worker's call finds nothing,
    and, named idle by its previous call in the same wait (`Start.idle`), neither names it
    again nor counts the idle (nothing to pass on). The first call of a wait names it anew,
    so a mark lost meanwhile comes back."""
    _limits(redis_conn, tiers={"free": 5})
    admission = Admission(redis_conn, lease_ms=30_000)
    assert admission.admit([TYPE], start=Start("w1", "x", 420, busy=False)) is None
    redis_conn.config_resetstat()
    again = admission.admit_or_due([TYPE], start=Start("w1", "y", 420, busy=False, idle=True), woken="0")
    assert again == (None, None)
    assert _calls(redis_conn, "sadd") == 0 and _calls(redis_conn, "scard") == 0
    redis_conn.delete(keys.IDLE_WORKERS)  # lost (a flush, the gone-workers chore)
    assert admission.admit([TYPE], start=Start("w1", "z", 420, busy=False)) is None
    assert redis_conn.smembers(keys.IDLE_WORKERS) == {b"w1"}, "a wait's first call names the worker anew"
