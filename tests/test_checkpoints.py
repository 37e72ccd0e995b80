"""Checkpoint and resume (vq/checkpoints.py): a handler's ctx.checkpoint(state) is what its
job's next attempt starts from (ctx.resumed_from), after a retry, a worker killed mid-job, or
a stop at a checkpoint; a worker that lost the job cannot overwrite it. Judged by the
handlers' own records (tests/plugins.py checkpointer, the composition's result and a stand-in
ffmpeg's log), not by vq's view of them."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from tests.plugins import handler_pid

CHECKPOINTER = {"handler": "tests.plugins:checkpointer", "attempts": 2, "timeout": 120000}


def _records(redis_conn, job_id: str) -> list[tuple[str, int, int]]:
    """The checkpointer's records: (what, pid, step)."""
    out = []
    for raw in redis_conn.lrange(f"test:cp:{job_id}", 0, -1):
        what, pid, step = raw.decode().split()
        out.append((what, int(pid), int(step)))
    return out


def _wait_records(redis_conn, job_id: str, what: str, count: int, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in _records(redis_conn, job_id) if r[0] == what]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{count} {what!r} records not seen within {timeout}s: {_records(redis_conn, job_id)}")


def test_a_retried_job_resumes_from_its_checkpoint_and_the_checkpoint_goes_when_it_ends(vq, redis_conn):
    """Attempt 1 saves steps 0-2 and fails at step 3; attempt 2 starts at step 3, not 0.
    `vq show` (table and --json) tells the checkpoint's size and that the attempt resumed;
    once the job has finished, its checkpoint is gone."""
    vq.configure(
        job_types={"test-cp": CHECKPOINTER},
        queue={"defaultJobOptions": {"removeOnComplete": False, "backoff": {"type": "fixed", "delay": 1500}}},
    )
    job_id = vq.submit("test-cp", {"steps": 5, "seconds": 0.05, "fail_at": 3}, "--user", "u")
    vq.start_daemon(workers=1)
    vq.wait_for(job_id, statuses=("scheduled",))
    waiting = vq.json("show", job_id)
    first_pid = _records(redis_conn, job_id)[0][1]
    assert waiting["checkpoint"]["bytes"] == len(json.dumps({"next": 3, "pid": first_pid}, separators=(",", ":")))
    assert waiting["checkpoint"]["attempt"] == 1 and waiting["checkpoint"]["at"].endswith("Z")
    assert waiting["resumed"] is None
    table = vq.run("show", job_id).stdout
    assert "checkpoint" in table and f"{waiting['checkpoint']['bytes']} bytes" in table
    view = vq.wait_for(job_id, timeout=30)
    assert view["status"] == "finished" and view["result"]["resumedAt"] == 3
    records = _records(redis_conn, job_id)
    starts = [step for what, _pid, step in records if what == "start"]
    done = [step for what, _pid, step in records if what == "done"]
    assert starts == [0, 3] and done == [0, 1, 2, 3, 4], records  # no step done twice
    assert view["resumed"]["attempt"] == 2 and view["resumed"]["checkpointAt"] == waiting["checkpoint"]["at"]
    assert view["checkpoint"] is None, "deleted once the job finished"
    assert redis_conn.exists(f"vq:checkpoint:{job_id}") == 0
    assert "resumed from the one saved at" in vq.run("show", job_id).stdout


def test_a_checkpoint_over_the_limit_fails_the_job_with_a_clear_error(vq, redis_conn):
    vq.configure(job_types={"test-cp": CHECKPOINTER}, limits={"maxCheckpointBytes": 1000})
    job_id = vq.submit("test-cp", {"steps": 1, "big": 5000}, "--user", "u")
    vq.start_daemon(workers=1)
    view = vq.wait_for(job_id, timeout=30)
    assert view["status"] == "failed" and view["attempts"] == 1, view  # permanent: not retried
    assert "limits.maxCheckpointBytes (1000)" in view["error"]["message"], view["error"]
    assert redis_conn.exists(f"vq:checkpoint:{job_id}") == 0


FAKE_FFMPEG = """#!{python}
# A stand-in for ffmpeg: renders a scene segment in {seconds}s (writes the file, logs
# "render <job> <segment file> <worker pid>" to {log} once written), concatenates, and reports a
# duration. It also tells the test which worker runs the job (test:pid:<job>).
import os, sys, time
import redis
args = sys.argv[1:]
if "-loop" in args:
    out = args[-1]
    job = os.path.basename(os.path.dirname(os.path.dirname(out)))
    redis.Redis.from_url(os.environ["VQ_TEST_REDIS"]).set("test:pid:" + job, os.getppid())
    time.sleep({seconds})
    open(out, "wb").write(b"segment")
    with open({log!r}, "a") as f:
        f.write("render %s %s %d\\n" % (job, os.path.basename(out), os.getppid()))
elif "concat" in args:
    open(args[-1], "wb").write(b"video")
else:
    sys.stderr.write("  Duration: 00:00:05.00, start: 0.000000\\n")
"""


def _fake_ffmpeg(tmp_path, seconds: float) -> tuple[str, object]:
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "ffmpeg.log"
    log.touch()
    script = folder / "ffmpeg"
    script.write_text(FAKE_FFMPEG.format(python=sys.executable, seconds=seconds, log=str(log)))
    script.chmod(0o755)
    return str(folder), log


def test_a_worker_killed_mid_composition_is_resumed_without_rendering_its_finished_scenes_again(
    vq, redis_conn, tmp_path
):
    """A video-generation plan whose composition renders 5 scenes (ffmpeg stood in for by a
    script that takes 0.4 s a scene): the worker rendering them is SIGKILLed after two. Once
    the stalled-job chore has put the job back (lease 1.5 s), the next attempt renders only
    the scenes not recorded in its checkpoint: no scene is rendered by both attempts, every
    one is rendered or reused, and the result lists the reused ones."""
    folder, log = _fake_ffmpeg(tmp_path, 0.4)
    vq.env["PATH"] = f"{folder}:{vq.env['PATH']}"
    vq.configure(
        queue={
            "defaultJobOptions": {"removeOnComplete": False},
            "settings": {"lockDuration": 1500, "stalledInterval": 1000},
        }
    )
    video = vq.submit(
        "video-generation",
        {"prompt": "Birds fly. Fish swim. Cats nap. Dogs run. Bees hum.", "sceneCount": 5},
        "--user",
        "u",
    )
    compose = next(c for c in vq.json("show", video)["children"] if vq.json("show", c)["step"] == "compose")
    vq.start_daemon(workers=2)
    first_pid = handler_pid(redis_conn, compose, timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_renders(log, compose)) < 2:
        time.sleep(0.02)
    os.kill(first_pid, signal.SIGKILL)
    view = vq.wait_for(compose, timeout=60)
    assert view["status"] == "finished", view
    result = view["result"]
    assert result["format"] == "mp4"
    renders = _renders(log, compose)
    by_first = [scene for scene, pid in renders if pid == first_pid]
    by_next = [scene for scene, pid in renders if pid != first_pid]
    assert len(by_first) >= 2 and by_next, renders
    assert result["resumedScenes"] and set(result["resumedScenes"]) <= set(range(5)), result
    assert set(result["resumedScenes"]) <= set(by_first), (renders, result)  # what the first attempt rendered
    assert not set(result["resumedScenes"]) & set(by_next), (renders, result)  # reused, not rendered again
    assert sorted(by_next) == result["renderedScenes"], (renders, result)
    assert sorted(result["resumedScenes"] + result["renderedScenes"]) == list(range(5))
    assert view["resumed"] is not None and view["checkpoint"] is None
    assert vq.wait_for(video, timeout=60)["status"] == "finished"


def _renders(log, job_id: str) -> list[tuple[int, int]]:
    """(scene position, worker pid) of each segment the stand-in ffmpeg wrote for the job."""
    out = []
    for line in log.read_text().splitlines():
        _render, job, segment, pid = line.split()
        if job == job_id:
            out.append((int(segment.removeprefix("segment-").removesuffix(".mp4")), int(pid)))
    return out
