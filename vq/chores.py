"""The daemon's housekeeping, by name: what each chore does, how often, and whether one
daemon at a time does it (a Redis lock held for the period) or every daemon (state of its
own host).

Each chore's interval is `daemon.chores.<name>` (ms) when the config gives it, else its
default: for the four that had a key of their own before (queue.settings.stalledInterval,
health.checkInterval, artifacts.sweepInterval, daemon.autoscale.interval) that key. The
interval is read at each look, so a reload (SIGHUP) reaches it. A chore is a function of
the daemon and a Redis connection, so a test can run one on its own
(`REGISTRY[name].action(daemon, conn)`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis

from vq import artifacts, batch_callbacks, batch_counts, batch_lists, deadlines, health, keys, maintenance, stalled
from vq.admission import forget_gone_idle_workers, mark_nonempty_lists
from vq.config import CHORE_NAMES, Settings
from vq.jobtypes import job_types
from vq.queues import worker_queue_names
from vq.rq_seam.queue import enqueue_left_ready_jobs

if TYPE_CHECKING:
    from vq.daemon import Daemon

log = logging.getLogger("vq.daemon")
MAINTAIN_MS = 5000  # trims, dependents, marks: what nothing waits on second by second
IDLE_MARKS_MS = 60_000  # idle marks of gone workers: one EXISTS per idle worker, and a stale mark costs only a token
AGE_MS = 2000
DEADLINE_MS = 1000  # a waiting job lingers at most this long past its deadline
BATCH_CALLBACKS_MS = 500  # a batch callback is delivered within this of its claim
PRESENCE_MS = 2000  # `vq workers` and the HTTP API's /workers see a daemon this fresh (a 30 s expiry)


@dataclass(frozen=True)
class ChoreSpec:
    name: str  # its key under daemon.chores
    title: str  # what the log says it did (and its lock's name)
    default_ms: Callable[[Settings], int]
    action: Callable  # (daemon, conn) -> a line for the log, or None
    exclusive: bool = True  # False: every daemon does it (for state local to the daemon's host)

    def every(self, settings: Settings) -> float:
        """Seconds between runs under these settings."""
        return (settings.daemon.chores.get(self.name) or self.default_ms(settings)) / 1000


def _say_pruned(report: dict) -> str | None:
    removed = report["removed"]
    if not removed:
        return None
    return (
        f"removed the files of {len(removed)} job(s) under {report['root']} "
        f"({report['freedBytes']:,} bytes): {', '.join(sorted({r['reason'] for r in removed}))}"
    )


def _say_moved(count: int) -> str | None:
    return f"{count} job(s) whose dependencies had finished put on their queues" if count else None


def trim_ended(daemon, conn):
    return maintenance.trim_ended(conn, daemon.settings)


def age_waiting(daemon, conn):
    return daemon._admission(conn).promote_aged(
        daemon.options.queues or list(job_types(daemon.settings)), daemon.settings.priority.agingThreshold
    )


def enqueue_dependents(daemon, conn):
    return _say_moved(enqueue_left_ready_jobs(conn, worker_queue_names(daemon.settings, daemon.options.queues)))


def mark_unrouted(daemon, conn):
    mark_nonempty_lists(conn, worker_queue_names(daemon.settings))  # usually a push seconds old: not news


def forget_idle_marks(daemon, conn):
    forget_gone_idle_workers(conn)


def recover_stalled(daemon, conn):
    return stalled.recover(conn, daemon.settings)


def check_health(daemon, conn):
    return health.check_and_alert(conn, daemon.settings)


def copy_recurring(daemon, conn):
    daemon._copy_recurring(conn)


def report_presence(daemon, conn):
    daemon._report(conn)


def prune_artifacts(daemon, conn):
    return _say_pruned(artifacts.prune(conn, daemon.settings))  # this host's disk


def autoscale(daemon, conn):
    daemon._autoscale(conn, daemon.mp_context)


def expire_deadlines(daemon, conn):
    expired, followed = deadlines.sweep(conn, int(time.time() * 1000))
    if expired or followed:
        return f"{expired} waiting job(s) expired, the dependents of {followed} expired at admission canceled"
    return None


def deliver_batch_callbacks(daemon, conn):
    taken = batch_callbacks.deliver_jobs(conn, daemon.settings)  # webhooks: the notifier's (vq/webhooks.py)
    return f"{taken} batch callback job(s) submitted" if taken else None


def sweep_batches(daemon, conn):
    batch_counts.sweep(conn)  # the jobs whose end a crash kept from their batch's count
    batch_lists.trim(conn)  # the listing's entries of batches whose keys expired


def _fixed(ms: int) -> Callable[[Settings], int]:
    return lambda settings: ms


REGISTRY: dict[str, ChoreSpec] = {
    spec.name: spec
    for spec in (
        ChoreSpec("trim-ended", "trim ended jobs", _fixed(MAINTAIN_MS), trim_ended),
        ChoreSpec("age-waiting", "age waiting jobs", _fixed(AGE_MS), age_waiting),
        ChoreSpec("expire-deadlines", "expire jobs past their deadline", _fixed(DEADLINE_MS), expire_deadlines),
        ChoreSpec("enqueue-dependents", "enqueue ready dependents", _fixed(MAINTAIN_MS), enqueue_dependents),
        ChoreSpec("mark-unrouted", "mark unrouted queue lists", _fixed(MAINTAIN_MS), mark_unrouted),
        ChoreSpec("forget-idle-marks", "forget idle marks of gone workers", _fixed(IDLE_MARKS_MS), forget_idle_marks),
        ChoreSpec(
            "recover-stalled", "recover stalled jobs", lambda s: s.queue.settings.stalledInterval, recover_stalled
        ),
        ChoreSpec("check-health", "check health", lambda s: s.health.checkInterval, check_health),
        ChoreSpec(
            "copy-recurring",
            "copy recurring jobs to the history database",
            _fixed(MAINTAIN_MS),
            copy_recurring,
            exclusive=False,
        ),
        ChoreSpec("batch-callbacks", "deliver batch callbacks", _fixed(BATCH_CALLBACKS_MS), deliver_batch_callbacks),
        ChoreSpec(
            "sweep-batches", "count ended jobs of batches, trim their listing", _fixed(MAINTAIN_MS), sweep_batches
        ),
        ChoreSpec("report-presence", "report presence", _fixed(PRESENCE_MS), report_presence, exclusive=False),
        ChoreSpec(
            "prune-artifacts", "prune artifacts", lambda s: s.artifacts.sweepInterval, prune_artifacts, exclusive=False
        ),
        ChoreSpec(
            "autoscale",
            "autoscale",
            lambda s: s.daemon.autoscale.interval if s.daemon.autoscale else 1000,
            autoscale,
            exclusive=False,
        ),
    )
}
assert tuple(REGISTRY) == CHORE_NAMES, "vq/config/base.py's CHORE_NAMES names the chores of this registry"


@dataclass
class Chore:
    """A chore of one daemon: runs when its interval has passed since its last run; a
    failure is logged, never fatal."""

    spec: ChoreSpec
    daemon: Daemon
    conn: redis.Redis
    last: float = float("-inf")  # never: due at the daemon's start (not `interval` after the boot)

    @property
    def every(self) -> float:
        return self.spec.every(self.daemon.settings)  # a reload reaches it

    def due_in(self) -> float:
        """Seconds until it is due (0 or less: due)."""
        return self.last + self.every - time.monotonic()

    def run_if_due(self) -> None:
        if self.due_in() > 0:
            return
        self.last = time.monotonic()
        lock = keys.PREFIX + "chore:" + self.spec.title.replace(" ", "-")
        try:
            if self.spec.exclusive and not self.conn.set(
                lock, os.getpid(), nx=True, px=max(100, int(self.every * 900))
            ):
                return  # another daemon did it this period
        except (redis.ConnectionError, redis.TimeoutError):
            return  # the workers report an unreachable Redis; no need to say it once per chore
        try:
            result = self.spec.action(self.daemon, self.conn)
        except (redis.ConnectionError, redis.TimeoutError):
            return
        except Exception:
            log.exception("%s failed", self.spec.title)
            return
        if result:
            log.info("%s: %s", self.spec.title, result)


def for_daemon(daemon, conn, autoscaling: bool) -> list[Chore]:
    """The chores a daemon runs (autoscale only when it autoscales)."""
    return [Chore(spec, daemon, conn) for name, spec in REGISTRY.items() if name != "autoscale" or autoscaling]
