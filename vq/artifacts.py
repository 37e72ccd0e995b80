"""A job's artifacts: the files its handler wrote into its own folder under the storage
root (`artifacts.root`, default <data_dir>/artifacts), <root>/<job id>/ (mode 700). Listed
and served by name, never by a path a caller could point elsewhere; pruned by the daemon
(`prune`): failed and canceled jobs' files at once, finished jobs' after their type's
retention, folders whose job is gone after the default retention."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rq.utils import utcparse

from vq.config import Settings
from vq.errors import InvalidInput, NotFound

MAX_LISTED = 1000


def root(settings: Settings) -> Path:
    return Path(settings.artifacts.root).expanduser() if settings.artifacts.root else settings.data_path / "artifacts"


def folder(settings: Settings, job_id: str) -> Path:
    return root(settings) / job_id


def listing(settings: Settings, job_id: str) -> list[dict]:
    """The job's files: name (relative to its folder), size in bytes; symlinks are skipped."""
    base = folder(settings, job_id)
    if not base.is_dir():
        return []
    files = sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink())[:MAX_LISTED]
    return [{"name": p.relative_to(base).as_posix(), "bytes": p.stat().st_size, "path": str(p)} for p in files]


def file(settings: Settings, job_id: str, name: str) -> Path:
    """The artifact `name` of the job: a relative name inside its folder, or NotFound.
    `..`, absolute names and symlinks leading out of the folder are refused."""
    parts = Path(name).parts
    if not name or "\x00" in name or Path(name).is_absolute() or ".." in parts or name.startswith("~"):
        raise InvalidInput(f"name: {name!r} is not a file name inside the job's artifacts", field="name")
    base = folder(settings, job_id).resolve()
    try:  # a name the file system refuses (too long) is simply not there
        target = (base / name).resolve()
        present = target.is_relative_to(base) and target.is_file()
    except OSError:
        present = False
    if not present:
        raise NotFound(f"job {job_id!r} has no artifact {name!r}")
    return target


ENDED_BADLY = {"failed", "canceled", "stopped"}
CHUNK = 500


def prune(conn, settings: Settings, dry_run: bool = False, now: float | None = None) -> dict:
    """Remove the folders whose time is up, on this host's storage root:
    - a failed, canceled or stopped job's (its temporary files) after artifacts.failedRetention;
    - a finished job's after its type's artifactRetention (default artifacts.retention; 0 keeps);
    - a folder whose job no longer exists, once untouched for artifacts.retention.
    Waiting and running jobs' folders are never touched. Returns what was (or, with
    dry_run, would be) removed and the bytes freed."""
    import shutil

    now = time.time() if now is None else now
    base = root(settings)
    names = (
        sorted(entry.name for entry in os.scandir(base) if entry.is_dir(follow_symlinks=False)) if base.is_dir() else []
    )
    removed, kept = [], 0
    for start in range(0, len(names), CHUNK):
        chunk = names[start : start + CHUNK]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.hmget(f"rq:job:{job_id}", "status", "ended_at", "meta")
            records = pipe.execute()
        for job_id, (status, ended_at, meta) in zip(chunk, records):
            path = base / job_id
            reason = _expired(settings, path, status, ended_at, meta, now)
            if reason is None:
                kept += 1
                continue
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
            removed.append({"id": job_id, "reason": reason, "bytes": size})
    return {
        "root": str(base),
        "removed": removed,
        "kept": kept,
        "freedBytes": sum(r["bytes"] for r in removed),
        "dryRun": dry_run,
    }


def _expired(settings: Settings, path: Path, status, ended_at, meta, now: float) -> str | None:
    a = settings.artifacts
    if status is None:  # the job was removed or expired from Redis
        age = now - path.stat().st_mtime
        return "its job no longer exists" if a.retention and age * 1000 >= a.retention else None
    status = status.decode()
    ended = _epoch(ended_at.decode()) if ended_at else None
    if status in ENDED_BADLY:
        return f"the job {status}" if ended is None or (now - ended) * 1000 >= a.failedRetention else None
    if status != "finished" or ended is None:
        return None
    retention = a.retention
    try:
        job_type = json.loads(meta).get("jobType") if meta else None
    except ValueError:
        job_type = None
    configured = settings.job_types.get(job_type) if isinstance(job_type, str) else None
    if configured and configured.artifactRetention is not None:
        retention = configured.artifactRetention
    if retention and (now - ended) * 1000 >= retention:
        return f"finished more than {retention // 1000}s ago (retention)"
    return None


def _epoch(text: str) -> float | None:
    try:
        return utcparse(text).timestamp()
    except ValueError:
        return None
