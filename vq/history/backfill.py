"""The archiver's reindex hook: the walk that copies the data Redis still holds of its jobs
for the fields history.indexedFields lists and no whole walk has run for (a field added, the
daemon restarted: `vq history reindex` without asking; vq/history/reindex.py does the work)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from redis import Redis

from vq.config import Settings

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger("vq.archiver")
SAY_EVERY = 30.0  # seconds between progress lines of a walk


class Backfill:
    """Whether the walk was looked for (once per archiver), and the walk under way."""

    def __init__(self) -> None:
        self.checked = False
        self.walk: dict | None = None

    def step(self, conn: Redis, settings: Settings, db: Database) -> None:
        """A batch of the walk. Called only when the archiver has caught up with the events,
        so a `created` row it has not written yet cannot overwrite a new copy."""
        from vq.history import reindex  # the submission code it uses: not for every `vq history`

        if not self.checked:
            self.checked = True
            fields = settings.history.indexedFields
            new = [f for f in fields if f not in reindex.done_fields(db)]
            if not new or settings.history.maxDataBytes <= 0:
                return
            log.info(
                "archiver: copying the data of the jobs Redis holds for --where on %s (history.indexedFields: "
                "not done for them yet), %d jobs a batch",
                ", ".join(new),
                reindex.BATCH,
            )
            self.walk = {"cursor": 0, "counts": {}, "started": time.monotonic(), "said": time.monotonic()}
        walk = self.walk
        if walk is None:
            return
        walk["cursor"], counts = reindex.step(conn, settings, db, walk["cursor"])
        walk["counts"] = reindex.add(walk["counts"], counts)
        done = walk["counts"]
        if walk["cursor"] and time.monotonic() - walk["said"] < SAY_EVERY:
            return
        walk["said"] = time.monotonic()
        line = f"{done.get('looked', 0):,} jobs looked at, {done.get('written', 0):,} data copies written"
        if walk["cursor"]:
            log.info("archiver: reindex: %s so far", line)
            return
        reindex.mark_done(db, settings.history.indexedFields)
        self.walk = None
        log.info("archiver: reindex done in %.0f s: %s", time.monotonic() - walk["started"], line)
