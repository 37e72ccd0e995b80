"""Logging for the daemon and its processes: one line per record on stderr.

Text by default, without a timestamp when journald captures the output (it stamps every
line itself, `JOURNAL_STREAM` tells); `--log-format json` writes one JSON object per line
(python-json-logger) for log shippers. Forked children inherit the parent's handler.

Every library's records go through this one handler, in this one format: RQ's worker
logger and uvicorn's loggers (the HTTP child runs uvicorn without a logging config of its
own, so its records reach the root logger). Neither may colour a line or take a process
down: RQ colours parts of its messages when stdout is a terminal, evaluating them before
the logging call (`blue(job.description)` raised on a job without a description and
killed its worker), so its colorizer is switched off; uvicorn attaches a coloured copy of
some messages (`color_message`), which is dropped; any escape code left is stripped; and
a record that cannot be formatted costs one line on stderr, never an exception."""

from __future__ import annotations

import logging
import os
import re
import sys

FORMATS = ("text", "json")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Plain(logging.Formatter):
    """Wraps a formatter: no colour, whoever made the record."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        record.__dict__.pop("color_message", None)  # uvicorn's coloured twin of the message
        if record.name == "uvicorn.error":  # uvicorn's general logger, errors or not
            record.name = "uvicorn"
        message = record.getMessage()
        if "\x1b" in message:
            record = logging.makeLogRecord({**record.__dict__, "msg": _ANSI.sub("", message), "args": None})
        text = self.inner.format(record)
        return _ANSI.sub("", text) if "\x1b" in text else text


class Handler(logging.StreamHandler):
    """stderr, and a record it cannot write is one line saying so (the standard handler
    prints a traceback per such record)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        try:
            error = sys.exc_info()[1]
            sys.stderr.write(f"vq: a log record of {record.name} could not be written "
                             f"({type(error).__name__}: {error}): {record.msg!r}\n")
        except Exception:  # noqa: BLE001 - stderr itself is gone: nothing left to tell
            pass


def configure(level: str, fmt: str = "text") -> None:
    quiet_rq_colours()
    root = logging.getLogger()
    root.setLevel(level.upper())
    logging.getLogger("rq").setLevel(logging.WARNING if level.upper() != "DEBUG" else logging.DEBUG)
    if root.handlers:
        return  # a forked child: the parent's handler is already here
    handler = Handler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        inner = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                              rename_fields={"asctime": "time", "levelname": "level",
                                             "name": "logger", "process": "pid"})
    elif os.environ.get("JOURNAL_STREAM"):
        inner = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    else:
        inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(Plain(inner))
    root.addHandler(handler)


def quiet_rq_colours() -> None:
    """RQ's colorizer decides at import whether stdout is a terminal; told it is not, its
    `blue(x)` returns x as it is (None included) and adds no escape codes."""
    from rq import logutils

    logutils.colorizer.notty = True
