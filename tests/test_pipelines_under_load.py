"""Video pipelines under the default configuration and a realistic load: 100
video-generation jobs (1,200 jobs with their steps) submitted with the documented
`vq submit --batch FILE.jsonl`, their scene step's type paused for a while (so finished
images and narrations wait for their dependents), and the daemon restarted in the middle.
The default retention must trim nothing a waiting step still reads: every video finishes,
none is canceled, and each composed video is on disk with the scenes it was made of."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

VIDEOS = 100


def _counts(vq) -> dict[str, dict]:
    return {r["jobType"]: r for r in vq.json("queues")}


def _videos_going(vq) -> int:
    """How many video-generation jobs `vq queues` still counts as waiting or running."""
    row = _counts(vq)["video-generation"]
    return sum(row[state] for state in ("queued", "limited", "started", "deferred", "scheduled"))


@pytest.mark.timeout(600)
def test_a_hundred_videos_survive_a_paused_step_and_a_restart_under_the_default_retention(vq, redis_conn, tmp_path):
    batch = tmp_path / "videos.jsonl"
    batch.write_text(
        "".join(
            json.dumps(
                {
                    "jobType": "video-generation",
                    "userId": f"user-{n % 10}",
                    "userSubscription": "pro",
                    "data": {"prompt": f"video {n} about AI technology", "width": 160, "height": 90},
                }
            )
            + "\n"
            for n in range(VIDEOS)
        )
    )
    assert vq.run("pause", "scene-creation").returncode == 0
    made = vq.run("submit", "--batch", str(batch))
    assert made.returncode == 0, made.stderr
    videos = made.stdout.split()
    assert len(videos) == VIDEOS
    vq.start_daemon()
    # Let the steps before the paused one finish for many videos: their results must wait.
    deadline = time.monotonic() + 240
    while _counts(vq)["audio-synthesis"]["finished"] < 60 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _counts(vq)["audio-synthesis"]["finished"] >= 60, _counts(vq)
    vq.stop_daemon(vq.daemons[0])
    vq.start_daemon()
    time.sleep(2)
    assert vq.run("resume", "scene-creation").returncode == 0
    deadline = time.monotonic() + 420
    ended: dict[str, dict] = {}
    while len(ended) < VIDEOS and time.monotonic() < deadline:
        if _videos_going(vq):  # one call a second rather than a `vq show` per video until they end
            time.sleep(1)
            continue
        for job_id in videos:
            if job_id not in ended:
                view = vq.json("show", job_id)
                if view["status"] in ("finished", "failed", "canceled", "stopped"):
                    ended[job_id] = view
        time.sleep(1)
    statuses = [ended.get(v, {}).get("status", "unfinished") for v in videos]
    assert statuses.count("finished") == VIDEOS, {s: statuses.count(s) for s in set(statuses)} | {
        "errors": sorted(
            {(ended[v].get("error") or {}).get("message") for v in ended if ended[v]["status"] != "finished"}
        )
    }
    for view in ended.values():  # the product's output, by the handlers' own records on disk
        result = view["result"]
        summary = json.loads(Path(result["path"]).read_text())
        assert Path(summary["video"]).is_file() and summary["scenes"] == 3, summary
        assert Path(result["video"]).stat().st_size > 0
    assert all(row["canceled"] == 0 and row["failed"] == 0 for row in _counts(vq).values()), _counts(vq)
