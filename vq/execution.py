"""Running one job inside a worker: the RQ entry point that calls the type's handler.

Every vq job's RQ function is `run_job(job_type, data)`. It builds the handler's
context, counts the attempt, and turns what the handler raises into an error with a
category (see vq.errors) that the worker uses to decide between retry and failure.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException

from vq import (
    artifacts,
    cancel_now,
    capacity,
    checkpoints,
    costs,
    events,
    fence,
    handler_stop,
    job_logs,
    jobdata,
    keys,
    logs,
    resources,
    telemetry,
)
from vq.config import Settings
from vq.context import HandlerContext, Upstream
from vq.errors import (
    BudgetHeld,
    HandlerError,
    InvalidInput,
    JobCanceled,
    PermanentError,
    ProviderError,
    ProviderUnavailable,
    RateLimitError,
    message_of,
)
from vq.jobtypes import get_job_type, load_handler
from vq.model import ms_between, result_of
from vq.protect import protector
from vq.providers import http as providers
from vq.providers.calls import ProviderCalls
from vq.rq_seam import private

PROGRESS_EVENT_INTERVAL = 0.25  # seconds between progress events of one job
BUDGET_RECHECK_S = 60  # a job held for budget is looked at again this often (a raised budget lets it go)


@dataclass
class Runtime:
    """What a worker process knows: its settings and where artifacts go."""

    settings: Settings
    _breakers: object = None
    _gate: object = None
    _types: dict | None = None
    _artifacts_root: Path | None = None

    def job_type(self, name: str):
        """The job type and its handler, resolved once per process (settings do not change
        under a running worker: a reload restarts it)."""
        if self._types is None:
            self._types = {}
        if name not in self._types:
            spec = get_job_type(self.settings, name)
            self._types[name] = (spec, load_handler(spec.handler))
        return self._types[name]

    def breakers(self, conn: Redis):
        if self._breakers is None:
            from vq.providers.breaker import Breakers

            self._breakers = Breakers(conn, self.settings)
        return self._breakers

    def gate(self, conn: Redis):
        if self._gate is None:
            from vq.providers.gate import ProviderGate

            self._gate = ProviderGate(conn)
        return self._gate

    @property
    def artifacts_root(self) -> Path:
        """Resolved once per process (a Path built from settings and $HOME: 15 µs a job)."""
        if self._artifacts_root is None:
            self._artifacts_root = artifacts.root(self.settings)
        return self._artifacts_root


_runtime: Runtime | None = None


def install_runtime(settings: Settings) -> None:
    """Called once by each worker process before it takes jobs."""
    global _runtime
    _runtime = Runtime(settings)


def runtime() -> Runtime:
    global _runtime
    if _runtime is None:  # a plain `rq worker` running vq jobs: read settings the usual way
        from vq.config import load_settings

        _runtime = Runtime(load_settings())
    return _runtime


def providers_of(job_type, data: dict, known: list[str] | None = None) -> list[str]:
    """The providers a job may use, in order of preference: the one its data names
    (ai-processing), then its type's. A named one config does not know (`known`; a job
    stored before submissions checked it) is ignored: user data makes no breaker."""
    named = data.get("provider") if isinstance(data, dict) else None
    if not (isinstance(named, str) and named) or (known is not None and named not in known):
        named = None
    return list(dict.fromkeys([*([named] if named else []), *job_type.providers]))


def classify(exc: BaseException, unknown: str = "temporary") -> str:
    """The error category of an exception: handlers' own, timeouts, else the type's rule
    for unknown exceptions (temporary unless configured otherwise)."""
    if isinstance(exc, HandlerError):
        return exc.category
    if isinstance(exc, JobTimeoutException):
        return "timeout"
    return unknown


def error_record(exc: BaseException, unknown: str = "temporary") -> dict:
    """What the job keeps of a failure (shown by `vq show`, used by the worker)."""
    record: dict[str, str | float] = {
        "category": classify(exc, unknown),
        "type": type(exc).__name__,
        "message": message_of(exc) or type(exc).__name__,
    }
    if isinstance(exc, RateLimitError):
        record["retryAfter"] = float(exc.retry_after)
    if isinstance(exc, ProviderError):
        record["provider"] = exc.provider
    return record


def _waited_ms(job) -> int | None:
    """From becoming runnable (enqueued: new, due, retried or requeued) to starting now."""
    return ms_between(job.enqueued_at) if job.enqueued_at else None


BEGUN = "_vq_attempt_begun"  # set on the Job object once begin_attempt has run for it


def begin_attempt(job: Job, pipe) -> None:
    """Count the attempt, reset progress and announce the start, into a pipeline the
    caller executes (vq's worker: with RQ's own start-up writes, one round trip)."""
    job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
    job.meta["progress"] = {"percent": 0.0, "message": None}
    job.meta.pop("error", None)
    pipe.hset(job.key, "meta", private.serialize_meta(job))
    pipe.zrem(keys.ADMITTED, job.id)
    events.emit(
        pipe,
        "started",
        job.id,
        job.meta.get("jobType"),
        attempt=job.meta["attempts"],
        worker=job.worker_name,
        waitMs=_waited_ms(job),
        userId=job.meta.get("userId"),
    )
    setattr(job, BEGUN, True)


def held_resources(job: Job) -> dict:
    """What the job holds of its worker's resources (ctx.resources): read only on a worker
    that has resources, as admission gives them only there (vq/capacity.py)."""
    if capacity.THIS_WORKER is None:
        return {}
    if hasattr(job, capacity.ADMITTED_HELD):  # handed out by admission, with its hash
        return capacity.held_view(getattr(job, capacity.ADMITTED_HELD))
    return capacity.held_view(job.connection.hget(job.key, keys.HELD_FIELD))


def run_job(job_type: str, data: dict) -> dict:
    try:
        return _run_job(job_type, data)
    finally:
        if telemetry.on() and handler_stop.forked_child():
            telemetry.flush()  # its provider calls' spans: the child's exit (os._exit) runs no clean-up


def _run_job(job_type: str, data: dict) -> dict:
    job = get_current_job()
    assert job is not None, "run_job runs inside an RQ worker"
    rt = runtime()
    job_type_spec, handler = rt.job_type(job_type)
    job_logs.install()  # what the handler logs is kept with the job (vq/job_logs.py)
    if not getattr(job, BEGUN, False):  # vq's worker did it in its start-up round trip
        with job.connection.pipeline(transaction=False) as pipe:
            begin_attempt(job, pipe)
            pipe.execute()
    chain = providers_of(job_type_spec, data, providers.known(rt.settings))
    breakers = rt.breakers(job.connection)
    calls = ProviderCalls(job.connection, rt.settings, breakers, rt.gate(job.connection), job, chain)
    ctx = HandlerContext(
        job_id=job.id,
        job_type=job_type,
        user_id=job.meta.get("userId", ""),
        project_id=job.meta.get("projectId"),
        attempt=job.meta["attempts"],
        artifacts_root=rt.artifacts_root,
        log=handler_stop.watch_log(logging.getLogger(f"vq.handler.{job_type}")),  # raises once canceled now
        report_progress=_progress_reporter(job, job_type),
        load_upstream=lambda: upstream_of(job),
        provider_client=calls,
        readable_roots=lambda: readable_roots(job, rt.artifacts_root),
        resources=held_resources(job),
        resumed_from=checkpoints.resumed_state(job.connection, job),  # vq/checkpoints.py
        save_checkpoint=lambda state: checkpoints.save(job.connection, job, rt.settings, state),
        is_canceled=lambda: handler_stop.cancel_asked(job.id),
        stop_if_canceled=handler_stop.stop_if_canceled,
    )
    # Providers a handler does not call through vq (local ones) are checked here, before it
    # runs; HTTP providers when called, by ProviderCalls, which can fail over between them.
    local = [p for p in chain if not providers.is_http(rt.settings, p)]
    try:
        if chain:
            reason = costs.hold_reason(
                job.connection,
                rt.settings,
                job.meta.get("userId") or "_",
                job.meta.get("subscription"),
                job.meta.get("projectId"),
            )
            if reason:
                raise BudgetHeld(
                    f"{reason}; held, looked at again in {BUDGET_RECHECK_S}s", retry_after=BUDGET_RECHECK_S
                )
        for provider in local:
            retry_at = breakers.acquire(provider)
            if retry_at is not None:
                raise ProviderUnavailable(provider, max(0.0, retry_at - time.time()))
        try:
            with (
                handler_stop.interruptible(job.id) as running,
                logs.job_context(  # a lost lease stops it (vq/fence.py)
                    job_id=job.id, job_type=job_type, user_id=ctx.user_id, attempt=ctx.attempt, worker=job.worker_name
                ),
            ):  # the handler's log lines carry its job (vq/logs.py)
                with (
                    capacity.visible_devices(ctx.resources),  # CUDA_VISIBLE_DEVICES, for a process of its own
                    job_logs.capturing(job.connection, job.id, ctx.attempt, rt.settings.limits),  # kept with the job
                ):
                    result = running.call(handler, ctx, protector(rt.settings).unseal(data))
        except MemoryError:
            raise resources.out_of_memory(job_type_spec) from None
        except handler_stop.CanceledNow:  # `vq cancel --now` interrupted it (vq/cancel_now.py)
            handler_stop.settle(threading.get_ident())
            raise JobCanceled("canceled while running (interrupted)") from None
        if handler_stop.cancel_asked(job.id):  # it returned once canceled (it saw ctx.canceled): no result kept
            raise JobCanceled("canceled while running")
        result = storable_result(rt.settings, result)
    except Exception as exc:
        job.meta["error"] = error_record(exc, job_type_spec.unknown_errors)
        if handler_stop.cancel_asked(job.id):  # whatever it raised once canceled now (its timeout, a broken call)
            job.meta["error"] = error_record(JobCanceled("canceled while running"))
        if job.meta["error"]["category"] == "canceled":
            cancel_now.run_cleanups(ctx.cancel_hooks, ctx.log, cancel_now.cleanup_budget_s(rt.settings))
        fence.write_meta(job.connection, job)  # refused if another worker holds the job now
        if isinstance(exc, ProviderError) and not getattr(exc, "accounted", False):
            state = breakers.failure(providers.bounded(rt.settings, exc.provider))
            ctx.log.warning("provider %s failed (%s); its breaker is %s", exc.provider, message_of(exc), state)
        elif not isinstance(exc, (ProviderUnavailable, BudgetHeld, ProviderError)):
            for provider in local:  # the providers answered; the failure was elsewhere
                breakers.success(provider)
        raise
    for provider in local:
        breakers.success(provider)
    return result  # a finished job shows 100% (vq.model); no extra write needed


def storable_result(settings: Settings, result: object) -> dict:
    """A handler's return value as the job's result: an object (None is `{}`, anything
    else `{"value": ...}`) that is strict JSON within `limits.maxResultBytes`; else the
    job fails, permanently (the same input would return the same thing again)."""
    if result is None:
        result = {}
    if not isinstance(result, dict):
        result = {"value": result}
    limit = settings.limits.maxResultBytes
    try:
        jobdata.check(
            result,
            jobdata.RESULT_DEPTH,
            limit,
            "result",
            depth_setting="the deepest a result may nest",
            size_setting="limits.maxResultBytes",
            as_python_json=True,
        )
    except jobdata.TooLarge as exc:
        raise PermanentError(
            f"{exc.message}: write large outputs as artifacts (ctx.artifacts_dir) and return their names"
        ) from None
    except InvalidInput as exc:
        raise PermanentError(f"the handler returned what cannot be stored: {exc.message}") from None
    return result


def _progress_reporter(job: Job, job_type: str):
    last_event = [0.0]

    def report(percent: float, message: str | None) -> None:
        if handler_stop.cancel_asked(job.id) or job.connection.exists(keys.cancel_request(job.id)):
            raise JobCanceled("canceled while running")
        job.meta["progress"] = {"percent": round(percent, 2), "message": message}
        now = time.monotonic()
        event = None
        if percent >= 100 or now - last_event[0] >= PROGRESS_EVENT_INTERVAL:
            last_event[0] = now
            item, _url, fields = events.entry("progress", job.id, job_type, percent=round(percent, 2), message=message)
            event = [part for pair in item.items() for part in pair]
        if not fence.write_meta(job.connection, job, event):  # a stale worker: this attempt is over
            raise handler_stop.LeaseLost(f"job {job.id}: its lease passed to another worker")
        if event is not None:
            events.say("progress", job.id, job_type, fields)

    return report


def readable_roots(job: Job, artifacts_root: Path, most: int = 500) -> list[Path]:
    """The artifact folders a job may read besides its own: those of the jobs it depends
    on, directly or through others (a composition reads the images its scenes used)."""
    seen: set[str] = set()
    frontier = list(job.meta.get("dependsOn") or [])
    while frontier and len(seen) < most:
        frontier = [i for i in dict.fromkeys(frontier) if i not in seen][: most - len(seen)]
        seen.update(frontier)
        found = Job.fetch_many(frontier, connection=job.connection, serializer=JSONSerializer)
        frontier = [d for dep in found if dep is not None for d in (dep.meta.get("dependsOn") or [])]
    return [artifacts_root / job_id for job_id in seen]


def upstream_of(job: Job) -> list[Upstream]:
    ids = list(job.meta.get("dependsOn") or [])
    return upstream_for_ids(job.connection, ids)


def upstream_for_ids(conn: Redis, ids: list[str]) -> list[Upstream]:
    out = []
    for job_id, dep in zip(ids, Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)):
        if dep is None:
            out.append(Upstream(job_id, "", None, None))
            continue
        out.append(Upstream(dep.id, dep.meta.get("jobType", ""), dep.meta.get("step"), result_of(dep)))
    return out
