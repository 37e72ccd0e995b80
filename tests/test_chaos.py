"""A short chaos run (scripts/chaos/run.py) in CI: every kind of fault at least once —
workers SIGKILLed and stopped past their lease, Redis paused and killed, a daemon cut off
from Redis — and still no job lost, no slot leaked, and no limit exceeded by the handlers'
own records. The full run (2,000 jobs) is for the README's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_a_short_chaos_run_loses_nothing_and_keeps_every_limit():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/chaos/run.py"),
            "--jobs",
            "240",
            "--daemons",
            "2",
            "--workers",
            "2",
            "--kills",
            "8",
            "--seed",
            "11",
            "--timeout",
            "400",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=560,
        cwd=ROOT,
    )
    assert proc.stdout, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    summary = {
        k: result[k]
        for k in (
            "lost",
            "slotsLeaked",
            "mostAtOnceType",
            "mostAtOnceUser",
            "faults",
            "finished",
            "deadLettered",
            "staleWritesRefused",
            "jobsStoppedLeaseLost",
        )
    }
    assert proc.returncode == 0, (summary, proc.stderr[-3000:])
    assert result["lost"] == 0 and result["slotsLeaked"] == 0, summary
    assert result["mostAtOnceType"] <= result["typeLimit"] and result["mostAtOnceUser"] <= result["userLimit"], summary
    assert set(result["faults"]) == {"kill", "stop", "pause", "cut"}, summary
    assert result["redisRestart"] is not None
    assert result["finished"] + result["deadLettered"] == result["submitted"], summary
