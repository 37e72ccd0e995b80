"""Files vq ships beside its package: the example config, the systemd unit and the man page.

They live at the top of the repository (config.example.yaml, scripts/vq.service, man/vq.1)
and a wheel installs them as data files under the environment's prefix (share/vq/,
share/man/man1/), not inside the package, so there is one copy of each. This module finds
them: in a checkout (an editable install, or running from the source tree) the repository's
own file, else the one the installed distribution recorded (a venv, `pip install --user`,
a `--prefix`), else under sys.prefix."""

from __future__ import annotations

import importlib.metadata as metadata
import sys
from pathlib import Path, PurePosixPath

from vq.errors import VqError

PACKAGE_DIR = Path(__file__).resolve().parent
IN_CHECKOUT = {"config.example.yaml": "config.example.yaml", "vq.service": "scripts/vq.service", "vq.1": "man/vq.1"}
INSTALLED = {
    "config.example.yaml": "share/vq/config.example.yaml",
    "vq.service": "share/vq/vq.service",
    "vq.1": "share/man/man1/vq.1",
}


def shipped_file(name: str) -> Path:
    """The path of one shipped file (a key of INSTALLED); VqError if this install lacks it."""
    for candidate in _candidates(name):
        if candidate.is_file():
            return candidate
    raise VqError(f"{INSTALLED[name]} is not installed with this vq (reinstall it from its wheel)")


def _candidates(name: str):
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file():
        yield checkout / IN_CHECKOUT[name]
    recorded = _recorded(INSTALLED[name])
    if recorded is not None:
        yield recorded
    yield Path(sys.prefix) / INSTALLED[name]


def _recorded(tail: str) -> Path | None:
    """Where the installed distribution put `tail`, if that distribution is the vq imported
    here (another vq elsewhere on the machine may have its own, older copy)."""
    try:
        dist = metadata.distribution("vq")
    except metadata.PackageNotFoundError:
        return None
    if Path(str(dist.locate_file("vq/__init__.py"))).resolve() != PACKAGE_DIR / "__init__.py":
        return None
    for entry in dist.files or []:
        if PurePosixPath(entry).as_posix().endswith(tail):
            return Path(str(dist.locate_file(entry))).resolve()
    return None
