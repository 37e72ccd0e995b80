"""Webhooks: a job's `webhookUrl` is POSTed the job's JSON when it ends (finished, failed
for good, or canceled); health alerts use the same sender.

Delivery never slows a worker: the worker adds the ended event of a job with a URL to a
stream of its own, and each daemon's notifier reads that stream in a Redis consumer group,
so every event is handled by one daemon (and jobs without a URL cost the notifiers nothing).
A delivery that fails (network error, timeout, non-2xx) is retried with exponential
back-off up to `webhooks.attempts` times; an event whose notifier died is claimed by
another after `CLAIM_IDLE_MS`. A URL that points at an internal address (vq/egress.py) is
refused when the job is submitted and again, after DNS, at each delivery: such a delivery
is logged once and not retried. Bodies are signed when `webhooks.secret` is set:
`X-Vq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import redis
from redis import Redis

from vq import events, keys, telemetry
from vq.config import Settings
from vq.egress import Policy, Refused, connection
from vq.errors import InvalidInput
from vq.replies import members
from vq.stopping import Stoppable
from vq.telemetry import jobs as trace_jobs

log = logging.getLogger("vq.webhooks")

GROUP = "vq-webhooks"
ENDED = ("finished", "failed", "canceled")
CLAIM_IDLE_MS = 60_000  # an event read but not handled for this long was dropped by a dead notifier
MAX_URL = 2048


def validate_url(url: object, settings: Settings, field: str = "webhookUrl") -> str:
    """An http(s) URL with a host that is not internal (vq/egress.py), or one line naming
    what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput(f"{field}: expected an http:// or https:// URL", field=field)
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{field}: {url[:80]!r} is not an http:// or https:// URL", field=field)
    if len(url) > MAX_URL:
        raise InvalidInput(f"{field}: longer than {MAX_URL} characters", field=field)
    try:
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        raise InvalidInput(
            f"{field}: {url[:80]!r} has a port that is not a number from 0 to 65535", field=field
        ) from None
    Policy.of(settings).check_url(url.strip(), field)
    return url.strip()


def signature(secret: str, body: bytes, at: int) -> str:
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def post_json(
    url: str,
    payload: dict,
    *,
    timeout: float,
    secret: str | None = None,
    agent: str = "vq-webhook",
    policy: Policy | None = None,
    headers: dict[str, str] | None = None,
) -> str | None:
    """POST `payload`; None when the receiver answered 2xx, else why not (one line). With a
    `policy` (a URL a user gave) the connection goes only where it allows: else `Refused`."""
    body = json.dumps(payload, default=str, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": agent, **(headers or {})}
    if secret:
        headers["X-Vq-Signature"] = signature(secret, body, int(time.time()))
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn = connection(url, policy, timeout)
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            response.read(65536)
        finally:
            conn.close()
    except Refused:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return str(exc) or type(exc).__name__
    return None if 200 <= response.status < 300 else f"HTTP {response.status}"


def secret_of(settings: Settings) -> str | None:
    return settings.webhooks.secret or os.environ.get("VQ_WEBHOOK_SECRET") or None


class Notifier(Stoppable):
    """One daemon's share of job webhook deliveries."""

    def __init__(self, conn: Redis, settings: Settings, consumer: str):
        self.conn = conn
        self.settings = settings
        self.consumer = consumer
        self.policy = Policy.of(settings)
        self.pool = ThreadPoolExecutor(max_workers=settings.webhooks.concurrency, thread_name_prefix="vq-webhook")
        self.last_claim = 0.0
        self.group_ready = False
        self.stopped = False

    def run(self) -> None:
        """Deliver until stopped; an unreachable Redis is waited out, said once."""
        down = False
        while not self.stopped:
            try:
                self.run_once()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not down:
                    log.warning(
                        "webhooks: Redis unreachable (%s); retrying", str(exc).splitlines()[0] if str(exc) else exc
                    )
                down = True
                self.until_stopped(time.sleep, 1)
                continue
            if down:
                log.info("webhooks: Redis reachable again")
                down = False
        self.pool.shutdown(wait=True)

    def _ensure_group(self) -> None:
        """The consumer group, made once (new events only) and again if Redis lost it."""
        if self.group_ready:
            return
        try:
            self.conn.xgroup_create(keys.WEBHOOK_EVENTS, GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.group_ready = True

    def run_once(self, block_ms: int = 1000) -> int:
        """Deliver what is due: retries, events a dead notifier left, new events."""
        self._ensure_group()
        try:
            return self._run_once(block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.group_ready = False  # Redis restarted without its data
            return 0

    def _run_once(self, block_ms: int) -> int:
        from vq.batch_callbacks import deliver_webhooks

        handled = self._retry_due() + deliver_webhooks(self.conn, self.settings, self.pool)  # vq batch's
        if time.monotonic() - self.last_claim > CLAIM_IDLE_MS / 4000:
            self.last_claim = time.monotonic()
            _next, claimed, *_ = self.conn.xautoclaim(
                keys.WEBHOOK_EVENTS, GROUP, self.consumer, CLAIM_IDLE_MS, "0-0", count=100
            )
            handled += self._handle(events.parse([(keys.WEBHOOK_EVENTS, [c for c in claimed if c[1]])]))
        # A wait: the stop signal ends it (vq/stopping.py); entries it had just read stay pending and are claimed.
        fresh = self.until_stopped(
            self.conn.xreadgroup, GROUP, self.consumer, {keys.WEBHOOK_EVENTS: ">"}, count=200, block=block_ms
        )
        return handled + self._handle(events.parse(fresh))

    def _handle(self, batch: list[dict]) -> int:
        wanted = [(e, ended) for e in batch if e.get("url") and (ended := _ended_as(e))]
        futures = [self.pool.submit(self._deliver, e["jobId"], e["url"], ended, 1) for e, ended in wanted]
        for future in futures:
            future.result()
        if batch:  # handled (a failed delivery is in WEBHOOK_RETRIES now): the entries can go
            ids = [e["id"] for e in batch]
            with self.conn.pipeline(transaction=False) as pipe:
                pipe.xack(keys.WEBHOOK_EVENTS, GROUP, *ids)
                pipe.xdel(keys.WEBHOOK_EVENTS, *ids)
                pipe.execute()
        return len(wanted)

    def _retry_due(self) -> int:
        due = members(self.conn.zrangebyscore(keys.WEBHOOK_RETRIES, "-inf", time.time() * 1000, start=0, num=50))
        mine = [raw for raw in due if self.conn.zrem(keys.WEBHOOK_RETRIES, raw)]  # ZREM decides who sends it
        for raw in mine:
            item = json.loads(raw)
            self.pool.submit(self._deliver, item["jobId"], item["url"], item["event"], item["attempt"]).result()
        return len(mine)

    def _deliver(self, job_id: str, url: str, event: str, attempt: int) -> None:
        from vq import jobs
        from vq.errors import NotFound

        try:
            payload: dict[str, Any] = {
                "event": f"job.{event}",
                "job": jobs.show(self.conn, job_id, self.settings, explain=False),
            }
        except NotFound:
            payload = {"event": f"job.{event}", "job": {"id": job_id, "status": event}}
        opts = self.settings.webhooks
        try:
            with trace_jobs.delivering(self.conn, job_id, url, attempt) as span:  # a CLIENT span, when traced
                problem = post_json(
                    url,
                    payload,
                    timeout=opts.timeout / 1000,
                    secret=secret_of(self.settings),
                    policy=self.policy,
                    headers=telemetry.inject({}) if span is not None else None,
                )
                trace_jobs.delivered(span, problem)
        except Refused as exc:  # where it points will not change by waiting: not retried
            log.warning("job %s: webhook %s refused, not sent: %s", job_id, _host(url), exc.message)
            events.emit(self.conn, "webhook-failed", job_id, payload["job"].get("jobType"), error=exc.message)
            return
        if problem is None:
            log.info("job %s: webhook %s delivered (attempt %d)", job_id, _host(url), attempt)
            return
        if attempt >= opts.attempts:
            log.warning("job %s: webhook %s failed %d times, giving up: %s", job_id, _host(url), attempt, problem)
            events.emit(self.conn, "webhook-failed", job_id, payload["job"].get("jobType"), error=problem)
            return
        wait_ms = opts.backoff * 2 ** (attempt - 1)
        log.info(
            "job %s: webhook %s failed (%s); attempt %d in %.1fs",
            job_id,
            _host(url),
            problem,
            attempt + 1,
            wait_ms / 1000,
        )
        item = json.dumps({"jobId": job_id, "url": url, "event": event, "attempt": attempt + 1})
        self.conn.zadd(keys.WEBHOOK_RETRIES, {item: time.time() * 1000 + wait_ms})


def _ended_as(event: dict) -> str | None:
    """How the event's job ended, if it did (a cached job is created finished)."""
    if event["event"] in ENDED:
        return event["event"]
    if event["event"] == "created" and event["fields"].get("status") in ENDED:
        return event["fields"]["status"]
    return None


def _host(url: str) -> str:
    """Host and port only: the rest of a URL (user info, path, query) may carry tokens."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2]
