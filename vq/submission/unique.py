"""Unique jobs: one job per key, in three modes (README: Unique jobs).

- simple:   while the job a key names is waiting or running, a new submission with the key
            returns that job instead of making another;
- throttle: one job per key per window (`uniqueFor`): inside it, the key's job is returned,
            whatever its state;
- debounce: while the key's job is still delayed, a new submission replaces its data and
            pushes its start back by `debounce`, never past `debounceMax` after the first
            submission; once it is due or running, a new submission makes a new job.

The key (`vq:unique:<type>:<user or *>|<key>`) names the job it holds for. Whether it
holds is decided when it is read, from that job's status: a job that ended, however it
ended (finished, failed for good, canceled, removed, expired, or failed by the stalled-job
chore after a crash), no longer holds its key, so no end path has to remember to release
it and a crash cannot leak it. The key's expiry is a safety net for memory only (the
window in throttle mode; otherwise the job's start plus `limits.uniqueKeyTtl`).

The read, the decision and the write are one WATCHed transaction on the key and the job's
hash (every change of a job's status writes its hash), so concurrent submitters on any host
agree: each retries on a conflict and sees the other's job.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis, WatchError
from redis.client import Pipeline
from rq.job import Job

from vq import keys
from vq.durations import parse_duration_ms
from vq.errors import Conflict, InvalidInput
from vq.model import iso
from vq.replies import optional_text

MODES = ("simple", "throttle", "debounce")
SCOPES = ("user", "global")
ENDED = {"finished", "failed", "canceled", "stopped"}
UNIQUE_FIELDS = ("uniqueKey", "uniqueFor", "debounce", "debounceMax", "uniqueScope")
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,199}$"
MAX_KEY = 200
ATTEMPTS = 50  # WATCH conflicts one submission may meet before it gives up (409)


@dataclass
class UniqueRequest:
    """What a submission asked for (unchecked)."""

    key: str
    for_ms: int | None = None
    debounce_ms: int | None = None
    debounce_max_ms: int | None = None
    scope: str | None = None


@dataclass(frozen=True)
class UniqueSpec:
    """A checked request: its mode, its scope and the Redis key it claims."""

    key: str
    mode: str
    scope: str
    owner: str  # the user id, or "*" for a global key
    for_ms: int | None = None
    debounce_ms: int | None = None
    debounce_max_ms: int | None = None

    def redis_key(self, job_type: str) -> str:
        return keys.unique(job_type, self.owner, self.key)

    def meta(self, first_ms: int) -> dict:
        """What the job's meta keeps (`vq show`), and the debounce's first submission time."""
        out: dict = {"key": self.key, "mode": self.mode, "scope": self.scope, "firstMs": first_ms}
        for name, value in (
            ("forMs", self.for_ms),
            ("debounceMs", self.debounce_ms),
            ("debounceMaxMs", self.debounce_max_ms),
        ):
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class Submitted:
    """A submission's answer: the job's id, and `outcome` when a unique key was given:
    "created", "existing" (deduplicated: an existing job returned) or "debounced" (the
    existing delayed job took this submission's data and a later start)."""

    id: str
    outcome: str | None = None

    @property
    def deduplicated(self) -> bool:
        return self.outcome in ("existing", "debounced")


def request_from(obj: dict, options: dict | None = None) -> UniqueRequest | None:
    """The unique fields of a JSON submission (top level), or of a template's or recurring
    definition's `options`; None when no field is given (a field without uniqueKey is refused)."""
    source = {**(options or {}), **{k: obj[k] for k in UNIQUE_FIELDS if k in obj}}
    given = {k: source[k] for k in UNIQUE_FIELDS if source.get(k) is not None}
    if not given:
        return None
    key = given.get("uniqueKey")
    if key is None:
        first = next(iter(given))
        raise InvalidInput(f"{first}: only with uniqueKey", field=first)
    if not isinstance(key, str):
        raise InvalidInput("uniqueKey: expected a string", field="uniqueKey")
    scope = given.get("uniqueScope")
    if scope is not None and not isinstance(scope, str):
        raise InvalidInput("uniqueScope: expected user or global", field="uniqueScope")
    return UniqueRequest(
        key=key,
        for_ms=_duration(given, "uniqueFor"),
        debounce_ms=_duration(given, "debounce"),
        debounce_max_ms=_duration(given, "debounceMax"),
        scope=scope,
    )


def _duration(given: dict, name: str) -> int | None:
    value = given.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"{name}: expected a duration such as 30s, 10m or milliseconds", field=name)
    return parse_duration_ms(value, name)


def checked(
    req: UniqueRequest, *, user_id: str, default_scope: str, privileged: bool, delayed: bool, depends: bool
) -> UniqueSpec:
    """The request checked: one clear refusal per wrong combination."""
    if not isinstance(req.key, str) or len(req.key) > MAX_KEY:
        raise InvalidInput(f"uniqueKey: longer than {MAX_KEY} characters", field="uniqueKey")
    if not re.match(KEY_PATTERN, req.key):
        raise InvalidInput(
            f"uniqueKey: {req.key!r} is not a valid key (letters, digits, . _ @ : / -, starting with a letter or digit)",
            field="uniqueKey",
        )
    for name, value in (("uniqueFor", req.for_ms), ("debounce", req.debounce_ms), ("debounceMax", req.debounce_max_ms)):
        if value is not None and value <= 0:
            raise InvalidInput(f"{name}: must be longer than 0", field=name)
    if req.for_ms is not None and req.debounce_ms is not None:
        raise InvalidInput("uniqueFor: give either uniqueFor (throttle) or debounce, not both", field="uniqueFor")
    if req.debounce_max_ms is not None and req.debounce_ms is None:
        raise InvalidInput("debounceMax: only with debounce", field="debounceMax")
    if req.debounce_max_ms is not None and req.debounce_ms is not None and req.debounce_max_ms < req.debounce_ms:
        raise InvalidInput("debounceMax: shorter than debounce", field="debounceMax")
    if req.debounce_ms is not None and delayed:
        raise InvalidInput("debounce: the debounce sets the start; not with delay or at", field="debounce")
    if depends:
        raise InvalidInput("uniqueKey: not with dependsOn", field="uniqueKey")
    scope = req.scope or default_scope
    if scope not in SCOPES:
        raise InvalidInput(f"uniqueScope: {scope!r} is not one of user, global", field="uniqueScope")
    if req.scope is not None and req.scope != default_scope and not privileged:
        from vq.tokens import Forbidden  # here: the token library is no import of every `vq submit`

        raise Forbidden("uniqueScope: only an operator may choose the scope", field="uniqueScope")
    mode = "debounce" if req.debounce_ms is not None else "throttle" if req.for_ms is not None else "simple"
    return UniqueSpec(
        key=req.key,
        mode=mode,
        scope=scope,
        owner=user_id if scope == "user" else "*",
        for_ms=req.for_ms,
        debounce_ms=req.debounce_ms,
        debounce_max_ms=req.debounce_max_ms,
    )


def _holder(pipe: Pipeline, spec: UniqueSpec, name: str) -> tuple[str, dict, dict] | None:
    """The job the key names, WATCHed, with its status and meta, if it still holds the key
    in this mode; None when the key is free."""
    existing = optional_text(pipe.get(name))
    if not existing:
        return None
    job_key = Job.key_for(existing)
    pipe.watch(job_key)
    status, meta_text, origin, started = (
        optional_text(v) for v in pipe.hmget(job_key, "status", "meta", "origin", "started_at")
    )
    if status is None:
        return None  # removed or trimmed
    meta = json.loads(meta_text) if meta_text else {}
    fields = {"status": status, "origin": origin or ""}
    if spec.mode == "throttle":
        return existing, fields, meta  # the window is the key's expiry, whatever the job's state
    if spec.mode == "debounce":
        # still delayed and never started (a retry waiting out its backoff has: it is not joined)
        return (existing, fields, meta) if status == "scheduled" and not started else None
    return None if status in ENDED else (existing, fields, meta)


def claim(
    conn: Redis,
    spec: UniqueSpec,
    job_type: str,
    job_id: str,
    *,
    hold_ms: int,  # the key's safety expiry (not throttle): the job's start from now plus limits.uniqueKeyTtl
    create: Callable[[Pipeline, dict], None],
    debounce_into: Callable[[Pipeline, str, dict, dict, datetime], None],
) -> Submitted:
    """Create the job (`create(pipe, unique_meta)` queues its commands) and take the key for
    it; or return the job that holds the key; or (debounce) move this submission into it
    (`debounce_into(pipe, job_id, fields, meta, start)`). One WATCHed transaction, retried."""
    name = spec.redis_key(job_type)
    for _ in range(ATTEMPTS):
        with conn.pipeline() as pipe:
            try:
                pipe.watch(name, Job.key_for(job_id))
                if pipe.exists(Job.key_for(job_id)):
                    return Submitted(job_id, "existing")  # a fixed id (a recurring tick) made meanwhile
                now_ms = int(time.time() * 1000)
                held = _holder(pipe, spec, name)
                if held is not None and spec.mode != "debounce":
                    return Submitted(held[0], "existing")
                if held is not None:
                    existing, fields, meta = held
                    unique_meta = dict(meta.get("unique") or {})
                    start_ms = _debounced_start(spec, unique_meta.get("firstMs", now_ms), now_ms)
                    unique_meta.update(submissions=int(unique_meta.get("submissions", 1)) + 1, lastMs=now_ms)
                    meta["unique"] = unique_meta
                    start = datetime.fromtimestamp(start_ms / 1000, UTC)
                    meta["scheduledFor"] = iso(start)
                    pipe.multi()
                    debounce_into(pipe, existing, fields, meta, start)
                    pipe.pexpire(name, hold_ms)  # the start moved no further than a debounce from now
                    pipe.execute()
                    return Submitted(existing, "debounced")
                pipe.multi()
                create(pipe, spec.meta(now_ms) | {"submissions": 1})
                pipe.set(name, job_id, px=spec.for_ms if spec.mode == "throttle" and spec.for_ms else hold_ms)
                pipe.execute()
                return Submitted(job_id, "created")
            except WatchError:
                continue
    raise Conflict(f"uniqueKey: {spec.key!r} is being submitted concurrently; try again", field="uniqueKey")


def _debounced_start(spec: UniqueSpec, first_ms: int, now_ms: int) -> int:
    """Now plus the debounce, but never later than debounceMax after the first submission."""
    start = now_ms + (spec.debounce_ms or 0)
    if spec.debounce_max_ms is not None:
        start = min(start, int(first_ms) + spec.debounce_max_ms)
    return start


def first_start(spec: UniqueSpec) -> datetime | None:
    """A debounced job's start when it is made: a debounce from now."""
    if spec.mode != "debounce" or not spec.debounce_ms:
        return None
    return datetime.fromtimestamp(time.time() + spec.debounce_ms / 1000, UTC)
