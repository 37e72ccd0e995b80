"""Ctrl-C on `vq daemon` in its terminal, as an operator stops it. The terminal signals its
whole foreground process group; the running job must still get its grace period and
finish (it used to be requeued at once: each worker heard the Ctrl-C besides its
supervisor's warm stop and took the pair for "Ctrl-C twice"). Ctrl-C a second time is the
hurry: the running job goes back to its queue now, its attempt not charged."""

from __future__ import annotations

import os
import signal
import sys
import time

import pexpect

from tests.test_first_session import ANSI, process_tree


def _as_from_a_shell() -> None:
    """SIGHUP as an operator's shell leaves it: this suite may run under nohup (or from a
    background job), whose ignored SIGHUP the daemon would inherit and honour."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _daemon_in_a_terminal(vq) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "vq", "daemon", "--workers", "1", "--grace", "30"],
        env=vq.env,
        encoding="utf-8",
        codec_errors="replace",
        dimensions=(50, 200),
        timeout=60,
        preexec_fn=_as_from_a_shell,
    )
    child.expect("ready: 1 worker")
    return child


def _started(vq, job_id: str) -> None:
    deadline = time.monotonic() + 30
    while vq.json("show", job_id)["status"] != "started":
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    time.sleep(0.3)  # into the handler


def _exited(child: pexpect.spawn, within: float) -> str:
    child.expect(pexpect.EOF, timeout=within)
    child.close()
    return ANSI.sub("", child.before or "")


def test_ctrl_c_in_the_terminal_lets_the_running_job_finish(vq):
    child = _daemon_in_a_terminal(vq)
    job = vq.submit("test-sleep", {"seconds": 3, "steps": 6}, "--user", "alice")
    _started(vq, job)
    child.sendintr()
    log = _exited(child, within=40)
    view = vq.json("show", job)
    assert view["status"] == "finished", f"{view}\n{log[-3000:]}"
    assert view["attempts"] == 1, view
    assert "requeueing" not in log, log[-3000:]
    assert "Ctrl-C again to requeue them now" in log, log[-3000:]
    assert "Traceback" not in log and child.exitstatus == 0, log[-3000:]


def test_ctrl_c_twice_requeues_the_running_job_now(vq):
    child = _daemon_in_a_terminal(vq)
    job = vq.submit("test-sleep", {"seconds": 20, "steps": 40}, "--user", "alice")
    _started(vq, job)
    child.sendintr()
    time.sleep(0.5)
    child.sendintr()
    began = time.monotonic()
    log = _exited(child, within=25)
    assert time.monotonic() - began < 15, "the second Ctrl-C waited for the grace period (30 s) or the job (20 s)"
    view = vq.json("show", job)
    assert view["status"] == "queued", f"{view}\n{log[-3000:]}"
    assert "Ctrl-C again: requeueing jobs" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_kill_ttin_writes_every_threads_stack_and_the_daemon_runs_on(vq):
    """The operator's look into a daemon that seems stuck, as Sidekiq's TTIN: the stacks of
    the supervisor and of a worker are written to the log, and neither stops."""
    child = _daemon_in_a_terminal(vq)
    supervisor = child.pid
    worker = vq.json("workers")[0]["pid"]
    assert worker in process_tree(supervisor)
    os.kill(supervisor, signal.SIGTTIN)
    child.expect(r"Current thread 0x[0-9a-f]+ \(most recent call first\):")
    child.expect(r'File ".*vq/daemon.py", line \d+ in run')
    os.kill(worker, signal.SIGTTIN)
    child.expect(r"Current thread 0x[0-9a-f]+ \(most recent call first\):")
    child.expect(r'File ".*vq/rq_seam/worker.py", line \d+ in ')
    job = vq.submit("test-sleep", {"seconds": 0.1}, "--user", "alice")
    assert vq.wait_for(job, timeout=20)["status"] == "finished"
    child.sendintr()
    log = _exited(child, within=40)
    assert "vq daemon stopped" in log and child.exitstatus == 0, log[-3000:]


def _reaped(pid: int, within: float) -> bool:
    """Whether our child `pid` exited within `within` seconds (and is reaped)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
        time.sleep(0.1)
    return False


def test_closing_its_terminal_stops_the_daemon_and_kill_hup_still_reloads(vq):
    """A terminal that goes away (its window closed, the SSH session ended) hangs up on the
    daemon with a SIGHUP, which reloaded it: it ran on with its log going nowhere, holding
    the HTTP port. Now it stops, warm, as after SIGTERM; a `kill -HUP` while its terminal is
    there still reloads."""
    child = _daemon_in_a_terminal(vq)
    os.kill(child.pid, signal.SIGHUP)
    child.expect("configuration reloaded")
    job = vq.submit("test-sleep", {"seconds": 2, "steps": 4}, "--user", "alice")
    _started(vq, job)
    os.close(child.child_fd)  # the terminal's window closes
    child.child_fd = -1  # pexpect's, no longer ours
    pid, child.closed = child.pid, True
    if not _reaped(pid, within=40):
        left = process_tree(pid)
        for each in left:  # not to run on into the next test's Redis on the same port
            os.kill(each, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the daemon runs on without its terminal: {left}")
    view = vq.json("show", job)
    assert view["status"] == "finished" and view["attempts"] == 1, view
    assert not [d for d in vq.json("workers") if d.get("alive")], "its workers stopped with it"
