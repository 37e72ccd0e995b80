"""Copies of ended jobs' own logs into the history database (vq/job_log_store.py), driven by
the end events the archiver reads: a job's log is whole once it ended (a handler's lines are
written before its end), so its copy waits for nothing else. A walk over the pending set
finds the ends this archiver did not see (a previous archiver's last ones)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from redis import Redis

from vq import job_log_store

if TYPE_CHECKING:
    from sqlite_utils import Database

LOGS_SWEEP_EVERY = 30.0  # seconds between steps of the pending set's walk, for ends not seen
LOGS_PER_PASS = 1000  # jobs seen ending whose logs one pass copies at most (the events go first)
LOGS_DUE_MOST = 100_000  # jobs seen ending remembered at most (beyond: the walk finds them)


class LogCopies:
    """The jobs seen ending whose logs are copied next, and the walk's place."""

    def __init__(self) -> None:
        self.due: dict[str, None] = {}  # jobs seen ending, in order: their logs are copied next
        self.sweep_cursor = 0
        self.first_walk = True  # the first round over the pending set goes a step per pass: ends not seen
        self.last_sweep = 0.0

    def note_ends(self, batch: list[dict]) -> None:
        """The jobs of the batch that ended: their logs are whole now, to be copied at the next `copy`."""
        due = self.due
        for event in batch:
            if event["event"] in job_log_store.ENDING_EVENTS and event["jobId"] != "-" and len(due) < LOGS_DUE_MOST:
                due[event["jobId"]] = None

    def copy(self, conn: Redis, db: Database, now: float) -> int:
        """Copy the logs of the jobs seen ending (at most LOGS_PER_PASS now), and take the
        next step of the walk over the pending set (vq/job_log_store.py sweep), for the ends
        this archiver did not see (before it ran: a previous archiver's last ones): a step
        of LOGS_PER_PASS jobs per pass for its first round, then one of ARCHIVE_BATCH every
        LOGS_SWEEP_EVERY seconds. So a pass
        costs nothing while no job ends, whatever the number of running jobs with logs (it
        was a random sample of 200 of them, checked every half second)."""
        copied = 0
        taken = 0
        while self.due and taken < LOGS_PER_PASS:
            chunk = list(itertools.islice(self.due, job_log_store.ARCHIVE_BATCH))
            copied += job_log_store.archive_ended(conn, db, chunk)
            for job_id in chunk:  # forgotten once copied: an error above leaves them for the next pass
                del self.due[job_id]
            taken += len(chunk)
        if self.first_walk or now - self.last_sweep >= LOGS_SWEEP_EVERY:
            count = LOGS_PER_PASS if self.first_walk else job_log_store.ARCHIVE_BATCH
            self.sweep_cursor, found = job_log_store.sweep(conn, db, self.sweep_cursor, count)
            copied += found
            self.last_sweep = now
            if not self.sweep_cursor:  # a whole round done: from now on a step every LOGS_SWEEP_EVERY
                self.first_walk = False
        return copied
