"""vq's RQ worker classes: every method of RQ's `Worker` that vq overrides, and why.

`VqWorker` runs jobs in its own process (like RQ's SimpleWorker) or, for a type configured
`isolation: fork`, in a child process per job (like RQ's Worker). The overrides here hook
vq's concepts into RQ's work loop, each kept in its own module as a mixin RQ never calls:
fenced leases (vq/worker_leases.py), jobs admission starts for the worker
(vq/worker_starts.py), how a job's attempt ends (vq/job_outcomes.py) and the memory limit
(vq/worker_memory.py). The list of overrides, with the signatures vq expects, is in
vq/rq_seam/contract.py; tests/test_rq_contract.py holds RQ to it.
"""

from __future__ import annotations

import signal
import threading
import time

import redis
from rq import Queue
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.job_lifecycle import call_exception_handlers
from rq.suspension import is_suspended
from rq.timeouts import TimerDeathPenalty
from rq.utils import now
from rq.worker import SimpleWorker, Worker, WorkerStatus

from vq import capacity, checkpoints, fence, handler_stop, logs, resources, telemetry
from vq.admission import forget_idle_in, wake_in
from vq.execution import begin_attempt, runtime
from vq.job_outcomes import JobOutcomes
from vq.model import VQ_FUNC
from vq.procutil import die_with_parent
from vq.providers import pool as http_pool
from vq.rq_seam import private
from vq.rq_seam.log_filters import SayOnce
from vq.rq_seam.queue import VqQueue
from vq.telemetry import jobs as trace_jobs
from vq.worker_leases import JobLeases
from vq.worker_memory import MemoryLimit
from vq.worker_starts import STARTED_BY_ADMISSION, AdmissionStarts

HEARTBEAT_EVERY = 5.0  # seconds between a worker's own heartbeats (its key lives for minutes)
IDLE_LOOK_EVERY = 10  # seconds an idle worker waits for a wake token before it looks anyway (dequeue_timeout)
SUSPENSION_CHECK_EVERY = 1.0


class RequeueOnShutdown(Exception):
    """Raised into a running job when the daemon's grace period is over."""


class VqWorker(JobOutcomes, JobLeases, AdmissionStarts, MemoryLimit, Worker):
    queue_class = VqQueue
    get_heartbeat_ttl = SimpleWorker.get_heartbeat_ttl
    _forking = False  # the current job runs in a child process
    redis_lost = False
    _beat_at = float("-inf")
    _suspension_checked_at = float("-inf")
    _written_state = None
    _start_pipe = None
    _unwritten_done = 0  # jobs done since the worker's counts were last written (_flush_counts)
    _unwritten_busy = 0.0
    resource_share: capacity.WorkerShare | None = None  # what it advertises (vq/daemon_children.py)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Its own queue class, so that VqQueue.dequeue_any can have admission start the job
        # it hands this worker in the same step (RQ calls dequeue_any with fixed arguments).
        queue_class = type("VqQueue", (VqQueue,), {"starter": self})
        assert issubclass(queue_class, VqQueue)  # for the type checker: type() returns a plain `type`
        self.queue_class = queue_class

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

    def register_birth(self):
        """RQ's, then this process's resources advertised: after its key exists, since a
        reader drops the advertisement of a worker without one (vq/capacity.py)."""
        super().register_birth()
        if self.resource_share is not None:
            capacity.advertise(self.connection, self.resource_share)

    def set_state(self, state, pipeline=None):
        """RQ writes the state before every dequeue; write it only when it changes (and not
        "idle" between two jobs when the next one is already started)."""
        if pipeline is None and (
            state == self._written_state or (state == WorkerStatus.IDLE and self._prestarted is not None)
        ):
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
        ttl = self.get_heartbeat_ttl(job)  # type: ignore[misc]  # SimpleWorker's (above): it reads only a Worker's attributes
        execution = Execution.create(job, ttl, pipeline=self._start_pipe, worker_name=self.name)
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
            heartbeat_ttl = self.get_heartbeat_ttl(job)  # type: ignore[misc]  # SimpleWorker's: reads only a Worker's attributes
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
            handler_stop.install_interrupt_handler()
        self._max_jobs = kwargs.get("max_jobs")
        return super().work(*args, **kwargs)

    def main_work_horse(self, job: Job, queue: Queue):
        """In the forked child: the job type's memory and CPU limits first (vq/resources.py).
        It dies with its worker: a worker killed for holding a lease too long (vq/fence.py)
        must not leave the job running."""
        die_with_parent(signal.SIGKILL)
        handler_stop.in_forked_child()
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
        setattr(job, checkpoints.STOP_AT_CHECKPOINT, lambda: self._stops_at_checkpoint(job))
        began = time.monotonic()
        number = int(job.meta.get("attempts") or 0) + (0 if getattr(job, STARTED_BY_ADMISSION, False) else 1)
        started_ns = None
        if telemetry.on():  # its wait, from runnable to now (vq/telemetry/jobs.py)
            started_ns = time.time_ns()
            trace_jobs.waited(runtime().settings, job, number, started_ns)
        try:
            # RQ's own lines about the job (here and in a forked child) carry it (vq/logs.py);
            # its attempt's span is current while it runs (a forked child inherits it)
            with (
                logs.job_context(
                    job_id=job.id, job_type=job.meta.get("jobType"), user_id=job.meta.get("userId"), worker=self.name
                ),
                trace_jobs.attempt(job, self.name, number, started_ns) as span,
            ):
                if self._forking:
                    Worker.execute_job(self, job, queue)  # RQ's fork, monitor and clean-up of the child
                else:
                    SimpleWorker.execute_job(self, job, queue)  # type: ignore[arg-type]  # uses only a Worker's attributes
                trace_jobs.ended(span, job, refresh=self._forking, conn=self.connection)
        finally:
            self._disarm()
            self._forking = False
            self._executed += 1
            self._replace_if_too_big(time.monotonic() - began)

    def _stops_at_checkpoint(self, job: Job) -> bool:
        """Asked by ctx.checkpoint (vq/checkpoints.py) once the checkpoint is saved: a
        stopping worker requeues the job there, when the operator chose it
        (daemon.stopAtCheckpoint), instead of letting it run on through the grace period.
        A forked job's child asks itself: its worker signalled it when it began to stop
        (_tell_child_stopping), and it requeues the job and exits as it would end it."""
        stopping = private.stop_requested(self)  # in a forked child: asked before the fork
        if self._forking:  # the child: asked since, by its worker (handler_stop.STOP_AT_CHECKPOINT_SIGNAL)
            stopping = stopping or handler_stop.stop_at_checkpoint_asked()
        if not stopping:
            return False
        if not checkpoints.stops_at_checkpoint(runtime().settings, job.meta.get("jobType", "")):
            return False
        self.log.info("Worker %s: stopping, job %s requeued at its checkpoint", self.name, job.id)
        self._requeue_current = True
        return True

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

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        """The job taken and started while the last one finished, if any; else RQ's
        dequeue (which goes through admission: VqQueue.dequeue_any)."""
        if self._prestarted is not None:
            return self._prestarted[0], self._prestarted[1]
        if self._stop_pending:  # the job the stop waited for has run (or was put back)
            raise StopRequested()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

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
                capacity.withdraw_in(pipe, self.name)
                wake_in(pipe)  # a job this worker put back as it stopped (at shutdown, a checkpoint) is another's now
                pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            self.log.warning(
                "Worker %s: could not requeue job %s; it is requeued when its lease lapses",
                self.name,
                self._prestarted and self._prestarted[0].id,
            )
        http_pool.close_all()  # the providers' kept-alive connections
        super().teardown()

    @property
    def dequeue_timeout(self) -> int:
        """How long an idle worker waits for a wake token before it looks again anyway and
        heartbeats. Every event that can make a job runnable pushes a token (a submission, a
        delay coming due, a dependency or resume or raised limit, a slot given back, a lapsed
        lease's recovery), a worker that cannot use one passes it on, and a job a group's
        rate or a live lease holds sets its own shorter wait, until the rate allows it or the
        lease would lapse (VqQueue.dequeue_any); this look is the safety net for a token lost
        (its taker died, or it went past every idle worker). Often enough that `vq workers`
        still sees the worker alive (health.heartbeatAge)."""
        return max(1, min(IDLE_LOOK_EVERY, runtime().settings.health.heartbeatAge // 4000))

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
        self._tell_child_stopping()

    def fork_work_horse(self, job: Job, queue: Queue):
        """RQ's fork; a stop that came while it forked is told to the new child at once."""
        super().fork_work_horse(job, queue)
        if private.stop_requested(self):
            self._tell_child_stopping()

    def _tell_child_stopping(self) -> None:
        """A forked job's child hears that its worker is stopping: with stopAtCheckpoint on
        for its type, it stops at its next checkpoint (_stops_at_checkpoint)."""
        if self._forking and self.horse_pid:
            handler_stop.ask_child_to_stop_at_checkpoint(self.horse_pid)

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
        """vq's endings first (vq/job_outcomes.py), else RQ's (failed, or retried), then
        vq's event and dependents; nothing at all for a job whose lease was lost, and
        every write fenced by its lease token."""
        if self._lease_lost(job):
            self._requeue_current = False
            return
        if self._refused_if_stale(job, "failure"):
            return
        with self._fenced_writes(job):
            if self._ended_by_vq(job, queue, execution):
                return
            error = job.meta.get("error") or {}
            will_retry = job.should_retry
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
            if self.connection.__class__ is fence.FencedRedis and fence.is_stale(self.connection, job):
                raise fence.StaleLease(job.key)  # RQ logged its refused transaction: no events, no dependents
            if not self._failure_written(job):
                return
            self._failed(job, error, will_retry, exc_string)

    def _failure_written(self, job: Job) -> bool:
        """Whether RQ's write of the failure (or the retry) reached Redis: RQ logs a refused or
        cut transaction and carries on (Redis restarting, loading its data, a lost
        connection). If it did not, the job still says `started` and its slots stay taken:
        its lease lapses and stalled-job recovery runs it again. Giving the slots back here
        would leave it `started` with no lease, which nothing ever looks at again."""
        try:
            status = self.connection.hget(job.key, "status")
        except redis.RedisError:
            status = b"started"
        if status != b"started":
            return True
        self.log.warning(
            "job %s: its end was not written (Redis refused it); stalled-job recovery runs it again once its lease lapses",
            job.id,
        )
        return False

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry, execution):
        """vq's end in one round trip (JobOutcomes._finish_in_one_trip); a job RQ repeats,
        one whose result is not kept, and a forked child's job end RQ's way, fenced."""
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
        self._finish_in_one_trip(job, queue, execution, result_ttl)


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


def _isolation_of(job: Job) -> str:
    try:
        return runtime().job_type(job.meta.get("jobType", ""))[0].isolation
    except Exception:  # noqa: BLE001 - an unknown type fails in run_job, with its own message
        return "process"
