"""Process helpers for the daemon and its children."""

from __future__ import annotations

import atexit
import ctypes
import faulthandler
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import NoReturn

PR_SET_PDEATHSIG = 1


def signal_child(process: BaseProcess, signum: int) -> None:
    """A signal to a child process; one that was never started has no pid and gets none."""
    if process.pid is not None:
        os.kill(process.pid, signum)


STACKS_SIGNAL = signal.SIGTTIN  # as Sidekiq: `kill -TTIN <pid>` prints every thread's stack


def stacks_on_signal() -> None:
    """`kill -TTIN` on the daemon or any of its processes writes every thread's stack to
    stderr (the log), and the process runs on. For a process that seems stuck: it works
    even while the main thread is blocked in a lock or a system call, since the dump is
    written by the C signal handler, not by Python code waiting its turn. Its children,
    forked after this, inherit it."""
    try:
        faulthandler.register(STACKS_SIGNAL, file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError, RuntimeError):  # no fd 2 (stderr closed), or no such signal
        pass


def has_controlling_terminal() -> bool:
    """Whether this process still has a controlling terminal. A terminal's hangup (its
    window closed, the SSH session ended) takes it away from the whole session; a `kill
    -HUP` from elsewhere does not, which tells the two SIGHUPs apart."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies, so a worker whose
    daemon was killed stops (warmly) instead of running on unsupervised."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except OSError:
        pass


def tool_dies_with_caller(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` for a tool a handler runs (ffmpeg, espeak): it dies with the process
    that ran it. A worker killed mid-job (OOM, SIGKILL) otherwise left its ffmpeg running,
    still writing the segment the job's next attempt renders into the same folder. prctl is
    looked up here, not in the forked child, where only the call itself runs."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    caller = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != caller:  # the caller died before the prctl took effect
            os._exit(1)

    return preexec


def exit_skipping_teardown(code: int) -> NoReturn:
    """Leave a process whose work is done without Python's teardown of its modules: a
    stopped daemon holds some 800, and freeing them one by one took 1-4 s on a loaded
    machine, which `systemctl stop` or a deploy waited for (tests/test_lifecycle.py). The
    exit handlers still run (logging flushes its handlers), then stdout and stderr are
    flushed; the files and sockets left are closed by the kernel."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # closed, or its reader gone: nothing more can be said there
    os._exit(code & 0xFF)
