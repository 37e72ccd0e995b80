"""Delayed jobs and retry backoff: moving due jobs from RQ's scheduled registries onto
their queues, at most one active mover per queue across every daemon sharing the Redis.

RQ's RQScheduler does the moving and the per-queue locks; vq runs it with a short poll
(`daemon.schedulerInterval`, default 200 ms) instead of RQ's one second, keeps the lock
TTL in whole seconds (RQ's Lua lock script needs an integer), and retries locks held by a
dead daemon every few seconds rather than RQ's ten minutes.
"""

from __future__ import annotations

import time

from rq.scheduler import RQScheduler

LOCK_RETRY_SECONDS = 5.0
HEARTBEAT_SECONDS = 1.0


class VqScheduler(RQScheduler):
    def __init__(self, queues, connection, poll_seconds: float = 0.2, **kwargs):
        super().__init__(queues, connection=connection, interval=1, **kwargs)
        self.poll_seconds = poll_seconds
        self._last_lock_attempt = 0.0

    @property
    def should_reacquire_locks(self) -> bool:
        if self._queue_names == self.acquired_locks:
            return False
        return time.monotonic() - self._last_lock_attempt >= LOCK_RETRY_SECONDS

    def acquire_locks(self, auto_start: bool = False):
        self._last_lock_attempt = time.monotonic()
        return super().acquire_locks(auto_start)

    def work(self) -> None:
        self._install_signal_handlers()
        self.register_birth()
        last_heartbeat = 0.0
        while not self._stop_requested:
            if self.should_reacquire_locks:
                self.acquire_locks()
            if time.monotonic() - last_heartbeat >= HEARTBEAT_SECONDS:
                last_heartbeat = time.monotonic()
                self.heartbeat()
            self.enqueue_scheduled_jobs()
            time.sleep(self.poll_seconds)
        self.stop()
