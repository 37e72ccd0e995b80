"""Workers dying and Redis restarting lose no job."""

from __future__ import annotations

import os
import signal
import time

from tests.plugins import handler_pid


def test_redis_restart_is_survived_and_nothing_is_lost(vq, redis_server):
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": False}})
    daemon = vq.start_daemon(workers=2)
    before = vq.submit("test-echo", {"n": 1}, "--user", "u")
    assert vq.wait_for(before)["status"] == "finished"
    waiting = vq.submit("test-echo", {"n": 2}, "--user", "u", "--delay", "4s")
    redis_server.kill()
    down = vq.run("show", before)
    assert down.returncode == 3 and "cannot reach Redis" in down.stderr
    time.sleep(3)
    redis_server.start()  # AOF: everything acknowledged before the crash is back
    assert daemon.poll() is None, "the daemon never exits because Redis blipped"
    after = vq.submit("test-echo", {"n": 3}, "--user", "u")
    assert vq.wait_for(after, timeout=60)["status"] == "finished"
    assert vq.wait_for(waiting, timeout=60)["status"] == "finished"
    assert vq.json("show", before)["status"] == "finished"
    log = vq.daemon_log(0)
    assert "Traceback" not in log
    outage_lines = [line for line in log.splitlines() if "Redis unreachable" in line]
    assert 1 <= len(outage_lines) <= 5, f"said once per process (2 workers, timer, archiver, webhooks): {outage_lines}"
    assert "Redis is back" in log


def test_a_killed_worker_with_retries_left_does_not_lose_its_job(vq, redis_conn):
    """rq issues 2015 and 1461: a job with a Retry disappeared, or was never requeued, when
    its worker was killed. In vq the lease lapses and the job runs again."""
    vq.configure(
        queue={"settings": {"lockDuration": 1500, "stalledInterval": 1000}},
        job_types={"test-track": {"handler": "tests.plugins:tracked", "attempts": 3}},
    )
    job_id = vq.submit("test-track", {"seconds": 2}, "--user", "u", "--subscription", "pro")
    vq.start_daemon(workers=2)
    vq.wait_for(job_id, statuses=("started",))
    os.kill(handler_pid(redis_conn, job_id), signal.SIGKILL)
    view = vq.wait_for(job_id, timeout=30)
    assert view["status"] == "finished"
    assert redis_conn.llen("test:started") == 2, "run again once, not lost, not doubled"


def test_a_long_running_job_is_not_mistaken_for_a_stalled_one(vq, redis_conn):
    """rq issue 2289: live jobs wrongly marked abandoned. A job running for several lease
    periods keeps its lease (the worker renews it) and runs exactly once."""
    vq.configure(queue={"settings": {"lockDuration": 1000, "stalledInterval": 1000}})
    job_id = vq.submit("test-track", {"seconds": 4}, "--user", "u", "--subscription", "pro")
    vq.start_daemon(workers=1)
    view = vq.wait_for(job_id, timeout=30)
    assert view["status"] == "finished" and view["attempts"] == 1
    assert redis_conn.llen("test:started") == 1
    assert "stalled" not in vq.daemon_log(0)


def test_a_job_admitted_to_a_worker_that_died_before_starting_it_is_requeued(redis_conn, redis_server, tmp_path):
    """Found by scripts/chaos: admission hands a job to a worker that is killed before RQ
    marks it started. Once its lease has lapsed, recovery puts it back in line."""
    from vq import stalled
    from vq.admission import Admission
    from vq.config import load_settings
    from vq.submission import Submission, submit

    settings = load_settings(
        env={"REDIS_URL": redis_server.url, "XDG_CONFIG_HOME": str(tmp_path), "VQ_DATA_DIR": str(tmp_path)}
    )
    settings.queue.settings.lockDuration = 1000
    job_id = submit(redis_conn, settings, Submission("content-analysis", {"content": "x"}, user_id="u"))
    admission = Admission(redis_conn, 1000)
    assert admission.admit(["content-analysis"])[0] == job_id  # ... and the worker dies here
    assert stalled.recover(redis_conn, settings) == [], "not before its lease has lapsed"
    time.sleep(1.1)
    assert stalled.recover(redis_conn, settings) == [(job_id, "requeued")]
    assert admission.admit(["content-analysis"])[0] == job_id, "it can be admitted again"


def _transaction_with(monitor, conn, marker: str) -> list[str]:
    """The commands of the MULTI ... EXEC (as MONITOR saw them) in which one holds `marker`."""
    conn.echo("vq-test-end")
    block: list[str] | None = None
    for seen in monitor.listen():
        command = seen["command"]
        if command == "ECHO vq-test-end":
            return []
        if command == "MULTI":
            block = []
        elif command == "EXEC":
            if block is not None and any(marker in c for c in block):
                return block
            block = None
        elif block is not None:
            block.append(command)
    return []


def test_a_stalled_event_is_appended_in_the_step_that_requeues_the_job(redis_conn, redis_server, tmp_path):
    """Found in a new user's trial: `vq history` showed an idle worker's `started` before the
    `stalled` that requeued the job, as recovery appended the event after its transaction. The
    event is now in it, so nothing can start the job before the event is in the stream."""
    from vq import events, stalled
    from vq.admission import Admission, Start
    from vq.config import load_settings
    from vq.submission import Submission, submit

    settings = load_settings(
        env={"REDIS_URL": redis_server.url, "XDG_CONFIG_HOME": str(tmp_path), "VQ_DATA_DIR": str(tmp_path)}
    )
    settings.queue.settings.lockDuration = 1000
    job_id = submit(redis_conn, settings, Submission("content-analysis", {"content": "x"}, user_id="u"))
    admission = Admission(redis_conn, 1000)
    started = admission.admit(["content-analysis"], Start("w1", "e1", 60, False))
    assert started is not None and started[0] == job_id
    assert redis_conn.hget(f"rq:job:{job_id}", "status") == b"started"  # ... and its worker stops here
    time.sleep(1.1)
    with redis_conn.monitor() as monitor:
        assert stalled.recover(redis_conn, settings) == [(job_id, "requeued")]
        step = _transaction_with(monitor, redis_conn, "rq:queue:")
    assert step, "the job is requeued in a transaction"
    assert any(c.startswith("XADD vq:events ") and f"event stalled jobId {job_id}" in c for c in step), step
    ours = [e["event"] for e in events.read(redis_conn) if e["jobId"] == job_id]
    assert ours[-1] == "stalled"


def test_a_job_admitted_but_never_started_is_requeued_with_its_event_in_the_same_step(
    redis_conn, redis_server, tmp_path
):
    from vq import stalled
    from vq.admission import Admission
    from vq.config import load_settings
    from vq.submission import Submission, submit

    settings = load_settings(
        env={"REDIS_URL": redis_server.url, "XDG_CONFIG_HOME": str(tmp_path), "VQ_DATA_DIR": str(tmp_path)}
    )
    settings.queue.settings.lockDuration = 1000
    job_id = submit(redis_conn, settings, Submission("content-analysis", {"content": "x"}, user_id="u"))
    assert Admission(redis_conn, 1000).admit(["content-analysis"])[0] == job_id
    time.sleep(1.1)
    with redis_conn.monitor() as monitor:
        assert stalled.recover(redis_conn, settings) == [(job_id, "requeued")]
        step = _transaction_with(monitor, redis_conn, "rq:queue:")
    assert any(c.startswith("XADD vq:events ") and "event stalled" in c and "never started" in c for c in step), step


def test_a_retried_event_is_appended_in_the_step_that_requeues_the_job(redis_conn, redis_server, tmp_path):
    """CI under load: the web UI's dead-letter retry showed `vq history` ending in the retry's
    `queued` after the run it caused (`started`, `failed`), as the event was appended after
    the transaction that requeued the job, and a worker took it in between."""
    from vq import events, jobs
    from vq.config import load_settings
    from vq.submission import Submission, submit

    settings = load_settings(
        env={"REDIS_URL": redis_server.url, "XDG_CONFIG_HOME": str(tmp_path), "VQ_DATA_DIR": str(tmp_path)}
    )
    job_id = submit(redis_conn, settings, Submission("content-analysis", {"content": "x"}, user_id="u"))
    jobs.cancel(redis_conn, job_id, "to retry it")
    with redis_conn.monitor() as monitor:
        assert jobs.retry(redis_conn, job_id, settings)["status"] == "queued"
        step = _transaction_with(monitor, redis_conn, "rq:queue:")
    assert step, "the job is requeued in a transaction"
    assert any(c.startswith("XADD vq:events ") and f"event retried jobId {job_id}" in c for c in step), step
    assert [e["event"] for e in events.read(redis_conn) if e["jobId"] == job_id][-1] == "retried"
