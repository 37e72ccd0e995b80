"""A secret vq makes once and keeps in its data directory, readable only by its owner
(the JWT signing secret, the data encryption key).

Several processes may ask for it at the same moment (a daemon's children, a CLI call):
the first to link its file into place wins, and everyone reads that one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from vq.private import private_dir


def read_or_create(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, written with `make()` (mode 600) if there is none yet."""
    if not path.exists():
        private_dir(path.parent)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(make())
            try:
                os.link(temporary, path)  # atomic, and refuses to replace one that appeared meanwhile
            except FileExistsError:
                pass
        finally:
            os.unlink(temporary)
    return path.read_text().strip()
