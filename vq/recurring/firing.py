"""Firing recurring jobs: every daemon's timer calls a `Spawner`, which fires what is due.

For a due definition a daemon takes a short lease, creates the tick's job with an id derived
from (definition, tick) unless that job already exists, then advances the next tick with a
compare-and-set. So a daemon that dies mid-tick leaves the tick to the next daemon, which finds
the job if it was made (nothing doubles) and makes it if not (nothing is lost).

Spawned jobs go through `submission.submit`, admission included, like any other job. The
definitions themselves live in vq/recurring/definitions.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime

from redis import Redis
from rq.job import Job

from vq import keys
from vq.config import Settings
from vq.errors import Conflict, InvalidInput, NotFound, PermanentError
from vq.model import iso
from vq.recurring.cron import due_ticks, next_after
from vq.recurring.definitions import Recurring, get
from vq.replies import scored
from vq.submission import submit

log = logging.getLogger("vq.recurring")
RETRY_HELD_SECONDS = 0.05  # a due definition another daemon holds is looked at again this soon

_ADVANCE = """
-- KEYS: due zset, stats hash; ARGV: id, expected tick ms, next tick ms, missed count
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not current or tonumber(current) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[2], 'missed', ARGV[4]) end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


def tick_job_id(recurring_id: str, tick_ms: int) -> str:
    """The one job id a tick may have: a second attempt at the tick finds the first's job."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"vq:recurring:{recurring_id}:{tick_ms}").hex


class Spawner:
    """Fires due ticks; one per daemon, called from its timer."""

    def __init__(self, conn: Redis, settings: Settings):
        self.conn = conn
        self.settings = settings
        self._advance = conn.register_script(_ADVANCE)
        self._release = conn.register_script(_RELEASE)
        self.owner = uuid.uuid4().hex

    def __call__(self) -> float | None:
        """Fire what is due; return when the next tick is due (epoch seconds) or None."""
        now = _now_ms()
        for recurring_id, score in scored(
            self.conn.zrangebyscore(keys.RECURRING_DUE, "-inf", now, start=0, num=100, withscores=True)
        ):
            self._fire_if_free(recurring_id, int(score))
        first = scored(self.conn.zrange(keys.RECURRING_DUE, 0, 0, withscores=True))
        if not first:
            return None
        due = first[0][1] / 1000
        return max(due, time.time() + RETRY_HELD_SECONDS) if due * 1000 <= _now_ms() else due

    def _fire_if_free(self, recurring_id: str, tick_ms: int) -> None:
        lease = keys.recurring_lease(recurring_id)
        if not self.conn.set(lease, self.owner, nx=True, px=self.settings.recurring.lease):
            return  # another daemon is firing it
        try:
            self._fire(recurring_id, tick_ms)
        finally:
            self._release(keys=[lease], args=[self.owner])

    def _fire(self, recurring_id: str, first_ms: int) -> None:
        raw = self.conn.hget(keys.RECURRING, recurring_id)
        if raw is None:  # removed meanwhile
            self.conn.zrem(keys.RECURRING_DUE, recurring_id)
            return
        definition = Recurring.from_json(raw)
        policy = self.settings.recurring
        now = _now_ms()
        limit = policy.maxCatchUp if definition.catchUp == "all" else 1
        ticks, more = due_ticks(definition.cronExpression, definition.tz, first_ms, now, limit)
        fire = ticks
        if definition.catchUp == "none" and ticks and now - ticks[-1] > policy.misfireGrace:
            fire = []
        missed = len(ticks) - len(fire)
        if more:  # count the rest, up to a bound, for the record
            missed = len(due_ticks(definition.cronExpression, definition.tz, first_ms, now, 10_000)[0]) - len(fire)
        for tick in fire:
            self._spawn(definition, tick)
        if missed:
            log.warning(
                "recurring %s: %s missed tick(s) not run (catch_up %s)",
                definition.id,
                f"more than {missed}" if more and definition.catchUp == "all" else missed,
                definition.catchUp,
            )
        upcoming = next_after(definition.cronExpression, definition.tz, now)
        self._advance(
            keys=[keys.RECURRING_DUE, keys.recurring_stats(recurring_id)],
            args=[recurring_id, first_ms, upcoming, missed],
        )
        self.conn.zremrangebyrank(keys.recurring_runs(recurring_id), 0, -policy.keepRuns - 1)

    def _spawn(self, definition: Recurring, tick_ms: int) -> None:
        job_id = tick_job_id(definition.id, tick_ms)
        if self.conn.zscore(keys.recurring_runs(definition.id), job_id) is not None or self.conn.exists(
            Job.key_for(job_id)
        ):
            return  # an earlier attempt at this tick made it
        try:
            spawn(self.conn, self.settings, definition, job_id, tick_ms)
        except (InvalidInput, NotFound, Conflict, PermanentError) as exc:  # the job is refused; an outage propagates
            log.warning(
                "recurring %s: tick %s not run: %s",
                definition.id,
                iso(datetime.fromtimestamp(tick_ms / 1000, UTC)),
                exc,
            )


def spawn(
    conn: Redis, settings: Settings, definition: Recurring, job_id: str | None = None, tick_ms: int | None = None
) -> str:
    """Submit one job of `definition` and record it as its latest run: the one path both a
    tick and `run_now` take. A refused job is recorded as the last error and raised."""
    try:
        job_id = submit(conn, settings, definition.submission(settings, job_id, tick_ms))
    except (InvalidInput, NotFound, Conflict, PermanentError) as exc:
        conn.hset(keys.recurring_stats(definition.id), "lastError", str(exc))
        raise
    now = iso(datetime.now(UTC))
    conn.hset(keys.recurring_stats(definition.id), mapping={"lastRunAt": now, "lastJobId": job_id})
    return job_id


def run_now(conn: Redis, settings: Settings, ref: str) -> str:
    """Run a recurring job now, outside its schedule (Sidekiq-cron's "Enqueue now"): one job
    like a tick's, with a fresh id; the next scheduled run is left as it was. Returns its id."""
    return spawn(conn, settings, get(conn, ref))
