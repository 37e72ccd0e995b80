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

Its loop also runs the chores that ride on the lease, each in a module of its own:
ended jobs' log copies (log_copies.py), the reindex walk for new indexed fields
(backfill.py), the daily aggregates (aggregates.py) and pruning (pruning.py); the metric
counting is metric_counts.py, the reports of an unusable database unusable.py and the
lease's log lines leadership.py.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

import redis
from redis import Redis

from vq import events, keys
from vq.config import Settings
from vq.errors import HistoryElsewhere, HistoryUnavailable
from vq.history import aggregates, metric_counts, pruning
from vq.history import db as historydb
from vq.history import lease as archiver_lease
from vq.history import rows as archive_rows
from vq.history.backfill import Backfill
from vq.history.db import open_db, path_for
from vq.history.leadership import LeaseLines
from vq.history.log_copies import LOGS_PER_PASS as LOGS_PER_PASS  # named here for scripts/bench/log_archive.py
from vq.history.log_copies import LogCopies
from vq.history.unusable import Unusable
from vq.replies import optional_text
from vq.stopping import Stoppable

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger("vq.archiver")
LEASE_MS = 15_000
RENEW_EVERY = 5.0  # seconds between lease renewals (a third of the lease)
TRIM_MARGIN_MS = 10 * 60_000  # events stay in the stream this long after archiving, for live readers
AGGREGATE_EVERY = 60.0
LOGS_EVERY = 0.5  # seconds between copies of the logs of jobs seen ending (vq/history/log_copies.py)
PRUNE_EVERY = 3600.0


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
        self.logs = LogCopies()
        self.backfill = Backfill()
        self._gap_reported = ""
        self.lines = LeaseLines(settings, self.path)
        self.unusable = Unusable(self.path)
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
        return metric_counts.counted_id(self.conn)

    @property
    def problem(self) -> str | None:
        """Why the history database cannot be used (None: it can)."""
        return self.unusable.problem

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
        self.logs.note_ends(batch)
        to_write = [e for e in batch if _id_tuple(e["id"]) > _id_tuple(written)]
        to_count = [e for e in batch if _id_tuple(e["id"]) > _id_tuple(counted)]
        if to_write:
            self.write(to_write)
        if to_count:
            metric_counts.count(self.conn, counted, to_count)
        last_ms = _id_tuple(batch[-1]["id"])[0]
        self.conn.xtrim(keys.EVENTS, minid=f"{max(0, last_ms - TRIM_MARGIN_MS)}-0", approximate=True)
        return len(batch)

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
        """The daily aggregates, from the day buckets in Redis (vq/history/aggregates.py)."""
        aggregates.aggregate(self.conn, self.database)

    def prune(self) -> int:
        """History past its retention (vq/history/pruning.py); how many transitions went."""
        return pruning.prune(self.conn, self.database, self.settings)

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
                        self.lines.not_leading(outcome, leading)
                        leading = False
                        self.until_stopped(time.sleep, 2.0)
                        continue
                    renewed = time.monotonic()
                    if not leading:
                        self.lines.leading(outcome)
                leading = True
                done = self.step(block_ms=1000)
                if done:
                    self._usable()  # it wrote: recovered (nothing to write proves nothing, e.g. a full disk)
                if 0 < done < self.settings.history.batchSize:
                    self.until_stopped(time.sleep, linger)  # let a batch gather: per-batch costs, not per-event ones
                if done < self.settings.history.batchSize:  # caught up: new indexed fields' data, a batch
                    self.backfill.step(self.conn, self.settings, self.database)
                if time.monotonic() - self._last_logs >= LOGS_EVERY:  # ended jobs' own logs (vq/job_log_store.py)
                    self._last_logs = time.monotonic()
                    self.logs.copy(self.conn, self.database, self._last_logs)
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
        """The history database cannot be used: said once, published (vq/history/unusable.py);
        then wait, longer each time."""
        deadline = time.monotonic() + self.unusable.said(self.conn, line)
        while not self.stopped and time.monotonic() < deadline:
            self.until_stopped(time.sleep, min(0.2, max(0.0, deadline - time.monotonic())))

    def _usable(self) -> None:
        self.unusable.usable(self.conn)


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
