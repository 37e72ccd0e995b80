"""Logging for the daemon and its processes: one line per record on stderr.

Text by default, without a timestamp when journald captures the output (it stamps every
line itself, `JOURNAL_STREAM` tells); `--log-format json` writes one JSON object per line
(python-json-logger) for log shippers. Forked children inherit the parent's handler."""

from __future__ import annotations

import logging
import os

FORMATS = ("text", "json")


def configure(level: str, fmt: str = "text") -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    logging.getLogger("rq").setLevel(logging.WARNING if level.upper() != "DEBUG" else logging.DEBUG)
    if root.handlers:
        return  # a forked child: the parent's handler is already here
    handler = logging.StreamHandler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level",
                                                          "name": "logger", "process": "pid"}))
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
