"""What the dashboard's job pages read (the overview, lists, a job, its artifacts, dead
letters): each a call of the service functions the CLI, the HTTP API and the TUI call,
shaped for one page. Blocking (Redis, SQLite): the routes run them in the thread pool. The
visibility rule is the API's: a user sees only their own jobs."""

from __future__ import annotations

import json
import time
from pathlib import PurePath

from redis import Redis

from vq import artifacts, dashboard, dlq, job_lists, job_log_store, job_search, jobs, queues
from vq.config import Settings
from vq.durations import parse_duration_ms
from vq.errors import HistoryUnavailable, InvalidInput, NotFound
from vq.history import db as historydb
from vq.history import queries as history
from vq.jobtypes import get_job_type
from vq.model import Status
from vq.tokens import Principal

PAGE = 25  # jobs per page
STATUSES = tuple(s.value for s in Status)
LOG_LINES = 200  # the last lines of a job's log shown on its page
MAX_STEPS = 50  # a pipeline's steps shown on its parent's page, each with its artifacts
PREVIEW_BYTES = 32_768  # of a text or JSON artifact, shown on the job's page
KINDS = {
    "image": (".png", ".jpg", ".jpeg", ".gif", ".webp"),
    "audio": (".wav", ".mp3", ".ogg", ".flac", ".m4a"),
    "video": (".mp4", ".webm", ".mov"),
    "text": (".txt", ".json", ".md", ".edl", ".srt", ".vtt", ".csv", ".log", ".yaml", ".yml"),
}


def media_kind(name: str) -> str:
    """How an artifact is previewed: image, audio, video, text, or none (a download link)."""
    suffix = PurePath(name).suffix.lower()
    return next((kind for kind, suffixes in KINDS.items() if suffix in suffixes), "none")


def _preview(path: str, name: str) -> str | None:
    """The start of a text artifact (JSON pretty-printed when it is whole and valid)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(PREVIEW_BYTES + 1)
    except OSError:
        return None
    text = raw[:PREVIEW_BYTES].decode("utf-8", errors="replace")
    if name.lower().endswith(".json") and len(raw) <= PREVIEW_BYTES:
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return text + ("\n…" if len(raw) > PREVIEW_BYTES else "")


def overview(conn: Redis, settings: Settings) -> dict:
    return dashboard.overview(conn, settings)


def job_list(
    conn: Redis,
    settings: Settings,
    principal: Principal,
    job_type: str | None,
    status: str | None,
    user: str | None,
    page: int,
    since: str | None = None,
    where: list[str] | None = None,
) -> dict:
    """One page of jobs, newest first, and whether there is a next one (one job more is read
    rather than counting every match: a page stays as cheap with a million waiting jobs).
    A user-role viewer sees their own jobs whatever `user` says. `since`: created within
    this long (15m, 12h, 7d). `where`: data-field terms (data.projectId=p1), matched through
    the history database's indexes as `vq jobs --where` matches them (vq/job_search.py); a
    field history.indexedFields does not list is refused (InvalidInput, saying which are)."""
    if job_type:
        get_job_type(settings, job_type)
    if status and status not in STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}", field="status")
    if page < 1:
        raise InvalidInput("page: at least 1", field="page")
    if not principal.is_operator:
        user = principal.user_id
    since_ms = int(time.time() * 1000) - parse_duration_ms(since, "since", unit_required=True) if since else None
    if where:
        matched = job_search.page_matching(
            conn,
            settings,
            where,
            job_type=job_type or None,
            status=status or None,
            user=user or None,
            limit=PAGE,
            page=page,
            since_ms=since_ms,
        )
        shown = [j for j in matched["jobs"] if principal.may_see(j["userId"], j["projectId"])]
        more = matched["total"] > matched["offset"] + len(matched["jobs"])
        return {"jobs": shown, "page": page, "more": more, "total": matched["total"], "note": matched["note"]}
    found = job_lists.list_jobs(
        conn,
        job_type=job_type or None,
        status=status or None,
        user=user or None,
        limit=PAGE + 1,
        offset=(page - 1) * PAGE,
        since_ms=since_ms,
    )
    if not principal.is_operator:
        found = [j for j in found if principal.may_see(j["userId"], j["projectId"])]
    return {"jobs": found[:PAGE], "page": page, "more": len(found) > PAGE, "total": None, "note": None}


def empty_list(page: int) -> dict:
    """A list that shows nothing (its filter was refused: the page says why)."""
    return {"jobs": [], "page": page, "more": False, "total": None, "note": None}


def queue_row(conn: Redis, settings: Settings, job_type: str) -> dict:
    """One queue's counts and whether it is paused (`vq queues`), for the top of its page."""
    get_job_type(settings, job_type)
    return next(row for row in queues.counts(conn, settings) if row["jobType"] == job_type)


def visible_job(conn: Redis, settings: Settings, principal: Principal, job_id: str) -> dict:
    """The job, if the viewer may see it; else NotFound, the same answer as for a job that
    does not exist, so a user learns nothing of other users' jobs."""
    view = jobs.show(
        conn,
        job_id,
        settings,
        reveal_to=principal.user_id,
        visible=lambda c: principal.may_see(c.user_id, c.project_id),
    )
    if not principal.may_see(view["userId"], view["projectId"]):
        raise NotFound(f"no such job {job_id!r}")
    return view


def job_page(conn: Redis, settings: Settings, principal: Principal, job_id: str) -> dict:
    """Everything the job's page shows: the job, its last error's traceback, its dependency
    tree, its artifacts, the end of its log and its timeline from the history database."""
    view = visible_job(conn, settings, principal, job_id)
    job_id = view["id"]
    view["traceback"] = None
    if view["error"] and not view["trimmed"]:
        last = jobs.fetch_job(conn, job_id).latest_result()
        view["traceback"] = last.exc_string if last is not None and last.exc_string else None
    view["tree"] = _visible_tree(conn, principal, jobs.tree(conn, job_id, settings))
    view["artifactFiles"] = _artifact_files(settings, job_id)
    view["steps"] = [_step(conn, settings, principal, child) for child in view["children"][:MAX_STEPS]]
    view["log"] = job_log_store.read(conn, settings, job_id, view["status"], trimmed=bool(view.get("trimmed")))[
        "lines"
    ][-LOG_LINES:]
    try:
        view["timeline"] = history.timeline(historydb.open_db(settings, create=False), job_id)["transitions"]
    except (NotFound, HistoryUnavailable):
        view["timeline"] = []
    return view


def _visible_tree(conn: Redis, principal: Principal, node: dict) -> dict:
    """The dependency tree with the jobs the viewer may not see (another user's, which an
    operator may have made a user's job wait for) shown as hidden: no id, type or status."""
    if not principal.is_operator and node.get("status") != "missing":
        owner = jobs.owner(conn, node["id"])
        if owner is not None and not principal.may_see(*owner):
            return {"id": "", "jobType": None, "status": "hidden", "step": None, "dependsOn": [], "trimmed": False}
    return {**node, "dependsOn": [_visible_tree(conn, principal, child) for child in node.get("dependsOn") or []]}


def _artifact_files(settings: Settings, job_id: str) -> list[dict]:
    """A job's artifacts as its page shows them: name, size, and the start of a text one."""
    return [
        {
            "name": f["name"],
            "bytes": f["bytes"],
            "preview": _preview(f["path"], f["name"]) if media_kind(f["name"]) == "text" else None,
        }
        for f in artifacts.listing(settings, job_id)
    ]


def _step(conn: Redis, settings: Settings, principal: Principal, job_id: str) -> dict:
    """One step of a pipeline (a child job of a planned parent) with its artifacts, so the
    parent's page shows the image, narration and video or edit decision list it made."""
    try:
        view = jobs.show(conn, job_id, settings, explain=False)
    except NotFound:
        return {"id": job_id, "step": None, "jobType": None, "status": "missing", "artifactFiles": []}
    if not principal.may_see(view["userId"], view["projectId"]):
        return {"id": job_id, "step": None, "jobType": None, "status": "missing", "artifactFiles": []}
    return {
        "id": view["id"],
        "step": view["step"],
        "jobType": view["jobType"],
        "status": view["status"],
        "progress": view["progress"],
        "artifactFiles": _artifact_files(settings, view["id"]),
    }


def artifact(conn: Redis, settings: Settings, principal: Principal, job_id: str, name: str):
    """The path of one of a visible job's artifacts; artifacts.file refuses any name that
    leads out of the job's own folder."""
    view = visible_job(conn, settings, principal, job_id)
    return artifacts.file(settings, view["id"], name)


def dead_letters(conn: Redis, settings: Settings, job_type: str | None) -> list[dict]:
    return dlq.list_dead(conn, settings, job_type or None, limit=100)
