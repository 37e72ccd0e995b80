"""Retention of ended jobs: trimming never takes a job a waiting or running job still needs
(video pipelines behind a paused type, across a daemon restart), it trims by age as well as
by count, and a trimmed job is still answered from the history database."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime

import pytest
from rq.job import Job

from vq import jobs, queues
from vq.config import load_settings

VIDEO = {"prompt": "A video about AI technology", "sceneCount": 1, "width": 64, "height": 36}
LOOSE = {"prompt": "loose", "width": 16, "height": 16}


def _instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def until(check, timeout: float = 60, what: str = "the condition"):
    """Poll `check()` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s")


class Look:
    """Polls the same service functions the CLI calls, in this process (a `vq` process per
    poll would make these tests slow); what a user does goes through the CLI."""

    def __init__(self, vq, conn):
        self.conn, self.settings = conn, load_settings(str(vq.config_path))

    def show(self, job_id: str) -> dict:
        return jobs.show(self.conn, job_id, self.settings)

    def trimmed(self, job_id: str) -> bool:
        return self.show(job_id)["trimmed"]

    def gone(self, job_id: str) -> bool:
        """No longer in Redis (trimmed)."""
        return not self.conn.exists(Job.key_for(job_id))

    def counts(self, column: str) -> dict[str, int]:
        return {row["jobType"]: row[column] for row in queues.counts(self.conn, self.settings)}

    def upstream_done(self, n: int) -> bool:
        """Every video's script, image and audio finished (its scene waits behind the pause)."""
        done = self.counts("finished")
        return all(done[t] >= n for t in ("script-generation", "image-generation", "audio-synthesis"))

    def children(self, video: str) -> list[str]:
        return self.show(video)["children"]

    def ended(self, job_id: str) -> dict | None:
        view = self.show(job_id)
        return view if view["status"] in ("finished", "failed", "canceled", "stopped") else None


def _videos(vq, n: int) -> list[str]:
    lines = "".join(
        json.dumps({"jobType": "video-generation", "userId": f"user-{i}", "userSubscription": "pro", "data": VIDEO})
        + "\n"
        for i in range(n)
    )
    proc = vq.run("submit", "--batch", "-", "--json", input=lines)
    assert proc.returncode == 0, proc.stderr
    return [outcome["id"] for outcome in json.loads(proc.stdout)]


def _all_made_their_video(vq, look: Look, videos: list[str]) -> None:
    for video in videos:
        view = until(lambda video=video: look.ended(video), timeout=90, what=f"video {video}")
        assert view["status"] == "finished", (video, view["error"])
        assert view["result"]["path"].endswith("video.json")
    assert vq.json("show", videos[0])["status"] == "finished"
    assert look.counts("canceled")["scene-creation"] == 0


def test_a_paused_downstream_type_and_a_restart_lose_no_video(vq, redis_conn):
    """removeOnComplete: 1 would trim every script, image and narration but the newest while
    the scenes that read them wait behind a paused queue, and after a restart."""
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": 1}})
    look = Look(vq, redis_conn)
    daemon = vq.start_daemon(workers=3)
    assert vq.run("pause", "scene-creation").returncode == 0
    videos = _videos(vq, 3)
    until(lambda: look.upstream_done(3), what="the upstream steps")
    # Later images nobody needs: once the older of them is trimmed, a trim pass has run
    # over image-generation since the videos' images finished.
    loose = [vq.submit("image-generation", LOOSE, "--user", "z") for _ in range(2)]
    until(lambda: look.gone(loose[0]), what="a trim pass")
    for video in videos:
        assert not any(look.gone(k) for k in look.children(video)), "what a waiting scene reads is kept"
    assert vq.stop_daemon(daemon) == 0
    vq.start_daemon(workers=3)
    vq.submit("image-generation", LOOSE, "--user", "z")
    until(lambda: look.gone(loose[1]), what="a trim pass of the new daemon")
    assert vq.run("resume", "scene-creation").returncode == 0
    _all_made_their_video(vq, look, videos)
    # Once the videos are done, nothing needs their steps: the trim takes them.
    until(lambda: look.counts("finished")["image-generation"] == 1, what="the steps' trim")


def test_default_retention_keeps_video_pipelines_behind_a_paused_type(vq, redis_conn):
    """With the default config, more videos than the spec's removeOnComplete: 10 wait on a
    paused scene-creation through two trim passes, then all finish."""
    look = Look(vq, redis_conn)
    daemon = vq.start_daemon(workers=3)
    assert vq.run("pause", "scene-creation").returncode == 0
    videos = _videos(vq, 11)
    until(lambda: look.upstream_done(11), what="the upstream steps")
    lock = "vq:chore:trim-ended-jobs"  # set by the daemon at the start of each trim pass
    for _ in range(2):  # the second pass starting means the first one has ended
        until(lambda: not redis_conn.exists(lock), what="the end of a trim period")
        until(lambda: redis_conn.exists(lock), what="a trim pass")
    assert daemon.poll() is None
    assert vq.run("resume", "scene-creation").returncode == 0
    _all_made_their_video(vq, look, videos)


def test_a_trimmed_job_is_answered_from_the_history_database(vq, redis_conn):
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": 1}})
    look = Look(vq, redis_conn)
    vq.start_daemon()
    first = vq.submit("content-analysis", {"content": "AI makes video. Video needs AI."}, "--user", "ann")
    live = vq.wait_for(first)
    assert live["trimmed"] is False
    vq.wait_for(vq.submit("content-analysis", {"content": "another text"}, "--user", "ann"))
    until(lambda: look.gone(first), what="the trim")
    gone = vq.json("show", first)
    assert set(gone) == set(live), "the same keys as a job in Redis"
    assert gone["status"] == "finished" and gone["result"] == live["result"]
    for key in ("jobType", "userId", "priority", "queue", "attempts"):
        assert gone[key] == live[key], key
    for key in ("createdAt", "startedAt", "finishedAt"):  # the history's are its events' times
        assert abs(_instant(gone[key]) - _instant(live[key])) < 0.05, key
    assert vq.json("result", first) == {
        "id": first,
        "jobType": "content-analysis",
        "result": live["result"],
        "trimmed": True,
    }
    human = vq.run("show", first)
    assert human.returncode == 0 and "trimmed" in human.stdout and "history database" in human.stdout
    progress = vq.run("progress", first)
    assert progress.returncode == 0 and "finished 100%" in progress.stdout
    assert vq.json("jobs", "--type", "content-analysis")[0]["id"] != first, "listings are Redis's"


def test_jobs_are_trimmed_by_age(vq, redis_conn):
    vq.configure(
        queue={"defaultJobOptions": {"removeOnComplete": {"age": 1000, "count": 1000}, "removeOnFail": {"age": 1500}}}
    )
    look = Look(vq, redis_conn)
    vq.start_daemon()
    done = vq.submit("test-noop", {}, "--user", "u")
    dead = vq.submit("test-broken", {}, "--user", "u")
    vq.wait_for(done)
    vq.wait_for(dead)
    assert look.counts("finished")["test-noop"] == 1 and look.counts("failed")["test-broken"] == 1
    until(lambda: look.gone(done) and look.gone(dead), timeout=30, what="the trim by age")
    assert look.counts("finished")["test-noop"] == 0 and look.counts("failed")["test-broken"] == 0
    assert vq.json("show", dead)["error"]["message"] == "input can never work"


@pytest.mark.parametrize(
    "value, message",
    [
        ({}, "removeOnComplete: give age (ms), count, or both"),
        ({"age": -1}, "removeOnComplete.age: Expected `int` >= 0"),
        ({"ages": 5}, "removeOnComplete.ages: unknown key"),
        (-3, "removeOnComplete: a count of jobs must be 0 or more"),
        ("lots", "removeOnComplete: 'lots': expected true, false, a number of jobs or {age: ms, count: n}"),
    ],
)
def test_a_bad_retention_is_one_line(vq, value, message):
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": value}})
    proc = vq.run("queues")
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_spec_forms_stay_valid(tmp_path):
    from tests.conftest import write_config
    from vq.config import retention_of

    forms = [
        (10, (None, 10, False)),
        (True, (None, 0, False)),
        (False, (None, None, True)),
        ({"age": 3_600_000}, (3_600_000, None, False)),
        ({"count": 5}, (None, 5, False)),
        ({"age": 60_000, "count": 0}, (60_000, 0, False)),
    ]
    for value, (age, count, forever) in forms:
        path = write_config(
            tmp_path / "config.yaml",
            {"queue": {"defaultJobOptions": {"removeOnComplete": value, "removeOnFail": value}}},
        )
        opts = load_settings(str(path)).queue.defaultJobOptions
        for option in (opts.removeOnComplete, opts.removeOnFail):
            rule = retention_of(option)
            assert (rule.age_ms, rule.count, rule.forever) == (age, count, forever), value
    defaults = load_settings(str(write_config(tmp_path / "empty.yaml", {}))).queue.defaultJobOptions
    assert retention_of(defaults.removeOnComplete).age_ms == 24 * 3600 * 1000
    assert retention_of(defaults.removeOnFail).age_ms == 7 * 24 * 3600 * 1000


def test_an_older_history_file_gains_the_result_column(vq):
    from vq.history import db as historydb

    settings = load_settings(str(vq.config_path))
    historydb.open_db(settings).conn.close()
    path = historydb.path_for(settings)
    with sqlite3.connect(path) as db:  # as vq before the result column made it
        db.execute("ALTER TABLE render_jobs DROP COLUMN result")
        db.execute("PRAGMA user_version = 0")
    assert vq.run("history", "--json").returncode == 0
    with sqlite3.connect(path) as db:
        assert "result" in [row[1] for row in db.execute("PRAGMA table_info(render_jobs)")]
