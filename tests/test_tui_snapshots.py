"""Snapshots (pytest-textual-snapshot) of the dashboard's main screens at 80x24, on a real
Redis holding a known set of jobs and no daemon, so every figure on screen is fixed.
After an intended change of the look: pytest tests/test_tui_snapshots.py --snapshot-update"""

from __future__ import annotations

import pytest

from tests.test_tui import dashboard, on_screen, rows, until
from vq import queues
from vq.config import load_settings
from vq.submission import Submission, submit
from vq.tui.dialogs import ConfirmScreen, HelpScreen


@pytest.fixture
def known_state(vq, redis_conn):
    settings = load_settings(vq.config_path)
    for user in ("ann", "bob", "cy"):
        submit(redis_conn, settings, Submission("test-noop", user_id=user))
    submit(redis_conn, settings, Submission("test-echo", user_id="ann", delay_ms=3_600_000))
    queues.pause(redis_conn, settings, "test-sleep")
    return vq


async def _loaded(pilot) -> None:
    await until(pilot, lambda: rows(pilot.app, "queues").get("test-noop"), what="the overview")
    await pilot.pause(0.2)


def test_overview(known_state, snap_compare):
    assert snap_compare(dashboard(known_state), terminal_size=(80, 24), run_before=_loaded)


def test_help(known_state, snap_compare):
    async def help_open(pilot):
        await _loaded(pilot)
        await pilot.press("question_mark")
        await on_screen(pilot, pilot.app, HelpScreen)
        await pilot.pause(0.2)

    assert snap_compare(dashboard(known_state), terminal_size=(80, 24), run_before=help_open)


def test_clear_asks_first(known_state, snap_compare):
    async def asking(pilot):
        await _loaded(pilot)
        table = pilot.app.screen.query_one("#queues")
        table.move_cursor(row=table.get_row_index("test-noop"))
        await pilot.press("c")
        await on_screen(pilot, pilot.app, ConfirmScreen)  # its count is read first: under load, after 0.2 s
        await pilot.pause(0.2)

    assert snap_compare(dashboard(known_state), terminal_size=(80, 24), run_before=asking)
