"""Checkpoint and resume: a handler saves how far it got (`ctx.checkpoint(state)`), and a later
attempt of the same job (after a retry, a stalled-job recovery, or a requeue at shutdown)
starts with that state (`ctx.resumed_from`). The models are Sidekiq's IterableJob, River's
resumable jobs and Temporal's heartbeat details.

The state is kept in a hash of its own (keys.checkpoint), not in the job's meta: the meta is
read by every listing, a checkpoint only by the job's next attempt. The meta carries a
summary (`checkpoint`: bytes, at, attempt) so that `vq show` can tell, and so that an attempt
reads the hash only when there is one (no extra round trip for jobs that never checkpoint).

A save is fenced by the job's lease (vq/lua/checkpoint.lua, vq/fence.py): a worker that lost
its lease cannot overwrite the checkpoint of the attempt that owns the job now. The hash is
deleted when the job ends for good (finished, failed for good, canceled, removed) and
expires `limits.checkpointTtl` after its last save whatever happens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from redis import Redis

from vq import fence, handler_stop, jobdata, keys, lua
from vq.config import Settings
from vq.errors import InvalidInput, PermanentError
from vq.rq_seam import private

META = "checkpoint"  # in a job's meta: the last checkpoint's summary {bytes, at (epoch ms), attempt}
RESUMED = "resumed"  # in a job's meta: the attempt that started from a checkpoint {attempt, checkpointAt}
STOP_AT_CHECKPOINT = "_vq_stop_at_checkpoint"  # on the Job object: the worker's "stop here?" (vq/rq_seam/worker.py)


class StopAtCheckpoint(BaseException):
    """Raised out of ctx.checkpoint when the worker is stopping and the operator chose to
    stop checkpointing jobs there (daemon.stopAtCheckpoint): the job is requeued and resumes
    from the checkpoint just saved. A BaseException, as LeaseLost is, so that a handler's own
    `except Exception` does not swallow it."""


def encoded(state: object, settings: Settings) -> str:
    """The state as compact JSON within limits.maxCheckpointBytes; else a PermanentError that
    says why (the handler would only save it again)."""
    limit = settings.limits.maxCheckpointBytes
    try:
        jobdata.check(
            {"state": state},
            jobdata.RESULT_DEPTH,
            limit + len('{"state":}'),
            "checkpoint",
            depth_setting="the deepest a checkpoint may nest",
            size_setting="limits.maxCheckpointBytes",
            as_python_json=True,
        )
    except jobdata.TooLarge:
        size = len(json.dumps(state, separators=(",", ":")).encode())
        raise PermanentError(
            f"checkpoint: {size} bytes is over limits.maxCheckpointBytes ({limit}): keep large "
            "state in ctx.artifacts_dir and checkpoint the files' names"
        ) from None
    except InvalidInput as exc:
        raise PermanentError(f"checkpoint: not storable as JSON: {exc.message}") from None
    return json.dumps(state, separators=(",", ":"))


def save(conn: Redis, job, settings: Settings, state: object) -> None:
    """Save the state under the job's lease; LeaseLost if the lease is no longer this
    attempt's (the write is refused and counted), StopAtCheckpoint if the worker is stopping
    here."""
    text = encoded(state, settings)
    at = int(time.time() * 1000)
    attempt = int(job.meta.get("attempts", 0))
    summary = {"bytes": len(text.encode()), "at": at, "attempt": attempt}
    previous = job.meta.get(META)
    job.meta[META] = summary
    written = lua.script(conn, "checkpoint.lua")(
        keys=[job.key, keys.checkpoint(job.id)],
        args=[
            getattr(job, "_vq_lease", None) or "",
            text,
            summary["bytes"],
            at,
            attempt,
            max(1, settings.limits.checkpointTtl // 1000),
            private.serialize_meta(job),
        ],
    )
    if not written:
        job.meta[META] = previous
        fence.refused(job.id, "checkpoint")
        raise handler_stop.LeaseLost(f"job {job.id}: its lease passed to another worker; checkpoint not saved")
    stop_here: Callable[[], bool] | None = getattr(job, STOP_AT_CHECKPOINT, None)
    if stop_here is not None and stop_here():
        raise StopAtCheckpoint(f"job {job.id}: stopped at its checkpoint (the worker is stopping)")


def resumed_state(conn: Redis, job) -> object | None:
    """The state the job's last checkpoint saved, for its new attempt (None: none). Read only
    when the job's meta says there is one; the attempt that resumes is recorded in the meta
    (saved with the attempt's next write)."""
    summary = job.meta.get(META)
    if not isinstance(summary, dict):
        return None
    raw = conn.hget(keys.checkpoint(job.id), "state")
    if raw is None:  # expired (limits.checkpointTtl) or deleted
        job.meta.pop(META, None)
        job.meta.pop(RESUMED, None)
        return None
    job.meta[RESUMED] = {"attempt": job.meta.get("attempts"), "checkpointAt": summary.get("at")}
    fence.write_meta(conn, job)
    return json.loads(raw)


def forget_in(pipe, job_id: str) -> None:
    """The job ended for good: its checkpoint goes (a command in the caller's pipeline)."""
    pipe.delete(keys.checkpoint(job_id))


def has_checkpoint(job) -> bool:
    return isinstance(job.meta.get(META), dict)


def stops_at_checkpoint(settings: Settings, job_type: str) -> bool:
    """Whether a stopping worker requeues a job of this type at its next checkpoint:
    jobTypes.<type>.stopAtCheckpoint, else daemon.stopAtCheckpoint."""
    own = settings.job_types.get(job_type)
    if own is not None and own.stopAtCheckpoint is not None:
        return own.stopAtCheckpoint
    return settings.daemon.stopAtCheckpoint


def view(conn: Redis, job_id: str, meta: dict) -> dict:
    """What `vq show` and GET /api/jobs/{id} tell of a job's checkpoint: `checkpoint`
    ({bytes, at (ISO), attempt}, or None when it has none kept) and `resumed` (the attempt
    that started from one: {attempt, checkpointAt}, or None)."""
    summary = meta.get(META)
    return view_of(meta, isinstance(summary, dict) and bool(conn.exists(keys.checkpoint(job_id))))


def view_of(meta: dict, stored: bool) -> dict:
    """`view`, told whether the job's checkpoint key exists (a caller that reads it anyway)."""
    summary = meta.get(META)
    kept = isinstance(summary, dict) and stored
    resumed = meta.get(RESUMED)
    return {
        "checkpoint": {
            "bytes": summary.get("bytes"),
            "at": _iso(summary.get("at")),
            "attempt": summary.get("attempt"),
        }
        if kept and isinstance(summary, dict)
        else None,
        "resumed": {"attempt": resumed.get("attempt"), "checkpointAt": _iso(resumed.get("checkpointAt"))}
        if isinstance(resumed, dict)
        else None,
    }


def none() -> dict:
    """The same fields for a job Redis no longer has (its checkpoint went with it)."""
    return {"checkpoint": None, "resumed": None}


def _iso(ms: object) -> str | None:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text_of(view: dict) -> str | None:
    """One line for `vq show`'s table: the checkpoint's size and time, and the resume."""
    parts = []
    checkpoint = view.get("checkpoint")
    if checkpoint:
        parts.append(f"{checkpoint['bytes']} bytes at {checkpoint['at']} (attempt {checkpoint['attempt']})")
    resumed = view.get("resumed")
    if resumed:
        parts.append(f"attempt {resumed['attempt']} resumed from the one saved at {resumed['checkpointAt']}")
    return "; ".join(parts) or None
