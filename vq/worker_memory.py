"""A worker's resident memory: reported with its heartbeat (`vq workers`) and, past
`daemon.maxMemoryPerWorker`, the reason the process finishes its job and is replaced."""

from __future__ import annotations

import os
import time

from vq.rq_seam.host import WorkerHost
from vq.rq_seam.private import request_stop, stop_requested
from vq.workers import MEMORY_FIELD


class MemoryLimit(WorkerHost):
    """VqWorker's memory upkeep (a mixin: RQ calls none of these)."""

    max_memory_mb: int | None = None  # resident memory past which the process is replaced
    _memory_checked_at = float("-inf")

    def _report_memory(self, pipe) -> None:
        """Resident memory beside RQ's heartbeat, for `vq workers` (vq/workers.py)."""
        rss_mb = resident_mb()
        if rss_mb is not None:
            pipe.hset(self.key, MEMORY_FIELD, round(rss_mb, 1))

    def _replace_if_too_big(self, took: float) -> None:
        """Like Celery's max-memory-per-child: a process that grew past the limit (a leak
        in a handler, a huge result) finishes here and the daemon starts a fresh one.
        Looked at after every job that ran a while, and at most once a second otherwise."""
        if self.max_memory_mb is None or (took < 0.05 and time.monotonic() - self._memory_checked_at < 1.0):
            return
        self._memory_checked_at = time.monotonic()
        rss_mb = resident_mb()
        if rss_mb is not None and rss_mb > self.max_memory_mb and not stop_requested(self):
            self.log.warning(
                "Worker %s: %.0f MB resident, over daemon.maxMemoryPerWorker (%d MB): replaced after this job",
                self.name,
                rss_mb,
                self.max_memory_mb,
            )
            request_stop(self)


def resident_mb() -> float | None:
    """This process's resident memory, from /proc (Linux); None where there is none."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None
