"""The root `vq --help`, replayed from a file instead of importing typer, rich and every command.

The first `vq --help` renders as usual and keeps a copy of what it printed; later ones print the
copy. The key names everything the rendering depends on: vq's version, the size and mtime of the
CLI's source files and of typer's and rich's (an upgrade of either renders afresh), the program name, the terminal width, whether stdout is a terminal and the
colour variables. Any failure just means rendering as usual.
"""

import hashlib
import os
import sys
from pathlib import Path

from vq import __version__

_COLOUR_ENV = (
    "TERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "COLUMNS",
    "LINES",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "_TYPER_FORCE_DISABLE_TERMINAL",
    "COLORTERM",
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vq"


def _key() -> str:
    parts = [__version__, os.path.basename(sys.argv[0]), str(sys.stdout.isatty())]
    try:
        parts.append(str(os.get_terminal_size(sys.stdout.fileno()).columns))
    except (OSError, ValueError, AttributeError):
        parts.append("-")
    parts += [f"{name}={os.environ.get(name, '')}" for name in _COLOUR_ENV]
    here = Path(__file__).parent
    for path in sorted(here.glob("*.py")):
        stat = path.stat()
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    parts += [_library_stamp(name) for name in ("typer", "rich")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _library_stamp(name: str) -> str:
    """Size and mtime of a library's __init__.py, found without importing it: pip rewrites it on
    an upgrade."""
    from importlib.util import find_spec

    try:
        spec = find_spec(name)
        stat = os.stat(spec.origin) if spec and spec.origin else None
    except (ImportError, ValueError, OSError):
        stat = None
    return f"{name}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{name}:-"


def _path() -> Path:
    return cache_dir() / f"help-{_key()}.txt"


def replay() -> bool:
    """Print the cached root help; False when there is none for this key."""
    try:
        text = _path().read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


class _Tee:
    """sys.stdout as rich sees it (isatty, fileno, encoding), keeping a copy of what is written."""

    def __init__(self, real):
        self._real = real
        self.copy: list[str] = []

    def write(self, text) -> int:
        self.copy.append(text.decode(self._real.encoding or "utf-8") if isinstance(text, bytes) else text)
        return self._real.write(text)

    def __getattr__(self, name):
        return getattr(self._real, name)


def record(render) -> None:
    """Run `render` (which prints the root help and exits) and keep what it printed for next time."""
    path = _path()
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        render()
    except SystemExit as exc:
        if exc.code in (0, None):
            _save(path, "".join(tee.copy))
        raise
    finally:
        sys.stdout = tee._real


def _save(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # shared with completion's caches
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
