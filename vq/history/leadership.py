"""What the archiver says when it takes the history lease and when it stands by
(vq/history/lease.py decides): each reason once, with the file history goes to."""

from __future__ import annotations

import logging

from vq.config import Settings
from vq.history import lease as archiver_lease

log = logging.getLogger("vq.archiver")


class LeaseLines:
    """The last reason said for standing by, so each is logged once per change."""

    def __init__(self, settings: Settings, path: str) -> None:
        self.settings = settings
        self.path = path
        self.standing_by = ""  # why the last try did not get the lease

    def leading(self, outcome: archiver_lease.Outcome) -> None:
        self.standing_by = ""
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

    def not_leading(self, outcome: archiver_lease.Outcome, was_leading: bool) -> None:
        """Log once per change of why this archiver does not run."""
        reason = outcome.how if outcome.how != "elsewhere" else f"elsewhere {outcome.host} {outcome.path}"
        if reason == self.standing_by:
            return
        self.standing_by = reason
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
