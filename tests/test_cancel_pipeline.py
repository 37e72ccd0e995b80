"""Canceling a planned parent (video-generation) cancels its steps that have not ended: the
waiting ones at once, the running composition interrupted with --now, so a canceled video
neither renders on nor holds video-composition's one slot. Real daemon, real Redis; ffmpeg
is stood in for by a script that takes a minute a scene."""

from __future__ import annotations

import sys
import time

SLOW_FFMPEG = """#!{python}
import sys, time
args = sys.argv[1:]
if "-loop" in args:
    time.sleep(60)
    open(args[-1], "wb").write(b"segment")
elif "concat" in args:
    open(args[-1], "wb").write(b"video")
else:
    sys.stderr.write("  Duration: 00:00:05.00, start: 0.000000\\n")
"""

PROMPT = {"prompt": "Birds fly. Fish swim.", "sceneCount": 2}


def _children(vq, parent: str) -> dict[str, dict]:
    """The parent's steps by name, each as `vq show --json` gives it."""
    views = [vq.json("show", child) for child in vq.json("show", parent)["children"]]
    return {view["step"]: view for view in views}


def test_canceling_a_waiting_video_cancels_every_step(vq):
    parent = vq.submit("video-generation", PROMPT, "--user", "ann")  # no daemon: nothing runs
    steps = _children(vq, parent)
    assert len(steps) == 8 and {v["status"] for v in steps.values()} <= {"queued", "deferred"}

    view = vq.json("cancel", parent, "--reason", "wrong prompt")

    assert view["status"] == "canceled"
    for name, step in _children(vq, parent).items():
        assert step["status"] == "canceled", (name, step["status"])
        assert step["error"]["message"] == f"its parent {parent} was canceled", step["error"]


def test_cancel_now_on_a_video_interrupts_its_running_composition_and_frees_the_slot(vq, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    ffmpeg = folder / "ffmpeg"
    ffmpeg.write_text(SLOW_FFMPEG.format(python=sys.executable))
    ffmpeg.chmod(0o755)
    vq.env["PATH"] = f"{folder}:{vq.env['PATH']}"
    vq.start_daemon(workers=2)
    first = vq.submit("video-generation", PROMPT, "--user", "ann")
    compose = _children(vq, first)["compose"]["id"]
    vq.wait_for(compose, statuses=("started",), timeout=60)

    running = vq.json("show", first)["progress"]
    assert running["message"] == "7/8 steps done" and running["percent"] > 80

    began = time.monotonic()
    view = vq.json("cancel", first, "--now")
    assert view["status"] == "canceled"
    assert time.monotonic() - began < 6
    assert view["progress"]["message"] == "7/8 steps done", "a canceled video keeps the progress it had"
    assert view["progress"]["percent"] >= running["percent"] and view["finishedAt"] is not None

    ended = vq.wait_for(compose, timeout=5)
    assert ended["status"] == "canceled", "the composition stopped with its video"
    assert ended["error"]["message"] == f"its parent {first} was canceled"
    assert ended["attempts"] == 1, "not retried"
    # video-composition's one slot is free: the next video's composition starts.
    second = vq.submit("video-generation", PROMPT, "--user", "bob")
    vq.wait_for(_children(vq, second)["compose"]["id"], statuses=("started",), timeout=60)
    assert vq.json("cancel", second, "--now")["status"] == "canceled"


def test_cancel_all_counts_the_steps_its_parent_took_along_as_done(vq):
    """`vq cancel --all --user U` lists a video and its steps; canceling the video cancels the
    steps, which must then read as canceled, not as 8 jobs "skipped (they changed meanwhile)"."""
    parent = vq.submit("video-generation", PROMPT, "--user", "ann")
    report = vq.json("cancel", "--all", "--user", "ann", "--yes")
    assert report["matched"] == 9 and report["skipped"] == [], report
    assert sorted(report["done"]) == sorted([parent, *vq.json("show", parent)["children"]])
    proc = vq.run("cancel", "--all", "--user", "ann", "--yes")
    assert proc.returncode == 0 and "no job matches" in proc.stderr, "every one of them is canceled"


def test_removing_a_waiting_video_cancels_its_steps(vq):
    """`vq rm` of a video that has not ended leaves no orphan steps to render for nobody."""
    parent = vq.submit("video-generation", PROMPT, "--user", "ann")
    children = vq.json("show", parent)["children"]
    assert vq.run("rm", parent).returncode == 0
    for child in children:
        view = vq.json("show", child)
        assert view["status"] == "canceled" and view["error"]["message"] == f"its parent {parent} was removed"
