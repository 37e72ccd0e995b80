"""Some loggers' INFO lines leave the caller's thread as records and reach stderr in batches.

Why: logged the ordinary way, a line is formatted, filtered, written to stderr and flushed
(one syscall per line) by the thread that logs it, inside the work it logs. The HTTP child's
access lines (`vq.http.access`, one per request) cost about 12% of its CPU per job
submitted; a worker's two event lines per job (`vq.events`: `started`, `finished`) about
112 µs of its ~960 µs (docs/benchmarks.md). Here the caller only appends the record to a
deque (and copies the running job's fields onto it, which vq/logs.py's filter would read
from the caller's context); a thread (`vq-log-batch`) formats every record collected
through vq's own handler (vq/logs.py: the same line, text or JSON, as before) and writes
them in one write and one flush every `EVERY` seconds. One line per record, as operators
and log shippers expect; each line's time is still its record's. The formatting's CPU is
not saved but moved off the job's path: the thread mostly runs while the job loop waits for
Redis (docs/benchmarks.md: the drain's rate rose, the worker's CPU per job did not fall).

Only the named loggers' records below WARNING wait; a warning or an error, a handler's own
line (`vq.handler.*`), a library's, RQ's, and every other record is written at once, as
before, so a traceback or a crash's last words are never held back. Order: the lines of one
process stay in the order they were logged. A record written at once first writes the
batch still waiting (`FlushFirst`, a filter on vq's handler), so a handler's `analysed 2
words` comes after its job's `started` line, not before; a job that logs nothing else costs
no write of its own.

Nothing is lost when the process ends through Python: `stop()` writes what is left. The
HTTP child calls it at the end of uvicorn's graceful shutdown, a worker process in
worker_main's `finally` (a warm stop, a cold stop's SystemExit, the max-jobs restart, a
reload, an exception escaping RQ's loop); atexit and multiprocessing's exit finalizers call
it too (a multiprocessing child runs no atexit: it leaves through os._exit). A process
killed outright (SIGKILL: the out-of-memory killer, `kill -9`, the daemon's fence on a
worker past its lease) loses at most the last `EVERY` seconds of these lines. They are the
log, not the record: a job's history (`vq history`, `vq show`) and the events stream hold
every event whatever became of the line.

A forked job's child (`isolation: fork`) writes its lines at once: the batch and its thread
stay with the worker (os.register_at_fork), which writes the copies the child inherited.
Only processes that call `start` batch (a worker its event lines, the HTTP child its access
lines: its jobs' `created` lines stay written at once, so they come before the workers'
`started` lines, which wait); everywhere else, tests included, these loggers write
as any other."""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
from multiprocessing import util

from vq.logs import Handler, add_job_fields

EVERY = 0.5  # seconds between writes
THREAD = "vq-log-batch"


class Batched(logging.Handler):
    """Collects records on the caller's thread (no lock, no formatting: deque.append is
    atomic) and writes them through `target`, formatted and filtered by it, on flush."""

    def __init__(self, target: logging.StreamHandler, every: float = EVERY):
        super().__init__()
        self.target, self.every = target, every
        self.pending: collections.deque[logging.LogRecord] = collections.deque()
        self.stopped = threading.Event()
        # Reentrant: a signal handler (RQ's, on the main thread) may log a warning while that
        # thread is inside a flush; its FlushFirst then writes without waiting for itself.
        self.writing = threading.RLock()
        self.flushing: int | None = None  # the thread inside flush, formatting through target
        self.thread = threading.Thread(target=self._write_every, daemon=True, name=THREAD)

    def handle(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:  # never held back: the batch, then it, at once
            return bool(self.target.handle(record))
        add_job_fields(record)  # the running job's, from this thread's context (vq/logs.py)
        self.pending.append(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def flush(self) -> None:
        """Every record collected so far, in order, in one write."""
        with self.writing:  # the thread's flush and another thread's never interleave
            outer, self.flushing = self.flushing, threading.get_ident()
            try:
                self._write_pending()
            finally:
                self.flushing = outer

    def _write_pending(self) -> None:
        lines = []
        record = None
        while self.pending:
            record = self.pending.popleft()
            if not self.target.filter(record):  # vq/logs.py's Context: the process's name
                continue
            try:
                lines.append(self.target.format(record) + self.target.terminator)
            except Exception:  # noqa: BLE001 - one line saying so, as the handler itself does
                self.target.handleError(record)
        if not lines or record is None:
            return
        self.target.acquire()  # no other record's line inside this batch
        try:
            self.target.stream.write("".join(lines))
            self.target.stream.flush()
        except Exception:  # noqa: BLE001 - stderr gone: the handler's one line, if it can
            self.target.handleError(record)
        finally:
            self.target.release()

    def _write_every(self) -> None:
        while not self.stopped.wait(self.every):
            self.flush()

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self.stopped.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()
        self.flush()
        super().close()


class FlushFirst(logging.Filter):
    """On vq's handler: a record written at once first writes the batch waiting before it,
    so a process's lines stay in the order they were logged."""

    def __init__(self, batched: Batched):
        super().__init__()
        self.batched = batched

    def filter(self, record: logging.LogRecord) -> bool:
        batched = self.batched
        if batched.pending and batched.flushing != threading.get_ident():  # not the batch's own records
            batched.flush()
        return True


_batched: Batched | None = None
_first: FlushFirst | None = None
_names: list[str] = []
_hooks_registered = False


def start(*names: str, every: float = EVERY) -> Batched | None:
    """Batch these loggers' INFO (and DEBUG) lines in this process, through its vq handler
    (none: left as they are). A second call adds its loggers to the same batch."""
    global _batched, _first, _hooks_registered
    target = next((h for h in logging.getLogger().handlers if isinstance(h, Handler)), None)
    if target is None:
        return _batched
    if _batched is None:
        _batched = Batched(target, every)
        _first = FlushFirst(_batched)
        target.addFilter(_first)
        _batched.thread.start()
        if not _hooks_registered:  # once per process; each calls stop(), which is idempotent
            _hooks_registered = True
            atexit.register(stop)
            util.Finalize(None, stop, exitpriority=100)  # a multiprocessing child's exit runs these, not atexit
            os.register_at_fork(after_in_child=_forget)
    for name in names:
        if name in _names:
            continue
        logger = logging.getLogger(name)
        logger.addHandler(_batched)
        logger.propagate = False  # the root's handler writes them, once, from the thread
        _names.append(name)
    return _batched


def stop() -> None:
    """Write every line still waiting and go back to writing each as it comes."""
    global _batched, _first
    batched, first = _batched, _first
    if batched is None:
        return
    _detach()
    batched.close()
    if first is not None:
        batched.target.removeFilter(first)


def _detach() -> None:
    global _batched, _first
    for name in _names:
        logger = logging.getLogger(name)
        if _batched is not None:
            logger.removeHandler(_batched)
        logger.propagate = True
    _names.clear()
    _batched = _first = None


def _forget() -> None:
    """In a process forked from one that batches (a job's child, isolation: fork): its lines
    are written at once; the records it inherited waiting are its parent's to write."""
    batched, first = _batched, _first
    if batched is None:
        return
    _detach()
    batched.pending = collections.deque()
    if first is not None:
        batched.target.removeFilter(first)
