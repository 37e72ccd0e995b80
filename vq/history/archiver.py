"""The archiver: the one reader that turns the `vq:events` stream into history and metrics.

One archiver runs at a time across all daemons (a Redis lease, `vq:archiver:leader`). It
reads events in stream order, in batches, and for each batch:

1. writes job_history rows (keyed by the event's stream id, so a batch written twice adds
   nothing), updates render_jobs and job_dependencies, and stores the last id written, all
   in one SQLite transaction (vq/history/rows.py knows the rows);
2. adds the batch's metric increments (vq/metrics.py) and stores the last id counted, in
   one Redis transaction.

Each side remembers its own position, so a crash between the two redoes only the side
that did not finish: every transition is recorded exactly once. Then it trims the stream
up to what both have kept (less a margin for live readers). Workers never write SQLite.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import redis
from redis import Redis

from vq import costs, events, job_log_store, keys, metrics, presence, worker_series
from vq.config import Settings
from vq.errors import HistoryElsewhere, HistoryUnavailable
from vq.history import db as historydb
from vq.history import lease as archiver_lease
from vq.history import rows as archive_rows
from vq.history import search
from vq.history.db import open_db, path_for
from vq.replies import optional_text
from vq.stopping import Stoppable

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger("vq.archiver")
LEASE_MS = 15_000
RENEW_EVERY = 5.0  # seconds between lease renewals (a third of the lease)
TRIM_MARGIN_MS = 10 * 60_000  # events stay in the stream this long after archiving, for live readers
AGGREGATE_EVERY = 60.0
LOGS_EVERY = 0.5  # seconds between copies of the logs of jobs seen ending (vq/job_log_store.py)
LOGS_SWEEP_EVERY = 30.0  # seconds between steps of the pending set's walk, for ends not seen
LOGS_PER_PASS = 1000  # jobs seen ending whose logs one pass copies at most (the events go first)
LOGS_DUE_MOST = 100_000  # jobs seen ending remembered at most (beyond: the walk finds them)
PRUNE_EVERY = 3600.0
RETRY_MAX = 10.0  # s between tries at most while the history database cannot be used


def _id_tuple(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Archiver(Stoppable):
    def __init__(self, conn: Redis, settings: Settings, open_now: bool = True):
        self.conn = conn
        self.settings = settings
        self.db: Database | None = None  # set by `open`
        self.db_id: str | None = None  # the open file's id (vq/archiver_lease.py)
        self.path = str(path_for(settings).resolve())
        if open_now:
            self.open()
        self.owner = uuid.uuid4().hex
        self._last_aggregate = 0.0
        self._last_prune = 0.0
        self._last_logs = 0.0
        self._last_sweep = 0.0
        self._sweep_cursor = 0
        self._first_walk = True  # the first round over the pending set goes a step per pass: ends not seen
        self._logs_due: dict[str, None] = {}  # jobs seen ending, in order: their logs are copied next
        self._backfill: dict | None = None  # the walk copying data for new indexed fields (vq/history/reindex.py)
        self._backfill_checked = False
        self._gap_reported = ""
        self._standing_by = ""  # why the last try did not get the lease, to log each reason once
        self.problem: str | None = None  # why the history database cannot be used, said once
        self._published: str | None = None  # the problem as published for health and doctor
        self._unusable_since = 0
        self._retry_in = 0.0  # seconds between tries while the database cannot be used
        self.stopped = False

    def open(self) -> None:
        """Open the history database (HistoryUnavailable, one line, when it cannot be)."""
        db = open_db(self.settings)
        try:
            self.db_id = archiver_lease.file_id(db)
        except Exception as exc:
            db.conn.close()
            if historydb.unusable(exc):
                raise HistoryUnavailable(historydb.problem(self.settings, exc)) from None
            raise
        self.db = db

    @property
    def database(self) -> Database:
        """The open history database: every step that reads or writes it runs after `open`."""
        if self.db is None:
            raise RuntimeError("archiver: the history database is not open")
        return self.db

    @property
    def file_id(self) -> str:
        """The open history file's id, set by `open` with the database."""
        if self.db_id is None:
            raise RuntimeError("archiver: the history database is not open")
        return self.db_id

    # --- positions ---------------------------------------------------------------------
    def written_id(self) -> str:
        row = self.database.execute("SELECT value FROM archiver_state WHERE name = 'last_event_id'").fetchone()
        return row[0] if row else "0-0"

    def counted_id(self) -> str:
        return optional_text(self.conn.get(keys.ARCHIVER_APPLIED)) or "0-0"

    # --- leadership --------------------------------------------------------------------
    def hold_lease(self, handover: bool = True, settle_ms: int = archiver_lease.SETTLE_MS) -> archiver_lease.Outcome:
        """Take or keep the one archiver lease, so two archivers never run at once and all
        write the history's home file (vq/history/lease.py)."""
        return archiver_lease.hold(
            self.conn,
            owner=self.owner,
            lease_ms=LEASE_MS,
            db_id=self.file_id,
            path=self.path,
            position=self.written_id(),
            now_ms=int(time.time() * 1000),
            handover_ms=self.settings.history.handoverAfter * 1000 if handover else 0,
            settle_ms=settle_ms,
        )

    def release_lease(self) -> None:
        archiver_lease.release(self.conn, self.owner, int(time.time() * 1000))

    # --- one batch ---------------------------------------------------------------------
    def step(self, block_ms: int | None = 1000) -> int:
        """Archive the next batch; returns how many events it covered (0: none waiting)."""
        written, counted = self.written_id(), self.counted_id()
        start = min(written, counted, key=_id_tuple)
        # A wait when it blocks: the stop signal ends it (vq/stopping.py); the position stays.
        batch = self.until_stopped(
            events.read, self.conn, since=start, count=self.settings.history.batchSize, block_ms=block_ms
        )
        if not batch:
            return 0
        self._check_gap(start, batch[0]["id"])
        self._note_ends(batch)
        to_write = [e for e in batch if _id_tuple(e["id"]) > _id_tuple(written)]
        to_count = [e for e in batch if _id_tuple(e["id"]) > _id_tuple(counted)]
        if to_write:
            self.write(to_write)
        if to_count:
            self._count(counted, to_count)
        last_ms = _id_tuple(batch[-1]["id"])[0]
        self.conn.xtrim(keys.EVENTS, minid=f"{max(0, last_ms - TRIM_MARGIN_MS)}-0", approximate=True)
        return len(batch)

    def _note_ends(self, batch: list[dict]) -> None:
        """The jobs of the batch that ended: their logs are whole now (a handler's lines are
        written before its end), to be copied at the next `copy_logs`."""
        due = self._logs_due
        for event in batch:
            if event["event"] in job_log_store.ENDING_EVENTS and event["jobId"] != "-" and len(due) < LOGS_DUE_MOST:
                due[event["jobId"]] = None

    def copy_logs(self, now: float) -> int:
        """Copy the logs of the jobs seen ending (at most LOGS_PER_PASS now), and take the
        next step of the walk over the pending set (vq/job_log_store.py sweep), for the ends
        this archiver did not see (before it ran: a previous archiver's last ones): a step
        of LOGS_PER_PASS jobs per pass for its first round, then one of ARCHIVE_BATCH every
        LOGS_SWEEP_EVERY seconds. So a pass
        costs nothing while no job ends, whatever the number of running jobs with logs (it
        was a random sample of 200 of them, checked every half second)."""
        copied = 0
        taken = 0
        while self._logs_due and taken < LOGS_PER_PASS:
            chunk = list(itertools.islice(self._logs_due, job_log_store.ARCHIVE_BATCH))
            copied += job_log_store.archive_ended(self.conn, self.database, chunk)
            for job_id in chunk:  # forgotten once copied: an error above leaves them for the next pass
                del self._logs_due[job_id]
            taken += len(chunk)
        if self._first_walk or now - self._last_sweep >= LOGS_SWEEP_EVERY:
            count = LOGS_PER_PASS if self._first_walk else job_log_store.ARCHIVE_BATCH
            self._sweep_cursor, found = job_log_store.sweep(self.conn, self.database, self._sweep_cursor, count)
            copied += found
            self._last_sweep = now
            if not self._sweep_cursor:  # a whole round done: from now on a step every LOGS_SWEEP_EVERY
                self._first_walk = False
        return copied

    def backfill(self) -> None:
        """A batch of the walk that copies the jobs' data Redis still holds for the fields
        history.indexedFields lists and no whole walk has run for (a field added, the daemon
        restarted: `vq history reindex` without asking). Checked once per archiver; called
        only when it has caught up with the events, so a `created` row it has not written
        yet cannot overwrite a new copy."""
        from vq.history import reindex  # the submission code it uses: not for every `vq history`

        if not self._backfill_checked:
            self._backfill_checked = True
            fields = self.settings.history.indexedFields
            new = [f for f in fields if f not in reindex.done_fields(self.database)]
            if not new or self.settings.history.maxDataBytes <= 0:
                return
            log.info(
                "archiver: copying the data of the jobs Redis holds for --where on %s (history.indexedFields: "
                "not done for them yet), %d jobs a batch",
                ", ".join(new),
                reindex.BATCH,
            )
            self._backfill = {"cursor": 0, "counts": {}, "started": time.monotonic(), "said": time.monotonic()}
        walk = self._backfill
        if walk is None:
            return
        walk["cursor"], counts = reindex.step(self.conn, self.settings, self.database, walk["cursor"])
        walk["counts"] = reindex.add(walk["counts"], counts)
        done = walk["counts"]
        if walk["cursor"] and time.monotonic() - walk["said"] < 30:
            return
        walk["said"] = time.monotonic()
        line = f"{done.get('looked', 0):,} jobs looked at, {done.get('written', 0):,} data copies written"
        if walk["cursor"]:
            log.info("archiver: reindex: %s so far", line)
            return
        reindex.mark_done(self.database, self.settings.history.indexedFields)
        self._backfill = None
        log.info("archiver: reindex done in %.0f s: %s", time.monotonic() - walk["started"], line)

    def _count(self, counted: str, batch: list[dict]) -> None:
        """The batch's metric increments and the new position in one transaction, on the
        condition that the position is still `counted`: even an archiver that lost its lease
        without knowing it cannot count an event twice."""
        with self.conn.pipeline() as pipe:
            try:
                pipe.watch(keys.ARCHIVER_APPLIED)
                current = pipe.get(keys.ARCHIVER_APPLIED)
                if (optional_text(current) or "0-0") != counted:
                    return
                pipe.multi()
                metrics.apply_in(pipe, metrics.fold(batch))
                pipe.set(keys.ARCHIVER_APPLIED, batch[-1]["id"])
                pipe.execute()
            except redis.WatchError:
                return  # another archiver moved on; the next step starts from its position

    def _check_gap(self, start: str, first: str) -> None:
        """The archiver's own trimming always keeps its position; if the stream's oldest
        entry is newer, events were lost before being archived (the stream's cap was hit
        while no archiver ran, or Redis lost its data): say so once."""
        if start == "0-0" or self._gap_reported == start:
            return
        oldest = self.conn.xrange(keys.EVENTS, count=1)
        if oldest and _id_tuple(optional_text(oldest[0][0]) or "0-0") > _id_tuple(start):
            self._gap_reported = start
            log.warning("history gap: events after %s were lost before they were archived", start)

    def write(self, batch: list[dict]) -> None:
        """The batch's rows and the new written position, in one SQLite transaction (vq/history/rows.py)."""
        archive_rows.write(self.database, batch)

    # --- periodic ----------------------------------------------------------------------
    def aggregate(self) -> None:
        """job_performance_metrics for today and yesterday, from the day buckets in Redis."""
        now = int(time.time() * 1000)
        rows = []
        for day_start in (now - 86_400_000, now):
            day = datetime.fromtimestamp(day_start / 1000, UTC).date().isoformat()
            for job_type, c in metrics.read_bucket(self.conn, "d", day_start).items():
                ran, started = c["ran"], c["started"]
                rows.append(
                    {
                        "day": day,
                        "job_type": job_type,
                        "created": c["created"],
                        "started": started,
                        "finished": c["finished"],
                        "failed": c["failed"],
                        "retried": c["retried"],
                        "canceled": c["canceled"],
                        "stalled": c["stalled"],
                        "avg_run_ms": c["run_ms"] / ran if ran else None,
                        "p50_run_ms": metrics.percentile(c, "run", 0.50),
                        "p95_run_ms": metrics.percentile(c, "run", 0.95),
                        "p99_run_ms": metrics.percentile(c, "run", 0.99),
                        "avg_wait_ms": c["wait_ms"] / started if started else None,
                        "p50_wait_ms": metrics.percentile(c, "wait", 0.50),
                        "p95_wait_ms": metrics.percentile(c, "wait", 0.95),
                        "p99_wait_ms": metrics.percentile(c, "wait", 0.99),
                    }
                )
        if rows:
            with self.database.conn:
                self.database.table("job_performance_metrics").upsert_all(rows, pk=("day", "job_type"))
        costs.copy_days(
            self.conn,
            self.database,
            [datetime.fromtimestamp(ms / 1000, UTC).date().isoformat() for ms in (now - 86_400_000, now)],
        )

    def prune(self) -> int:
        """Drop job rows and transitions older than the retention, and the counters of users idle
        as long; aggregates stay."""
        cutoff = archive_rows.iso(int(time.time() * 1000) - self.settings.history.retentionDays * 86_400_000)
        db = self.database
        with db.conn:
            removed = db.conn.execute("DELETE FROM job_history WHERE at < ?", (cutoff,)).rowcount
            db.conn.execute("DELETE FROM audit_log WHERE at < ?", (cutoff,))
            db.conn.execute("DELETE FROM render_jobs WHERE updated_at < ?", (cutoff,))
            db.conn.execute("DELETE FROM job_dependencies WHERE job_id NOT IN (SELECT id FROM render_jobs)")
            job_log_store.prune(db, time.time() - self.settings.history.retentionDays * 86_400)
            search.refresh_statistics(db)  # --where picks its index by these (vq/history/search.py)
        now_ms = int(time.time() * 1000)
        metrics.prune_users(self.conn, now_ms - self.settings.history.retentionDays * 86_400_000)
        worker_series.prune(self.conn, now_ms - self.settings.daemon.workerSeriesTtl)
        return removed

    def run(self) -> None:
        """Until stopped: archive while holding the lease; otherwise wait to take it over.
        While the history database cannot be used (opened or written), jobs run on and their
        events wait in the stream: the archiver says so once, retries with back-off and
        catches up when it can."""
        backoff = 0.0
        leading = False
        renewed = 0.0
        linger = self.settings.history.linger / 1000
        while not self.stopped:
            try:
                if self.db is None:
                    self.open()
                    self._usable()  # it opens (again): a write that still fails says so anew
                if time.monotonic() - renewed >= RENEW_EVERY:  # the lease lasts three times this
                    outcome = self.hold_lease()
                    if not outcome.held:
                        self._say_standing_by(outcome, leading)
                        leading = False
                        self.until_stopped(time.sleep, 2.0)
                        continue
                    renewed = time.monotonic()
                    if not leading:
                        self._say_leading(outcome)
                leading = True
                done = self.step(block_ms=1000)
                if done:
                    self._usable()  # it wrote: recovered (nothing to write proves nothing, e.g. a full disk)
                if 0 < done < self.settings.history.batchSize:
                    self.until_stopped(time.sleep, linger)  # let a batch gather: per-batch costs, not per-event ones
                if done < self.settings.history.batchSize:  # caught up: new indexed fields' data, a batch
                    self.backfill()
                if time.monotonic() - self._last_logs >= LOGS_EVERY:  # ended jobs' own logs (vq/job_log_store.py)
                    self._last_logs = time.monotonic()
                    self.copy_logs(self._last_logs)
                if time.monotonic() - self._last_aggregate >= AGGREGATE_EVERY:
                    self._last_aggregate = time.monotonic()
                    self.aggregate()
                    self._usable()
                if time.monotonic() - self._last_prune >= PRUNE_EVERY:
                    self._last_prune = time.monotonic()
                    self.prune()
                    self._usable()
                if backoff:
                    log.warning("archiver: Redis is back")
                backoff = 0.0
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not backoff:
                    log.warning("archiver: Redis unreachable (%s); retrying", str(exc).splitlines()[0])
                backoff = min(5.0, backoff * 2 or 0.2)
                self.until_stopped(time.sleep, backoff)
            except Exception as exc:
                if not isinstance(exc, HistoryUnavailable) and not historydb.unusable(exc):
                    raise
                self._unusable(
                    exc.message if isinstance(exc, HistoryUnavailable) else historydb.problem(self.settings, exc)
                )
        try:
            self.release_lease()
        except redis.RedisError:
            pass

    def _unusable(self, line: str) -> None:
        """The history database cannot be used: one line per distinct problem (never a
        traceback per try), published for `vq health` and `vq doctor`; then wait, longer
        each time up to RETRY_MAX."""
        if line != self.problem:
            if self.problem is None:
                self._unusable_since = int(time.time() * 1000)
            self.problem = line
            log.warning(
                "archiver: %s; jobs run on, their events wait in Redis (%s) and the archiver retries "
                "(every %d s at most), catching up once it can write",
                line,
                keys.EVENTS,
                RETRY_MAX,
            )
        if self._published != line:
            try:
                presence.say_problem(self.conn, "archiver", line, self._unusable_since)
                self._published = line
            except redis.RedisError:
                pass  # Redis is away too: published at a later try
        self._retry_in = min(RETRY_MAX, self._retry_in * 2 or 0.5)
        deadline = time.monotonic() + self._retry_in
        while not self.stopped and time.monotonic() < deadline:
            self.until_stopped(time.sleep, min(0.2, max(0.0, deadline - time.monotonic())))

    def _usable(self) -> None:
        """The database worked (it opened, or took a write): if it had not,
        say once that it recovered and withdraw the published problem."""
        self._retry_in = 0.0
        if self._published is not None:
            presence.say_problem(self.conn, "archiver", None)  # Redis away: the outer loop retries
            self._published = None
        if self.problem is not None:
            self.problem = None
            log.warning(
                "archiver: history database %s usable again; catching up with the events that waited", self.path
            )

    def _say_leading(self, outcome: archiver_lease.Outcome) -> None:
        self._standing_by = ""
        if outcome.how == "took-over":
            log.warning(
                "archiver: took over the history: the archiver writing %s on %s has not run for %d s "
                "(history.handoverAfter); history until now is in that file, from now on in %s",
                outcome.path,
                outcome.host,
                self.settings.history.handoverAfter,
                self.path,
            )
        elif outcome.how == "claimed":
            log.info("archiver: %s becomes the history's file (no daemon's file held newer history)", self.path)
        log.info("archiver: this daemon archives events to %s", self.path)

    def _say_standing_by(self, outcome: archiver_lease.Outcome, was_leading: bool) -> None:
        """Log once per change of why this archiver does not run."""
        reason = outcome.how if outcome.how != "elsewhere" else f"elsewhere {outcome.host} {outcome.path}"
        if reason == self._standing_by:
            return
        self._standing_by = reason
        if was_leading and outcome.how in ("busy", "elsewhere"):
            log.info("archiver: another daemon's archiver took over")
        if outcome.how == "elsewhere":
            after = self.settings.history.handoverAfter
            log.info(
                "archiver: history is written to %s on %s; this daemon's archiver stands by (%s; to archive "
                "from any host, point history.path at storage they share)",
                outcome.path,
                outcome.host,
                f"it takes over after {after} s without that archiver" if after else "history.handoverAfter is 0",
            )
        elif outcome.how == "waiting":
            log.info(
                "archiver: Redis names no history file yet; daemons announce theirs for %d s and the one "
                "with the newest history is chosen",
                archiver_lease.SETTLE_MS // 1000,
            )


def catch_up(conn: Redis, settings: Settings, timeout: float = 10.0) -> str | None:
    """Return once every event in the stream now is archived (by the running archiver, or
    here when none holds the lease): None. Otherwise why not, in a line for the operator.
    Raises HistoryElsewhere when history goes to another host's file, HistoryUnavailable
    when the file cannot be opened or written."""
    newest = conn.xrevrange(keys.EVENTS, count=1)
    if not newest:
        return None
    target = _id_tuple(optional_text(newest[0][0]) or "0-0")
    archiver = Archiver(conn, settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _id_tuple(archiver.counted_id()) >= target and _id_tuple(archiver.written_id()) >= target:
            return None
        outcome = archiver.hold_lease(handover=False, settle_ms=0)  # a reader never moves the home
        if outcome.how == "elsewhere":
            raise HistoryElsewhere(
                f"history is written to {outcome.path} on {outcome.host}, not to this "
                f"host's {archiver.path}: ask that host, or share history.path"
            )
        if outcome.held:
            try:
                while archiver.step(block_ms=None):
                    pass
            except Exception as exc:
                if historydb.unusable(exc):  # a full disk: one line, as the daemon's archiver says it
                    raise HistoryUnavailable(historydb.problem(settings, exc)) from None
                raise
            finally:
                archiver.release_lease()
        else:
            time.sleep(0.05)
    return "the history may miss the latest events: the archiver has not caught up"
