"""The completion caches' files, in $XDG_CACHE_HOME/vq (else ~/.cache/vq; the directory mode
0700, the files 0600, written atomically): the command tree, keyed by what it is built from,
and the helpers the config and Redis caches share. Part of the TAB's fast path
(vq/cli/completion_cache.py): standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from vq import __version__

KEEP = 4  # trees (installs), configs and Redis servers remembered

_HERE = Path(__file__).resolve().parent
_STATIC_FROM = ("model.py", "keys.py", "jobtypes.py")  # vq/ modules static_sources() reads, with vq/config/


def cache_dir() -> Path:
    """Where every completion cache lives (also the help cache, vq/cli/help_cache.py, has its own)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vq"


def _tree_key() -> str:
    """What the tree is built from: vq's and Python's versions, the CLI's modules, typer."""
    parts = [__version__, sys.version.split()[0]]
    files = (
        sorted(_HERE.glob("*.py"))
        + [_HERE.parent / name for name in _STATIC_FROM]
        + sorted((_HERE.parent / "config").glob("*.py"))
    )
    try:
        import importlib.util

        spec = importlib.util.find_spec("typer")
        if spec and spec.origin:
            files.append(Path(spec.origin))
    except (ImportError, ValueError):
        pass
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def tree_path() -> Path:
    """This install's tree file (another vq version or edited CLI module: another file)."""
    return cache_dir() / f"complete-tree-{_tree_key()}.json"


def read_json(path: Path):
    """The file's JSON, or None when it is missing or unreadable (no cache, not an error)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_json(path: Path, data) -> None:
    """Atomically, mode 0600, in a 0700 directory; a failure only means no cache."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.chmod(path.parent, 0o700)
        except OSError:
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # left by a process of the same pid that died
            os.unlink(tmp)
            fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        pass


def save_tree(tree: dict) -> None:
    """Write this vq's tree; keep the KEEP newest (several installs may share the folder)."""
    path = tree_path()
    write_json(path, tree)

    def age(old: Path) -> float:
        try:
            return old.stat().st_mtime
        except OSError:
            return 0.0

    for old in sorted(path.parent.glob("complete-tree-*.json"), key=age)[:-KEEP]:
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass


def forget_redis_values() -> None:
    """After a command that adds or removes jobs or recurring jobs: the next TAB asks Redis."""
    try:
        (cache_dir() / "complete-redis.json").unlink()
    except OSError:
        pass
