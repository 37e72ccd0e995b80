"""The HTTP child's access lines leave the event loop as records and reach stderr in batches.

Why: logged the ordinary way, each request's `vq.http.access` line was formatted and written
to stderr, and flushed (one syscall per line), by the event loop inside the request: about
12% of an HTTP child's CPU per job submitted (docs/benchmarks.md, HTTP submit). Here the
request only appends its record to a deque; a thread (`vq-access-log`) formats every
record collected through vq's own handler (vq/logs.py: the same line, text or JSON, as
before) and writes them in one write and one flush every `EVERY` seconds. One line per
request, as operators and log shippers expect; each line's time is still its request's.

Nothing is lost on a stop: `stop()` writes what is left, and the HTTP child calls it at the
end of uvicorn's graceful shutdown (`Server.shutdown`, after the last answer was sent, on
SIGTERM or SIGINT), before uvicorn re-raises the signal that ends the process. A SIGKILL
loses at most the last `EVERY` seconds of lines. Only the HTTP child batches (`start` in
vq/daemon_children.py's http_main); everywhere else, tests included, the access logger
writes as any other."""

from __future__ import annotations

import collections
import logging
import threading

from vq.logs import Handler

EVERY = 0.5  # seconds between writes
ACCESS = "vq.http.access"


class Batched(logging.Handler):
    """Collects records on the caller's thread (no lock, no formatting: deque.append is
    atomic) and writes them through `target`, formatted and filtered by it, on flush."""

    def __init__(self, target: logging.StreamHandler, every: float = EVERY):
        super().__init__()
        self.target, self.every = target, every
        self.pending: collections.deque[logging.LogRecord] = collections.deque()
        self.stopped = threading.Event()
        self.writing = threading.Lock()
        self.thread = threading.Thread(target=self._write_every, daemon=True, name="vq-access-log")

    def handle(self, record: logging.LogRecord) -> bool:
        self.pending.append(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.pending.append(record)

    def flush(self) -> None:
        """Every record collected so far, in order, in one write."""
        with self.writing:  # the thread's flush and stop()'s one never interleave
            lines = []
            while self.pending:
                record = self.pending.popleft()
                if not self.target.filter(record):  # vq/logs.py's Context: the process's name
                    continue
                try:
                    lines.append(self.target.format(record) + self.target.terminator)
                except Exception:  # noqa: BLE001 - one line saying so, as the handler itself does
                    self.target.handleError(record)
            if not lines:
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


_batched: Batched | None = None


def start(every: float = EVERY) -> Batched | None:
    """Batch the access lines of this process through its vq handler (none: left as they are)."""
    global _batched
    target = next((h for h in logging.getLogger().handlers if isinstance(h, Handler)), None)
    if target is None or _batched is not None:
        return _batched
    _batched = Batched(target, every)
    access = logging.getLogger(ACCESS)
    access.addHandler(_batched)
    access.propagate = False  # the root's handler writes them, once, from the thread
    _batched.thread.start()
    return _batched


def stop() -> None:
    """Write every line still waiting and go back to writing each as it comes."""
    global _batched
    if _batched is None:
        return
    access = logging.getLogger(ACCESS)
    access.removeHandler(_batched)
    access.propagate = True
    _batched.close()
    _batched = None
