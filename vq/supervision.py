"""Why a daemon's child process died, and when it comes back.

A child says why it is about to exit (its last words: the exception and its traceback,
or that Redis is unreachable) through a pipe its supervisor hands it at each start, as
JSON; a child that dies without a word (killed by a signal, `os._exit` in a native
library) is described by its exit code. `Restarts` turns one child's deaths into a
restart delay (exponential back-off, capped) and into what the log says: the first
death with its traceback, the next one in a line, and a crash loop (CRASH_LOOP_DEATHS
deaths within CRASH_WINDOW seconds) once, with the last error; then nothing more until
the child stays up STABLE_AFTER seconds ("recovered"). The daemon publishes the crash
loops with its presence (vq/presence.py), where `vq health` and `vq doctor` read them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from vq.errors import message_of

CRASH_LOOP_DEATHS = 3  # deaths within CRASH_WINDOW that make a crash loop
CRASH_WINDOW = 60.0
STABLE_AFTER = 60.0  # seconds up that end a run of crashes
FIRST_DELAY = 0.5  # seconds before the first restart; doubled per crash of a run
MAX_DELAY = 30.0
MAX_WORDS = 8000  # characters of traceback kept: a pipe's buffer holds them without blocking the child

_channel = None  # in a child: its end of the pipe (set by `entry`)


def entry(channel, target, args: tuple, close: Sequence[socket.socket] = ()) -> None:
    """A child process's target: run `target(*args)`; an exception it did not handle becomes
    its last words and exit code 1, instead of a traceback on stderr at every death.
    `close`: what the child inherited from its supervisor but must not hold (sockets)."""
    import redis

    global _channel
    _channel = channel
    try:
        # A process group of its own: Ctrl-C in the daemon's terminal signals the terminal's
        # foreground group, and a worker that got it besides its supervisor's warm-stop
        # SIGTERM took the two for RQ's "Ctrl-C twice" and requeued its running job at once
        # instead of finishing it within the grace period. Now only the supervisor hears
        # the terminal, and stops its children one way, whatever stopped it.
        os.setpgid(0, 0)
    except OSError:
        pass
    for inherited in close:
        inherited.close()
    try:
        target(*args)
    except KeyboardInterrupt:
        # Ctrl-C in a terminal signals the whole foreground process group, children
        # included; the supervisor got it too and is stopping them. uvicorn's asyncio
        # runner re-raises the SIGINT it handled: that is a stop, not a crash.
        sys.exit(0)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        say(redisDown=True, error=error_line(exc))
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - whatever it was is what the supervisor reports
        say_exception(exc)
        sys.exit(1)


def say(**words) -> None:
    """The child's last words to its supervisor (once, just before it exits)."""
    if _channel is None:
        return
    try:
        _channel.send_bytes(json.dumps(words).encode())
    except (OSError, ValueError):
        pass  # the supervisor is gone: nobody to tell


def say_exception(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    say(error=error_line(exc), traceback=text[-MAX_WORDS:])


def error_line(exc: BaseException) -> str:
    """`TypeError: can only concatenate str (not "NoneType") to str`: the exception's
    type and the first line of its message."""
    text = message_of(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def hear(channel) -> dict:
    """What a child that exited said (empty when it said nothing); closes the pipe."""
    try:
        return json.loads(channel.recv_bytes()) if channel.poll() else {}
    except (EOFError, OSError, ValueError):
        return {}
    finally:
        channel.close()


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (out of memory, or kill -9)" if name == "SIGKILL" else "")
    return f"exited with code {code}"


@dataclass
class Restarts:
    """One child's crashes: the restart delays, the log lines and its crash-loop state."""

    name: str
    deaths: deque = field(default_factory=deque)  # monotonic times of crashes within CRASH_WINDOW
    streak: int = 0  # crashes with no stable run between them
    looping_since_ms: int | None = None
    last_error: str | None = None
    last_death_ms: int | None = None
    delay: float = 0.0

    @property
    def looping(self) -> bool:
        return self.looping_since_ms is not None

    def crashed(
        self, now: float, up_for: float, error: str, trace: str | None, told: dict[str, str]
    ) -> tuple[float, list[tuple[int, str]]]:
        """A crash `up_for` seconds after its start: (seconds until the restart, the log
        lines). `told` maps errors whose traceback a crash loop already logged to the
        child that logged it (several workers dying of one cause log it once)."""
        if up_for >= STABLE_AFTER:
            self._reset()
        self.streak += 1
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > CRASH_WINDOW:
            self.deaths.popleft()
        self.delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (self.streak - 1))
        self.last_error, self.last_death_ms = error, int(time.time() * 1000)
        restart = f"restarting in {self.delay:.1f}s"
        if self.looping:
            return self.delay, [(logging.DEBUG, f"{self.name} died again ({error}); {restart}")]
        if len(self.deaths) >= CRASH_LOOP_DEATHS:
            self.looping_since_ms = self.last_death_ms
            span = now - self.deaths[0]
            line = (
                f"{self.name} is crash-looping: died {len(self.deaths)} times in {span:.0f}s, last: {error}; "
                f"its restarts back off to one every {MAX_DELAY:.0f}s until it stays up {STABLE_AFTER:.0f}s "
                "(vq doctor shows it)"
            )
            if error in told:
                return self.delay, [(logging.ERROR, f"{line}; the same error as {told[error]}")]
            told[error] = self.name
            return self.delay, [(logging.ERROR, line + (f"\n{trace.rstrip()}" if trace else ""))]
        if self.streak == 1:
            return self.delay, [
                (logging.WARNING, f"{self.name} died: {error}; {restart}" + (f"\n{trace.rstrip()}" if trace else ""))
            ]
        return self.delay, [(logging.WARNING, f"{self.name} died again: {error}; {restart}")]

    def running(self, up_for: float) -> str | None:
        """Called while the child is alive: a run of crashes ends once it has stayed up
        STABLE_AFTER seconds; says so when it had been a crash loop."""
        if not self.streak or up_for < STABLE_AFTER:
            return None
        said = f"{self.name} recovered: up {up_for:.0f}s after {self.streak} crashes" if self.looping else None
        self._reset()
        return said

    def report(self) -> dict | None:
        """The crash loop as the daemon publishes it (None when there is none)."""
        if not self.looping:
            return None
        return {
            "deaths": self.streak,
            "sinceMs": self.looping_since_ms,
            "lastDeathMs": self.last_death_ms,
            "lastError": self.last_error,
            "restartDelaySeconds": self.delay,
        }

    def _reset(self) -> None:
        self.deaths.clear()
        self.streak, self.looping_since_ms, self.delay = 0, None, 0.0
