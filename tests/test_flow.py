"""Delays, dependencies, cancel, remove, pause/resume/clear and shutdown, with a real daemon."""

from __future__ import annotations

import signal
import time
from datetime import datetime

from rq.job import Job
from rq.registry import ReadyJobRegistry
from rq.serializers import JSONSerializer

from vq import keys
from vq.config import load_settings
from vq.submission import Submission, submit


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_delayed_job_never_starts_early(vq):
    vq.start_daemon()
    before = time.time()
    job_id = vq.submit("test-noop", {}, "--user", "u", "--delay", "2s")
    view = vq.json("show", job_id)
    assert view["status"] == "scheduled"
    done = vq.wait_for(job_id, timeout=15)
    assert done["status"] == "finished"
    assert _ts(done["startedAt"]).timestamp() >= before + 2.0
    assert _ts(done["startedAt"]) >= _ts(view["scheduledFor"])
    assert _ts(done["startedAt"]).timestamp() <= before + 4.5


def test_an_idle_timer_reads_one_key_a_look_not_every_queues_registry(vq, redis_conn):
    """The timer looks in a queue's scheduled registry only when its entry in
    vq:scheduled:due has come (and on a full look every 10 s): an idle daemon's timer read
    all 2 x 3 registries twice a second before."""
    vq.start_daemon()
    job_id = vq.submit("test-noop", {}, "--user", "u", "--delay", "4s")
    assert redis_conn.zscore(keys.SCHEDULED_DUE, "test-noop.low") is not None
    time.sleep(1.5)  # past the timer's first (full) look, within the next one
    with redis_conn.monitor() as monitor:
        time.sleep(2.0)
        redis_conn.echo("vq-test-end")
        reads = 0
        for seen in monitor.listen():
            if seen["command"] == "ECHO vq-test-end":
                break
            reads += seen["command"].startswith("ZRANGE") and f" {keys.RQ_SCHEDULED_PREFIX}" in seen["command"]
    assert reads <= 2, f"{reads} reads of scheduled registries in 2 s"  # 2 x 3 registries x 2 reads a look before
    assert vq.wait_for(job_id, timeout=15)["status"] == "finished"
    assert redis_conn.zscore(keys.SCHEDULED_DUE, "test-noop.low") is None, "an empty registry has no entry"


def test_a_job_scheduled_without_an_entry_still_starts_and_a_stale_entry_costs_nothing(vq, redis_conn):
    """A job in RQ's registry with no vq:scheduled:due entry (an older vq, RQ's own tools) is
    found by the timer's full look; an entry left early by a canceled job does not start a
    later job early."""
    vq.start_daemon()
    early = vq.submit("test-noop", {}, "--user", "u", "--delay", "1s")
    later = vq.submit("test-noop", {}, "--user", "u", "--delay", "3s")
    assert vq.run("cancel", early).returncode == 0
    submitted = time.time()
    done = vq.wait_for(later, timeout=15)
    assert _ts(done["startedAt"]).timestamp() >= submitted + 2.5, "not started at the canceled job's time"
    hidden = vq.submit("test-noop", {}, "--user", "u", "--delay", "1s")
    redis_conn.zrem(keys.SCHEDULED_DUE, "test-noop.low")  # as if an older vq had scheduled it
    assert vq.wait_for(hidden, timeout=25)["status"] == "finished"


def test_at_in_the_past_is_refused_unless_allowed(vq, redis_conn):
    refused = vq.run("submit", "test-noop", "--user", "u", "--at", "2020-01-01T00:00:00Z")
    assert refused.returncode == 2 and "at: 2020-01-01T00:00:00.000Z is in the past" in refused.stderr
    assert redis_conn.zcard("vq:jobs") == 0
    vq.start_daemon()
    job_id = vq.submit("test-noop", {}, "--user", "u", "--at", "2020-01-01T00:00:00Z", "--allow-past")
    assert vq.wait_for(job_id)["status"] == "finished"


def test_delay_beyond_the_maximum_is_refused(vq):
    vq.configure(limits={"maxDelay": 3_600_000})
    proc = vq.run("submit", "test-noop", "--user", "u", "--delay", "2h")
    assert proc.returncode == 2 and "beyond the longest allowed delay of 3600000 ms (limits.maxDelay)" in proc.stderr
    assert vq.run("submit", "test-noop", "--user", "u", "--delay", "59m").returncode == 0


def test_dependent_runs_after_all_dependencies_and_sees_their_results(vq):
    a = vq.submit("test-sleep", {"seconds": 0.5, "steps": 1}, "--user", "u")
    b = vq.submit("test-echo", {"name": "b"}, "--user", "u")
    c = vq.submit("test-echo", {"name": "c"}, "--user", "u", "--depends-on", a, "--depends-on", b)
    assert vq.json("show", c)["status"] == "deferred"
    vq.start_daemon()
    done = vq.wait_for(c)
    assert done["status"] == "finished"
    assert done["dependsOn"] == [a, b]
    views = [vq.json("show", x) for x in (a, b)]
    assert _ts(done["startedAt"]) >= max(_ts(v["finishedAt"]) for v in views)
    assert done["result"]["upstream"][1] == {"echo": {"name": "b"}, "upstream": []}
    tree = vq.json("show", c, "--tree")
    assert [n["id"] for n in tree["dependsOn"]] == [a, b]
    assert all(n["status"] == "finished" for n in tree["dependsOn"])


def test_many_fan_ins_each_start_as_soon_as_their_dependencies_finish(vq, redis_conn):
    """Dependents readied at the same moment by two workers all run at once; none waits
    for a recovery pass (RQ leaves such a contended one for a cleanup every ten minutes)."""
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": 1000}})  # keep them all to compare
    settings = load_settings(vq.config_path)
    joins = []
    for i in range(60):
        a, b = (submit(redis_conn, settings, Submission("test-noop", user_id=f"u{i}")) for _ in range(2))
        joins.append(submit(redis_conn, settings, Submission("test-echo", user_id=f"u{i}", depends_on=[a, b])))
    vq.start_daemon(workers=2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = Job.fetch_many(joins, connection=redis_conn, serializer=JSONSerializer)
        if all(j.get_status(refresh=False) == "finished" for j in jobs):
            break
        time.sleep(0.2)
    for job in jobs:
        assert job.get_status(refresh=False) == "finished", f"{job.id} is {job.get_status(refresh=False)}"
        upstream = Job.fetch_many(job.dependency_ids, connection=redis_conn, serializer=JSONSerializer)
        waited = (job.started_at - max(u.ended_at for u in upstream)).total_seconds()
        assert waited < 2.0, f"{job.id} started {waited:.1f}s after its dependencies finished"


def test_dependent_left_ready_by_a_crash_is_enqueued(vq, redis_conn):
    """A worker that dies between readying a dependent and enqueueing it (RQ's two steps)
    leaves it in RQ's ready registry; the daemon puts it on its queue within seconds."""
    first = vq.submit("test-sleep", {"seconds": 30}, "--user", "u")
    then = vq.submit("test-echo", {}, "--user", "v", "--depends-on", first)
    vq.start_daemon()
    assert vq.wait_for(first, statuses=("started",))  # workers are up (RQ's own start-up cleanup is past)
    job = Job.fetch(then, connection=redis_conn, serializer=JSONSerializer)
    with redis_conn.pipeline() as pipe:  # RQ's first step, as a crashed worker left it
        pipe.multi()
        ReadyJobRegistry(job.origin, connection=redis_conn).register_jobs([job], pipeline=pipe)
        pipe.execute()
    assert vq.wait_for(then, timeout=15)["status"] == "finished"


def test_failed_dependency_cancels_dependents_with_a_reason(vq):
    bad = vq.submit("test-broken", {}, "--user", "u")
    child = vq.submit("test-echo", {}, "--user", "u", "--depends-on", bad)
    grandchild = vq.submit("test-echo", {}, "--user", "u", "--depends-on", child)
    tolerant = vq.submit("test-echo", {}, "--user", "u", "--depends-on", bad, "--allow-failure")
    vq.start_daemon()
    assert vq.wait_for(bad)["status"] == "failed"
    view = vq.wait_for(child)
    assert view["status"] == "canceled"
    assert bad in view["error"]["message"] and "failed" in view["error"]["message"]
    assert vq.wait_for(grandchild)["status"] == "canceled"
    assert vq.wait_for(tolerant)["status"] == "finished"


def test_dependency_that_already_failed_is_refused_unless_allowed(vq):
    vq.start_daemon()
    bad = vq.submit("test-broken", {}, "--user", "u")
    vq.wait_for(bad)
    proc = vq.run("submit", "test-noop", "--user", "u", "--depends-on", bad)
    assert proc.returncode == 2 and "has already failed" in proc.stderr
    ok = vq.submit("test-noop", {}, "--user", "u", "--depends-on", bad, "--allow-failure")
    assert vq.wait_for(ok)["status"] == "finished"


def test_a_canceled_dependent_retried_waits_for_its_dependency_and_runs_once(vq, redis_conn):
    """Retrying a canceled dependent puts it back to waiting on its dependency (it stays in
    that dependency's set of dependents): it starts after the dependency, once, and gives its
    user's slot back, so the user's next job starts at once (it ran twice and held the slot
    for a lease's length when the retry put it straight in line)."""
    first = vq.submit("test-track", {"gate": "first"}, "--user", "ann")
    then = vq.submit("test-track", {"seconds": 0.1}, "--user", "ann", "--depends-on", first)
    assert vq.json("cancel", then)["status"] == "canceled"
    assert vq.json("retry", then)["status"] == "deferred"
    vq.start_daemon()
    vq.wait_for(first, statuses=("started",))
    time.sleep(1)
    assert vq.json("show", then)["status"] == "deferred"
    vq.open_gate("first")
    assert vq.wait_for(then)["status"] == "finished"
    after = vq.submit("test-track", {"seconds": 0.1}, "--user", "ann")
    view = vq.wait_for(after, timeout=10)
    assert view["status"] == "finished"
    waited = (_ts(view["startedAt"]) - _ts(view["createdAt"])).total_seconds()
    assert waited < 3, f"the user's next job waited {waited:.1f}s for a slot"
    started = [i.decode() for i in redis_conn.lrange("test:started", 0, -1)]
    assert started == [first, then, after]
    retried = next(t for t in vq.json("history", then)["transitions"] if t["event"] == "retried")
    assert (retried["from_status"], retried["to_status"]) == ("canceled", "deferred")


def test_a_dependent_whose_dependency_failed_cannot_be_retried_before_it(vq):
    bad = vq.submit("test-broken", {}, "--user", "u")
    child = vq.submit("test-echo", {}, "--user", "u", "--depends-on", bad)
    vq.start_daemon()
    assert vq.wait_for(child)["status"] == "canceled"
    proc = vq.run("retry", child)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(f"retry {bad} first, then this job")
    assert "Traceback" not in proc.stderr
    assert vq.json("show", child)["status"] == "canceled"


def test_a_job_in_line_twice_runs_once(vq, redis_conn):
    """A running job enqueued again (RQ's enqueue marks it `queued` and pushes it: what a
    retry of a dependent did while its dependency enqueued it too) never starts again, even
    when the worker that finishes it routes that entry in the same step (its hash says
    `finished` only at the end of that step)."""
    job = vq.submit("test-track", {"gate": "once"}, "--user", "ann")
    origin = vq.json("show", job)["queue"]
    vq.start_daemon(workers=1)
    vq.wait_for(job, statuses=("started",))
    redis_conn.hset(f"rq:job:{job}", "status", "queued")
    redis_conn.rpush(f"rq:queue:{origin}", job)
    redis_conn.sadd(keys.INBOX, origin)  # as RQ's push through vq's queue class marks it
    vq.open_gate("once")
    assert vq.wait_for(job)["status"] == "finished"
    after = vq.submit("test-track", {"seconds": 0.1}, "--user", "ann")
    view = vq.wait_for(after, timeout=10)
    waited = (_ts(view["startedAt"]) - _ts(view["createdAt"])).total_seconds()
    assert waited < 3, f"the user's next job waited {waited:.1f}s for a slot"
    assert [i.decode() for i in redis_conn.lrange("test:started", 0, -1)] == [job, after]


def test_cancel_waiting_and_running_jobs(vq):
    waiting = vq.submit("test-noop", {}, "--user", "u", "--delay", "1h")
    assert vq.json("cancel", waiting)["status"] == "canceled"
    assert vq.run("cancel", waiting).returncode == 2, "already canceled is a conflict"
    vq.start_daemon()
    running = vq.submit("test-sleep", {"seconds": 20, "steps": 40}, "--user", "u")
    vq.wait_for(running, statuses=("started",))
    vq.json("cancel", running)
    view = vq.wait_for(running, timeout=10)
    assert view["status"] == "canceled"
    assert view["attempts"] == 1


def test_rm_deletes_job_and_artifacts_but_not_running_ones(vq):
    vq.start_daemon()
    job_id = vq.submit("test-noop", {}, "--user", "u")
    vq.wait_for(job_id)
    (vq.data_dir / "artifacts" / job_id).mkdir(parents=True)
    assert vq.json("rm", job_id)["removed"] is True
    assert not (vq.data_dir / "artifacts" / job_id).exists()
    assert vq.run("show", job_id).returncode == 4
    running = vq.submit("test-sleep", {"seconds": 3, "steps": 3}, "--user", "u")
    vq.wait_for(running, statuses=("started",))
    proc = vq.run("rm", running)
    assert proc.returncode == 2 and "cancel it first" in proc.stderr


def test_pause_holds_jobs_and_resume_releases_them(vq):
    """A paused type's jobs wait for the resume, not for a slot: `queued` with the reason,
    counted as queued (not `limited`), in both forms of `vq show`."""
    vq.json("pause", "test-noop")
    job_id = vq.submit("test-noop", {}, "--user", "u")
    assert vq.json("show", job_id)["status"] == "queued", "no daemon has looked at it yet"
    vq.start_daemon()
    other = vq.submit("test-echo", {}, "--user", "u")
    assert vq.wait_for(other)["status"] == "finished", "other types keep running"
    deadline = time.monotonic() + 10
    while (view := vq.json("show", job_id))["position"] is None and time.monotonic() < deadline:
        time.sleep(0.1)  # until admission has put it in its user's line
    assert (view["status"], view["waitReason"], view["position"]) == ("queued", "queue paused", 1)
    human = vq.run("show", job_id).stdout
    assert "waiting for  queue paused" in human and "1 in u's line" in human
    row = next(r for r in vq.json("queues") if r["jobType"] == "test-noop")
    assert row["paused"] is True and (row["queued"], row["limited"]) == (1, 0)
    listed = {
        status: [v["id"] for v in vq.json("jobs", "--type", "test-noop", "--status", status)]
        for status in ("queued", "limited")
    }
    assert listed == {"queued": [job_id], "limited": []}
    vq.json("resume", "test-noop")
    assert vq.wait_for(job_id, timeout=10)["status"] == "finished"


def test_clear_asks_and_deletes_waiting_jobs_only(vq):
    ids = [vq.submit("test-noop", {}, "--user", "u") for _ in range(3)]
    ids.append(vq.submit("test-noop", {}, "--user", "u", "--delay", "1h"))
    declined = vq.run("clear", "test-noop", input="n\n")
    assert declined.returncode == 1
    assert all(vq.json("show", i)["status"] in ("queued", "scheduled") for i in ids)
    result = vq.json("clear", "test-noop", "--yes")
    assert result["removed"] == 4
    row = next(r for r in vq.json("queues") if r["jobType"] == "test-noop")
    assert row["queued"] == 0 and row["scheduled"] == 0


def test_jobs_lists_and_filters(vq):
    a = vq.submit("test-noop", {}, "--user", "ann")
    b = vq.submit("test-echo", {}, "--user", "bob")
    c = vq.submit("test-echo", {}, "--user", "ann")
    assert [j["id"] for j in vq.json("jobs")] == [c, b, a]
    assert [j["id"] for j in vq.json("jobs", "--user", "ann")] == [c, a]
    assert [j["id"] for j in vq.json("jobs", "--type", "test-echo")] == [c, b]
    assert [j["id"] for j in vq.json("jobs", "--limit", "1", "--page", "2")] == [b]
    assert vq.json("jobs", "--status", "finished") == []


def test_jobs_pages_with_totals_since_and_the_pipeline_parent(vq, redis_conn):
    from vq import keys

    ids = [vq.submit("test-noop", {}, "--user", "ann") for _ in range(5)]
    listing = vq.json("jobs", "--limit", "2", "--page", "2")
    assert [j["id"] for j in listing] == [ids[2], ids[1]], "--json stays the bare list scripts read"
    table = vq.run("jobs", "--limit", "2", "--page", "2")
    assert table.returncode == 0 and "3–4 of 5" in table.stdout and "parent/step" in table.stdout, table.stdout
    past = vq.run("jobs", "--limit", "2", "--page", "99")  # said "no jobs (0 of 196)": the offset as a total
    assert past.returncode == 0 and "no jobs (0 of 5)" in past.stdout, past.stdout
    assert "1–1 of 5" in vq.run("jobs", "--status", "queued", "--limit", "1").stdout
    week_ago = (time.time() - 7 * 86400) * 1000
    for index in (keys.type_jobs("test-noop"), keys.user_jobs("ann")):
        redis_conn.zadd(index, {ids[0]: week_ago})
    recent = vq.json("jobs", "--since", "2h")
    assert ids[0] not in [j["id"] for j in recent] and len(recent) == 4
    assert "of 4" in vq.run("jobs", "--since", "2h").stdout
    assert len(vq.json("jobs", "--since", "30d", "--user", "ann")) == 5
    bad = vq.run("jobs", "--since", "soon")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--since" in bad.stderr, bad.stderr
    video = vq.submit(
        "video-generation", {"prompt": "A video about AI. It is bright.", "sceneCount": 1}, "--user", "bob"
    )
    children = vq.json("show", video)["children"]
    shown = vq.run("jobs", "--user", "bob", "--limit", "100")
    assert children and f"{video[:12]}/" in shown.stdout, shown.stdout
    assert "1,2" not in shown.stdout and f"of {len(children) + 1}" in shown.stdout


def test_sigterm_lets_running_jobs_finish(vq):
    daemon = vq.start_daemon()
    job_id = vq.submit("test-sleep", {"seconds": 2, "steps": 4}, "--user", "u")
    vq.wait_for(job_id, statuses=("started",))
    assert vq.stop_daemon(daemon) == 0
    assert vq.json("show", job_id)["status"] == "finished"


def test_after_grace_period_running_jobs_are_requeued_not_lost(vq):
    daemon = vq.start_daemon("--grace", "1")
    job_id = vq.submit("test-sleep", {"seconds": 30, "steps": 60}, "--user", "u")
    vq.wait_for(job_id, statuses=("started",))
    assert vq.stop_daemon(daemon) == 0
    view = vq.json("show", job_id)
    assert view["status"] == "queued"
    assert view["attempts"] == 0, "an interrupted attempt is not charged"
    assert "requeued" in vq.daemon_log(0)
    row = next(r for r in vq.json("queues") if r["jobType"] == "test-sleep")
    assert row["started"] == 0 and row["queued"] == 1


def test_a_killed_worker_process_is_replaced(vq):
    import os

    daemon = vq.start_daemon(workers=1)
    first = vq.submit("test-echo", {}, "--user", "u")
    pid_job = vq.submit("test-sleep", {"seconds": 0.1, "steps": 1}, "--user", "u")
    worker_pid = vq.wait_for(pid_job)["result"]["pid"]
    vq.wait_for(first)
    os.kill(worker_pid, signal.SIGKILL)
    time.sleep(1)
    again = vq.submit("test-sleep", {"seconds": 0.1, "steps": 1}, "--user", "u")
    new_pid = vq.wait_for(again)["result"]["pid"]
    assert new_pid != worker_pid
    assert daemon.poll() is None


def test_daemon_logs_one_line_per_job_event(vq):
    daemon = vq.start_daemon()
    job_id = vq.submit("test-noop", {}, "--user", "u")
    vq.wait_for(job_id)
    time.sleep(0.3)
    vq.stop_daemon(daemon)
    log = vq.daemon_log(0)
    assert f"job {job_id} test-noop started" in log
    assert f"job {job_id} test-noop finished" in log


def test_only_the_newest_finished_and_failed_jobs_are_kept(vq, tmp_path):
    import yaml

    config = yaml.safe_load(vq.config_path.read_text())
    config["queue"] = {"defaultJobOptions": {"removeOnComplete": 2, "removeOnFail": 1}}
    vq.config_path.write_text(yaml.safe_dump(config))
    done = [vq.submit("test-noop", {}, "--user", "u") for _ in range(5)]
    for _ in range(3):  # three failures, of which the newest is kept
        vq.submit("test-broken", {}, "--user", "u")
    vq.start_daemon(workers=1)  # one worker: the jobs end in the order they were submitted
    vq.wait_for(done[-1])  # not the others: the trim may take them before a look at them
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = {r["jobType"]: r for r in vq.json("queues")}
        if rows["test-noop"]["finished"] == 2 and rows["test-broken"]["failed"] == 1:
            break
        time.sleep(0.5)
    assert rows["test-noop"]["finished"] == 2 and rows["test-broken"]["failed"] == 1
    assert vq.json("show", done[-1])["status"] == "finished", "the newest are kept"
    gone = vq.json("show", done[0])
    assert gone["trimmed"] is True and gone["status"] == "finished", "the oldest are gone, but for their history"
    assert [j["id"] for j in vq.json("jobs", "--type", "test-noop")] == done[::-1][:2]


def test_jobs_status_filter_finds_each_status_among_many_waiting(vq):
    """`vq jobs --status X` reads only the jobs RQ's registry of X (or vq's running and
    waiting-line sets) holds: each status still lists exactly its jobs, whatever waits beside."""
    vq.start_daemon()
    finished = vq.submit("test-echo", {}, "--user", "sia")
    assert vq.wait_for(finished)["status"] == "finished"
    failed = vq.submit("test-odd", {}, "--user", "sia")
    assert vq.wait_done(failed)["status"] == "failed"
    running = vq.submit("test-sleep", {"seconds": 20, "steps": 20}, "--user", "sia")
    scheduled = vq.submit("test-echo", {}, "--user", "sia", "--delay", "10m")
    deferred = vq.submit("test-echo", {}, "--user", "sia", "--depends-on", running)
    canceled = vq.submit("test-echo", {}, "--user", "sia", "--delay", "10m")
    vq.json("cancel", canceled)
    deadline = time.monotonic() + 20
    while vq.json("show", running)["status"] != "started" and time.monotonic() < deadline:
        time.sleep(0.1)
    vq.json("pause", "test-noop")
    waiting = [vq.submit("test-noop", {}, "--user", "sia") for _ in range(5)]
    expected = {
        "finished": [finished],
        "failed": [failed],
        "started": [running],
        "scheduled": [scheduled],
        "deferred": [deferred],
        "canceled": [canceled],
        "queued": waiting[::-1],
    }
    for status, ids in expected.items():
        for extra in ((), ("--user", "sia")):
            listed = [v["id"] for v in vq.json("jobs", "--status", status, *extra)]
            assert listed == ids, (status, extra)
    assert "1–1 of 1" in vq.run("jobs", "--status", "failed", "--type", "test-odd").stdout
    vq.json("cancel", running)
    vq.json("resume", "test-noop")
