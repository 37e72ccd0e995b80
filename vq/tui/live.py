"""The dashboard's screens refresh themselves off the UI thread.

Each `LiveScreen` reads Redis in a worker thread (`fetch`), then shows the result on the UI
thread (`show`). A slow or unreachable Redis never freezes the UI: a read in flight is
not started twice, the banner says Redis is unreachable and since when, the last data
stays on screen, and the next successful read clears the banner by itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import redis
from rich.text import Text
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static

from vq.errors import VqError
from vq.tui import format as fmt

if TYPE_CHECKING:
    from vq.tui.app import VqDashboard
    from vq.tui.services import Services


class Banner(Static):
    """One line at the top: the overall state, or that Redis cannot be reached."""

    DEFAULT_CSS = """
    Banner { height: 1; padding: 0 1; background: $boost; }
    Banner.down { background: $error; color: $text; text-style: bold; }
    """

    def down(self, problem: str, since: float) -> None:
        self.add_class("down")
        self.update(
            Text(
                f"Redis unreachable since {time.strftime('%H:%M:%S', time.localtime(since))}: "
                f"{fmt.literal(problem)} "
                "— showing the last data, retrying"
            )
        )

    def up(self, text) -> None:
        self.remove_class("down")
        self.update(text)


class LiveScreen(Screen):
    """A screen that re-reads its data every `app.refresh_every` seconds."""

    def __init__(self) -> None:
        super().__init__()
        self._loading = False
        self.down_since: float | None = None

    @property
    def dashboard(self) -> VqDashboard:
        """The app with its type: a LiveScreen runs only inside the vq dashboard (Textual types `app` as any App)."""
        return cast("VqDashboard", self.app)

    @property
    def services(self) -> Services:
        return self.dashboard.services

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.dashboard.refresh_every, self.reload)

    def reload(self) -> None:
        """Start a read unless one is still in flight (a slow Redis must not pile them up)."""
        if self._loading:
            return
        self._loading = True
        self.run_worker(self._read, thread=True, group=f"read-{id(self)}")

    def _read(self) -> None:
        try:
            data, problem = self.fetch(), None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            data, problem = None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        except VqError as exc:
            data, problem = exc, None
        finally:
            self._loading = False
        # A message, not call_from_thread: that waits for the UI thread, and when the app
        # stopped first (a crash, a shutdown) it waited for ever, and so did the exit,
        # which joins this thread (seen under load: `vq tui` still running after its crash
        # message, tests/test_tui_content.py). A message to a screen that is gone is dropped.
        self.post_message(self.Arrived(data, problem))

    class Arrived(Message, bubble=False):
        """A read's result, from the worker thread to the screen."""

        def __init__(self, data, problem: str | None) -> None:
            super().__init__()
            self.data, self.problem = data, problem

    def on_live_screen_arrived(self, message: Arrived) -> None:
        self._arrived(message.data, message.problem)

    def _arrived(self, data, problem: str | None) -> None:
        if not self.is_attached or self not in self.app.screen_stack or self._going():
            return  # closed while the read was in flight: its widgets are going or gone
        try:
            self._show_arrived(data, problem)
        except NoMatches:
            if getattr(self.app, "_running", True):
                raise  # a widget missing while the app runs is a bug of the screen
            # else the app's shutdown (App._running off) took the widgets while it was in flight

    def _show_arrived(self, data, problem: str | None) -> None:
        banner = self.query_one(Banner)
        if problem is not None:
            self.down_since = self.down_since or time.time()
            banner.down(problem, self.down_since)
            return
        self.down_since = None
        if isinstance(data, VqError):
            banner.up(Text(fmt.literal(data.message), style="red"))
            return
        banner.up(self.summary(data))
        self.show(data)

    def _going(self) -> bool:
        """Being taken down while still in the stack: the app's shutdown prunes its screens
        (their widgets first) without popping them, and a read that arrived then found no
        Banner or table and failed the app (seen under load, tests/test_job_logs.py and
        tests/test_tui_content.py). Textual says so only in private flags
        (DOMNode._pruning, MessagePump._closing)."""
        return bool(getattr(self, "_pruning", False) or getattr(self, "_closing", False))

    def fetch(self):  # runs in a worker thread
        raise NotImplementedError

    def show(self, data) -> None:  # runs on the UI thread
        raise NotImplementedError

    def summary(self, data) -> Text | str:
        return ""
