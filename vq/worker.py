"""The worker: a long-lived RQ worker process that runs jobs in itself (like RQ's
SimpleWorker) or, for a type configured `isolation: fork`, in a child process per job
(like RQ's Worker), and knows about admission, error categories, dependents of failed
jobs, requeueing on a forced shutdown and being replaced when it grows too big.

The daemon runs several of these processes. Each takes jobs from every queue it serves,
high priority before normal before low, skipping the types an operator paused.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import uuid
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry
from rq.worker import SimpleWorker, Worker, WorkerStatus
from rq.executions import Execution
from rq.job_lifecycle import call_exception_handlers
from rq.rate_limit import release_slot
from rq.serializers import JSONSerializer
from rq.suspension import is_suspended
from rq.timeouts import TimerDeathPenalty
from rq.defaults import DEFAULT_WORKER_TTL
from rq.exceptions import StopRequested
from rq.utils import now, utcformat

from vq import cache, events, fence, http_pool, keys, logs, resources
from vq.procutil import die_with_parent
from vq.jobs import cancel_dependents
from vq.admission import Admitted, Start, forget_idle_in, release, release_in
from vq.execution import BEGUN, begin_attempt, runtime
from vq.model import VQ_FUNC, ms_between
from vq.recurring import record_outcome_in
from vq.rq_queue import VqQueue, admission_for, admission_order
from vq.workers import MEMORY_FIELD


STARTED_BY_ADMISSION = "_vq_started_by_admission"  # on a Job: its start was written with its admission
HEARTBEAT_EVERY = 5.0  # seconds between a worker's own heartbeats (its key lives for minutes)
SUSPENSION_CHECK_EVERY = 1.0


class SayOnce(logging.Filter):
    """RQ's worker logs an error at every reconnect attempt while Redis is down; an operator
    needs to hear it once, and once more when Redis is back."""

    def __init__(self):
        super().__init__()
        self.down = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "could not connect to Redis" in record.getMessage():
            if self.down:
                return False
            self.down = True
            record.msg, record.args = "Redis unreachable (%s); retrying with backoff", (
                str(record.args[1]).splitlines()[0] if len(record.args) > 1 else "connection refused",)
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
        if (record.exc_info and record.levelno >= logging.ERROR and "unhandled exception" in str(record.msg)
                and record.thread == threading.main_thread().ident):
            self.exc = record.exc_info[1]
            return False
        return True


SHARED_DEADLINE = None  # set by the daemon's worker entry: where this process's fence says when it must be gone
_process_fence: fence.Fence | None = None


def process_fence(conn) -> fence.Fence:
    """The process's one Fence (vq/fence.py), shared by its main worker and thread workers."""
    global _process_fence
    if _process_fence is None:
        _process_fence = fence.Fence(conn, admission_for(conn).lease_ms, SHARED_DEADLINE)
    return _process_fence


class RequeueOnShutdown(Exception):
    """Raised into a running job when the daemon's grace period is over."""


class VqWorker(Worker):
    queue_class = VqQueue
    get_heartbeat_ttl = SimpleWorker.get_heartbeat_ttl
    max_memory_mb: int | None = None  # resident memory past which the process is replaced
    _forking = False  # the current job runs in a child process
    _requeue_current = False
    redis_lost = False
    _beat_at = float("-inf")
    _suspension_checked_at = float("-inf")
    _written_state = None
    _start_pipe = None
    _prestarted = None  # (job, queue, execution) taken and started in the last job's finishing round trip
    _starting = False  # inside an idle worker's admission call, which may start a job for it
    _stop_pending = False  # a warm stop that waits for the job being (or already) started for this worker
    _max_jobs = None
    _executed = 0
    _memory_checked_at = float("-inf")
    _unwritten_done = 0  # jobs done since the worker's counts were last written (_flush_counts)
    _unwritten_busy = 0.0
    _lease: fence.Lease | None = None  # the running job's (vq/fence.py)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Its own queue class, so that VqQueue.dequeue_any can have admission start the job
        # it hands this worker in the same step (RQ calls dequeue_any with fixed arguments).
        self.queue_class = type("VqQueue", (VqQueue,), {"starter": self})

    def heartbeat(self, timeout=None, pipeline=None):
        """RQ's heartbeat in one round trip (RQ sends its three commands one by one), and
        on its own at most every HEARTBEAT_EVERY seconds: RQ beats twice per job, a
        quarter of a no-op job's time (profiled), to keep alive a key that lives for
        minutes. RQ quits its loop on any error here; remember when that error was a lost
        Redis so the process exits for a restart with backoff instead of looking like a
        clean stop."""
        if pipeline is None and timeout is None and time.monotonic() - self._beat_at < HEARTBEAT_EVERY:
            return
        try:
            if pipeline is None:
                with self.connection.pipeline(transaction=False) as pipe:
                    super().heartbeat(timeout, pipe)
                    self._report_memory(pipe)
                    self._flush_counts(pipe)
                    pipe.execute()
            else:
                super().heartbeat(timeout, pipeline)
                self._report_memory(pipeline)
                self._flush_counts(pipeline)
        except (redis.ConnectionError, redis.TimeoutError):
            self.redis_lost = True
            raise
        if pipeline is None:
            self._beat_at = time.monotonic()
            self._say_once().recovered(self.log)

    def set_state(self, state, pipeline=None):
        """RQ writes the state before every dequeue; write it only when it changes (and not
        "idle" between two jobs when the next one is already started)."""
        if pipeline is None and (state == self._written_state or
                                 (state == WorkerStatus.IDLE and self._prestarted is not None)):
            return
        super().set_state(state, pipeline)
        self._written_state = state
        if state == WorkerStatus.IDLE:  # the counts held back while busy (see _flush_counts)
            if pipeline is not None:
                self._flush_counts(pipeline)
            elif self._unwritten_done or self._unwritten_busy:
                with self.connection.pipeline(transaction=False) as pipe:
                    self._flush_counts(pipe)
                    pipe.execute()

    def check_for_suspension(self, burst: bool):
        """RQ asks Redis before every job whether workers are suspended; once a second is
        soon enough for an operator's `rq suspend`."""
        if time.monotonic() - self._suspension_checked_at < SUSPENSION_CHECK_EVERY:
            return
        self._suspension_checked_at = time.monotonic()
        if self._prestarted is not None and is_suspended(self.connection, self):
            self._requeue_prestarted()  # not to sit on it while suspended
        super().check_for_suspension(burst)

    def prepare_execution(self, job: Job):
        """RQ's execution record, written with the rest of the start (prepare_job_execution)
        in one round trip instead of two (three with vq's start event); nothing to write
        for a job admission started (handle_job_success)."""
        if self._prestarted is not None and self._prestarted[0] is job:
            execution = self._prestarted[2]
            self._prestarted = None
            self.executions[execution.id] = execution
            return execution
        if self._forking:  # the child writes the rest: RQ's way
            return super().prepare_execution(job)
        self._start_pipe = self.connection.pipeline()
        execution = Execution.create(job, self.get_heartbeat_ttl(job), pipeline=self._start_pipe,
                                     worker_name=self.name)
        self.executions[execution.id] = execution
        self.set_state(WorkerStatus.BUSY, pipeline=self._start_pipe)
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if getattr(job, STARTED_BY_ADMISSION, False):
            return
        pipe, self._start_pipe = self._start_pipe, None
        if pipe is None:
            pipe = self.connection.pipeline()
        with pipe:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(heartbeat_ttl, pipeline=pipe)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if remove_from_intermediate_queue:
                pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            if job.func_name == VQ_FUNC:
                begin_attempt(job, pipe)
            pipe.execute()
        self._beat_at = time.monotonic()

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int):
        """RQ writes a last heartbeat into the job here, one round trip just before the
        write that ends the job; keep the times and let that write carry them. The handler
        has returned: its lease needs no more renewals (the end is fenced by its token)."""
        if not self._forking:
            self._disarm()
        job.ended_at = now()
        job.last_heartbeat = job.ended_at

    def _say_once(self) -> SayOnce:
        if getattr(self, "_outage_filter", None) is None:
            self._outage_filter = SayOnce()
            self.log.addFilter(self._outage_filter)
        return self._outage_filter

    def work(self, *args, **kwargs):
        self._say_once()
        if threading.current_thread() is threading.main_thread():
            fence.install_interrupt_handler()
        self._max_jobs = kwargs.get("max_jobs")
        return super().work(*args, **kwargs)

    def main_work_horse(self, job: Job, queue: Queue):
        """In the forked child: the job type's memory and CPU limits first (vq/resources.py).
        It dies with its worker: a worker killed for holding a lease too long (vq/fence.py)
        must not leave the job running."""
        die_with_parent(signal.SIGKILL)
        try:
            resources.apply(runtime().job_type(job.meta.get("jobType", ""))[0])
        except Exception:  # noqa: BLE001 - an unknown type fails in run_job, with its own message
            pass
        super().main_work_horse(job, queue)

    def execute_job(self, job: Job, queue: Queue):
        """Run the job under its fenced lease (vq/fence.py): renewed while it runs; if it
        cannot be, the handler is interrupted (a forked child killed) before it lapses."""
        self._forking = _isolation_of(job) == "fork"
        self._arm(job)
        began = time.monotonic()
        try:
            # RQ's own lines about the job (here and in a forked child) carry it (vq/logs.py)
            with logs.job_context(job_id=job.id, job_type=job.meta.get("jobType"),
                                  user_id=job.meta.get("userId"), worker=self.name):
                if self._forking:
                    Worker.execute_job(self, job, queue)  # RQ's fork, monitor and clean-up of the child
                else:
                    SimpleWorker.execute_job(self, job, queue)
        finally:
            self._disarm()
            self._forking = False
            self._executed += 1
            self._replace_if_too_big(time.monotonic() - began)

    def increment_successful_job_count(self, pipeline=None):
        """Counted here and written with the next heartbeat or when the worker goes idle
        (two commands per job less): `vq workers` shows a busy worker's count at most
        HEARTBEAT_EVERY seconds late. A forked child writes its own, as RQ does: it has no
        heartbeat of its own to carry it."""
        if self.is_horse:
            return super().increment_successful_job_count(pipeline)
        self._unwritten_done += 1

    def increment_total_working_time(self, job_execution_time, pipeline):
        if self.is_horse:
            return super().increment_total_working_time(job_execution_time, pipeline)
        self._unwritten_busy += job_execution_time.total_seconds()

    def _flush_counts(self, pipe) -> None:
        """The counts of jobs done since the last heartbeat, into RQ's fields of the worker."""
        if self._unwritten_done:
            pipe.hincrby(self.key, "successful_job_count", self._unwritten_done)
        if self._unwritten_busy:
            pipe.hincrbyfloat(self.key, "total_working_time", self._unwritten_busy)
        self._unwritten_done, self._unwritten_busy = 0, 0.0

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
        if rss_mb is not None and rss_mb > self.max_memory_mb and not self._stop_requested:
            self.log.warning("Worker %s: %.0f MB resident, over daemon.maxMemoryPerWorker (%d MB): "
                             "replaced after this job", self.name, rss_mb, self.max_memory_mb)
            self._stop_requested = True

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """The job taken and started while the last one finished, if any; else RQ's
        dequeue (which goes through admission: VqQueue.dequeue_any)."""
        if self._prestarted is not None:
            return self._prestarted[0], self._prestarted[1]
        if self._stop_pending:  # the job the stop waited for has run (or was put back)
            raise StopRequested()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def start_for_admission(self) -> Start | None:
        """An idle worker's admission call also starts the job it gets (one round trip
        less from arrival to handler), unless this worker is about to stop."""
        if self._stop_requested or self._stop_pending or self.redis_lost or self.is_horse:
            return None
        return Start(self.name, uuid.uuid4().hex, DEFAULT_WORKER_TTL, busy=self._written_state == WorkerStatus.BUSY)

    def take_started(self, admitted: Admitted, execution_id: str):
        """(job, queue) of a job admission started for this idle worker (see _take_started)."""
        self._take_started(admitted, execution_id)
        return None if self._prestarted is None else self._prestarted[:2]

    def _will_take_another(self) -> bool:
        return not (self._stop_requested or self._stop_pending or self.redis_lost or self.is_horse or
                    (self._max_jobs is not None and self._executed + 1 >= self._max_jobs))

    def _take_started(self, admitted: Admitted, execution_id: str) -> None:
        """Hold the job admission started for this worker, to run next."""
        taken = self.queue_class.take_admitted(self.connection, admitted, job_class=self.job_class,
                                               serializer=self.serializer, death_penalty_class=self.death_penalty_class)
        if taken is None:
            return
        job, queue = taken
        job.redis_server_version = self.get_redis_server_version()
        setattr(job, STARTED_BY_ADMISSION, True)
        setattr(job, BEGUN, True)
        self._state = self._written_state = WorkerStatus.BUSY
        self._beat_at = time.monotonic()
        self._prestarted = (job, queue, Execution(execution_id, job.id, self.connection, worker_name=self.name))
        events.say("started", job.id, job.meta.get("jobType"),
                   {"attempt": job.meta.get("attempts"), "worker": self.name, "userId": job.meta.get("userId")})

    def _requeue_prestarted(self) -> None:
        """A job started for this worker that it will not run now (it is stopping, RQ is
        suspended): back at the front of its queue, its attempt not charged."""
        held, self._prestarted = self._prestarted, None
        if held is not None:
            job, queue, execution = held
            with self._fenced_writes(job):
                self._requeue(job, queue, execution, reason="worker stopping")
                self._release(job)

    def unsubscribe(self):
        """RQ's, without its wait of up to a minute: redis-py's pubsub thread, once
        unsubscribed, waits up to RQ's `sleep_time` (60 s) for a new subscription before
        it looks at its stop flag again, and RQ's `stop()` waits for it (a worker whose
        loop had ended took a minute to exit). The flag first, then the unsubscribe, whose
        reply wakes the thread, then a bounded join, as RQ does."""
        thread = self.pubsub_thread
        if not thread:
            return
        thread.stop(timeout=0)  # clears its running flag; no wait
        try:
            self.pubsub.unsubscribe()
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        thread.join(timeout=1)
        if not thread.is_alive():
            self.pubsub.close()  # else the thread still uses it; it goes with the process (a daemon thread)

    def teardown(self):
        try:
            self._requeue_prestarted()
            with self.connection.pipeline(transaction=False) as pipe:
                self._flush_counts(pipe)
                forget_idle_in(pipe, self.name)
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            self.log.warning("Worker %s: could not requeue job %s; it is requeued when its lease lapses",
                             self.name, self._prestarted and self._prestarted[0].id)
        http_pool.close_all()  # the providers' kept-alive connections
        super().teardown()

    def _arm(self, job: Job) -> None:
        token = getattr(job, "_vq_lease", None)
        if token is None:  # started by an older vq: no token to renew under; recovery handles it
            return
        if self._forking:
            stop = fence.kill_child(lambda: self.horse_pid)
        else:
            stop = fence.interrupter(threading.get_ident())
        self._lease = process_fence(self.connection).hold(
            job.id, job.meta.get("jobType", ""), job.meta.get("userId", "_"), token,
            getattr(job, "_vq_asked_at", None) or time.monotonic(), stop)

    def _disarm(self) -> None:
        lease = self._lease
        if lease is not None and not lease.dropped:
            process_fence(self.connection).drop(lease)

    def _lease_lost(self, job: Job) -> bool:
        """The job was stopped because its lease could not be kept: its worker writes
        nothing for it (stalled-job recovery puts it back in line once the lease lapses)."""
        lease = self._lease
        if lease is None or lease.job_id != job.id or not lease.lost:
            return False
        self.log.warning("Worker %s: job %s stopped (lease lost); nothing written for this attempt",
                         self.name, job.id)
        try:
            self.connection.incr(keys.LEASES_LOST)
        except (redis.ConnectionError, redis.TimeoutError):
            pass
        return True

    def _refused_if_stale(self, job: Job, what: str) -> bool:
        """Whether the job's lease token is no longer its own (taken over while this worker
        was paused or cut off): then the write is refused, counted and logged."""
        try:
            stale = fence.is_stale(self.connection, job)
        except (redis.ConnectionError, redis.TimeoutError):
            return False  # the write itself will fail, or be fenced
        if stale:
            self.connection.incr(keys.STALE_REFUSED)
            fence.refused(job.id, what)
        return stale

    @contextmanager
    def _fenced_writes(self, job: Job):
        """While RQ's code writes the job's end: every transaction it opens applies only
        under the job's lease token (fence.FencedRedis)."""
        token = getattr(job, "_vq_lease", None)
        if token is None:
            yield
            return
        plain = self.connection
        self.connection = fence.FencedRedis(plain, job.key, token)
        try:
            yield
        except fence.StaleLease:
            plain.incr(keys.STALE_REFUSED)
            fence.refused(job.id, "end of job")
        finally:
            self.connection = plain

    def _release(self, job: Job) -> None:
        try:
            release(self.connection, job.id, job.meta.get("jobType", ""), job.meta.get("userId", "_"))
        except Exception:  # the lease lapses by itself within lockDuration
            self.log.exception("Worker %s: could not release the slots of job %s", self.name, job.id)

    @property
    def dequeue_timeout(self) -> int:
        # Wake every second so a resumed queue is picked up at once.
        return 1

    def _shutdown(self):
        """RQ's warm stop, called from the signal handler. A job admission is starting, or
        has started, for this worker runs first, and the worker stops after it: RQ would
        raise StopRequested out of an idle worker's admission call (the job it started there
        would wait, shown as started, until its lease lapsed), or stop a busy worker before
        the job its finishing round trip had started (put back unrun: a started and a
        requeued event, and the job started twice)."""
        if self._starting or self._prestarted is not None:
            self._stop_pending = True
            return
        super()._shutdown()

    @contextmanager
    def starting(self):
        """Around an idle worker's admission call: a stop that arrives meanwhile waits for it
        (`_shutdown`), and comes right after it when nothing was started."""
        self._starting = True
        try:
            yield
        finally:
            self._starting = False
        if self._stop_pending and self._prestarted is None:
            raise StopRequested()

    def request_force_stop(self, signum, frame):
        if self.horse_pid:  # a forked job: RQ takes the child down; its lease lapses and it is requeued
            return super().request_force_stop(signum, frame)
        if self.get_state() == WorkerStatus.BUSY and self.get_current_job_id():
            self.log.warning("Worker %s: grace period over, requeueing job %s", self.name, self.get_current_job_id())
            self._requeue_current = True
            self._stop_requested = True
            raise RequeueOnShutdown()
        super().request_force_stop(signum, frame)

    def handle_exception(self, job: Job, *exc_info):
        """The traceback is kept with the job (`vq show`); the log gets the one-line event.
        At --log-level DEBUG the full traceback is logged too."""
        self.log.debug("Worker %s: job %s raised", self.name, job.id, exc_info=exc_info)
        call_exception_handlers(self._exc_handlers, job, *exc_info)

    def handle_job_failure(self, job: Job, queue: Queue, started_job_registry=None, exc_string="", execution=None):
        if self._lease_lost(job):
            self._requeue_current = False
            return
        if self._refused_if_stale(job, "failure"):
            return
        with self._fenced_writes(job):
            self._handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def _handle_job_failure(self, job: Job, queue: Queue, started_job_registry, exc_string, execution):
        if self._requeue_current:
            self._requeue(job, queue, execution)
            self._release(job)
            return
        error = job.meta.get("error") or {}
        category = error.get("category", "temporary")
        if category in ("rate_limit", "breaker_open", "budget") and not self._stopped_job_id:
            self._delay_for_rate_limit(job, queue, execution, error)
            self._release(job)
            return
        if category == "canceled":
            self._finish_canceled(job, execution)
            self._release(job)
            return
        if category in ("permanent", "resource"):  # a job over its limits would only do it again
            job.retries_left = 0
        will_retry = job.should_retry
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if self.connection.__class__ is fence.FencedRedis and fence.is_stale(self.connection, job):
            raise fence.StaleLease(job.key)  # RQ logged its refused transaction: no events, no dependents
        job_type = job.meta.get("jobType")
        if will_retry:
            status = job.get_status(refresh=False)
            events.emit(self.connection, "retrying", job.id, job_type, attempt=job.meta.get("attempts"),
                        category=category, error=error.get("message"), retriesLeft=job.retries_left,
                        status=status.value if status else None, durationMs=_took_ms(job),
                        userId=job.meta.get("userId"))
        else:
            with self.connection.pipeline(transaction=False) as pipe:
                events.emit(pipe, "failed", job.id, job_type, attempt=job.meta.get("attempts"),
                            category=category, error=error.get("message") or _last_line(exc_string),
                            durationMs=_took_ms(job), userId=job.meta.get("userId"),
                            webhookUrl=job.meta.get("webhookUrl"))
                record_outcome_in(pipe, job)
                pipe.execute()
            if not job.allow_dependency_failures:
                cancel_dependents(self.connection, job, f"dependency {job.id} failed")
        self._release(job)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution):
        """The job's end (vq/lua/admit.lua `finish`: its fields and result, registries, the
        `finished` event), its slots back and, unless this worker is stopping, the
        admission and start of its next job: one script, one round trip. RQ writes the
        end in a transaction of its own after WATCHing the job's dependents; here the
        script reads whether the job has any, and only then are they moved, after it. A
        dependent added meanwhile is either in that set or, added later, sees its
        dependency finished and is enqueued by RQ. A job RQ repeats, one whose result is
        not kept, and a forked child's job end RQ's way."""
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        if job.repeats_left or result_ttl == 0 or self.is_horse:
            if self._refused_if_stale(job, "success"):
                return
            with self._fenced_writes(job):
                super().handle_job_success(job, queue, started_job_registry, execution)
                with self.connection.pipeline(transaction=False) as pipe:
                    self._succeeded_in(pipe, job)
                    pipe.execute()
            return
        self.increment_successful_job_count()
        self.increment_total_working_time(job.ended_at - job.started_at, None)
        admission = admission_for(self.connection)
        take_another = self._will_take_another()
        execution_id = uuid.uuid4().hex
        give_back = (job.id, job.meta.get("jobType", ""), job.meta.get("userId", "_"))
        finish, said = _finish_payload(job, result_ttl)
        asked_at = time.monotonic()  # the next job's lease is granted after this
        with self.connection.pipeline(transaction=False) as pipe:
            admission.admit_in(pipe, admission_order(self._ordered_queues) if take_another else [],
                               start=Start(self.name, execution_id, DEFAULT_WORKER_TTL,
                                           busy=self._written_state == WorkerStatus.BUSY) if take_another else None,
                               give_back=give_back, finish=finish)
            if not getattr(job, STARTED_BY_ADMISSION, False):  # RQ wrote its execution records
                self.cleanup_execution(job, pipeline=pipe, execution=execution)
            _remember_success_in(pipe, job)
            if not take_another:
                self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            replies = pipe.execute(raise_on_error=False)
        has_dependents, admitted, stale = admission.parse_admitted(replies[0], give_back, finish)
        problems = [r for r in replies[1:] if isinstance(r, Exception)]
        if stale:
            fence.refused(job.id, "success: result discarded")
        else:
            events.say("finished", job.id, job.meta.get("jobType"), said)
        if admitted is not None:
            self._take_started(admitted._replace(asked_at=asked_at), execution_id)
        if problems:
            raise problems[0]
        if has_dependents:  # their set already has the job's expiry (admit.lua finish)
            queue.enqueue_dependents(job)
        if job.has_rate_limit:
            release_slot(job)

    def _succeeded_in(self, pipe, job: Job) -> None:
        """vq's part of a success that RQ's own code ended: slots back, the `finished`
        event, the cache entry and a recurring job's outcome."""
        release_in(pipe, job.id, job.meta.get("jobType", ""), job.meta.get("userId", "_"))
        result = _result_for_history(job.serializer.dumps(job._result).decode() if job._result is not None else None)
        events.emit(pipe, "finished", job.id, job.meta.get("jobType"), result=result, **_finished_fields(job))
        _remember_success_in(pipe, job)

    def _finish_canceled(self, job: Job, execution) -> None:
        """A running job stopped at a cancel request: canceled in one step (never seen as
        failed on the way), out of the started registry, into RQ's canceled registry."""
        reason = (self.connection.get(keys.cancel_request(job.id)) or b"canceled while running").decode()
        job.meta["cancelReason"] = reason
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.hset(job.key, "meta", job._serialize_meta())
            job.set_status(JobStatus.CANCELED, pipeline=pipe)
            CanceledJobRegistry(job.origin, connection=self.connection, serializer=job.serializer).add(job, pipeline=pipe)
            pipe.delete(keys.cancel_request(job.id))
            record_outcome_in(pipe, job)
            pipe.execute()
        events.emit(self.connection, "canceled", job.id, job.meta.get("jobType"), reason=reason,
                    userId=job.meta.get("userId"), durationMs=_took_ms(job), webhookUrl=job.meta.get("webhookUrl"))
        cancel_dependents(self.connection, job, f"dependency {job.id} was canceled")

    def _delay_for_rate_limit(self, job: Job, queue: Queue, execution, error: dict) -> None:
        """The provider said "retry after N s": wait exactly that (up to a cap), and do not
        count the attempt against the job's retries."""
        cap = runtime().settings.limits.maxRateLimitDelay / 1000
        delay = max(0.0, min(float(error.get("retryAfter", 1.0)), cap))
        job.meta["attempts"] = max(0, int(job.meta.get("attempts", 1)) - 1)
        job.meta["rateLimited"] = int(job.meta.get("rateLimited", 0)) + 1
        due = datetime.now(timezone.utc) + timedelta(seconds=delay)
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.hset(job.key, "meta", job._serialize_meta())
            job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
            queue.schedule_job(job, due, pipeline=pipe)
            pipe.execute()
        events.emit(self.connection, "rate-limited", job.id, job.meta.get("jobType"), retryAfter=delay,
                    error=error.get("message"))

    def _requeue(self, job: Job, queue: Queue, execution, reason: str = "daemon shutdown") -> None:
        """Put an interrupted job back at the front of its queue; the attempt is not charged."""
        self._requeue_current = False
        job.meta["attempts"] = max(0, int(job.meta.get("attempts", 1)) - 1)
        job.meta.pop("error", None)
        job.meta["progress"] = {"percent": 0.0, "message": "requeued at shutdown"}
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.hset(job.key, "meta", job._serialize_meta())
            queue._enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        events.emit(self.connection, "requeued", job.id, job.meta.get("jobType"), reason=reason)


class ThreadWorker(VqWorker):
    """One of the extra workers a process runs, in threads, for the job types configured
    with `concurrencyPerWorker` above 1 (I/O-bound handlers that mostly wait). The
    process's main worker owns the signals and tells these to stop; a job's timeout is
    enforced with a timer instead of SIGALRM, which only the main thread can receive."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self):
        pass

    def _replace_if_too_big(self, took: float) -> None:
        pass  # the main worker decides for the whole process


def start_thread_workers(settings, queue_names: list[str], conn, name: str) -> list[tuple[ThreadWorker, threading.Thread]]:
    """Start `concurrencyPerWorker - 1` thread workers per such type (the main worker is
    the first of each type's share), each serving only that type's queues."""
    from vq.jobtypes import job_types
    from vq.keys import split_queue_name

    started = []
    for job_type in job_types(settings).values():
        own = [q for q in queue_names if split_queue_name(q)[0] == job_type.name]
        for index in range(1, job_type.concurrency_per_worker if own else 1):
            worker = ThreadWorker(own, connection=conn, serializer=JSONSerializer,
                                  name=f"{name}.{job_type.name}.{index}")
            thread = threading.Thread(target=worker.work, kwargs={"logging_level": "WARNING"}, daemon=True,
                                      name=f"vq-{job_type.name}-{index}")
            thread.start()
            started.append((worker, thread))
    return started


def stop_thread_workers(started: list[tuple[ThreadWorker, threading.Thread]], grace: float) -> None:
    """Warm stop: each finishes its current job (within `grace`) and takes no more."""
    for worker, _thread in started:
        worker._stop_requested = True
    deadline = time.monotonic() + grace
    for _worker, thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))


def _remember_success_in(pipe, job: Job) -> None:
    """A finished job's cache entry (if its type caches) and its recurring outcome."""
    if job.meta.get("cacheKey"):
        cache.remember(pipe, job.meta["cacheKey"], job.id, int(job.meta.get("cacheTtl", 0)) or 1)
    record_outcome_in(pipe, job)


def _finished_fields(job: Job) -> dict:
    return {"durationMs": _took_ms(job), "attempt": job.meta.get("attempts"), "userId": job.meta.get("userId"),
            "webhookUrl": job.meta.get("webhookUrl")}


def _result_for_history(result_json: str | None) -> str | None:
    """The result the `finished` event carries for the history database (history.maxResultBytes)."""
    return events.result_for_history(result_json, runtime().settings.history.maxResultBytes)


def _finish_payload(job: Job, result_ttl: int | None) -> tuple[str, dict]:
    """What vq/lua/admit.lua `finish` writes for a job that succeeded, as JSON, and the
    `finished` event's fields (for its log line). The result goes into the job's hash
    (RQ's own field for it, which RQ still reads back) instead of RQ's result stream: one
    key per job, which expires with it (vq.model.result_of reads either)."""
    job._status = JobStatus.FINISHED
    result = job.serializer.dumps(job._result).decode()
    fields = ["status", JobStatus.FINISHED.value, "ended_at", utcformat(job.ended_at),
              "last_heartbeat", utcformat(job.last_heartbeat or job.ended_at), "result", result]
    item, webhook_url, said = events.entry("finished", job.id, job.meta.get("jobType"),
                                           result=_result_for_history(result), **_finished_fields(job))
    payload = {
        "id": job.id, "key": job.key, "fields": fields,
        "ttl": -1 if result_ttl is None or result_ttl < 0 else result_ttl,
        "expire": [job.dependencies_key] if job._dependency_ids else [],
        "registry": job.finished_job_registry.key,
        "event": [part for pair in item.items() for part in pair], "webhook": webhook_url or "",
        "dependents": job.dependents_key,
        "token": getattr(job, "_vq_lease", None),  # fences the end and the give-back (vq/fence.py)
    }
    return json.dumps(payload, separators=(",", ":")), said


def _isolation_of(job: Job) -> str:
    try:
        return runtime().job_type(job.meta.get("jobType", ""))[0].isolation
    except Exception:  # noqa: BLE001 - an unknown type fails in run_job, with its own message
        return "process"


def resident_mb() -> float | None:
    """This process's resident memory, from /proc (Linux); None where there is none."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def _took_ms(job: Job) -> int | None:
    """How long the attempt that just ended ran."""
    return ms_between(job.started_at, job.ended_at) if job.started_at else None


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"
