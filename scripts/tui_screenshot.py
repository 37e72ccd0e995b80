#!/usr/bin/env python3
"""Take the docs' screenshot of `vq tui` (docs/dashboard.svg) under load, from the real app.

Starts a private, throw-away redis-server and a `vq daemon --workers 2` on it, submits a
mixed workload of the built-in job types from 12 users (some delayed, some failing for good,
two recurring definitions), lets it run a few seconds, then renders the dashboard headless
(Textual's test driver, 100x30) and saves it as SVG.

    python scripts/tui_screenshot.py [--out docs/dashboard.svg] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "bench"))
sys.path.insert(0, str(HERE.parent))

import yaml
from _common import PrivateRedis, start_vq_daemon, stop_process

from vq.config import load_settings
from vq.connection import make_client
from vq.recurring import definitions as recurring
from vq.submission import Submission, submit
from vq.tui.app import VqDashboard
from vq.tui.services import Services

WORK = [
    ("content-analysis", {"content": "AI makes video. Video needs AI.", "type": "text"}),
    ("image-generation", {"prompt": "a lighthouse at dusk", "options": {"width": 320, "height": 180}}),
    ("audio-synthesis", {"text": "Welcome to the show."}),
    ("personalization", {"content": "Your weekly summary.", "preferences": {"tone": "casual"}}),
    ("script-generation", {"prompt": "Robots learn to paint. They find colour.", "sceneCount": 2}),
]


def workload(conn, settings) -> None:
    tiers = ["free", "basic", "pro", "enterprise"]
    for i in range(2400):
        job_type, data = WORK[i % len(WORK)]
        user = f"user-{i % 12:02d}"
        submit(
            conn,
            settings,
            Submission(
                job_type,
                dict(data),
                user_id=user,
                subscription=tiers[i % 4],
                skip_cache=True,
                delay_ms=600_000 if i % 17 == 0 else None,
            ),
        )
    for i in range(6):  # fail for good: they land in the dead-letter queue
        submit(
            conn,
            settings,
            Submission("scene-creation", {"imagePath": "/etc/passwd", "audioPath": "x.wav"}, user_id=f"user-{i:02d}"),
        )
    recurring.add(
        conn,
        settings,
        job_type="content-analysis",
        cron="*/5 * * * *",
        name="trend-report",
        data={"content": "hourly trends", "type": "text"},
        user_id="ops",
    )
    recurring.add(
        conn,
        settings,
        job_type="world-building",
        cron="0 3 * * *",
        tz="Europe/Berlin",
        name="nightly-worlds",
        data={"prompt": "a floating city"},
        user_id="ops",
    )


async def shoot(settings, out: Path, size: tuple[int, int]) -> None:
    app = VqDashboard(Services(make_client(settings, socket_timeout=2.0), settings))
    async with app.run_test(size=size) as pilot:
        await pilot.pause(2.5)
        out.write_text(app.export_screenshot(title="vq tui"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/dashboard.svg")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the daemon works before the shot")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vq-shot-") as tmp:
        workdir = Path(tmp)
        server = PrivateRedis(workdir)
        conn = server.start()
        config = workdir / "vq.yaml"
        config.write_text(
            yaml.safe_dump(
                {"redis": {"url": server.url}, "data_dir": str(workdir / "data"), "http": {"enabled": False}}
            )
        )
        settings = load_settings(config, env={})
        daemon = None
        try:
            workload(conn, settings)
            daemon = start_vq_daemon(config, 2, "WARNING", workdir / "daemon.log", Path.cwd())
            time.sleep(args.seconds)
            asyncio.run(shoot(settings, Path(args.out), (100, 30)))
            print(json.dumps({"out": args.out, "finished": conn.zcard("rq:finished:content-analysis.normal")}))
        finally:
            if daemon is not None:
                stop_process(daemon)
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
