"""Each of the spec's ten job types runs to completion through a real daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

JOBS = {
    "script-generation": {"prompt": "A short film about robots learning to paint. They find colour.", "sceneCount": 2},
    "image-generation": {"prompt": "a sunset over the sea", "options": {"width": 64, "height": 48}},
    "audio-synthesis": {"text": "Hello from the audio synthesis job."},
    "world-building": {"prompt": "A floating city of glass"},
    "content-analysis": {"content": "AI makes video. Video needs AI. People watch video.", "type": "text"},
    "personalization": {"content": "Here is your summary.", "preferences": {"name": "Ada", "tone": "casual"}},
    "ai-processing": {"provider": "local", "task": "summarize", "input": "One. Two sentences here. Three."},
}


def test_each_leaf_type_finishes_with_a_real_result(vq):
    ids = {t: vq.submit(t, data, "--user", "alice") for t, data in JOBS.items()}
    vq.start_daemon()
    results = {t: vq.wait_for(i, timeout=60) for t, i in ids.items()}
    for job_type, view in results.items():
        assert view["status"] == "finished", (job_type, view["error"])
        assert view["progress"]["percent"] == 100.0
    image = results["image-generation"]["result"]
    with Image.open(image["path"]) as png:
        assert png.size == (64, 48)
    assert Path(image["path"]).parent == vq.data_dir / "artifacts" / ids["image-generation"]
    analysis = results["content-analysis"]["result"]
    assert (analysis["wordCount"], analysis["sentenceCount"]) == (9, 3)
    assert analysis["keywords"][0] == {"word": "video", "count": 3}
    import wave

    with wave.open(results["audio-synthesis"]["result"]["path"]) as wav:
        assert wav.getnframes() / wav.getframerate() >= 1.0
    assert len(results["script-generation"]["result"]["scenes"]) == 2


def test_video_generation_runs_as_a_graph_of_child_jobs(vq):
    vid = vq.submit(
        "video-generation",
        {"prompt": "A video about AI technology. It is bright.", "sceneCount": 2},
        "--user",
        "alice",
        "--subscription",
        "pro",
    )
    view = vq.json("show", vid)
    assert view["status"] == "deferred"
    assert view["priority"] == "normal"
    assert len(view["children"]) == 1 + 2 * 3 + 1  # script, per scene image+audio+scene, compose
    vq.start_daemon(workers=2)
    done = vq.wait_for(vid, timeout=120)
    assert done["status"] == "finished", done["error"]
    kids = [vq.json("show", k) for k in done["children"]]
    assert all(k["status"] == "finished" and k["parentId"] == vid for k in kids)
    assert {k["jobType"] for k in kids} == {
        "script-generation",
        "image-generation",
        "audio-synthesis",
        "scene-creation",
        "video-composition",
    }
    compose = next(k for k in kids if k["step"] == "compose")
    assert _ts(done["startedAt"]) >= _ts(compose["finishedAt"])
    assert done["result"]["durationSeconds"] > 0
    tree = vq.json("show", vid, "--tree")
    assert tree["dependsOn"][0]["step"] == "compose"


def _ts(text):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_embedded_redis_when_none_is_configured(tmp_path):
    """No Redis configured: the daemon runs its own, and the CLI finds it."""
    data_dir = Path(tempfile.mkdtemp(prefix="vqe", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_"))}
    env.update(VQ_DATA_DIR=str(data_dir), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"))

    def run(*a):
        return subprocess.run([sys.executable, "-m", "vq", *a], env=env, capture_output=True, text=True)

    down = run("queues")
    assert down.returncode == 3 and "start `vq daemon`" in down.stderr
    daemon = subprocess.Popen(
        [sys.executable, "-m", "vq", "daemon", "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sock = data_dir / "redis" / "redis.sock"
        for _ in range(100):
            if sock.exists() and run("queues").returncode == 0:
                break
            time.sleep(0.1)
        job = run(
            "submit", "content-analysis", "--user", "u", "--data", '{"content": "one two three"}', "--wait", "--json"
        )
        assert job.returncode == 0, job.stderr
        assert json.loads(job.stdout)["status"] == "finished"
        assert (data_dir / "redis" / "appendonly.aof").exists() or (data_dir / "redis" / "appendonlydir").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        try:
            assert run("queues").returncode == 0, "the embedded Redis outlives the daemon"
        finally:
            stopped = run("redis", "stop")
            shutil.rmtree(data_dir, ignore_errors=True)
            assert stopped.returncode == 0, stopped.stderr
    assert not sock.exists(), "`vq redis stop` stops it"


def test_video_generation_progress_reflects_its_children(vq):
    vid = vq.submit(
        "video-generation", {"prompt": "Robots paint. They learn colour.", "sceneCount": 1}, "--user", "alice"
    )
    assert vq.json("progress", vid) == {"id": vid, "status": "deferred", "percent": 0.0, "message": "0/5 steps done"}
    only_scripts = vq.start_daemon("--queues", "script-generation", workers=1)
    script = next(k for k in vq.json("show", vid)["children"] if vq.json("show", k)["step"] == "script")
    vq.wait_for(script)
    vq.stop_daemon(only_scripts)
    partial = vq.json("progress", vid)
    assert partial["message"] == "1/5 steps done"
    assert 0 < partial["percent"] < 100
    vq.start_daemon()
    assert vq.wait_for(vid, timeout=60)["progress"]["percent"] == 100.0
