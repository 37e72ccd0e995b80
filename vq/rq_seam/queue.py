"""vq's RQ queue class (part of the RQ seam, vq/rq_seam): RQ's Queue whose dequeue goes
through admission, whose pushes tell admission of an arrival, whose scheduling keeps due
times exact (see vq/timer.py) and whose enqueue of ready dependents retries until done.
The overridden methods and their expected signatures are in vq/rq_seam/contract.py.

Every vq code path that builds an RQ queue uses `rq_queue()`, so these rules hold for
new jobs, retries and the scheduler alike.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol

from redis import Redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.registry import ReadyJobRegistry
from rq.serializers import JSONSerializer, Serializer
from rq.timeouts import BaseDeathPenalty, UnixSignalDeathPenalty

from vq import foreign, keys
from vq.admission import Admission, Admitted, Start, mark_arrivals, mark_arrivals_in, release, wait_for_wake
from vq.capacity import ADMITTED_HELD
from vq.timer import schedule_in

_admissions: dict[int, Admission] = {}
_turn = itertools.count()
READY_ATTEMPTS = 20  # contention on one ready registry clears within a few tries


def admission_order(queues) -> list[str]:
    """The job types of these queues, in a rotating order so that no type is always last."""
    types = list(dict.fromkeys(keys.split_queue_name(q.name)[0] for q in queues))
    shift = next(_turn) % len(types)
    return types[shift:] + types[:shift]


def admission_for(connection: Redis) -> Admission:
    """One Admission (its scripts registered once) per connection."""
    key = id(connection)
    if key not in _admissions:
        from vq.execution import runtime

        lease_ms = runtime().settings.queue.settings.lockDuration
        _admissions[key] = Admission(connection, lease_ms)
    return _admissions[key]


class Starter(Protocol):
    """The vq worker a queue class dequeues for (vq/worker_starts.py): admission can start
    the job it hands out for that worker in the same step."""

    def starting(self) -> AbstractContextManager[None]: ...
    def start_for_admission(self) -> Start | None: ...
    def take_started(self, admitted: Admitted, execution_id: str) -> tuple[Job, Queue] | None: ...


class VqQueue(Queue):
    starter: Starter | None = None  # the vq worker whose dequeues these are (VqWorker sets it on its own subclass)

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Redis,
        job_class: type[Job] | None = None,
        serializer: Serializer | str | None = None,
        death_penalty_class: type[BaseDeathPenalty] | None = None,
    ) -> tuple[Job, Queue] | None:
        """Take the next job admission lets through, instead of popping RQ's lists directly;
        for a vq worker, started for it in the same step.

        Waits for a wake token (a job arrived, a slot was freed) up to `timeout` and, when a
        limit group's rate holds a job, until it may start, or when a live lease holds one
        from its slot, until the lease lapses unless renewed (a dead worker's); never spins.
        One admission call per wait: a wait that ends without a token raises DequeueTimeout
        at once, and the next call's admission is the safety look (RQ's loop heartbeats in
        between)."""
        types = admission_order(queues)
        admission = admission_for(connection)
        deadline = time.monotonic() + (timeout or 0)
        woken = None  # the token that ended the last wait (vq/admission.py wait_for_wake)
        named_idle = False  # the last call found nothing for this worker and named it idle
        while True:
            starter = cls.starter
            with starter.starting() if starter is not None else nullcontext():
                start = starter.start_for_admission() if starter is not None else None
                if start is not None and named_idle:
                    start = start._replace(idle=True)
                admitted, due = admission.admit_or_due(types, start=start, woken=woken)
                named_idle = admitted is None and start is not None
                taken = None
                if admitted is not None:
                    if admitted.started:  # only with a `start`, which only a starter gives
                        assert starter is not None and start is not None
                        taken = starter.take_started(admitted, start.execution_id)
                    else:
                        taken = cls.take_admitted(
                            connection,
                            admitted,
                            job_class=job_class,
                            serializer=serializer,
                            death_penalty_class=death_penalty_class,
                        )
            if taken is not None:
                return taken
            if admitted is not None:
                continue
            if timeout is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, [q.key for q in queues])
            # Idle: a wake token, or `timeout` at most (a job that a rate or a lease holds: until it may start).
            woken = wait_for_wake(connection, min(left, due) if due is not None else left)
            if woken is None and due is None:
                raise DequeueTimeout(timeout, [q.key for q in queues])

    @classmethod
    def take_admitted(cls, connection, admitted, **kwargs):
        """(job, queue) for what admission handed out, or None if the job was deleted
        meanwhile (its slots are given back) or is not a vq job (plain RQ enqueued it onto
        a vq queue: failed, never run nor unpickled, vq/foreign.py)."""
        job_id, queue_name, user, data = admitted.job_id, admitted.queue_name, admitted.user, admitted.data
        if data:
            why = foreign.why_not_vq(data)
            if why is not None:
                from vq.execution import runtime

                foreign.refuse(connection, runtime().settings, job_id, queue_name, user, data, why)
                return None
            job, queue = cls._restore_admitted(connection, queue_name, job_id, data, **kwargs)
            job._vq_lease = admitted.token  # every write for it is fenced with it (vq/fence.py)
            job._vq_asked_at = admitted.asked_at or time.monotonic()
            return job, queue
        release(connection, job_id, keys.split_queue_name(queue_name)[0], user)
        return None

    @classmethod
    def _restore_admitted(
        cls, connection, queue_name, job_id, data, job_class=None, serializer=None, death_penalty_class=None
    ):
        """RQ's post-dequeue step (`_fetch_dequeued_job`) with the job hash admission
        already returned, instead of fetching it again."""
        queue = rq_queue(
            connection,
            queue_name,
            job_class=job_class or cls.job_class,
            serializer=serializer or JSONSerializer,
            death_penalty_class=death_penalty_class or UnixSignalDeathPenalty,
        )
        job = queue.job_class(job_id, connection=connection, serializer=queue.serializer)
        job.restore(data)
        # What admission gave it of this worker's resources, in the same hash: no read later.
        setattr(job, ADMITTED_HELD, data.get(keys.HELD_FIELD.encode()))
        return job, queue

    def push_job_id(self, job_id, pipeline=None, at_front=False):
        """RQ's push, then the mark that tells admission this list has an arrival."""
        pipe = pipeline if pipeline is not None else self.connection.pipeline(transaction=False)
        super().push_job_id(job_id, pipeline=pipe, at_front=at_front)
        mark_arrivals_in(pipe, [self.name])
        if pipeline is None:
            pipe.execute()

    def schedule_job(self, job, datetime, pipeline=None, unique=False):
        """RQ's scheduling, with the due time kept to the microsecond (RQ truncates it to a
        whole second, which would start the job early) and every timer told at once."""
        pipe = pipeline if pipeline is not None else self.connection.pipeline()
        super().schedule_job(job, datetime, pipeline=pipe)
        schedule_in(pipe, self.name, job.id, datetime)
        if pipeline is None:
            pipe.execute()
        return job

    def enqueue_ready_jobs_by_queue(self, job_ids_by_queue_name):
        """RQ's enqueue of dependents whose dependencies just finished, retried until each
        is on its queue. RQ skips a ready job when another worker touched the same ready
        registry at that moment (two dependents of one type readied at once) and leaves it
        to a registry cleanup that runs every ten minutes: a dependent would sit idle."""
        pending = {name: list(ids) for name, ids in job_ids_by_queue_name.items() if ids}
        for attempt in range(READY_ATTEMPTS):
            if not pending:
                break
            if attempt:
                time.sleep(0.001 * attempt)
            super().enqueue_ready_jobs_by_queue(pending)  # RQ's plain Queue pushes: mark below
            pending = _still_ready(self.connection, pending)
        if job_ids_by_queue_name:
            jobs = sum(len(ids) for ids in job_ids_by_queue_name.values())
            mark_arrivals(self.connection, list(job_ids_by_queue_name), jobs)


def _still_ready(conn: Redis, job_ids_by_queue_name: dict[str, list[str]]) -> dict[str, list[str]]:
    with conn.pipeline(transaction=False) as pipe:
        for name, ids in job_ids_by_queue_name.items():
            key = ReadyJobRegistry(name, connection=conn).key
            for job_id in ids:
                pipe.zscore(key, job_id)
        scores = iter(pipe.execute())
    left = {name: [i for i in ids if next(scores) is not None] for name, ids in job_ids_by_queue_name.items()}
    return {name: ids for name, ids in left.items() if ids}


def enqueue_left_ready_jobs(conn: Redis, queue_names: list[str]) -> int:
    """Enqueue dependents a crash left between "ready" and "queued" (RQ's recovery step,
    run by the daemon every few seconds rather than RQ's ten minutes)."""
    registries = [ReadyJobRegistry(name, connection=conn, serializer=JSONSerializer) for name in queue_names]
    with conn.pipeline(transaction=False) as pipe:
        for registry in registries:
            pipe.zcard(registry.key)
        counts = pipe.execute()
    moved = sum(len(registry.cleanup()) for registry, count in zip(registries, counts) if count)
    if moved:
        mark_arrivals(conn, queue_names, moved)
    return moved


_built: dict[tuple, tuple[Redis, VqQueue]] = {}


def rq_queue(
    conn: Redis, name: str, job_class=None, serializer=JSONSerializer, death_penalty_class=UnixSignalDeathPenalty
) -> VqQueue:
    """The queue named `name` on this connection (and with these RQ classes), built once:
    RQ's serializer check costs more than the rest of a submission's Python work."""
    key = (id(conn), name, job_class, serializer, death_penalty_class)
    hit = _built.get(key)
    if hit is not None and hit[0] is conn:
        return hit[1]
    if len(_built) > 10_000:  # many short-lived connections: start over
        _built.clear()
    queue = VqQueue(
        name, connection=conn, job_class=job_class, serializer=serializer, death_penalty_class=death_penalty_class
    )
    _built[key] = (conn, queue)
    return queue
