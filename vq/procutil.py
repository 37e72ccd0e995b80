"""Process helpers for the daemon's children."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from multiprocessing.process import BaseProcess

PR_SET_PDEATHSIG = 1


def signal_child(process: BaseProcess, signum: int) -> None:
    """A signal to a child process; one that was never started has no pid and gets none."""
    if process.pid is not None:
        os.kill(process.pid, signum)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies, so a worker whose
    daemon was killed stops (warmly) instead of running on unsupervised."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except OSError:
        pass
