"""Per-job logs, the worker's side: what a handler logs while its job runs (`ctx.log`, or
plain `logging` from any module) is kept with the job, as BullMQ's `job.log` and River's
and Hatchet's persisted logs are.

A `logging.Handler` on the root logger (installed once per process by `run_job`) hands
each record to the job it belongs to (`owner`): the job running in the record's thread (a
contextvar `run_job` sets around the handler); else the job whose thread started the
record's thread, directly or through others (a start hook on `threading.Thread` tags each
thread started while a job runs: a handler's ThreadPoolExecutor); else, in a process that
runs one job at a time (the default, and a forked child of `isolation: fork`), that job,
whatever thread logged. A process running several jobs at once (`concurrencyPerWorker`
thread workers) drops a record no job's thread logged rather than guess. Lines are
buffered in memory and written in one script call (vq/lua/job_log.lua) every FLUSH_EVERY
seconds (a thread of this process), when the handler returns (whichever way: a result, an
error, a cancel, a timeout, a cold stop's requeue) and when a worker process exits
(`flush_all`): a job that logs nothing costs no Redis command at all. A process killed
outright (SIGKILL, out of memory) loses what it logged in its last FLUSH_EVERY seconds. The script keeps the first and the last lines within
limits.maxLogLines and limits.maxLogBytes and counts the dropped ones; the buffer itself
is bounded the same way, so a handler logging in a tight loop cannot fill the memory.

The archiver copies an ended job's lines into the history database (vq/job_log_store.py),
where `vq logs` finds them once Redis no longer has the job.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import json
import logging
import os
import threading
import time
import uuid
import weakref

from redis import Redis

from vq import keys, lua

FLUSH_EVERY = 0.5  # seconds between writes of a running job's new lines (what --follow sees)
LINE_CHARS = 4096  # a longer message is cut, and says so
RUNNING_TTL = 7 * 86_400  # seconds the keys live until the archiver gives them the job's own expiry

_current: contextvars.ContextVar[JobLog | None] = contextvars.ContextVar("vq_job_log", default=None)
_open: weakref.WeakSet[JobLog] = weakref.WeakSet()
_running: list[JobLog] = []  # the jobs capturing in this process now, oldest first
_several_at_once = False  # this process runs thread workers: `owner` never guesses
_flusher_pid = 0
_installed_pid = 0
_TAG = "_vq_job_log"  # the attribute the start hook sets on a thread a job started
_thread_start = threading.Thread.start
_lock = threading.Lock()
log = logging.getLogger("vq.job_logs")


def cut(message: str, most: int = LINE_CHARS) -> str:
    """The message within `most` characters; a longer one ends saying how much was cut."""
    if len(message) <= most:
        return message
    return f"{message[:most]}… [{len(message) - most} more characters cut]"


class JobLog:
    """The lines one attempt of a job logged that are not written yet."""

    def __init__(self, conn: Redis, job_id: str, attempt: int, max_lines: int, max_bytes: int):
        self.conn, self.job_id, self.attempt = conn, job_id, attempt
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self.head: list[str] = []  # the attempt's first lines: never dropped here
        self.tail: collections.deque[str] = collections.deque(maxlen=max(1, max_lines - max_lines // 2))
        self.skipped = 0  # lines dropped here, between head and tail
        self.seen = 0  # lines this attempt logged
        self.closed = False  # its handler returned: later records are not its own
        self.lock = threading.Lock()
        self.writing = threading.Lock()  # one write at a time: lines stay in order

    def add(self, record: logging.LogRecord) -> None:
        if self.closed:  # a thread it left behind, after its last write
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot be formatted keeps its template
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        line = json.dumps(
            {"t": round(record.created, 3), "level": record.levelname, "msg": cut(message), "attempt": self.attempt},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        with self.lock:
            if self.closed:
                return
            self.seen += 1
            if self.seen == 1:
                _open.add(self)  # the flusher writes it from now on (a silent job is never in the set)
            if self.seen <= self.max_lines // 2:
                self.head.append(line)
                return
            if len(self.tail) == self.tail.maxlen:
                self.skipped += 1
            self.tail.append(line)

    def flush(self) -> None:
        """Write the buffered lines (nothing to write: no command)."""
        with self.writing:
            with self.lock:
                items = [*self.head, *([str(self.skipped)] if self.skipped else []), *self.tail]
                self.head, self.skipped = [], 0
                self.tail.clear()
            if not items:
                return
            lua.script(self.conn, "job_log.lua")(
                keys=[keys.job_log(self.job_id), keys.job_log_meta(self.job_id)],
                # a write id: the same write sent again after a lost reply appends nothing
                args=[self.job_id, RUNNING_TTL, self.max_lines, self.max_bytes, uuid.uuid4().hex, *items],
            )


def owner() -> JobLog | None:
    """The job a record logged now, in this thread, belongs to (the module's docstring)."""
    job_log = _current.get()
    if job_log is not None:
        return job_log
    tagged = getattr(threading.current_thread(), _TAG, None)
    if tagged is not None and not tagged.closed:
        return tagged
    if _several_at_once:
        return None
    running = list(_running)  # one job at a time here: whatever thread logs while it runs is its
    return running[0] if len(running) == 1 else None


class Capture(logging.Handler):
    """Gives a record to the log of the job it belongs to (`owner`), if any. The daemon's
    own event lines (`event`) are the job's history, not its log; this module's own lines
    (a failed write) are not a job's either."""

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "event") or record.name == log.name:
            return
        job_log = owner()
        if job_log is None:
            return
        job_log.add(record)
        _start_flusher()


def _start_tagged(self: threading.Thread) -> None:
    """threading.Thread.start, which first tags the new thread with the job the starting
    thread logs for, so its records are that job's too (a thread vq starts untagged, such
    as the flusher, has the tag set to None beforehand)."""
    if not hasattr(self, _TAG):
        job_log = _current.get() or getattr(threading.current_thread(), _TAG, None)
        if job_log is not None:
            setattr(self, _TAG, job_log)
    _thread_start(self)


def install() -> None:
    """The capturing handler on the root logger and the thread start hook, once per
    process (a forked child has its parent's)."""
    global _installed_pid
    if _installed_pid:
        return
    with _lock:
        if not _installed_pid:
            logging.getLogger().addHandler(Capture())
            threading.Thread.start = _start_tagged  # type: ignore[method-assign]
            _installed_pid = os.getpid()


def several_jobs_at_once() -> None:
    """Called when this process starts thread workers: a record from a thread no job
    started is dropped, never given to a job that may not be the one it belongs to."""
    global _several_at_once
    _several_at_once = True


def flush_all() -> None:
    """Write every running job's buffered lines now: a worker process calls it as it exits
    (thread workers' jobs still running past the grace period; its daemon threads, the
    flusher among them, die with it)."""
    for job_log in list(_open):
        try:
            job_log.flush()
        except Exception as exc:  # noqa: BLE001 - the process is exiting either way
            log.warning("job %s: its last log lines could not be written (%s)", job_log.job_id, exc)


@contextlib.contextmanager
def capturing(conn: Redis, job_id: str, attempt: int, limits):
    """Records logged inside (in this thread) are the job's; written when it ends."""
    job_log = JobLog(conn, job_id, attempt, limits.maxLogLines, limits.maxLogBytes)
    token = _current.set(job_log)
    _running.append(job_log)  # no lock: atomic, and a signal handler that logs may interrupt it
    try:
        yield job_log
    finally:
        _current.reset(token)
        _running.remove(job_log)
        with job_log.lock:
            job_log.closed = True  # what its threads log from now on is dropped, not kept unwritten
        if job_log.seen:  # a job that logged nothing: nothing to do
            _open.discard(job_log)
            try:
                job_log.flush()
            except Exception as exc:  # noqa: BLE001 - the job's outcome matters more than its log
                log.warning("job %s: its log lines could not be written (%s)", job_id, exc)


def _forget_in_child() -> None:
    """A forked child (`isolation: fork`) starts with none of its parent's open or running
    logs (thread jobs' lines the parent writes itself), with fresh locks, and runs one job."""
    global _open, _lock, _running, _several_at_once
    _open = weakref.WeakSet()
    _lock = threading.Lock()
    _running = []
    _several_at_once = False


os.register_at_fork(after_in_child=_forget_in_child)


def _start_flusher() -> None:
    """One thread per process writes running jobs' lines every FLUSH_EVERY seconds; a
    forked child starts its own (threads do not survive a fork)."""
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    with _lock:
        if _flusher_pid == os.getpid():
            return
        _flusher_pid = os.getpid()
        flusher = threading.Thread(target=_flush_forever, daemon=True, name="vq-job-logs")
        setattr(flusher, _TAG, None)  # no job's, whichever job's record started it
        flusher.start()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_EVERY)
        for job_log in list(_open):
            try:
                job_log.flush()
            except Exception as exc:  # noqa: BLE001 - tried again at the next tick or at the end
                log.debug("job %s: log lines not written yet (%s)", job_log.job_id, exc)
