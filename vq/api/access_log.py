"""The HTTP child's access lines leave the event loop as records and reach stderr in batches
(vq/log_batching.py, shared with the workers' event lines).

Why: logged the ordinary way, each request's `vq.http.access` line was formatted and written
to stderr, and flushed (one syscall per line), by the event loop inside the request: about
12% of an HTTP child's CPU per job submitted (docs/benchmarks.md, HTTP submit). Here the
request only appends its record to a deque; a thread formats and writes them every
`EVERY` seconds. One line per request; each line's time is still its request's.

Nothing is lost on a stop: `stop()` writes what is left, and the HTTP child calls it at the
end of uvicorn's graceful shutdown (`Server.shutdown`, after the last answer was sent, on
SIGTERM or SIGINT), before uvicorn re-raises the signal that ends the process. A SIGKILL
loses at most the last `EVERY` seconds of lines. Only the HTTP child batches (`start` in
vq/daemon_children.py's http_main); everywhere else, tests included, the access logger
writes as any other."""

from __future__ import annotations

from vq import log_batching
from vq.log_batching import EVERY, Batched

ACCESS = "vq.http.access"
__all__ = ["ACCESS", "EVERY", "Batched", "start", "stop"]


def start(every: float = EVERY) -> Batched | None:
    """Batch the access lines of this process through its vq handler (none: left as they are)."""
    return log_batching.start(ACCESS, every=every)


def stop() -> None:
    """Write every line still waiting and go back to writing each as it comes."""
    log_batching.stop()
