"""The spans of a job's life, named and described as OpenTelemetry's semantic conventions for
messaging have them: `send <type>` (PRODUCER) when it is created, `wait <type>` from runnable
to started, `process <type>` (CONSUMER) for each attempt; `messaging.system` "vq",
`messaging.destination.name` its type, `messaging.message.id` its id.

The `send` span's context goes into the job's meta (telemetry.META_KEY), so every later span
of the job, in whatever process, is its child: a retry, a delayed or dependent start, a
planned child (whose own `send` is a child of its parent's: a video pipeline is one trace).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import time
from typing import Any

from vq import keys, telemetry

log = logging.getLogger("vq.telemetry")
SYSTEM = "vq"
WAIT_EXPLAINED_AFTER_MS = 50  # a shorter wait was no limit's doing: not looked into
_sending: contextvars.ContextVar[str | None] = contextvars.ContextVar("vq_sending", default=None)


def messaging(operation: str | None, job_type: str, job_id: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": job_type,
        "messaging.message.id": job_id,
    }


def sending(job_type: str, job_id: str, conn=None, depends_on: list[str] | None = None):
    """A submission's PRODUCER span, current while it creates the job (and a plan's children,
    whose own `send` spans it parents), linked to its dependencies' `send` spans when they
    are in other traces. No-op when tracing is off."""
    if not telemetry.on():
        return telemetry._NO_SPAN
    return _sending_span(job_type, job_id, traceparents_of(conn, depends_on) if conn and depends_on else [])


@contextlib.contextmanager
def _sending_span(job_type: str, job_id: str, links: list[str]):
    with telemetry.span(
        f"send {job_type}", kind="producer", attributes=messaging("send", job_type, job_id), links=links
    ) as made:
        token = _sending.set(job_id)
        try:
            yield made
        finally:
            _sending.reset(token)


def batch_sending(count: int):
    """A batch submission's PRODUCER span (`vq submit --batch`, POST /api/jobs/bulk): its
    jobs' `send` spans under it, so that a batch is one trace. No-op when tracing is off."""
    if not telemetry.on():
        return telemetry._NO_SPAN
    return telemetry.span(
        "send",
        kind="producer",
        attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.batch.message_count": count,
        },
    )


def sent(job_type: str, job_id: str) -> str | None:
    """The traceparent for a new job's meta: its `send` span's (the one `sending` opened for
    it, else one recorded now under the current span: a batch's jobs, a plan's children)."""
    if not telemetry.on():
        return None
    if _sending.get() == job_id:
        return telemetry.traceparent()
    now = time.time_ns()
    return telemetry.record(
        f"send {job_type}",
        kind="producer",
        parent=None,
        start_ns=now,
        end_ns=now,
        attributes=messaging("send", job_type, job_id),
    )


def waited(settings, job, number: int, started_ns: int) -> None:
    """The job's `wait` span, from when it became runnable (created, due, retried, requeued)
    to `started_ns`, with `vq.wait.reason` for a wait over WAIT_EXPLAINED_AFTER_MS: the limit
    at its bound as it starts (wait_reasons.held_at_start), read at most once a second per
    type and user (a drain of thousands of jobs costs a few reads a second, not a few per job)."""
    parent = job.meta.get(telemetry.META_KEY)
    if not parent or job.enqueued_at is None:
        return
    from vq.model import as_utc

    start_ns = int(as_utc(job.enqueued_at).timestamp() * 1e9)
    job_type = job.meta.get("jobType") or ""
    attributes = {**messaging(None, job_type, job.id), "vq.job.attempt": number}
    if (started_ns - start_ns) / 1e6 >= WAIT_EXPLAINED_AFTER_MS:
        try:
            attributes["vq.wait.reason"] = _reasons(settings).reason(job_type, job.meta.get("userId") or "_")
        except Exception as exc:  # noqa: BLE001 - a trace goes without the reason, the job never notices
            log.debug("telemetry: no wait reason (%s)", exc)
    telemetry.record(f"wait {job_type}", parent=parent, start_ns=start_ns, end_ns=started_ns, attributes=attributes)


def attempt(job, worker_name: str, number: int, start_ns: int | None = None):
    """The CONSUMER span of one attempt at `job`, current while it runs (its provider calls
    are its children); `ended` tells how it ended. No-op without a traceparent."""
    parent = job.meta.get(telemetry.META_KEY) if telemetry.on() else None
    if not parent:
        return telemetry._NO_SPAN
    job_type = job.meta.get("jobType") or ""
    return telemetry.current_span(
        f"process {job_type}",
        kind="consumer",
        parent=parent,
        start_time=start_ns,  # where its wait ended
        attributes={
            **messaging("process", job_type, job.id),
            "messaging.client.id": worker_name,  # the host is the resource's host.name
            "vq.job.attempt": number,
        },
    )


def ended(made, job, refresh: bool, conn=None) -> None:
    """An attempt span's outcome (finished, retrying, failed, canceled ...) and its error's
    category, as the job's hash has them (`refresh`: re-read, when a forked child wrote them);
    with `conn`, the attempt offered as its run-time bucket's exemplar (vq/exemplars.py)."""
    if made is None:
        return
    context = made.get_span_context()
    if conn is not None and context.trace_flags.sampled and hasattr(made, "start_ns"):
        from vq import exemplars

        try:
            exemplars.offer(
                conn,
                job.meta.get("jobType") or "",
                (time.time_ns() - made.start_ns) / 1e6,
                f"{context.trace_id:032x}",
                f"{context.span_id:016x}",
            )
        except Exception as exc:  # noqa: BLE001 - an exemplar is never worth a job's end
            log.debug("telemetry: no exemplar (%s)", exc)
    status = job.get_status(refresh=refresh)
    error = (job.get_meta(refresh=True) if refresh else job.meta).get("error")
    outcome = getattr(status, "value", status) or "unknown"
    if outcome in ("scheduled", "queued", "deferred"):
        outcome = "retrying" if error else "requeued"
    made.set_attribute("vq.job.outcome", outcome)
    if error:
        made.set_attribute("error.type", error.get("category") or "error")
        made.set_attribute("vq.error.category", error.get("category") or "")
        if error.get("provider"):
            made.set_attribute("vq.provider", error["provider"])
        telemetry.failed(made, (error.get("message") or "")[:200])


def delivering(conn, job_id: str, url: str, attempt: int):
    """A webhook delivery's CLIENT span, a child of the job's `send` span (None when untraced)."""
    parent = traceparent_of(conn, job_id) if telemetry.on() else None
    if not parent:
        return telemetry._NO_SPAN
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return telemetry.span(
        "POST",
        kind="client",
        parent=parent,
        attributes={
            "http.request.method": "POST",
            "server.address": parts.hostname,
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            "url.scheme": parts.scheme,  # no path or query: they may carry a token
            "vq.webhook.attempt": attempt,
            "messaging.message.id": job_id,
        },
    )


def delivered(made, problem: str | None) -> None:
    """A delivery span's end: why it failed, when it did (`post_json`'s one line)."""
    if made is not None and problem:
        made.set_attribute("error.type", problem.split()[-1] if problem.startswith("HTTP ") else "connection")
        telemetry.failed(made, problem)


def traceparent_of(conn, job_id: str) -> str | None:
    """A job's traceparent, read from its hash (the webhook notifier has only its id)."""
    return _traceparent_in(conn.hget(keys.rq_job(job_id), "meta"))


def traceparents_of(conn, job_ids: list[str]) -> list[str]:
    """The traceparents of the jobs that have one (a dependent's dependencies), one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids[:32]:  # a span's links are bounded (the SDK keeps 128)
            pipe.hget(keys.rq_job(job_id), "meta")
        found = [_traceparent_in(raw) for raw in pipe.execute()]
    return [tp for tp in found if tp]


def _traceparent_in(raw) -> str | None:
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        return None
    found = meta.get(telemetry.META_KEY) if isinstance(meta, dict) else None
    return found if isinstance(found, str) else None


class _Reasons:
    """This process's wait reasons, by type and user, each kept for FRESH_S; the limits in
    force kept as long. Its own Redis client: the worker's may be fencing its pipelines."""

    FRESH_S = 1.0

    def __init__(self, settings):
        from vq.connection import make_client

        self.settings = settings
        self.conn = make_client(settings)
        self.known: dict[tuple[str, str], tuple[float, str]] = {}
        self.in_force: tuple[float, dict] = (float("-inf"), {})

    def reason(self, job_type: str, user: str) -> str:
        from vq import limits
        from vq.wait_reasons import held_at_start

        now = time.monotonic()
        at, reason = self.known.get((job_type, user), (float("-inf"), ""))
        if now - at <= self.FRESH_S:
            return reason
        if now - self.in_force[0] > self.FRESH_S:
            self.in_force = (now, limits.effective(self.conn, self.settings))
        reason = held_at_start(self.conn, self.settings, job_type, user, self.in_force[1])
        if len(self.known) > 10_000:
            self.known.clear()
        self.known[(job_type, user)] = (now, reason)
        return reason


_reasons_by_pid: dict[int, _Reasons] = {}


def _reasons(settings) -> _Reasons:
    found = _reasons_by_pid.get(os.getpid())
    if found is None:
        found = _reasons_by_pid[os.getpid()] = _Reasons(settings)
    return found
