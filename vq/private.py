"""Folders and files that hold vq's data, private to vq's user from the moment they exist.

Whichever process makes the data directory first (a daemon, or a CLI call under the usual
umask 022), it must not be world-readable even for a moment: every folder made here is
0700 and every file 0600. SQLite gives a database's `-wal` and `-shm` files the mode of the
database file, so making `history.db` here first keeps those private too.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """`mkdir -p path`, each folder it makes (the last and any missing parents) mode 0700;
    folders already there are left as they are."""
    missing = []
    here = Path(path)
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(folder, 0o700)  # exactly 0700 whatever the umask
    return Path(path)


def private_file(path: Path) -> Path:
    """Make `path` an empty file of mode 0600 unless something is there already (its
    folders private too)."""
    private_dir(Path(path).parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return Path(path)
