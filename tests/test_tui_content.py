"""What `vq tui` shows of real jobs: a finished job of each of the ten built-in types with
its real result (one daemon run for the module), a failed job whose error, traceback,
progress message, data and artifact are all markup-like text, and hostile names on every
list. Nothing crashes the dashboard, every value is shown as the literal text, results
and data as JSON. And when the app does crash, `vq tui` exits 1 with one line on stderr."""

from __future__ import annotations

import json
import os
import pty
import re
import select as select_fds
import shutil
import signal
import subprocess
import sys
import time

import pytest
import redis as redis_lib
from rq import Queue, Worker
from textual.widgets import Input

from tests.conftest import ROOT, TEST_JOB_TYPES, VQ, _free_port, write_config
from tests.test_builtin_types import JOBS
from tests.test_tui import dashboard, on_screen, rows, run, select, until
from tests.test_tui import shown as plain
from vq.errors import PermanentError
from vq.tui.dialogs import ConfirmScreen
from vq.tui.limits_screens import UserScreen
from vq.tui.overview import OverviewScreen
from vq.tui.screens import DeadLetterScreen, JobScreen, QueueScreen

# One xdist process runs the whole module (--dist loadgroup): one daemon run of every
# built-in type (`ran`) is read by three tests.
pytestmark = pytest.mark.xdist_group("tui-content")

MARKUP = "[/] [bold]not bold[link=x] [red]x[/red] \\[also] a lone [ here"
HOSTILE_ERROR = "\n".join([f"render failed {MARKUP}", *(f"line {i}: [/] [bold]{'x' * 60}[link=x]" for i in range(30))])
PROGRESS = "[/] stage [bold]two \x1b[2J"  # and an escape sequence that would clear the terminal
ARTIFACT = "[b]frame[link=x] [bold].txt"  # no "/" in a file name
RECURRING = "[/]nightly [bold]digest"
WORKER = "[/]worker[bold]1"
USER = "[red]x[/] [b]"  # typed at a prompt (vq refuses such a user id at submission)
TYPED_ID = "[/]no-such-job"


def hostile(ctx, data):
    """A handler whose every word is markup-like: a progress message, an artifact's name,
    then a permanent failure with a long message from 40 frames down."""
    (ctx.artifacts_dir / ARTIFACT).write_text("frame")
    ctx.progress(40, PROGRESS)
    _deeper(40)


def _deeper(depth: int):
    if depth:
        return _deeper(depth - 1)
    raise PermanentError(HOSTILE_ERROR)


@pytest.fixture(scope="module")
def ran(redis_server, tmp_path_factory):
    """One daemon runs a job of each built-in type (a video-generation pipeline brings
    scene-creation and video-composition, which writes an edit decision list without
    ffmpeg) and the hostile job; a recurring job and an RQ worker with hostile names are
    registered. Read-only for the tests that use it."""
    if redis_server.proc.poll() is not None:
        redis_server.start()
    redis_lib.Redis.from_url(redis_server.url).flushall()
    tmp = tmp_path_factory.mktemp("tui-content")
    data_dir = tmp / "data"
    data_dir.mkdir()
    config = write_config(
        tmp / "config.yaml",
        {
            "redis": {"url": redis_server.url},
            "data_dir": str(data_dir),
            "http": {"enabled": False},
            "daemon": {"shutdownGrace": 5000},
            # The daemon prunes a failed job's artifacts at its next sweep (every 60 s by
            # default): on a loaded machine that came before a test read the hostile job's.
            "artifacts": {"sweepInterval": 24 * 3600 * 1000},
            "job_types": {**TEST_JOB_TYPES, "hostile": {"handler": "tests.test_tui_content:hostile", "attempts": 1}},
        },
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_"))}
    env.update(VQ_CONFIG=str(config), PYTHONPATH=str(ROOT), HOME=str(tmp), COLUMNS="200")
    vq = VQ(config, env, data_dir)
    ids = {t: vq.submit(t, data, "--user", "alice") for t, data in JOBS.items()}
    ids["video-generation"] = vq.submit(
        "video-generation", {"prompt": "A video about AI. It is [bold] bright.", "sceneCount": 2}, "--user", "alice"
    )
    failed = vq.submit("hostile", {"prompt": MARKUP, "nested": {"list": ["[/]", "[bold]"]}}, "--user", "bob")
    recurring = vq.run("recurring", "add", "test-noop", "--cron", "0 0 * * *", "--name", RECURRING, "--user", "bob")
    assert recurring.returncode == 0, recurring.stderr
    conn = redis_lib.Redis.from_url(redis_server.url)
    Worker([Queue("test-noop", connection=conn)], connection=conn, name=WORKER).register_birth()
    daemon = vq.start_daemon(workers=2)
    try:
        views = {t: vq.wait_for(i, timeout=120) for t, i in ids.items()}
        for kid in views["video-generation"]["children"]:
            view = vq.json("show", kid)
            views.setdefault(view["jobType"], view)
        views["hostile"] = vq.wait_for(failed)
        yield vq, views
    finally:
        vq.stop_daemon(daemon)


BUILT_IN = [
    "script-generation",
    "image-generation",
    "audio-synthesis",
    "world-building",
    "content-analysis",
    "personalization",
    "ai-processing",
    "scene-creation",
    "video-composition",
    "video-generation",
]


def test_a_finished_job_of_each_built_in_type_shows_its_real_result_as_json(ran):
    vq, views = ran
    assert [views[t]["status"] for t in BUILT_IN] == ["finished"] * 10, {t: views[t]["error"] for t in BUILT_IN}
    if not shutil.which("ffmpeg"):
        assert views["video-composition"]["result"]["format"] == "edl"  # an edit decision list instead

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: rows(app, "queues"), what="the overview")
            for job_type in BUILT_IN:
                view = views[job_type]
                await pilot.press("j")  # as an operator opens a job by id (pasted: typing it is slow here)
                (await prompt(pilot, app)).value = view["id"]
                await pilot.press("enter")
                await on_screen(pilot, app, JobScreen)
                await until(
                    pilot,
                    lambda job_type=job_type, view=view: f"{job_type} {view['id']}  finished" in plain(app, "Banner"),
                    what=f"the {job_type} job",
                )
                result = vq.json("result", view["id"])["result"]
                shown = await until(
                    pilot,
                    lambda: "result\n" in plain(app, "#detail") and plain(app, "#detail"),
                    what=f"{job_type}'s result",
                )
                assert json.dumps(result, indent=2, ensure_ascii=False) in shown, (job_type, shown)
                if view["data"]:
                    assert json.dumps(view["data"], indent=2, ensure_ascii=False) in shown, (job_type, shown)
                if job_type == "video-generation":  # it logs a line: the log's heading lines up with the history's
                    await until(pilot, lambda: plain(app, "#log").startswith("log"), what="the job's log")
                    log, timeline = app.screen.query_one("#log"), app.screen.query_one("#timeline")
                    assert log.content_region.x == timeline.content_region.x
                await pilot.press("escape")
                await on_screen(pilot, app, OverviewScreen)

    run(scenario())


def test_a_failed_job_with_markup_in_everything_shows_it_literally(ran):
    vq, views = ran
    view = vq.json("show", views["hostile"]["id"])
    assert view["status"] == "failed" and MARKUP in view["error"]["message"]
    frames = vq.json("dlq", "list", "--type", "hostile")[0]["traceback"].rstrip().splitlines()

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(JobScreen(view["id"]))
            await until(pilot, lambda: "failed" in plain(app, "Banner"), what="the failed job")
            assert plain(app, "Banner").endswith("failed  [/] stage [bold]two \\x1b[2J")  # ESC spelt out
            shown = await until(
                pilot, lambda: "data\n" in plain(app, "#detail") and plain(app, "#detail"), what="the detail"
            )
            assert f"error permanent {view['error']['type']}:\n{view['error']['message'].splitlines()[0]}\n" in shown
            assert "\n".join(view["error"]["message"].splitlines()[:20]) in shown  # the first 20 lines
            assert "… 11 more line(s): vq show" in shown
            assert len(frames) > 40 and "\n".join(frames[-40:]) in shown  # its last 40 lines, literally
            assert f"… {len(frames) - 40} earlier line(s): vq show" in shown
            assert json.dumps(view["data"], indent=2, ensure_ascii=False) in shown
            assert f"artifacts {ARTIFACT} (5 B)" in shown
            await pilot.press("escape")

    run(scenario())


def test_every_list_shows_hostile_names_literally(ran):
    vq, views = ran
    hostile = views["hostile"]

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await until(pilot, lambda: WORKER in rows(app, "workers"), what="the workers")
            assert rows(app, "workers")[WORKER][0] == WORKER
            assert [r[1] for r in rows(app, "recurring").values()] == [RECURRING]
            select(app, "queues", "hostile")
            await pilot.press("enter")
            await on_screen(pilot, app, QueueScreen)
            listed = await until(pilot, lambda: rows(app, "jobs").get(hostile["id"]), what="the hostile job")
            assert listed[1:5] == ["failed", "bob", hostile["priority"], "40%"]
            assert plain(app, "Banner").startswith("hostile  status: all")
            await pilot.press("f")
            (await prompt(pilot, app)).value = USER  # pasted
            await pilot.press("enter")
            await until(
                pilot, lambda: f"user: {USER}  page 1  (0 shown)" in plain(app, "Banner"), what="the user filter"
            )
            await pilot.press("escape")
            await on_screen(pilot, app, OverviewScreen)
            await pilot.press("u")
            (await prompt(pilot, app)).value = USER
            await pilot.press("enter")
            await on_screen(pilot, app, UserScreen)
            await until(pilot, lambda: plain(app, "Banner").startswith(f"{USER}  running 0/"), what="the user")
            await pilot.press("escape")
            await on_screen(pilot, app, OverviewScreen)
            await pilot.press("d")
            await on_screen(pilot, app, DeadLetterScreen)
            listed = await until(pilot, lambda: rows(app, "dead").get(hostile["id"]), what="the dead letter")
            assert listed[4] == f"render failed {MARKUP}"[:59] + "…"
            await pilot.press("escape")
            await on_screen(pilot, app, OverviewScreen)
            await pilot.press("j")
            await prompt(pilot, app)  # else the id's letters would be keys on the overview
            await pilot.press(*TYPED_ID, "enter")  # a job id typed as anything
            await until(pilot, lambda: plain(app, "Banner") == f"no such job {TYPED_ID!r}", what="no such job")
            assert isinstance(app.screen, JobScreen)
            await pilot.press("r")  # retry: the notification quotes the id
            toast = await until(pilot, lambda: app.screen.query_one("Toast"), what="the notification")
            assert toast.render().plain == f"no such job {TYPED_ID!r}"
            await pilot.press("x")  # cancel asks first, naming the job
            await on_screen(pilot, app, ConfirmScreen)
            assert plain(app, "Label").startswith(f"Cancel job {TYPED_ID}? ")
            await pilot.press("n")
            await pilot.press("ctrl+p", *"Retry this")  # the palette reads markup: the id is escaped for it
            await until(pilot, lambda: f"Retry this job\n{TYPED_ID}" in palette(app), what="the palette's entry")
            await pilot.press("escape")
            assert isinstance(app.screen, JobScreen) and plain(app, "Banner") == f"no such job {TYPED_ID!r}"

    run(scenario())


async def prompt(pilot, app) -> Input:
    """The answer field of the prompt a key opened, once it is there (see on_screen)."""
    return await until(pilot, lambda: app.screen.query_one("#answer", Input), what="the prompt")


def palette(app) -> list[str]:
    """The entries the command palette lists, as shown: title, then help."""
    hits = app.screen.query_one("CommandList")
    return [getattr(hits.get_option_at_index(i).prompt, "plain", "") for i in range(hits.option_count)]


def test_a_crash_exits_1_with_one_line_and_keeps_the_traceback(tmp_path):
    """`vq tui` on a terminal, its Redis address answered by an HTTP server: the reply is
    no Redis protocol, nothing in the dashboard handles that, the app stops."""
    port = _free_port()
    http = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        config = write_config(
            tmp_path / "config.yaml",
            {"redis": {"url": f"redis://127.0.0.1:{port}/0"}, "data_dir": str(tmp_path / "data")},
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_"))}
        env.update(VQ_CONFIG=str(config), PYTHONPATH=str(ROOT), HOME=str(tmp_path), TERM="xterm-256color")
        code, output = _on_a_terminal([sys.executable, "-m", "vq", "tui"], env)
    finally:
        http.kill()
        http.wait()
    log = tmp_path / "data" / "tui-crash.log"
    after = output.rsplit("\x1b[?1049l", 1)[-1]  # what is left once the app gave the screen back
    after = re.sub(r"\x1b\[[0-9;?>]*[A-Za-z]|\x07", "", after).strip()  # modes reset, a red "error", a bell
    assert code == 1, output[-2000:]
    assert re.fullmatch(
        r'vq: error: the dashboard crashed: InvalidResponse: Protocol error, got ".+" as reply '
        r"type byte \(traceback in (.+)\)",
        after,
    ), after
    assert after.endswith(f"(traceback in {log})")
    assert "Traceback (most recent call last)" in log.read_text() and "InvalidResponse" in log.read_text()


def _wait_for_port(port: int) -> None:
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def _on_a_terminal(argv: list[str], env: dict, timeout: float = 30) -> tuple[int, str]:
    """Run a command on a pseudo-terminal of 80x24 as a user's shell would; its exit code and output."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select_fds.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("still running: " + b"".join(chunks).decode(errors="replace")[-2000:])
    finally:
        os.close(master)
    return proc.wait(10), b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
