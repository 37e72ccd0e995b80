"""Stopping a running handler from another thread of its worker process: for a lease its
worker could not keep (vq/fence.py) and for `vq cancel --now` (vq/cancel_now.py).

A signal for the worker's main thread (it interrupts a blocking call too), an asynchronous
exception for a thread worker (taken at its next Python step), and for a job in a forked
child, the child killed (a lost lease) or signalled (a cancel). The exception is raised
only while the handler runs (`interruptible`): never in RQ's or vq's bookkeeping after the
handler returned. LeaseLost is raised once per lease (its daemon kills a process that goes
on). CanceledNow sticks: Python swallows an exception raised in a destructor (`Exception
ignored in: <function Redis.__del__>`) and a handler may catch it, so while a canceled
handler still runs it is interrupted again (vq/cancel_now.py keep_interrupting) and its
next ctx call raises it again (`stop_if_canceled`, and `StopIfCanceled` on ctx.log).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vq.fence import Lease

INTERRUPT_SIGNAL = signal.SIGUSR2  # raised in a worker's main thread to stop its handler
STOP_AT_CHECKPOINT_SIGNAL = signal.SIGUSR1  # a stopping worker tells its forked job's child


class LeaseLost(BaseException):
    """Raised into a handler whose lease could not be kept. A BaseException, as
    KeyboardInterrupt is, so that a handler's own `except Exception` cannot swallow it."""


class CanceledNow(BaseException):
    """Raised into a handler that `vq cancel --now` interrupts (vq/cancel_now.py); a
    BaseException for the same reason as LeaseLost. run_job turns it into JobCanceled."""


held_by_job: dict[str, Lease] = {}  # job id -> the lease this process holds for it (kept by vq/fence.py)
_interruptible: dict[int, Lease] = {}  # thread ident -> the lease its handler runs under


_interrupt_lock = threading.Lock()  # orders a thread's interruption against its handler's end


def _again(lease: Lease) -> bool:
    """Whether the handler may be interrupted (again): a cancel as often as it goes on, a lost
    lease once."""
    return lease.canceled and not lease.lost if lease.raised else lease.lost or lease.canceled


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

    def call(self, handler: Callable, *args):
        """The handler, and no interruption after it returned or raised (the job's log flush
        and RQ's bookkeeping that follow are not to be interrupted)."""
        try:
            return handler(*args)
        finally:
            settle(self.thread)


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


def running(lease: Lease) -> bool:
    """Whether the lease's handler is still running (not yet returned or raised out)."""
    return _interruptible.get(lease.thread) is lease


def stop_if_canceled(only_if_interrupted: bool = False) -> None:
    """At a handler's ctx call (progress, checkpoint, log, canceled): CanceledNow, when
    `vq cancel --now` reached the job whose handler runs in this thread (with
    `only_if_interrupted`, only once the interruption was raised in it already: the handler
    caught it, or a destructor swallowed it). No I/O; nothing in another thread."""
    lease = _interruptible.get(threading.get_ident())
    if lease is None or not lease.canceled or lease.lost or (only_if_interrupted and not lease.raised):
        return
    lease.raised = True
    raise CanceledNow(f"job {lease.job_id}: canceled now (raised again at a ctx call)")


class StopIfCanceled(logging.Filter):
    """On a handler's logger (ctx.log): a line logged by a handler canceled now raises
    CanceledNow instead (stop_if_canceled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        stop_if_canceled()
        return True


def watch_log(logger: logging.Logger) -> logging.Logger:
    """ctx.log: the type's logger, with StopIfCanceled on it once."""
    if not any(isinstance(f, StopIfCanceled) for f in logger.filters):
        logger.addFilter(StopIfCanceled())
    return logger


def interrupter(lease_thread: int) -> Callable[[], None]:
    """How to stop the handler running in this thread: a signal for the main thread (it
    interrupts a blocking call too), an asynchronous exception for another thread (taken at
    its next bytecode; one stuck in native code is ended with its process by the daemon)."""
    if lease_thread == threading.main_thread().ident:
        return lambda: signal.pthread_kill(lease_thread, INTERRUPT_SIGNAL)

    def raise_in_thread() -> None:
        with _interrupt_lock:
            lease = _interruptible.get(lease_thread)
            if lease is None or not _again(lease):
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


_stop_at_checkpoint_in = 0  # the pid of the process STOP_AT_CHECKPOINT_SIGNAL reached


def ask_child_to_stop_at_checkpoint(pid: int) -> None:
    """A stopping worker (daemon.stopAtCheckpoint) tells the forked child running its job:
    it stops at its next ctx.checkpoint (vq/rq_seam/worker.py _stops_at_checkpoint)."""
    try:
        os.kill(pid, STOP_AT_CHECKPOINT_SIGNAL)
    except ProcessLookupError:
        pass


def stop_at_checkpoint_asked() -> bool:
    """In a job's forked child: whether its worker is stopping (it said so by signal). By
    pid, so that a child forked an instant before its handler was installed still hears,
    and a flag its parent got is not inherited."""
    return _stop_at_checkpoint_in == os.getpid()


def install_interrupt_handler() -> None:
    """In a worker's main thread (its forked children inherit them): the signal `interrupter` sends raises LeaseLost (or
    CanceledNow) in the handler, if one runs under a lost (or canceled) lease (LeaseLost
    once, CanceledNow each time: `_again`); else it is ignored (the handler has returned:
    the end is fenced). No lock here: the handler runs in the main thread, which may hold it."""

    def on_signal(signum, frame):
        if _forked_child:  # only its worker signals a job's child, and only for `vq cancel --now`
            for held in held_by_job.values():
                held.canceled = True
        main = threading.main_thread().ident  # set: the main thread has started
        lease = _interruptible.get(main) if main is not None else None
        if lease is None or not _again(lease):
            return
        lease.raised = True
        if lease.lost:
            raise LeaseLost(f"job {lease.job_id}: lease lost")
        raise CanceledNow(f"job {lease.job_id}: canceled now")

    def on_stop_signal(signum, frame):
        global _stop_at_checkpoint_in
        _stop_at_checkpoint_in = os.getpid()

    signal.signal(INTERRUPT_SIGNAL, on_signal)
    signal.signal(STOP_AT_CHECKPOINT_SIGNAL, on_stop_signal)  # inherited by a job's forked child


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
