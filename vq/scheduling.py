"""Delayed jobs and retry backoff: moving due jobs from RQ's scheduled registries onto
their queues, at most one active mover per queue across every daemon sharing the Redis.

RQ's RQScheduler does the moving and the per-queue locks; vq runs it with a short poll
(`daemon.schedulerInterval`, default 200 ms) instead of RQ's one second, keeps the lock
TTL in whole seconds (RQ's Lua lock script needs an integer), and retries locks held by a
dead daemon every few seconds rather than RQ's ten minutes.
"""

from __future__ import annotations

import time

import redis
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.utils import current_timestamp

from vq.admission import wake_in
from vq.rq_queue import rq_queue

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

    def enqueue_scheduled_jobs(self) -> None:
        """RQ's move of due jobs onto their queue lists (and so into admission), plus a wake
        token when anything moved, so an idle worker admits it at once."""
        if not self._scheduled_job_registries and self._acquired_locks:
            self.prepare_registries()
        moved = 0
        for registry in self._scheduled_job_registries:
            job_ids = registry.get_jobs_to_schedule(current_timestamp())
            if not job_ids:
                continue
            queue = rq_queue(self.connection, registry.name)
            jobs = Job.fetch_many(job_ids, connection=self.connection, serializer=self.serializer)
            with self.connection.pipeline() as pipe:
                for job_id, job in zip(job_ids, jobs):
                    if job is not None:
                        queue._enqueue_job(job, pipeline=pipe, at_front=job.should_enqueue_at_front())
                        moved += 1
                    registry.remove(job_id, pipeline=pipe)
                if moved:
                    wake_in(pipe)
                pipe.execute()

    def work(self) -> None:
        """Move due jobs until stopped. A lost Redis is waited out (said once, retried with
        backoff) rather than ending the process: the same scheduler name keeps its locks."""
        self._install_signal_handlers()
        self.register_birth()
        last_heartbeat = 0.0
        backoff = 0.0
        while not self._stop_requested:
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()
                if time.monotonic() - last_heartbeat >= HEARTBEAT_SECONDS:
                    last_heartbeat = time.monotonic()
                    self.heartbeat()
                self.enqueue_scheduled_jobs()
                if backoff:
                    self.log.warning("scheduler: Redis is back")
                backoff = 0.0
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not backoff:
                    self.log.warning("scheduler: Redis unreachable (%s); retrying", str(exc).splitlines()[0])
                backoff = min(5.0, backoff * 2 or 0.2)
                time.sleep(backoff)
                continue
            time.sleep(self.poll_seconds)
        self.stop()
