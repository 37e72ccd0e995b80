"""Cancelling a running job now (`vq cancel --now`): the request, how the host running the
job hears of it, and the handler's clean-up.

The request marks the job's hash (keys.CANCEL_NOW_FIELD, with the reason and the actor
beside it) and publishes the job's id on one channel (keys.CANCEL_NOW_CHANNEL). Every
worker process that runs jobs holds one subscription to that channel, opened with its
lease renewer (vq/fence.py): an idle subscription costs Redis nothing (no command is sent
while nobody cancels; Redis pushes the message), where a poll per worker would cost a
command per worker per interval whether anything was canceled or not. The process that
holds the job's lease interrupts the handler (vq/fence.py Fence.cancel); the others
ignore the id. A message missed (a reconnect, a job whose lease was taken an instant
after the publish) is caught by the lease renewal the worker sends anyway
(vq/lua/renew.lua answers 2 when the field is set): within `lockDuration / 6`.

The interruption sticks: a handler that caught it, or a destructor that swallowed it
(Python only reports an exception raised in `__del__`), is interrupted again every
REDELIVER_EVERY_S while it still runs, REDELIVER_TIMES times at most (`keep_interrupting`;
a forked child is signalled again until it is gone, and killed after the clean-up budget),
and its next ctx call raises it again (vq/handler_stop.py stop_if_canceled).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from redis import Redis
from rq.job import Job

from vq import handler_stop, keys
from vq.model import TERMINAL, status_of

if TYPE_CHECKING:
    from vq.fence import Lease

log = logging.getLogger("vq.cancel")
CLEANUP_BUDGET_S = 5.0  # daemon.cancelCleanup's default: what on_cancel clean-up may take in all
SETTLE_WAIT_S = 3.0  # how long `vq cancel --now` waits to answer with the job's end
REDELIVER_EVERY_S = 0.5  # a canceled handler that still runs is interrupted again this often
REDELIVER_TIMES = 20  # ... at most this many times (10 s); then it runs on until it returns


def cleanup_budget_s(settings) -> float:
    """daemon.cancelCleanup, in seconds."""
    return settings.daemon.cancelCleanup / 1000


def ask_in(pipe, job_id: str, now: bool, actor: str | None) -> None:
    """Into the caller's pipeline (with the cancel request): who cancels, and for --now the
    mark the lease renewal reads and the message the running host hears at once."""
    job_key = keys.rq_job(job_id)
    if actor:
        pipe.hset(job_key, keys.CANCELED_BY_FIELD, actor)
    if now:
        pipe.hset(job_key, keys.CANCEL_NOW_FIELD, "1")
        pipe.publish(keys.CANCEL_NOW_CHANNEL, job_id)


def settled(fetch: Callable[[], Job | None], wait: float = SETTLE_WAIT_S) -> None:
    """Wait (a little) until the interrupted job has ended, so the answer shows it canceled."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        job = fetch()
        if job is None or status_of(job) in TERMINAL:
            return
        time.sleep(0.05)


def listen(make_client: Callable[[], Redis], on_cancel: Callable[[str], object]) -> None:
    """A worker process's listener thread: each job id published is handed to `on_cancel`
    (the process's Fence.cancel, which ignores the jobs it does not run). Reconnects after
    an outage; what it missed meanwhile the lease renewal catches."""
    backoff = 0.1
    while True:
        try:
            pubsub = make_client().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(keys.CANCEL_NOW_CHANNEL)
            backoff = 0.1
            while True:
                message = pubsub.get_message(timeout=30.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    on_cancel(data.decode() if isinstance(data, bytes) else str(data))
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        except Exception:  # the listener must outlive any one bad message
            log.exception("cancel listener: unexpected error; listening again in %.0fs", backoff)
            time.sleep(backoff)
            backoff = min(max(backoff * 2, 1.0), 60.0)


def start_listener(make_client: Callable[[], Redis], on_cancel: Callable[[str], object]) -> threading.Thread:
    thread = threading.Thread(target=listen, args=(make_client, on_cancel), daemon=True, name="vq-cancel-listener")
    thread.start()
    return thread


def keep_interrupting(lease: Lease, interrupt: Callable[[], None]) -> None:
    """After the first interruption of a handler in this process: while it still runs (it
    caught CanceledNow, or the exception landed in a destructor, which Python swallows),
    interrupt it again every REDELIVER_EVERY_S, REDELIVER_TIMES times at most."""

    def again() -> None:
        for _ in range(REDELIVER_TIMES):
            time.sleep(REDELIVER_EVERY_S)
            if lease.dropped or not handler_stop.running(lease):
                return
            log.warning("job %s: canceled now but its handler still runs; interrupting it again", lease.job_id)
            try:
                interrupt()
            except Exception:  # it ends canceled when it returns, in any case
                log.exception("job %s: could not interrupt it again", lease.job_id)
                return
        if handler_stop.running(lease) and not lease.dropped:
            log.warning(
                "job %s: canceled now, interrupted %d times and still running; it ends canceled when it returns",
                lease.job_id,
                REDELIVER_TIMES + 1,
            )

    threading.Thread(target=again, daemon=True, name="vq-cancel-again").start()


def interrupt_child(
    pid_of: Callable[[], int], signum: int, grace: float = CLEANUP_BUDGET_S + 1.0
) -> Callable[[], None]:
    """`vq cancel --now` for a forked job: the child is told (`signum`: CanceledNow raised in
    its handler, its clean-up runs, it writes its end and exits), told again every
    REDELIVER_EVERY_S while it is there (a handler that caught it or a destructor that
    swallowed it), and killed if it is still there after `grace` (stuck in native code, or
    its clean-up over the budget); its worker then ends the job canceled."""

    def interrupt() -> None:
        pid = pid_of()
        if not pid:
            return
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return

        def again_then_kill() -> None:
            deadline = time.monotonic() + grace
            while True:
                time.sleep(max(0.0, min(REDELIVER_EVERY_S, deadline - time.monotonic())))
                if pid_of() != pid:
                    return
                late = time.monotonic() >= deadline
                try:
                    os.kill(pid, signal.SIGKILL if late else signum)
                except ProcessLookupError:
                    return
                if late:
                    return

        threading.Thread(target=again_then_kill, daemon=True, name="vq-cancel-child").start()

    return interrupt


def run_cleanups(hooks: list[Callable[[], object]], job_log: logging.Logger, budget: float = CLEANUP_BUDGET_S) -> None:
    """The clean-up a handler registered with ctx.on_cancel, newest first, after it was
    interrupted: each in a thread of its own so that the whole takes at most `budget`
    seconds (daemon.cancelCleanup; one still running then is left behind and logged, and the
    job's slots are given back); an error is logged, never raised: the job is canceled
    either way."""
    deadline = time.monotonic() + budget
    for hook in reversed(hooks):
        left = deadline - time.monotonic()
        if left <= 0:
            job_log.warning("on_cancel: out of time (%gs), %s not run", budget, _name(hook))
            continue

        def guarded(hook=hook) -> None:
            try:
                hook()
            except Exception:  # noqa: BLE001 - a clean-up's error is logged, not fatal
                job_log.exception("on_cancel: %s raised", _name(hook))

        thread = threading.Thread(target=guarded, daemon=True, name="vq-on-cancel")
        thread.start()
        thread.join(left)
        if thread.is_alive():
            job_log.warning("on_cancel: %s still running after %gs; left behind", _name(hook), budget)


def _name(hook: Callable) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)
