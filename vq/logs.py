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
a record that cannot be formatted costs one line on stderr, never an exception.

Each record says which vq process wrote it (`process`: supervisor, worker-N, http,
scheduler, ...; the multiprocessing name the supervisor gave the child) and, while a job
runs, which job (`job_id`, `job_type`, `user_id`, `attempt`, `worker`: a contextvar that
`run_job` sets around the handler, added by a filter), so a handler's own `ctx.log` or
plain `logging` line carries its job. In JSON these are top-level keys."""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import logging
import multiprocessing
import os
import re
import sys

FORMATS = ("text", "json")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
JOB_KEYS = ("job_id", "job_type", "user_id", "attempt", "worker")
_job: contextvars.ContextVar[dict | None] = contextvars.ContextVar("vq_job", default=None)


@contextlib.contextmanager
def job_context(**fields):
    """Records logged inside carry these job fields (`JOB_KEYS`); None values are left out."""
    token = _job.set({k: v for k, v in fields.items() if v not in (None, "")})
    try:
        yield
    finally:
        _job.reset(token)


def process_name() -> str:
    """This vq process's role: `supervisor`, or the child's name (`worker-1`, `http`, ...)."""
    name = multiprocessing.current_process().name
    if name == "MainProcess":
        return "supervisor"
    return name[3:] if name.startswith("vq-") else name


class Context(logging.Filter):
    """Adds `vq_process` and the running job's fields to every record (a field the call
    already gave, with `extra=`, wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.vq_process = process_name()
        add_job_fields(record)
        return True


def add_job_fields(record: logging.LogRecord) -> None:
    """The running job's fields onto the record, from the calling thread's context (a field
    the record has already wins): Context's, and vq/log_batching.py's before a record leaves
    the thread that logged it."""
    for key, value in (_job.get() or {}).items():
        if not hasattr(record, key):
            setattr(record, key, value)


def iso_utc(created: float) -> str:
    """ISO 8601, UTC, milliseconds: 2026-12-05T12:00:00.123Z."""
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class Json(JsonFormatter):
        """time, level, logger, process (vq's name), pid, message, then any extras
        (job_id, event, request_id, ...) as top-level keys."""

        def formatTime(self, record, datefmt=None):
            return iso_utc(record.created)

        def add_fields(self, log_data, record, message_dict):
            super().add_fields(log_data, record, message_dict)
            log_data.pop("vq_process", None)
            log_data["process"] = getattr(record, "vq_process", None) or process_name()

    return Json(
        "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
    )


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


class Text(logging.Formatter):
    """The text line; one a handler logs while its job runs ends with `[job <id>]` (an
    event line names its job already)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        if job_id and not hasattr(record, "event"):
            text += f" [job {job_id}]"
        return text


class Handler(logging.StreamHandler):
    """stderr, and a record it cannot write is one line saying so (the standard handler
    prints a traceback per such record)."""

    json = False

    def handleError(self, record: logging.LogRecord) -> None:
        try:
            error = sys.exc_info()[1]
            said = (
                f"vq: a log record of {record.name} could not be written "
                f"({type(error).__name__}: {error}): {record.msg!r}"
            )
            if self.json:  # still one JSON object, for the shipper
                import json

                said = json.dumps(
                    {
                        "time": iso_utc(record.created),
                        "level": "ERROR",
                        "logger": "vq.logs",
                        "pid": os.getpid(),
                        "process": process_name(),
                        "message": said,
                    }
                )
            sys.stderr.write(said + "\n")
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
    handler.addFilter(Context())
    if fmt == "json":
        handler.json = True
        inner = json_formatter()
    elif os.environ.get("JOURNAL_STREAM"):
        inner = Text("%(levelname)s %(name)s: %(message)s")
    else:
        inner = Text("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(Plain(inner))
    root.addHandler(handler)


def quiet_rq_colours() -> None:
    """RQ's colorizer decides at import whether stdout is a terminal; told it is not, its
    `blue(x)` returns x as it is (None included) and adds no escape codes."""
    from vq.rq_seam.private import no_log_colours

    no_log_colours()
