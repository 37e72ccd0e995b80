"""Stopping a running handler from another thread of its worker process: for a lease its
worker could not keep (vq/fence.py) and for `vq cancel --now` (vq/cancel_now.py).

A signal for the worker's main thread (it interrupts a blocking call too), an asynchronous
exception for a thread worker (taken at its next Python step), and for a job in a forked
child, the child killed (a lost lease) or signalled (a cancel). The exception is raised
only while the handler runs (`interruptible`), at most once per lease: never in RQ's or
vq's bookkeeping after the handler returned.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vq.fence import Lease

INTERRUPT_SIGNAL = signal.SIGUSR2  # raised in a worker's main thread to stop its handler


class LeaseLost(BaseException):
    """Raised into a handler whose lease could not be kept. A BaseException, as
    KeyboardInterrupt is, so that a handler's own `except Exception` cannot swallow it."""


class CanceledNow(BaseException):
    """Raised into a handler that `vq cancel --now` interrupts (vq/cancel_now.py); a
    BaseException for the same reason as LeaseLost. run_job turns it into JobCanceled."""


held_by_job: dict[str, Lease] = {}  # job id -> the lease this process holds for it (kept by vq/fence.py)
_interruptible: dict[int, Lease] = {}  # thread ident -> the lease its handler runs under


_interrupt_lock = threading.Lock()  # orders a thread's interruption against its handler's end


class interruptible:
    """Around a handler call (vq/execution.py run_job): while it runs, a lost lease
    (LeaseLost) or `vq cancel --now` (CanceledNow) interrupts it. Only there: RQ's code and
    vq's bookkeeping around it are not written to be interrupted. The fence: the main
    thread's signal handler raises only while the handler's entry is here, and at most once
    per lease; another thread's asynchronous exception is set only under the lock, and one
    still pending when the handler returned is cleared on the way out."""

    def __init__(self, job_id: str):
        self.lease = held_by_job.get(job_id)
        self.thread = threading.get_ident()

    def __enter__(self):
        lease = self.lease
        if lease is not None:
            with _interrupt_lock:
                _interruptible[self.thread] = lease
                if lease.lost or lease.canceled:  # before the handler started (a late reply, an early cancel)
                    del _interruptible[self.thread]
                    if not lease.raised:
                        lease.raised = True
                        if lease.lost:
                            raise LeaseLost(f"job {lease.job_id}: its lease was lost before its handler started")
                        raise CanceledNow(f"job {lease.job_id}: canceled before its handler started")
        return self

    def __exit__(self, *exc):
        settle(self.thread)
        return False


def settle(thread: int) -> None:
    """The handler in `thread` has returned (or was interrupted): no interruption lands after this."""
    with _interrupt_lock:
        _interruptible.pop(thread, None)
        if thread != threading.main_thread().ident:  # clear an exception set but not yet raised
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)


def cancel_asked(job_id: str) -> bool:
    """Whether `vq cancel --now` reached this process for a job it runs (ctx.canceled: no I/O)."""
    lease = held_by_job.get(job_id)
    return lease is not None and lease.canceled


def interrupter(lease_thread: int) -> Callable[[], None]:
    """How to stop the handler running in this thread: a signal for the main thread (it
    interrupts a blocking call too), an asynchronous exception for another thread (taken at
    its next bytecode; one stuck in native code is ended with its process by the daemon)."""
    if lease_thread == threading.main_thread().ident:
        return lambda: signal.pthread_kill(lease_thread, INTERRUPT_SIGNAL)

    def raise_in_thread() -> None:
        with _interrupt_lock:
            lease = _interruptible.get(lease_thread)
            if lease is None or lease.raised:
                return
            lease.raised = True
            kind = LeaseLost if lease.lost else CanceledNow
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(lease_thread), ctypes.py_object(kind))

    return raise_in_thread


_forked_child = False  # this process is a job's forked child (`isolation: fork`)


def in_forked_child() -> None:
    """Called first in a job's forked child: the interrupt signal now means `vq cancel --now`
    (its worker kills it for a lost lease); the copied lease says canceled, so the child's
    own run_job and end (vq/job_outcomes.py) end the job canceled after its clean-up."""
    global _forked_child
    _forked_child = True


def forked_child() -> bool:
    return _forked_child


def install_interrupt_handler() -> None:
    """In a worker's main thread: the signal `interrupter` sends raises LeaseLost (or
    CanceledNow) in the handler, if one runs under a lost (or canceled) lease, once; else
    it is ignored (the handler has returned: the end is fenced). No lock here: the handler
    runs in the main thread, which may hold it."""

    def on_signal(signum, frame):
        if _forked_child:  # only its worker signals a job's child, and only for `vq cancel --now`
            for held in held_by_job.values():
                held.canceled = True
        main = threading.main_thread().ident  # set: the main thread has started
        lease = _interruptible.get(main) if main is not None else None
        if lease is None or lease.raised or not (lease.lost or lease.canceled):
            return
        lease.raised = True
        if lease.lost:
            raise LeaseLost(f"job {lease.job_id}: lease lost")
        raise CanceledNow(f"job {lease.job_id}: canceled now")

    signal.signal(INTERRUPT_SIGNAL, on_signal)


def kill_child(pid_of: Callable[[], int]) -> Callable[[], None]:
    """How to stop a job that runs in a forked child: kill the child."""

    def kill() -> None:
        pid = pid_of()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    return kill
