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

import pytest

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
    `vq show` (table and --json) and GET /api/jobs/{id} tell the checkpoint's size and that
    the attempt resumed; once the job has finished, its checkpoint is gone."""
    from tests.test_api import SECRET, serve

    vq.configure(
        job_types={"test-cp": CHECKPOINTER},
        queue={"defaultJobOptions": {"removeOnComplete": False, "backoff": {"type": "fixed", "delay": 5000}}},
    )
    job_id = vq.submit("test-cp", {"steps": 5, "seconds": 0.05, "fail_at": 3}, "--user", "u")
    api = serve(vq, jwt_secret=SECRET)  # its daemon runs the job
    vq.wait_for(job_id, statuses=("scheduled",))
    waiting = vq.json("show", job_id)
    first_pid = _records(redis_conn, job_id)[0][1]
    assert waiting["checkpoint"]["bytes"] == len(json.dumps({"next": 3, "pid": first_pid}, separators=(",", ":")))
    assert waiting["checkpoint"]["attempt"] == 1 and waiting["checkpoint"]["at"].endswith("Z")
    assert waiting["resumed"] is None
    reply = api.call("GET", f"/api/jobs/test-cp/{job_id}", api.token("u", "user"))
    assert reply.status == 200 and reply.body["checkpoint"] == waiting["checkpoint"], reply.body
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
    reply = api.call("GET", f"/api/jobs/test-cp/{job_id}", api.token("u", "user"))
    assert reply.body["resumed"] == view["resumed"] and reply.body["checkpoint"] is None


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


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _renders(log, job_id: str) -> list[tuple[int, int]]:
    """(scene position, worker pid) of each segment the stand-in ffmpeg wrote for the job."""
    out = []
    for line in log.read_text().splitlines():
        _render, job, segment, pid = line.split()
        if job == job_id:
            out.append((int(segment.removeprefix("segment-").removesuffix(".mp4")), int(pid)))
    return out


def test_a_worker_paused_past_its_lease_cannot_overwrite_the_checkpoint_of_the_attempt_that_took_over(vq, redis_conn):
    """The worker running a checkpointing job is stopped (SIGSTOP) and its lease lapses on
    Redis's clock (its deadline moved to the past: the same as a 30 s pause, in no time); the
    stalled-job chore gives the job to the daemon's other worker, whose attempt resumes from
    the checkpoint and saves its own. Continued (SIGCONT), the first worker's next checkpoint
    is refused (LeaseLost in its handler) and the checkpoint stays the new attempt's."""
    from vq import keys

    vq.configure(
        job_types={"test-cp": CHECKPOINTER},
        queue={"settings": {"lockDuration": 30000, "stalledInterval": 1000}},
    )
    job_id = vq.submit("test-cp", {"steps": 80, "seconds": 0.1}, "--user", "u", "--subscription", "pro")
    vq.start_daemon(workers=2)
    first = handler_pid(redis_conn, job_id)
    _wait_records(redis_conn, job_id, "saved", 2)
    os.kill(first, signal.SIGSTOP)
    try:
        redis_conn.zadd(keys.running_type("test-cp"), {job_id: 0})  # its lease lapsed
        second_start = _wait_records(redis_conn, job_id, "start", 2)[1]
        second = second_start[1]
        assert second != first and second_start[2] >= 2, _records(redis_conn, job_id)  # resumed
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [
            r for r in _records(redis_conn, job_id) if r[:2] == ("saved", second)
        ]:
            time.sleep(0.02)
    finally:
        os.kill(first, signal.SIGCONT)
    refused = _wait_records(redis_conn, job_id, "LeaseLost", 1, timeout=10)
    assert refused[0][1] == first, refused
    state = json.loads(redis_conn.hget(f"vq:checkpoint:{job_id}", "state"))
    assert state["pid"] == second, "the new attempt's checkpoint stays"
    records = _records(redis_conn, job_id)
    after = records[records.index(refused[0]) :]
    assert not [r for r in after if r[1] == first and r[0] == "saved"], records
    assert int(redis_conn.get("vq:fence:refused") or 0) >= 1
    assert "stale write refused (checkpoint)" in vq.daemon_log()
    view = vq.wait_for(job_id, timeout=60)
    assert view["status"] == "finished" and view["result"]["pid"] == second


@pytest.mark.parametrize("isolation", ["process", "fork"])
def test_stop_at_checkpoint_requeues_the_job_at_its_next_checkpoint_and_it_resumes_there(vq, redis_conn, isolation):
    """daemon.stopAtCheckpoint: on SIGTERM, a job that checkpoints stops at its next
    checkpoint (not at the end of a 60 s grace period, nor its 12 s of work), is requeued,
    and the next daemon resumes it from that checkpoint: no step is done twice. A forked
    job's child (isolation: fork) is told by its worker and stops the same way."""
    vq.configure(
        job_types={"test-cp": {**CHECKPOINTER, "isolation": isolation}},
        daemon={"shutdownGrace": 60000, "stopAtCheckpoint": True},
    )
    job_id = vq.submit("test-cp", {"steps": 40, "seconds": 0.3}, "--user", "u")
    daemon = vq.start_daemon(workers=1)
    _wait_records(redis_conn, job_id, "saved", 2)
    worker = _parent_of(int(redis_conn.get(f"test:pid:{job_id}")))
    if isolation == "fork":  # the handler's process is a child of a worker process, not the worker
        worker = _parent_of(worker)
    assert worker == daemon.pid
    asked = time.monotonic()
    assert vq.stop_daemon(daemon, timeout=30) == 0
    assert time.monotonic() - asked < 5, "stopped at the next checkpoint, not after the grace period"
    assert "those that checkpoint stop at their next checkpoint" in vq.daemon_log(), "the stop line says so"
    records = _records(redis_conn, job_id)
    assert records[-1][0] == "StopAtCheckpoint", records
    stopped_after = records[-1][2]
    view = vq.json("show", job_id)
    assert view["status"] == "queued" and view["checkpoint"]["bytes"] > 0, view
    assert view["attempts"] == 0, "the stopped attempt is not charged"
    vq.start_daemon(workers=1)
    view = vq.wait_for(job_id, timeout=60)
    assert view["status"] == "finished" and view["result"]["resumedAt"] == stopped_after + 1
    done = [step for what, _pid, step in _records(redis_conn, job_id) if what == "done"]
    assert done == list(range(40)), done
    assert view["resumed"] is not None


@pytest.mark.parametrize(
    "daemon, own",
    [({}, {}), ({"stopAtCheckpoint": True}, {"stopAtCheckpoint": False})],
    ids=["default", "type-says-no"],
)
def test_without_stop_at_checkpoint_a_job_runs_on_through_the_grace_period_then_resumes(vq, redis_conn, daemon, own):
    """The default, and a type that says no where the daemon says yes: on SIGTERM the job
    keeps running through the grace period (2 s here), then is requeued; its next attempt
    still starts from its last checkpoint."""
    vq.configure(job_types={"test-cp": {**CHECKPOINTER, **own}}, daemon={"shutdownGrace": 2000, **daemon})
    job_id = vq.submit("test-cp", {"steps": 40, "seconds": 0.2}, "--user", "u")
    daemon = vq.start_daemon(workers=1)
    _wait_records(redis_conn, job_id, "saved", 2)
    saved_before = len(_wait_records(redis_conn, job_id, "saved", 2))
    asked = time.monotonic()
    assert vq.stop_daemon(daemon, timeout=30) == 0
    assert time.monotonic() - asked >= 2
    records = _records(redis_conn, job_id)
    saved = [step for what, _pid, step in records if what == "saved"]
    assert len(saved) >= saved_before + 5, "it ran on through the grace period"
    assert "StopAtCheckpoint" not in {r[0] for r in records}
    assert vq.json("show", job_id)["status"] == "queued"
    vq.start_daemon(workers=1)
    view = vq.wait_for(job_id, timeout=60)
    assert view["status"] == "finished" and view["result"]["resumedAt"] == saved[-1] + 1


def test_video_generation_run_inline_resumes_after_its_last_finished_step(tmp_path, monkeypatch):
    """Run without children, video-generation checkpoints after each step of its plan: an
    attempt that failed in the composition is followed by one that starts there, running no
    earlier step again (counted by wrapping the steps' handlers)."""
    import importlib

    from vq.context import local_context
    from vq.handlers import video_composition, video_generation

    calls: list[str] = []
    for name in ("script_generation", "image_generation", "audio_synthesis", "scene_creation"):
        module = importlib.import_module(f"vq.handlers.{name}")
        original = module.handle
        monkeypatch.setattr(module, "handle", lambda ctx, data, f=original, n=name: calls.append(n) or f(ctx, data))
    original_compose = video_composition.handle

    def compose_fails_once(ctx, data):
        calls.append("video_composition")
        if calls.count("video_composition") == 1:
            raise RuntimeError("the worker died here")
        return original_compose(ctx, data)

    monkeypatch.setattr(video_composition, "handle", compose_fails_once)
    data = {"prompt": "Bees and flowers. Rain and sun.", "sceneCount": 2, "width": 64, "height": 36, "format": "edl"}
    first, _ = local_context("job-1", "video-generation", tmp_path)
    try:
        video_generation.handle(first, data)
    except RuntimeError:
        pass
    saved = json.loads(json.dumps(first.last_checkpoint))  # as stored: JSON
    assert sorted(saved["steps"]) == ["audio-0", "audio-1", "image-0", "image-1", "scene-0", "scene-1", "script"]
    steps_first = len(calls)
    second, _ = local_context("job-1", "video-generation", tmp_path)
    second.resumed_from = saved
    result = video_generation.handle(second, data)
    assert calls[steps_first:] == ["video_composition"], calls  # nothing before it ran again
    assert result["scenes"] == 2 and len(result["resumedSteps"]) == 7


def test_a_tool_a_handler_runs_dies_with_the_worker_that_ran_it(tmp_path):
    """What the composition test relies on, without its timing: a worker SIGKILLed while its
    ffmpeg runs (as the OOM killer does) takes the ffmpeg with it, instead of leaving it to
    write into the folder the job's next attempt renders into."""
    import subprocess

    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from vq.procutil import tool_dies_with_caller\n"
            "tool = subprocess.Popen(['sleep', '60'], preexec_fn=tool_dies_with_caller())\n"
            "print(tool.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    tool = int(worker.stdout.readline())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    deadline = time.monotonic() + 10
    while _alive(tool) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(tool), "the tool outlived the worker that ran it"


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its new parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
