"""What the dashboard reads and does: the same service functions the CLI calls, with
each action audited as the operator at this terminal."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from vq import artifacts, audit, batch_lists, batches, dashboard, dlq, job_lists, job_log_store, jobs, limits, queues
from vq.config import Settings
from vq.errors import HistoryUnavailable, NotFound
from vq.history import db as historydb
from vq.history import queries as history

PAGE = 20  # jobs per page in a queue's list, batches per page in the batches' list


@dataclass
class Services:
    conn: Redis
    settings: Settings
    actor: str = ""

    def __post_init__(self):
        self.actor = self.actor or audit.cli_actor("tui")

    # --- reads ---------------------------------------------------------------------
    def overview(self) -> dict:
        return dashboard.overview(self.conn, self.settings)

    def queue_jobs(self, job_type: str, status: str | None, user: str | None, page: int) -> list[dict]:
        return job_lists.list_jobs(
            self.conn, job_type=job_type, status=status, user=user or None, limit=PAGE, offset=page * PAGE
        )

    def job(self, job_id: str) -> dict:
        """A job by its id or a unique prefix of it (as typed); a trimmed one from history."""
        view = jobs.show(self.conn, job_id, self.settings)
        job_id = view["id"]
        last = jobs.fetch_job(self.conn, job_id).latest_result() if view["error"] and not view["trimmed"] else None
        view["traceback"] = last.exc_string if last is not None and last.exc_string else None
        view["tree"] = jobs.tree(self.conn, job_id, self.settings)
        view["artifactFiles"] = artifacts.listing(self.settings, job_id)
        view["log"] = job_log_store.read(
            self.conn, self.settings, job_id, view["status"], trimmed=bool(view.get("trimmed"))
        )["lines"]
        try:
            view["timeline"] = history.timeline(historydb.open_db(self.settings, create=False), job_id)["transitions"]
        except (NotFound, HistoryUnavailable):
            view["timeline"] = []
        return view

    def batches(self, state: str | None, user: str | None, page: int) -> dict:
        """A page of batches, newest first, as `vq batch list` reads them."""
        return batch_lists.page_batches(self.conn, status=state, user=user or None, limit=PAGE, page=page + 1)

    def batch(self, batch_id: str) -> dict:
        """A batch with its callbacks and jobs, as `vq batch show` reads it."""
        return batches.show(self.conn, batch_id)

    def user(self, user_id: str) -> dict:
        return dashboard.user_view(self.conn, self.settings, user_id)

    def limits(self) -> dict:
        """What `vq limits` and GET /api/limits show: types, users, groups, resources, weights."""
        return limits.overview(self.conn, self.settings)

    def dead_letters(self) -> list[dict]:
        return dlq.list_dead(self.conn, self.settings, limit=100)

    # --- actions (each audited) ----------------------------------------------------
    def _audit(self, action: str, job_type: str | None, target: str = "-", **detail) -> None:
        audit.record(self.conn, self.actor, "operator", action, job_type, target, **detail)

    def pause(self, job_type: str) -> str:
        queues.pause(self.conn, self.settings, job_type)
        self._audit("pause", job_type)
        return f"{job_type} paused"

    def resume(self, job_type: str) -> str:
        queues.resume(self.conn, self.settings, job_type)
        self._audit("resume", job_type)
        return f"{job_type} resumed"

    def clear(self, job_type: str) -> str:
        removed = queues.clear(self.conn, self.settings, job_type)["removed"]
        self._audit("clear", job_type, removed=removed)
        return f"{job_type}: {removed} waiting job(s) removed"

    def retry(self, job_id: str) -> str:
        view = jobs.retry(self.conn, job_id, self.settings)
        self._audit("retry", view["jobType"], job_id)
        return f"job {job_id} requeued ({view['status']})"

    def cancel(self, job_id: str, now: bool = False) -> str:
        view = jobs.cancel(self.conn, job_id, f"canceled by {self.actor}", self.settings, now=now, actor=self.actor)
        self._audit("cancel", view["jobType"], job_id, now=now)
        if view["status"] == "canceled":
            return f"job {job_id} canceled"
        return f"job {job_id}: " + ("interruption requested" if now else "cancellation requested")

    def remove(self, job_id: str) -> str:
        view = jobs.remove(self.conn, job_id, artifacts.root(self.settings), self.settings)
        self._audit("remove", view["jobType"], job_id)
        return f"job {job_id} removed"

    def close_batch(self, batch_id: str) -> str:
        batches.close(self.conn, batch_id)
        self._audit("batch-close", None, batch_id)
        return f"batch {batch_id} closed"

    def retry_dead(self, job_ids: list[str] | None) -> str:
        done = dlq.retry_dead(self.conn, self.settings, job_ids)
        self._audit("dlq-retry", None, "-", count=len(done))
        return f"{len(done)} dead letter(s) requeued"
