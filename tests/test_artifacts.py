"""Artifacts: a configurable storage root, retention per type, clean-up of failed jobs'
files, and `vq artifacts ls|get|prune`."""

from __future__ import annotations

import os
import time


def _gone(path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not path.exists():
            return True
        time.sleep(0.2)
    return False


def test_retention_clean_up_and_the_artifacts_commands(vq, tmp_path):
    store = tmp_path / "store"
    vq.configure(
        artifacts={"root": str(store), "sweepInterval": 300, "retention": 600_000},
        job_types={
            "test-writer": {"handler": "tests.plugins:writer", "attempts": 1, "artifactRetention": 8000},
            "test-keeper": {"handler": "tests.plugins:writer", "attempts": 1},
        },
        queue={"defaultJobOptions": {"removeOnComplete": False, "removeOnFail": False}},
    )
    daemon = vq.start_daemon(workers=1)
    short = vq.submit("test-writer", {"text": "hello"}, "--user", "u")
    kept = vq.submit("test-keeper", {"text": "keep me"}, "--user", "u")
    failed = vq.submit("test-writer", {"text": "partial", "fail": True}, "--user", "u")
    for job_id in (short, kept, failed):
        vq.wait_for(job_id)
    assert (store / short / "out.txt").read_text() == "hello", "files live under the configured root"
    # The commands look at the kept job: the short one's retention may lapse while they run.
    assert [f["name"] for f in vq.json("artifacts", "ls", kept)["artifacts"]] == ["out.txt"]
    assert vq.run("artifacts", "get", kept, "out.txt").stdout == "keep me"
    copied = vq.run("artifacts", "get", kept, "out.txt", "-o", str(tmp_path))
    assert copied.returncode == 0 and (tmp_path / "out.txt").read_text() == "keep me"
    bad = vq.run("artifacts", "get", kept, "../../etc/passwd")
    assert bad.returncode == 2 and "not a file name inside the job's artifacts" in bad.stderr
    assert _gone(store / failed, 5), "a failed job's temporary files go at the next sweep"
    assert _gone(store / short, 25), "a finished job's files go after its type's retention"
    assert (store / kept / "out.txt").exists(), "the default retention (10 minutes) keeps this one"
    assert "prune artifacts: removed the files of" in vq.daemon_log()

    vq.stop_daemon(daemon)
    ghost = store / "a-job-that-was-removed"
    ghost.mkdir()
    (ghost / "left.bin").write_bytes(b"x" * 1000)
    hour_ago = time.time() - 3600
    os.utime(ghost, (hour_ago, hour_ago))
    vq.configure(artifacts={"retention": 1_800_000})
    preview = vq.json("artifacts", "prune", "--dry-run")
    assert preview["removed"] == [{"id": ghost.name, "reason": "its job no longer exists", "bytes": 1000}]
    assert ghost.exists() and preview["kept"] == 1
    done = vq.json("artifacts", "prune", "--yes")
    assert done["freedBytes"] == 1000 and not ghost.exists() and (store / kept).exists()
