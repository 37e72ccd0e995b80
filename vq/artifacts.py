"""A job's artifacts: the files its handler wrote into its own folder under
<data_dir>/artifacts/<job id>/ (mode 700). Listed and served by name, never by a path a
caller could point elsewhere."""

from __future__ import annotations

from pathlib import Path

from vq.config import Settings
from vq.errors import InvalidInput, NotFound

MAX_LISTED = 1000


def root(settings: Settings) -> Path:
    return settings.data_path / "artifacts"


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
    target = (base / name).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound(f"job {job_id!r} has no artifact {name!r}")
    return target
