"""Filters on RQ's worker logger that recognise two of RQ's own log lines by their text
(checked against RQ's source by tests/test_rq_contract.py): a lost Redis, said once; and
the exception that ended RQ's work loop, kept as the worker's last words to the daemon."""

from __future__ import annotations

import logging
import threading

REDIS_DOWN_LINE = "could not connect to Redis"  # in RQ's log line at each reconnect attempt
UNHANDLED_LINE = "unhandled exception"  # in RQ's log line when its work loop quits on one


class SayOnce(logging.Filter):
    """RQ's worker logs an error at every reconnect attempt while Redis is down; an operator
    needs to hear it once, and once more when Redis is back."""

    def __init__(self):
        super().__init__()
        self.down = False

    def filter(self, record: logging.LogRecord) -> bool:
        if REDIS_DOWN_LINE in record.getMessage():
            if self.down:
                return False
            self.down = True
            args = record.args if isinstance(record.args, tuple) else ()  # RQ's line: (attempt, error)
            record.msg, record.args = (
                "Redis unreachable (%s); retrying with backoff",
                (str(args[1]).splitlines()[0] if len(args) > 1 else "connection refused",),
            )
            return True
        return True

    def recovered(self, log) -> None:
        if self.down:
            self.down = False
            log.warning("Redis is back")


class LastError(logging.Filter):
    """RQ's work loop logs an exception it did not expect ("found an unhandled exception,
    quitting...", with its traceback) and the worker process ends. The main thread's is
    kept here as the worker's last words to the daemon, which reports it (once for a crash
    loop: vq/supervision.py) instead of a traceback at every death. A thread worker's is
    left to RQ's line: the process goes on without that thread."""

    def __init__(self):
        super().__init__()
        self.exc: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and record.levelno >= logging.ERROR
            and UNHANDLED_LINE in str(record.msg)
            and record.thread == threading.main_thread().ident
        ):
            self.exc = record.exc_info[1]
            return False
        return True
