"""Stopping a process's loop at once: the stop signal ends the wait the loop is in.

An idle daemon's children (the timer, the archiver, the webhook notifier) and its supervisor
spend their time waiting: on a Redis read with BLOCK, a pub/sub message or a sleep. Python
resumes such a wait after a signal handler returns (PEP 475), so a handler that only set a
flag left a process waiting up to two seconds more, and `systemctl stop` or a deploy waited
with it. `Stoppable.stop` also ends the wait in progress, and only a wait: it raises
`Interrupted` into the call `until_stopped` runs, never into the work between waits. A Redis
connection a raise leaves mid-reply is closed by redis-py (and opened again if used).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Interrupted(BaseException):
    """Raised by `Stoppable.stop` into the wait in progress. A BaseException, so that no
    loop's `except Exception` takes it for a failure."""


class Stoppable:
    """A loop that runs until `stopped`; `stop` is its SIGTERM/SIGINT handler."""

    stopped: bool = False
    _in_wait: bool = False

    def stop(self, *_signal: object) -> None:
        self.stopped = True
        if self._in_wait:
            self._in_wait = False
            raise Interrupted

    def until_stopped(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call(*args, **kwargs)`, a wait; None at once if stopped before or during it.
        What a call returned just as the stop came is dropped: the waits here read nothing
        that is lost when dropped (stream positions and pending entries stay in Redis)."""
        if self.stopped:
            return None
        try:
            self._in_wait = True
            try:
                return call(*args, **kwargs)
            finally:
                self._in_wait = False
        except Interrupted:  # also one raised as the call returned, before the flag was cleared
            return None
