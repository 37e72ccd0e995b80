"""The audit history: every transition of every job recorded exactly once, in SQLite, by one
archiver at a time, across crashes and restarts; and the queries on it."""

from __future__ import annotations

import csv
import io
import json
import signal
import sqlite3
import time
from collections import Counter

import pytest

from vq.config import load_settings


def _db(vq) -> sqlite3.Connection:
    conn = sqlite3.connect(vq.data_dir / "history.db")
    conn.row_factory = sqlite3.Row
    return conn


def _transitions(vq, job_id: str) -> list[tuple[str, str | None, str]]:
    rows = (
        _db(vq)
        .execute("SELECT event, from_status, to_status, event_id FROM job_history WHERE job_id = ?", (job_id,))
        .fetchall()
    )
    rows.sort(key=lambda r: tuple(int(p) for p in r["event_id"].split("-")))
    return [(r["event"], r["from_status"], r["to_status"]) for r in rows]


def _settle(vq) -> None:
    """Ask for a timeline: the CLI waits until the archiver has caught up with the stream."""
    assert vq.run("history", "--limit", "1").returncode == 0


def test_a_job_timeline_and_user_history(vq):
    vq.start_daemon()
    ok = vq.submit("test-noop", {}, "--user", "ann")
    flaky = vq.submit("test-flaky", {"succeed_on": 2}, "--user", "ann")
    other = vq.submit("test-noop", {}, "--user", "bob")
    for job_id in (ok, flaky, other):
        assert vq.wait_for(job_id)["status"] == "finished"
    view = vq.json("history", flaky)
    assert [(t["event"], t["from_status"], t["to_status"]) for t in view["transitions"]] == [
        ("created", None, "queued"),
        ("started", "queued", "started"),
        ("retrying", "started", "scheduled"),
        ("queued", "scheduled", "queued"),
        ("started", "queued", "started"),
        ("finished", "started", "finished"),
    ]
    assert [t["attempt"] for t in view["transitions"] if t["event"] == "started"] == [1, 2]
    assert "flaky failure on attempt 1" in view["transitions"][2]["reason"]
    assert view["job"]["attempts"] == 2 and view["job"]["status"] == "finished" and view["job"]["run_ms"] >= 0
    assert all(t["worker"] for t in view["transitions"] if t["event"] == "started")
    mine = vq.json("history", "--user", "ann", "--since", "1h")
    assert {r["id"] for r in mine} == {ok, flaky}
    assert [r["id"] for r in vq.json("history", "--user", "ann", "--type", "test-flaky")] == [flaky]
    assert vq.json("history", "--user", "ann", "--status", "failed") == []
    table = vq.run("history", flaky)
    assert table.returncode == 0 and "retrying" in table.stdout
    missing = vq.run("history", "no-such-job")
    assert missing.returncode == 4 and "no history for job" in missing.stderr


def test_export_csv_and_json(vq):
    vq.start_daemon()
    ids = [vq.submit("test-noop", {}, "--user", f"u{i % 2}") for i in range(4)]
    for job_id in ids:
        vq.wait_for(job_id)
    _settle(vq)
    rows = list(csv.DictReader(io.StringIO(vq.run("history", "export", "--format", "csv").stdout)))
    assert sorted(r["id"] for r in rows) == sorted(ids) and {r["status"] for r in rows} == {"finished"}
    lines = vq.run("history", "export", "--format", "json", "--user", "u1").stdout.splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(ids[1::2])
    bad = vq.run("history", "export", "--format", "xml")
    assert bad.returncode == 2 and "--format: 'xml' is not one of csv, json" in bad.stderr
    bad_since = vq.run("history", "--since", "yesterday")
    assert bad_since.returncode == 2 and "--since" in bad_since.stderr


def test_every_transition_once_with_two_daemons_a_killed_daemon_and_a_redis_restart(vq, redis_conn, redis_server):
    vq.configure(
        queue={
            "settings": {"stalledInterval": 2000, "lockDuration": 3000},
            "defaultJobOptions": {"removeOnComplete": False},
        }
    )
    first, second = vq.start_daemon(workers=1), vq.start_daemon(workers=1)
    batch = "\n".join(json.dumps({"jobType": "test-noop", "userId": f"u{i % 5}", "data": {}}) for i in range(60))
    ids = [o["id"] for o in vq.json("submit", "--batch", "-", input=batch)]
    time.sleep(1.0)
    first.send_signal(signal.SIGKILL)  # its archiver may die mid-batch
    first.wait()
    vq.daemons.remove(first)
    redis_server.kill()  # and Redis restarts from its AOF
    redis_server.start()
    more = [o["id"] for o in vq.json("submit", "--batch", "-", input=batch)]
    vq.start_daemon(workers=1)
    for job_id in ids + more:
        vq.wait_for(job_id, timeout=60)
    _settle(vq)
    db = _db(vq)
    for job_id in ids + more:
        events = [e for e, _, _ in _transitions(vq, job_id)]
        assert events.count("created") == 1 and events[0] == "created", (job_id, events)
        assert events[-2:] == ["started", "finished"] or "requeued" in events or "stalled" in events, (job_id, events)
        assert Counter(events)["finished"] == 1
    statuses = dict(db.execute("SELECT id, status FROM render_jobs").fetchall())
    assert all(statuses[j] == "finished" for j in ids + more)
    assert second.poll() is None
    _assert_stream_and_history_agree(redis_conn, db)


def _assert_stream_and_history_agree(redis_conn, db) -> None:
    """Every status change in the event stream is one job_history row with the same id, job
    and event, and there is no other row; the metric totals count each exactly once."""
    from vq import events as event_stream
    from vq import metrics
    from vq.history.rows import to_status

    changes = [
        e for e in event_stream.read(redis_conn, count=1_000_000) if e["jobId"] != "-" and to_status(e) is not None
    ]
    assert changes, "the stream was trimmed: nothing to compare"
    rows = {r[0]: (r[1], r[2]) for r in db.execute("SELECT event_id, job_id, event FROM job_history")}
    assert rows == {e["id"]: (e["jobId"], e["event"]) for e in changes}
    counted = Counter(e["event"] for e in changes)
    totals = metrics.totals(redis_conn)["test-noop"]
    assert (totals["created"], totals["started"], totals["finished"]) == (
        counted["created"],
        counted["started"],
        counted["finished"],
    )


def test_a_crash_between_sqlite_and_redis_counts_each_event_once(vq, redis_conn):
    """The archiver wrote a batch to SQLite and died before counting it in Redis: the next
    archiver counts it (once) and does not write it again."""
    from vq import metrics
    from vq.history.archiver import Archiver

    settings = load_settings(vq.config_path, env={})
    ids = [vq.submit("test-noop", {}, "--user", "u") for _ in range(3)]
    archiver = Archiver(redis_conn, settings)
    from vq import events

    batch = events.read(redis_conn, count=1000)
    archiver.write(batch)  # ... and here it dies
    assert metrics.totals(redis_conn) == {}
    again = Archiver(redis_conn, settings)
    assert again.step(block_ms=None) == len(batch)  # 3 created + 3 audit (the CLI records who submitted)
    assert metrics.totals(redis_conn)["test-noop"]["created"] == 3
    assert again.step(block_ms=None) == 0
    assert _db(vq).execute("SELECT COUNT(*) FROM job_history").fetchone()[0] == 3
    assert {r[0] for r in _db(vq).execute("SELECT job_id FROM job_history")} == set(ids)


def test_retention_prunes_rows_and_keeps_daily_aggregates(vq, redis_conn):
    from vq.history.archiver import Archiver

    vq.configure(history={"retentionDays": 30})
    settings = load_settings(vq.config_path, env={})
    old_ms = int((time.time() - 40 * 86400) * 1000)
    for name, job_id in (("created", "old-job"), ("started", "old-job")):
        redis_conn.xadd(
            "vq:events",
            {
                "event": name,
                "jobId": job_id,
                "jobType": "test-noop",
                "ts": str(old_ms),
                "fields": json.dumps({"userId": "u", "status": "queued", "waitMs": 5}),
            },
            id=f"{old_ms}-{1 if name == 'created' else 2}",
        )
    recent = vq.submit("test-noop", {}, "--user", "u")
    archiver = Archiver(redis_conn, settings)
    while archiver.step(block_ms=None):
        pass
    archiver.aggregate()
    db = _db(vq)
    days = db.execute("SELECT day, created FROM job_performance_metrics WHERE job_type = 'test-noop'").fetchall()
    assert sum(created for _, created in days) == 1  # today's: the recent job
    assert db.execute("SELECT COUNT(*) FROM render_jobs").fetchone()[0] == 2
    assert archiver.prune() == 2
    assert [r[0] for r in db.execute("SELECT id FROM render_jobs")] == [recent]
    assert db.execute("SELECT COUNT(*) FROM job_history WHERE job_id = 'old-job'").fetchone()[0] == 0
    assert (
        db.execute("SELECT day, created FROM job_performance_metrics WHERE job_type = 'test-noop'").fetchall() == days
    )


def _open_history(data_dir: str, results) -> None:
    from vq.config import Settings
    from vq.history import db as historydb

    try:
        historydb.open_db(Settings(data_dir=data_dir))
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports what went wrong
        results.put(repr(exc))


def test_daemons_starting_together_create_the_history_database_once(tmp_path):
    """Several daemons opening a new history file at the same moment (two started at once on
    one host) all get the complete schema; none fails with "database is locked"."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for round_ in range(15):
        results = ctx.Queue()
        procs = [ctx.Process(target=_open_history, args=(str(tmp_path / str(round_)), results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
        assert [results.get(timeout=5) for _ in procs] == ["ok"] * 4


def _history_file(redis_conn) -> str | None:
    path = redis_conn.hget("vq:archiver:home", "path")
    return path.decode() if path else None


def _wait(predicate, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_hosts_with_their_own_history_files_keep_one_complete_history(vq, redis_conn):
    """Two hosts, each with its own data directory: history goes to one file only, whichever
    daemon's workers ran the jobs; the other host stands by, and takes over (saying where
    the earlier history is) only after history.handoverAfter without the first."""
    vq.configure(history={"handoverAfter": 4})
    other = vq.another_host("host-b")
    first = vq.start_daemon(workers=1)
    home_a = str((vq.data_dir / "history.db").resolve())
    _wait(lambda: _history_file(redis_conn) == home_a, what="host A's file to become the history's")
    other.start_daemon(workers=1)
    ids = [
        o["id"]
        for o in vq.json(
            "submit",
            "--batch",
            "-",
            input="\n".join(
                json.dumps({"jobType": "test-sleep", "userId": f"u{i}", "data": {"seconds": 0.2}}) for i in range(8)
            ),
        )
    ]
    views = [vq.wait_for(job_id) for job_id in ids]
    assert {v["status"] for v in views} == {"finished"}
    _settle(vq)
    db_a = _db(vq)
    for job_id in ids:
        assert [e for e, _, _ in _transitions(vq, job_id)] == ["created", "started", "finished"]
    assert db_a.execute("SELECT COUNT(*) FROM render_jobs").fetchone()[0] == len(ids)
    db_b = _db(other)
    assert db_b.execute("SELECT COUNT(*) FROM job_history").fetchone()[0] == 0
    assert f"history is written to {home_a}" in other.daemon_log(1)
    note = other.run("history", ids[0])  # host B's file has no rows: it says where they are
    assert note.returncode == 4 and f"history is written to {home_a}" in note.stderr
    from vq.errors import HistoryElsewhere
    from vq.history import queries as history

    with pytest.raises(HistoryElsewhere, match="history is written to"):  # the API answers 503 with this
        history.fresh(redis_conn, load_settings(other.config_path, env={}), strict=True)

    stopping = time.monotonic()  # A notes its last run as it stops, after this instant
    assert vq.stop_daemon(first) == 0  # host A goes away: B waits handoverAfter, then takes over
    later = vq.submit("test-noop", {}, "--user", "late")
    assert vq.wait_for(later)["status"] == "finished"
    _wait(lambda: "took over the history" in other.daemon_log(1), what="host B to take over")
    assert time.monotonic() - stopping >= 3.5
    assert home_a in other.daemon_log(1)  # the log names the file that holds the earlier history
    assert _history_file(redis_conn) == str((other.data_dir / "history.db").resolve())
    assert other.run("history", "--limit", "1").returncode == 0
    assert [e for e, _, _ in _transitions(other, later)] == ["created", "started", "finished"]
    assert db_a.execute("SELECT COUNT(*) FROM job_history WHERE job_id = ?", (later,)).fetchone()[0] == 0

    vq.start_daemon(workers=1)  # A comes back: B keeps the history, A stands by
    _wait(lambda: "history is written to" in vq.daemon_log(2), what="host A to stand by")
    again = vq.submit("test-noop", {}, "--user", "again")
    vq.wait_for(again)
    assert other.run("history", again).returncode == 0
    assert db_a.execute("SELECT COUNT(*) FROM job_history WHERE job_id = ?", (again,)).fetchone()[0] == 0


def test_without_a_history_file_in_redis_the_newest_history_is_chosen(vq, redis_conn):
    """A new or wiped Redis names no history file: the daemons' archivers announce theirs,
    and the one holding the newest history claims it, whichever asked first."""
    from vq.history.archiver import Archiver

    settings_a = load_settings(vq.config_path, env={})
    other = vq.another_host("host-b")
    settings_b = load_settings(other.config_path, env={})
    newer, empty = Archiver(redis_conn, settings_a), Archiver(redis_conn, settings_b)
    vq.submit("test-noop", {}, "--user", "u")
    assert newer.step(block_ms=None) > 0  # host A's file holds history; host B's is new
    redis_conn.delete("vq:archiver:home", "vq:archiver:leader")

    assert empty.hold_lease(settle_ms=600).how == "waiting"  # B asks first, and waits for others
    assert newer.hold_lease(settle_ms=600).how == "waiting"
    time.sleep(0.7)
    assert empty.hold_lease(settle_ms=600).how == "waiting"  # A announced newer history: B yields
    claimed = newer.hold_lease(settle_ms=600)
    assert (claimed.held, claimed.how) == (True, "claimed")
    assert _history_file(redis_conn) == newer.path
    newer.release_lease()
    refused = empty.hold_lease(settle_ms=600)  # the home is A's file even with no archiver running
    assert (refused.held, refused.how, refused.path) == (False, "elsewhere", newer.path)


def _break_history(vq, tmp_path, how: str):
    """Make the history file unusable (root ignores modes, so no chmod): a folder where the
    file should be, a file that is not SQLite, or a path under a file (history.path).
    Returns the path and a function that repairs it."""
    if how == "under-a-file":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file, not a folder\n")
        path = blocker / "history.db"
        vq.configure(history={"path": str(path)})
        return path, lambda: (blocker.unlink(), blocker.mkdir())
    path = vq.data_dir / "history.db"
    if how == "folder":
        path.mkdir()
        (path / "inside").write_text("x")
        return path, lambda: (path.joinpath("inside").unlink(), path.rmdir())
    path.write_bytes(b"this is not an SQLite database, but it is long enough to look like one" * 20)
    return path, path.unlink


@pytest.mark.parametrize("how", ["folder", "garbage", "under-a-file"])
def test_jobs_run_while_the_history_database_cannot_be_opened_and_history_catches_up(vq, tmp_path, how):
    path, repair = _break_history(vq, tmp_path, how)
    setting = "history.path" if how == "under-a-file" else "data_dir"
    daemon = vq.start_daemon()
    done = [vq.submit("test-echo", {"n": i}, "--user", "ann") for i in range(3)]
    for job_id in done:
        assert vq.wait_for(job_id)["status"] == "finished"
    assert daemon.poll() is None, vq.daemon_log()

    deadline = time.monotonic() + 20
    health = {}
    while time.monotonic() < deadline:
        proc = vq.run("health", "--json")
        health = json.loads(proc.stdout)
        if health.get("problems"):
            break
        time.sleep(0.3)
    assert proc.returncode == 1 and health["status"] == "degraded", health
    assert not health["crashLoops"], health["crashLoops"]
    assert [p["process"] for p in health["problems"]] == ["archiver"], health["problems"]
    assert any(str(path) in r and setting in r for r in health["reasons"]), health["reasons"]
    said = vq.run("health")
    assert str(path) in said.stdout and "Traceback" not in said.stdout + said.stderr
    doctor = vq.run("doctor", "--json")
    archiver = next(f for f in json.loads(doctor.stdout) if f["check"] == "archiver")
    assert archiver["status"] == "fail" and str(path) in archiver["detail"] and setting in archiver["fix"], archiver
    asked = vq.run("history", done[0])
    assert asked.returncode == 1 and str(path) in asked.stderr and "Traceback" not in asked.stderr, asked.stderr

    repair()
    deadline = time.monotonic() + 30
    while "usable again" not in vq.daemon_log() and time.monotonic() < deadline:
        time.sleep(0.3)
    log = vq.daemon_log()
    assert "usable again" in log, log
    lines = [line for line in log.splitlines() if "cannot be used" in line and "vq.archiver" in line]
    assert len(lines) == 1 and str(path) in lines[0] and setting in lines[0], lines
    assert "Traceback" not in log, log
    view = vq.json("history", done[0])
    assert [t["event"] for t in view["transitions"]] == ["created", "started", "finished"]
    deadline = time.monotonic() + 10
    while vq.json("health").get("problems") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert vq.json("health")["problems"] == []


def test_a_full_disk_is_said_once_and_history_catches_up_when_there_is_room(vq, redis_conn, caplog):
    """A full disk, simulated with SQLite's own limit: `PRAGMA max_page_count` makes the next
    page the file needs fail with the same error as a full disk ("database or disk is full").
    The limit belongs to a connection, so the archiver runs here, in a thread, on the real
    file and the real Redis (a tmpfs of fixed size needs mount privileges CI may not have)."""
    import logging
    import threading

    import sqlite_utils

    from vq.history.archiver import Archiver

    settings = load_settings(vq.config_path)
    archiver = Archiver(redis_conn, settings)
    archiver.db.conn.close()  # the same file, on a connection this test may use from its thread too
    archiver.db = sqlite_utils.Database(sqlite3.connect(vq.data_dir / "history.db", check_same_thread=False))
    pages = archiver.db.execute("PRAGMA page_count").fetchone()[0]
    archiver.db.execute(f"PRAGMA max_page_count = {pages}")
    jobs = [vq.submit("test-echo", {"text": "x" * 2000, "n": i}, "--user", "ann") for i in range(40)]
    caplog.set_level(logging.INFO, logger="vq.archiver")
    runner = threading.Thread(target=archiver.run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while archiver.problem is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert archiver.problem and "database or disk is full" in archiver.problem
        time.sleep(4)  # several tries
        archiver.db.execute("PRAGMA max_page_count = 1073741823")  # room again
        deadline = time.monotonic() + 20
        while archiver.problem is not None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        archiver.stopped = True
        runner.join(10)
    said = [r for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert len(said) == 1 and not said[0].exc_info and "data_dir" in said[0].getMessage(), said
    assert any("usable again" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)
    rows = (
        _db(vq)
        .execute(f"SELECT COUNT(*) FROM render_jobs WHERE id IN ({','.join('?' * len(jobs))})", jobs)
        .fetchone()[0]
    )
    assert rows == len(jobs)


def test_a_full_disk_under_a_real_daemon_is_one_line_and_history_catches_up(vq, tmp_path):
    """The same on a real full file system: a small tmpfs (mounting one needs privileges;
    without them the test above covers it with SQLite's own limit)."""
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("mounting a tmpfs needs privileges this run lacks")
    try:
        path = small / "history.db"
        vq.configure(history={"path": str(path)})
        vq.start_daemon()
        first = vq.submit("test-echo", {"n": 0}, "--user", "ann")
        vq.wait_for(first)
        assert [t["event"] for t in vq.json("history", first)["transitions"]][-1] == "finished"
        filler = small / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)  # until ENOSPC
        done = [vq.submit("test-echo", {"text": "x" * 20_000, "n": i}, "--user", "ann") for i in range(20)]
        for job_id in done:
            assert vq.wait_for(job_id)["status"] == "finished"
        deadline = time.monotonic() + 20
        while "cannot be used" not in vq.daemon_log() and time.monotonic() < deadline:
            time.sleep(0.3)
        time.sleep(3)  # several tries
        lines = [line for line in vq.daemon_log().splitlines() if "cannot be used" in line and "vq.archiver" in line]
        assert len(lines) == 1 and "database or disk is full" in lines[0] and "history.path" in lines[0], lines
        health = vq.run("health", "--json")
        assert health.returncode == 1 and json.loads(health.stdout)["problems"], "vq health reports it"
        filler.unlink()
        deadline = time.monotonic() + 30
        while "usable again" not in vq.daemon_log() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "usable again" in vq.daemon_log()
        assert [t["event"] for t in vq.json("history", done[-1])["transitions"]][-1] == "finished"
        assert "Traceback" not in vq.daemon_log()
    finally:
        for proc in vq.daemons:
            vq.stop_daemon(proc)
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
