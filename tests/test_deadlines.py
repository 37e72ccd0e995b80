"""Deadlines (issue 24): a job not started by its deadline does not run. It is canceled
as `expired` where it would start (admission) or while it waits (the sweep chore), its
dependents follow the failure rules, and a type with `onDeadline: run` runs it late."""

from __future__ import annotations

import time
from datetime import datetime

from tests.conftest import TEST_JOB_TYPES
from tests.test_api import SECRET, serve

SHORT_MS = 1000  # long enough to submit and route the job on a loaded machine, short enough to wait out


def _wait_past(view: dict) -> None:
    """Wait until the job's deadline has passed (the one wait a deadline cannot avoid)."""
    left = view.get("timeToDeadlineMs")
    if left is None:  # no longer waiting: on a slow machine it was expired (or run late) already
        assert view["deadline"] and view["status"] not in ("queued", "limited", "scheduled", "deferred"), view
        return
    assert left <= SHORT_MS
    time.sleep(max(0, left) / 1000 + 0.05)  # a slow `vq show` may find it passed already


def _started(redis_conn) -> list[str]:
    """The jobs whose handler really ran (tests/plugins.py tracked)."""
    return [i.decode() for i in redis_conn.lrange("test:started", 0, -1)]


LATE_TYPES = {**TEST_JOB_TYPES, "test-late": {"handler": "tests.plugins:tracked", "onDeadline": "run"}}


def _held(vq, *types: str, **config) -> list[str]:
    """One job at a time per type, a daemon, and a job of each of `types` (test-track by
    default) holding its type's one slot until the gate `hold` opens: what is submitted
    next waits, and can miss its deadline. `config`: more blocks (vq.configure)."""
    vq.configure(concurrency={"type": {"test-track": 1, "test-late": 1}}, **config)
    vq.start_daemon(workers=2)
    holders = [vq.submit(t, {"gate": "hold"}, "--user", f"a-{t}") for t in types or ("test-track",)]
    for holder in holders:
        vq.wait_for(holder, ("started",))
    return holders


def test_bad_deadlines_are_refused_with_one_line_and_exit_2(vq):
    for value, says in (("soon", "not an ISO 8601 time"), ("2020-01-01T00:00:00Z", "is not in the future")):
        proc = vq.run("submit", "test-noop", "--user", "u", "--deadline", value)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "--deadline" in lines[0], lines
        assert says in lines[0]
    proc = vq.run("submit", "--batch", "-", input='{"jobType": "test-noop", "userId": "u", "deadline": "-5m"}\n')
    assert proc.returncode != 0 and "deadline" in proc.stdout + proc.stderr


def test_a_deadline_is_shown_and_a_tier_default_applies(vq):
    vq.configure(deadlines={"byTier": {"free": 3_600_000}})
    free = vq.json("show", vq.submit("test-noop", {}, "--user", "f", "--subscription", "free"))
    assert free["deadline"] is not None and 3_500_000 < free["timeToDeadlineMs"] <= 3_600_000
    pro = vq.json("show", vq.submit("test-noop", {}, "--user", "p", "--subscription", "pro"))
    assert pro["deadline"] is None and pro["timeToDeadlineMs"] is None
    given = vq.json("show", vq.submit("test-noop", {}, "--user", "f", "--deadline", "2m"))
    assert 100_000 < given["timeToDeadlineMs"] <= 120_000, "a deadline given wins over the tier's"
    iso = vq.json("show", vq.submit("test-noop", {}, "--user", "f", "--deadline", "2999-01-01T00:00:00Z"))
    assert iso["deadline"] == "2999-01-01T00:00:00.000Z"
    assert "deadline" in vq.run("show", iso["id"]).stdout


def test_an_expired_job_never_runs_and_its_dependents_follow(vq, redis_conn):
    (holder,) = _held(vq)
    late = vq.submit("test-track", {}, "--user", "b", "--deadline", f"{SHORT_MS}ms")
    child = vq.submit("test-track", {}, "--user", "b", "--depends-on", late)
    _wait_past(vq.json("show", late))
    view = vq.wait_for(late, ("canceled",))
    assert view["error"]["category"] == "expired" and "deadline" in view["error"]["message"]
    assert view["finishedAt"] is not None, "an expired job shows when it ended"
    assert vq.wait_for(child, ("canceled",))["error"]["message"] == f"dependency {late} expired"
    vq.open_gate("hold")
    assert vq.wait_done(holder)["status"] == "finished"
    assert late not in _started(redis_conn) and child not in _started(redis_conn)
    assert "expired" in vq.run("show", late).stdout


def test_admission_expires_a_job_past_its_deadline_where_it_would_start(vq, redis_conn):
    """With the sweep slowed to a crawl, the job expires in the admission step itself."""
    _held(vq, daemon={"chores": {"expire-deadlines": 600_000}})
    late = vq.submit("test-track", {}, "--user", "b", "--deadline", f"{SHORT_MS}ms")
    after = vq.submit("test-track", {}, "--user", "b")
    _wait_past(vq.json("show", late))
    vq.open_gate("hold")
    assert vq.wait_done(after)["status"] == "finished"
    view = vq.wait_done(late)
    assert (view["status"], view["error"]["category"]) == ("canceled", "expired")
    ended = datetime.fromisoformat(view["finishedAt"].replace("Z", "+00:00"))
    assert abs(ended.timestamp() - time.time()) < 30, "an expired job shows when it ended"
    assert late not in _started(redis_conn)
    row = [e for e in redis_conn.xrange("vq:events") if e[1][b"jobId"] == late.encode()]
    assert [e[1][b"event"] for e in row][-1] == b"canceled" and b"expired" in row[-1][1][b"fields"]


def test_a_type_that_runs_late_runs_a_job_past_its_deadline(vq, redis_conn):
    _held(vq, "test-late", job_types=LATE_TYPES)
    late = vq.submit("test-late", {}, "--user", "b", "--deadline", f"{SHORT_MS}ms")
    _wait_past(vq.json("show", late))
    vq.open_gate("hold")
    assert vq.wait_done(late)["status"] == "finished"
    assert late in _started(redis_conn)


def test_earliest_deadline_first_within_a_line_and_users_still_take_turns(vq, redis_conn):
    (holder,) = _held(vq)
    plain = vq.submit("test-track", {}, "--user", "b")
    later = vq.submit("test-track", {}, "--user", "b", "--deadline", "1h")
    sooner = vq.submit("test-track", {}, "--user", "b", "--deadline", "10m")
    other = vq.submit("test-track", {}, "--user", "c")
    for job_id in (plain, later, sooner, other):
        vq.wait_for(job_id, ("limited",))
    assert vq.json("show", sooner)["position"] == 1 and vq.json("show", plain)["position"] == 3
    vq.open_gate("hold")
    for job_id in (plain, later, sooner, other):
        assert vq.wait_done(job_id)["status"] == "finished"
    assert _started(redis_conn) == [holder, sooner, other, later, plain], "b's by deadline; c's turn after b's first"


def test_perf_counts_deadline_misses_per_type_and_tier(vq, redis_conn):
    _held(vq, "test-track", "test-late", job_types=LATE_TYPES)
    expired = vq.submit("test-track", {}, "--user", "b", "--subscription", "pro", "--deadline", f"{SHORT_MS}ms")
    late = vq.submit("test-late", {}, "--user", "c", "--subscription", "free", "--deadline", f"{SHORT_MS}ms")
    _wait_past(vq.json("show", late))
    vq.open_gate("hold")
    assert vq.wait_done(expired)["status"] == "canceled" and vq.wait_done(late)["status"] == "finished"
    want = {
        "test-track": {"expired": 1, "late": 0, "byTier": {"pro": {"expired": 1, "late": 0}}},
        "test-late": {"expired": 0, "late": 1, "byTier": {"free": {"expired": 0, "late": 1}}},
    }
    until = time.monotonic() + 20
    while True:  # the archiver folds events into the metrics a moment after they happen
        rows = {r["jobType"]: r["deadlineMisses"] for r in vq.json("perf")["types"] if r["jobType"] in want}
        if rows == want or time.monotonic() > until:
            break
        time.sleep(0.2)
    assert rows == want
    assert "1 expired" in vq.run("perf", "--type", "test-track").stdout


def test_the_http_api_and_batch_lines_take_a_deadline(vq):
    api = serve(vq, jwt_secret=SECRET)
    ann = api.token("ann")
    bad = api.call("POST", "/api/jobs/test-noop", ann, {"deadline": "soon"})
    assert bad.status == 422 and bad.body["error"]["field"] == "deadline", bad.body  # the API's invalid-field status
    assert "not an ISO 8601 time" in bad.body["error"]["message"]
    made = api.call("POST", "/api/jobs/test-noop", ann, {"deadline": "5m"})
    assert made.status == 201 and made.body["deadline"] is not None, made.body
    lines = '{"jobType": "test-noop", "userId": "u", "deadline": "2m"}\n{"jobType": "test-noop", "userId": "u"}\n'
    outcomes = vq.json("submit", "--batch", "-", input=lines)
    views = [vq.json("show", o["id"]) for o in outcomes]
    assert views[0]["deadline"] is not None and views[1]["deadline"] is None


def test_an_expired_job_retried_runs(vq, redis_conn):
    (holder,) = _held(vq)
    late = vq.submit("test-track", {}, "--user", "b", "--deadline", f"{SHORT_MS}ms")
    _wait_past(vq.json("show", late))
    assert vq.wait_for(late, ("canceled",))["error"]["category"] == "expired"
    vq.open_gate("hold")
    assert vq.run("retry", late).returncode == 0
    view = vq.wait_done(late)
    assert view["status"] == "finished" and view["deadline"] is None and late in _started(redis_conn)


def test_a_delayed_job_past_its_deadline_is_swept_before_it_is_due(vq, redis_conn):
    vq.start_daemon(workers=1)
    delayed = vq.submit("test-track", {}, "--user", "a", "--delay", "1h", "--deadline", f"{SHORT_MS}ms")
    assert vq.json("show", delayed)["status"] == "scheduled"
    _wait_past(vq.json("show", delayed))
    view = vq.wait_for(delayed, ("canceled",))
    assert view["error"]["category"] == "expired"
    until = time.monotonic() + 10
    while "1 waiting job(s) expired" not in vq.daemon_log() and time.monotonic() < until:
        time.sleep(0.1)  # the sweep logs once its run is over
    assert "1 waiting job(s) expired" in vq.daemon_log()
    assert redis_conn.zscore("vq:deadlines", delayed) is None, "nothing left to do for it"
