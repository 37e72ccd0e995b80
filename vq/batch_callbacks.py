"""A batch's callbacks: what one is (a job to submit, or a webhook), and their delivery.

The count that claims a callback (vq/lua/batch_sync.lua) also records it as due, in the
same atomic step; delivering it is this module's: a job by the `batch-callbacks` chore of
any daemon, a webhook by any daemon's webhook notifier (its own process and pool of
senders, so no receiver holds up the daemon's loop). Taking a due callback pushes its due
time a lease into the future (vq/lua/batch_take.lua),
so a daemon killed between the take and the delivery leaves it to be taken again: nothing
claimed is lost. A job callback has a fixed id (`<batch>-<kind>`) and is created only if
no job has that id, so a second delivery makes no second job: exactly once. A webhook is
POSTed at least once (webhooks.attempts, with back-off; X-Vq-Delivery names the callback,
so a receiver can drop a repeat after a crash).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Executor

from redis import Redis

from vq import keys, lua
from vq.config import Settings
from vq.egress import Refused
from vq.errors import InvalidInput, VqError
from vq.replies import optional_text, texts

log = logging.getLogger("vq.batches")
KINDS = ("success", "complete", "death")
LEASE_MS = 60_000  # a taken callback not delivered by then is taken again
TAKE_AT_ONCE = 50


def parse_callback(conn: Redis, settings: Settings, kind: str, spec: object, user_id: str) -> dict:
    """A callback as stored: {"url": URL} or {"jobType": T, "data": {...}}, checked now
    (a webhook's URL against vq/egress.py; a job as its user would submit it). Accepts the
    CLI's text: a URL, or a JSON object with jobType and data."""
    from vq.submission import Submission
    from vq.submission.validation import resolve
    from vq.webhooks import validate_url

    field = f"on{kind.capitalize()}"
    if kind not in KINDS:
        raise InvalidInput(f"callbacks: {kind!r} is not one of {', '.join(KINDS)}", field="callbacks")
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{field}: not valid JSON ({exc.msg} at column {exc.colno})", field=field) from None
            except RecursionError:
                raise InvalidInput(f"{field}: JSON nested too deeply", field=field) from None
        elif "://" in text:
            spec = {"url": text}
        else:  # `--on-complete content-analysis`: a type's name is not a job
            raise InvalidInput(
                f"{field}: expected a webhook URL (http:// or https://) or a job as JSON "
                f"({{\"jobType\": ..., \"data\": {{...}}}}), got {text[:80]!r}",
                field=field,
            )
    if not isinstance(spec, dict):
        raise InvalidInput(
            f"{field}: expected a webhook URL or a job ({{\"jobType\": ..., \"data\": {{...}}}})", field=field
        )
    if "url" in spec:
        if set(spec) != {"url"}:
            raise InvalidInput(f"{field}: a webhook callback has only a url", field=field)
        if not settings.webhooks.enabled:
            raise InvalidInput(
                f"{field}: webhooks.enabled is false, so no daemon would send it; use a job callback", field=field
            )
        return {"url": validate_url(spec["url"], settings, field)}
    unknown = sorted(set(spec) - {"jobType", "data"})
    if unknown or not spec.get("jobType"):
        raise InvalidInput(
            f"{field}: expected a webhook URL or a job ({{\"jobType\": ..., \"data\": {{...}}}})", field=field
        )
    data = spec.get("data", {})
    if not isinstance(data, dict):
        raise InvalidInput(f"{field}: data: expected a JSON object", field=field)
    try:
        resolve(conn, settings, Submission(job_type=spec["jobType"], data=data, user_id=user_id))
    except VqError as exc:
        raise type(exc)(f"{field}: {exc.message}", field=field) from None
    return {"jobType": spec["jobType"], "data": data}


def deliver_jobs(conn: Redis, settings: Settings) -> int:
    """Submit the callback jobs that are due (the `batch-callbacks` chore); how many were taken."""
    taken = _take(conn, keys.BATCHES_DUE)
    for batch_id, kind, spec, entry in taken:
        _submit_job(conn, settings, batch_id, kind, spec, entry)
    return len(taken)


def deliver_webhooks(conn: Redis, settings: Settings, pool: Executor) -> int:
    """Hand the webhook callbacks that are due to `pool` (the webhook notifier's senders),
    without waiting for them; how many were taken."""
    taken = _take(conn, keys.BATCHES_DUE_WEBHOOKS)
    for batch_id, kind, spec, entry in taken:
        pool.submit(_post, conn, settings, batch_id, kind, spec["url"], entry)
    return len(taken)


def _take(conn: Redis, due: str) -> list[tuple[str, str, dict, str]]:
    """(batch id, kind, callback, entry) of each due callback taken from `due` under a lease."""
    now = int(time.time() * 1000)
    entries = texts(lua.script(conn, "batch_take.lua")(keys=[due], args=[now, LEASE_MS, TAKE_AT_ONCE]))
    taken = []
    for entry in entries:
        batch_id, _, kind = entry.partition("|")
        spec_text = optional_text(conn.hget(keys.batch(batch_id), f"cb:{kind}"))
        if spec_text is None:  # the batch is gone
            conn.zrem(due, entry)
            continue
        taken.append((batch_id, kind, json.loads(spec_text), entry))
    return taken


def _submit_job(conn: Redis, settings: Settings, batch_id: str, kind: str, spec: dict, entry: str) -> None:
    from vq import batches
    from vq.submission import Submission, submit

    record = conn.hmget(keys.batch(batch_id), "userId", "subscription")
    job_id = f"{batch_id}-{kind}"
    sub = Submission(
        job_type=spec["jobType"],
        data={**spec.get("data", {}), "batch": {**batches.summary(conn, batch_id), "event": f"batch.{kind}"}},
        user_id=optional_text(record[0]),
        subscription=optional_text(record[1]),
        job_id=job_id,  # created only if absent: a second delivery makes no second job
        privileged=True,
    )
    try:
        submit(conn, settings, sub)
    except VqError as exc:  # the type was removed from the config, the data no longer passes: not retried
        _gave_up(conn, batch_id, kind, entry, exc.message)
        return
    _delivered(conn, batch_id, kind, entry, {"jobId": job_id})


def _post(conn: Redis, settings: Settings, batch_id: str, kind: str, url: str, entry: str) -> None:
    from vq import batches
    from vq.egress import Policy
    from vq.webhooks import post_json, secret_of

    try:
        payload = {"event": f"batch.{kind}", "batch": batches.summary(conn, batch_id)}
        opts = settings.webhooks
        try:
            problem = post_json(
                url,
                payload,
                timeout=opts.timeout / 1000,
                secret=secret_of(settings),
                policy=Policy.of(settings),
                headers={"X-Vq-Delivery": entry},
            )
        except Refused as exc:  # where it points will not change by waiting
            _gave_up(conn, batch_id, kind, entry, exc.message, keys.BATCHES_DUE_WEBHOOKS)
            return
        if problem is None:
            _delivered(conn, batch_id, kind, entry, {"url": url}, keys.BATCHES_DUE_WEBHOOKS)
            return
        attempt = int(conn.hincrby(keys.batch(batch_id), f"attempts:{kind}", 1))
        if attempt >= opts.attempts:
            _gave_up(conn, batch_id, kind, entry, f"{problem} ({attempt} attempts)", keys.BATCHES_DUE_WEBHOOKS)
            return
        wait_ms = opts.backoff * 2 ** (attempt - 1)
        log.info(
            "batch %s: %s webhook failed (%s); attempt %d in %.1fs",
            batch_id,
            kind,
            problem,
            attempt + 1,
            wait_ms / 1000,
        )
        conn.zadd(keys.BATCHES_DUE_WEBHOOKS, {entry: int(time.time() * 1000) + wait_ms})
    except Exception:  # taken again when its lease passes
        log.exception("batch %s: %s webhook delivery failed", batch_id, kind)


def _delivered(conn: Redis, batch_id: str, kind: str, entry: str, how: dict, due: str = keys.BATCHES_DUE) -> None:
    with conn.pipeline() as pipe:
        pipe.hset(keys.batch(batch_id), f"delivered:{kind}", json.dumps({**how, "at": int(time.time() * 1000)}))
        pipe.zrem(due, entry)
        pipe.execute()
    log.info("batch %s: on %s delivered (%s)", batch_id, kind, how.get("jobId") or "webhook")


def _gave_up(conn: Redis, batch_id: str, kind: str, entry: str, why: str, due: str = keys.BATCHES_DUE) -> None:
    with conn.pipeline() as pipe:
        pipe.hset(keys.batch(batch_id), f"undelivered:{kind}", why)
        pipe.zrem(due, entry)
        pipe.execute()
    log.warning("batch %s: on %s not delivered, giving up: %s", batch_id, kind, why)
