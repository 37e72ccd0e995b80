"""`vq tui` driven with Textual's pilot against a real Redis, real jobs and a real daemon:
what each screen shows, that actions ask before destroying and then act, and that a dead
Redis shows a banner without freezing the keys, then recovers by itself."""

from __future__ import annotations

import asyncio
import time

import redis as redis_lib
from textual.widgets import DataTable

from tests.plugins import handler_pid
from vq import jobs
from vq.config import load_settings
from vq.connection import make_client
from vq.tui.app import VqDashboard
from vq.tui.dialogs import CancelScreen, ConfirmScreen, HelpScreen
from vq.tui.overview import OverviewScreen
from vq.tui.screens import DeadLetterScreen, JobScreen, QueueScreen
from vq.tui.services import Services


def dashboard(vq) -> VqDashboard:
    settings = load_settings(vq.config_path)
    return VqDashboard(Services(make_client(settings, socket_timeout=2.0), settings), refresh_every=0.3)


async def until(pilot, check, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception:  # noqa: BLE001 - the screen may still be building
            pass
        await pilot.pause(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


async def on_screen(pilot, app, screen_type) -> None:
    """Until the app shows a screen of `screen_type`. A key whose handler posts a message
    (DataTable's enter: RowSelected, then the screen pushes) can land after `pilot.press`
    returns: its idle check compares CPU time with wall time, and a starved process looks
    idle. Asserting the screen right after the press failed on a loaded machine."""
    await until(pilot, lambda: isinstance(app.screen, screen_type), what=f"the {screen_type.__name__}")


def banner(app) -> str:
    """The banner's text as the operator reads it."""
    return shown(app, "Banner")


def shown(app, selector: str) -> str:
    """The text a Static shows: its content as rendered, before long lines are wrapped."""
    return app.screen.query_one(selector).visual.plain


def rows(app, table_id: str) -> dict[str, list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return {key.value: [str(c) for c in table.get_row(key)] for key in table.rows}


def palette(app) -> list[str]:
    """The entries the command palette lists, as shown: title, then help."""
    hits = app.screen.query_one("CommandList")
    return [getattr(hits.get_option_at_index(i).prompt, "plain", "") for i in range(hits.option_count)]


def select(app, table_id: str, key: str) -> None:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    table.move_cursor(row=table.get_row_index(key))
    table.focus()


def run(coroutine):
    asyncio.run(coroutine)


def test_overview_counts_and_queue_actions_ask_then_act(vq, redis_conn):
    for user in ("ann", "bob", "cy"):
        vq.submit("test-noop", {}, "--user", user)
    vq.submit("test-echo", {}, "--user", "ann", "--delay", "1h")

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            table = await until(pilot, lambda: rows(app, "queues").get("test-noop"), what="the queues table")
            assert table[1:3] == ["3", "0"]  # waiting, limited
            assert rows(app, "queues")["test-echo"][4] == "1"  # delayed
            assert "no live worker" in banner(app)
            select(app, "queues", "test-noop")
            await pilot.press("p")
            await until(pilot, lambda: "⏸" in rows(app, "queues")["test-noop"][0], what="paused mark")
            assert redis_conn.sismember("vq:paused", "test-noop")
            await pilot.press("c")
            await on_screen(pilot, app, ConfirmScreen)
            await pilot.press("n")  # declined: nothing removed
            await pilot.pause(0.5)
            assert rows(app, "queues")["test-noop"][1] == "3"
            await pilot.press("c")
            await pilot.press("y")
            await until(pilot, lambda: rows(app, "queues")["test-noop"][1] == "0", what="cleared")
            await pilot.press("r")
            await until(pilot, lambda: "⏸" not in rows(app, "queues")["test-noop"][0], what="resumed")
            await pilot.press("question_mark")
            await on_screen(pilot, app, HelpScreen)
            await pilot.press("escape")
            first = next(iter(rows(app, "queues")))
            table = app.screen.query_one("#queues", DataTable)
            table.move_cursor(row=1, animate=False)  # scrolled to the top, the cursor on the second row
            await pilot.pause(0.2)
            await pilot.click("#queues", offset=(3, 1))  # the mouse: a click moves to the first row,
            assert isinstance(app.screen, OverviewScreen) and table.cursor_row == 0
            await pilot.click("#queues", offset=(3, 1))  # a second opens it
            assert isinstance(app.screen, QueueScreen) and app.screen.job_type == first

    run(scenario())
    audit = vq.json("audit")
    assert {(a["action"], a["actor"].split(":")[0]) for a in audit} >= {
        ("pause", "tui"),
        ("clear", "tui"),
        ("resume", "tui"),
    }


def test_drill_down_to_a_running_job_and_cancel_it(vq):
    # Long enough to still run (and report progress) when a loaded machine reaches its screen
    # (30 s was not); the test cancels it.
    vq.configure(job_types={"test-sleep": {"handler": "tests.plugins:sleeper", "timeout": 600000, "attempts": 1}})
    vq.start_daemon()
    running = vq.submit("test-sleep", {"seconds": 300, "steps": 600}, "--user", "ann")
    vq.wait_for(running, statuses=("started",))
    for user in ("bob", "cy"):
        vq.submit("test-echo", {"n": 1}, "--user", user, "--delay", "1h")

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(
                pilot,
                lambda: (
                    rows(app, "queues")["test-sleep"][3] == "1/" + rows(app, "queues")["test-sleep"][3].split("/")[1]
                ),
                what="one running",
            )
            await until(
                pilot,
                lambda: any(running in r[2] for r in rows(app, "workers").values()),
                what="the worker's current job",
            )
            palette = {c.title for c in app.get_system_commands(app.screen)}
            assert {
                "Pause test-echo",
                "Resume test-echo",
                "Clear test-echo",
                "Jobs of test-echo",
                "Dead-letter queue",
                "Open a user",
                "Open a job",
            } <= palette  # an entry per action
            await pilot.press("u")
            await pilot.press(*"ann", "enter")
            await until(
                pilot,
                lambda: running in rows(app, "running") and "running 1/" in banner(app),
                what="ann's running job against her limit",
            )
            await pilot.press("escape")
            select(app, "queues", "test-echo")
            await pilot.press("enter")
            await on_screen(pilot, app, QueueScreen)
            await until(pilot, lambda: len(rows(app, "jobs")) == 2, what="test-echo's jobs")
            await pilot.press("f")
            await pilot.press(*"bob", "enter")
            await until(pilot, lambda: [r[2] for r in rows(app, "jobs").values()] == ["bob"], what="user filter")
            while app.screen.status_filter != "finished":  # `s` cycles the filter; bob's job is not finished
                await pilot.press("s")
            await until(pilot, lambda: "status: finished " in banner(app) and not rows(app, "jobs"), what="filtered")
            while app.screen.status_filter != "scheduled":
                await pilot.press("s")
            await until(pilot, lambda: [r[1] for r in rows(app, "jobs").values()] == ["scheduled"], what="scheduled")
            await pilot.press("escape")
            select(app, "queues", "test-sleep")
            await pilot.press("enter")
            await until(pilot, lambda: running in rows(app, "jobs"), what="the running job listed")
            select(app, "jobs", running)
            await pilot.press("enter")
            await on_screen(pilot, app, JobScreen)
            bar = app.screen.query_one("#progress")
            first = await until(pilot, lambda: bar.progress or None, what="progress")
            await until(pilot, lambda: bar.progress > first, what="progress moving")
            assert "started" in banner(app)
            await pilot.press("x")
            await on_screen(pilot, app, ConfirmScreen)
            await pilot.press("y")
            await until(pilot, lambda: "canceled" in banner(app), timeout=20, what="canceled")

    run(scenario())
    assert vq.json("show", running)["status"] == "canceled"


def test_cancel_offers_now_for_a_running_job(vq, redis_conn):
    """A handler that never reports progress: `x` then `i` interrupts it at once."""
    vq.configure(job_types={"test-cancelable": {"handler": "tests.plugins:cancelable", "attempts": 3}})
    vq.start_daemon(workers=1)
    running = vq.submit("test-cancelable", {"seconds": 60}, "--user", "ann")
    handler_pid(redis_conn, running)

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(JobScreen(running))
            await until(pilot, lambda: "started" in banner(app), what="the running job")
            await pilot.press("x")
            await on_screen(pilot, app, CancelScreen)
            await pilot.press("i")
            await until(pilot, lambda: "canceled" in banner(app), timeout=10, what="canceled")

    run(scenario())
    view = vq.json("show", running)
    assert view["status"] == "canceled" and view["error"]["canceledBy"].startswith("tui:")


async def dead_letter_row(pilot, app, job_id: str) -> list:
    """From the overview, `d` to the dead-letter screen: the row of `job_id` once it is listed."""
    await until(pilot, lambda: rows(app, "queues"), what="overview")
    await pilot.press("d")
    await on_screen(pilot, app, DeadLetterScreen)
    return await until(pilot, lambda: rows(app, "dead").get(job_id), what="the dead job")


def test_dead_letters_are_listed_and_retried(vq):
    vq.start_daemon()
    dead = vq.submit("test-broken", {}, "--user", "ann")
    hostile = vq.submit("scene-creation", {"imagePath": "[/][bold red]x", "audioPath": "y"}, "--user", "bob")
    vq.wait_for(dead)
    vq.wait_for(hostile)

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            listed = await dead_letter_row(pilot, app, dead)
            assert listed[3] == "permanent" and "input can never work" in listed[4]
            assert "[/][bold red]x" in rows(app, "dead")[hostile][4]  # shown as text, not taken as markup
            select(app, "dead", hostile)
            await pilot.press("enter")
            await until(
                pilot,
                lambda: "no such file: [/][bold red]x" in shown(app, "#detail"),
                what="the error in the job's detail",
            )
            await pilot.press("escape")
            select(app, "dead", dead)
            await pilot.press("ctrl+p")  # opened empty, the palette lists every command, this screen's job's too
            entries = await until(pilot, lambda: palette(app), what="the palette's entries")
            assert "Dead-letter queue\nJobs that failed for good; retry them" in entries
            assert [e for e in entries if "this job" in e] == [f"Retry this job\n{dead}"]  # this screen's keys only
            await pilot.press("escape")
            assert isinstance(app.screen, DeadLetterScreen)
            first_end = jobs.show(app.services.conn, dead)["finishedAt"]
            await pilot.press("r")
            await until(
                pilot,
                lambda: jobs.show(app.services.conn, dead)["finishedAt"] not in (None, first_end),
                what="the retried job ran again",
            )

    run(scenario())
    assert any(a["action"] == "dlq-retry" and a["actor"].startswith("tui:") for a in vq.json("audit"))


def shown_lines(app, table_id: str) -> list[str]:
    """A table's lines as drawn on the screen (what fits in its width, header first)."""
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [table.render_line(y).text for y in range(table.size.height)]


def test_job_lists_at_80_columns_show_short_ids_and_the_error(vq):
    """Found in a new user's trial: at 80 columns the dead-letter list's 32-character ids pushed
    the error off the screen (and the queue's, the attempts). They show the 12 the rest of the
    TUI shows; enter still opens the job by its whole id, kept behind the row."""
    vq.start_daemon()
    dead = vq.submit("test-broken", {}, "--user", "ann")
    vq.wait_for(dead)

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            await dead_letter_row(pilot, app, dead)
            assert rows(app, "dead")[dead][0] == dead[:12]
            header, line = await until(
                pilot, lambda: [x for x in shown_lines(app, "dead") if x.strip()][:2], what="the drawn table"
            )
            assert "error" in header and dead[:12] in line and dead not in line, (header, line)
            assert "input can never work" in line, line  # 30 characters of the error on screen
            select(app, "dead", dead)
            await pilot.press("enter")
            await on_screen(pilot, app, JobScreen)
            assert app.screen.job_id == dead
            await pilot.press("escape")
            await pilot.press("escape")
            select(app, "queues", "test-broken")
            await pilot.press("enter")
            await on_screen(pilot, app, QueueScreen)
            await until(pilot, lambda: rows(app, "jobs").get(dead), what="the queue's job")
            header, line = await until(
                pilot, lambda: [x for x in shown_lines(app, "jobs") if x.strip()][:2], what="the drawn queue"
            )
            assert "attempts" in header and "created" in header and dead[:12] in line, (header, line)

    run(scenario())


def test_a_dead_redis_shows_a_banner_keeps_the_keys_working_and_recovers(vq, redis_server):
    vq.submit("test-noop", {}, "--user", "ann")

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: rows(app, "queues").get("test-noop"), what="overview")
            redis_server.kill()
            await until(pilot, lambda: "Redis unreachable" in banner(app), what="the banner")
            assert rows(app, "queues")["test-noop"][1] == "1"  # the last data stays
            started = time.monotonic()
            await pilot.press("question_mark")  # the UI answers at once while Redis is gone
            # (3 s: a loaded CI machine took 1.2 s to draw the help; a UI waiting on Redis
            # would wait out its refresh's retries and connect timeout, 5 s)
            assert isinstance(app.screen, HelpScreen) and time.monotonic() - started < 3.0
            await pilot.press("escape")
            redis_server.start()
            await until(pilot, lambda: "Redis unreachable" not in banner(app), timeout=20, what="recovery")
            assert rows(app, "queues")["test-noop"][1] == "1"

    run(scenario())
    redis_lib.Redis.from_url(redis_server.url).ping()


def test_bad_options_are_one_line(vq):
    for args, message in (
        (["--refresh", "0"], "--refresh: 0 is not between 0.2 and 60 seconds"),
        (["--theme", "blue"], "--theme: 'blue' is not dark or light"),
    ):
        proc = vq.run("tui", *args)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_the_overview_footer_at_80_columns_shows_help_and_quit(vq):
    """At 80x24 (the size an SSH session gets) the footer cannot hold every key, and it cut
    `q Quit` and `? Help` off; the keys that explain the rest come first now."""
    from textual.widgets._footer import FooterKey

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: rows(app, "queues"), what="the overview")

            def seen() -> list[str]:  # the footer's keys that fit on the screen (it recomposes now and then)
                keys = app.screen.query(FooterKey)
                return [k.description for k in keys if k.region.width and k.region.right <= app.size.width]

            shown = await until(pilot, lambda: len(seen()) >= 5 and seen(), what="the footer")
            assert shown[:2] == ["Help", "Quit"], shown
            assert {"Pause", "Resume", "Clear"} <= set(shown), shown

    run(scenario())
