"""A worker's job event lines (`vq.events`: started, finished, ...) leave the job loop and
are written in batches every half second (vq/log_batching.py): each still arrives, within
about a second, once, in the order its process logged it, whatever ends the worker (a warm
stop with jobs in flight, a cold stop, its max-jobs restart, a reload), text or JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import time

from vq import events, log_batching, logs

LINE = re.compile(r"vq\.events: job (\S+) (\S*) (\w[\w-]*)\b")


def _lines(vq, index: int = 0) -> list[tuple[str, str]]:
    """(job id, event) of every event line in a daemon's log, in its order."""
    return [(m.group(1), m.group(3)) for m in map(LINE.search, vq.daemon_log(index).splitlines()) if m]


def _settle(vq, wanted, timeout: float = 10.0, index: int = 0) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = _lines(vq, index)
        if wanted(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _ended_in_stream(redis_conn) -> dict[str, list[str]]:
    """The events the workers appended, per job: the record the lines must match."""
    seen: dict[str, list[str]] = {}
    for item in events.read(redis_conn, count=100_000):
        if item["event"] in ("started", "finished"):
            seen.setdefault(item["jobId"], []).append(item["event"])
    return seen


def test_a_worker_writes_its_event_lines_from_a_thread_within_a_second(vq):
    daemon = vq.start_daemon(workers=1, terminal=True)
    job = vq.submit("test-noop", {}, "--user", "ann")
    vq.wait_for(job)
    ended = time.monotonic()
    lines = _settle(vq, lambda lines: (job, "finished") in lines, timeout=5)
    took = time.monotonic() - ended
    assert (job, "started") in lines and (job, "finished") in lines, vq.daemon_log()[-3000:]
    assert took < 1.5, f"the finished line came {took:.2f}s after the job ended"
    # The worker's batch thread, as `kill -TTIN` shows it (every thread's stack, vq/procutil.py)
    worker = vq.json("workers")[0]["pid"]
    os.kill(worker, signal.SIGTTIN)
    deadline = time.monotonic() + 10
    while "in _write_every" not in vq.daemon_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.search(r'File ".*vq/log_batching\.py", line \d+ in _write_every', vq.daemon_log()), vq.daemon_log()[
        -3000:
    ]
    assert vq.stop_daemon(daemon) == 0


def test_every_line_arrives_after_a_warm_stop_with_jobs_in_flight(vq, redis_conn):
    daemon = vq.start_daemon(workers=2, terminal=True)
    quick = [vq.submit("test-noop", {}, "--user", "bob") for _ in range(20)]
    slow = [vq.submit("test-sleep", {"seconds": 2.0, "steps": 4}, "--user", "ann") for _ in range(2)]
    for job in slow:
        vq.wait_for(job, statuses=("started",))
    assert vq.stop_daemon(daemon) == 0  # at once: both finish within the grace period, as the workers stop
    time.sleep(0.3)  # the terminal copier's last chunk
    record = _ended_in_stream(redis_conn)
    assert all(record.get(job) == ["started", "finished"] for job in slow), record
    lines = _lines(vq)
    for job, said in record.items():
        assert [event for j, event in lines if j == job and event in ("started", "finished")] == said, (job, said)
    assert set(quick) <= set(record)  # they ran first


def test_the_requeued_line_arrives_after_a_cold_stop(vq, redis_conn):
    """Ctrl-C twice: the running job is put back at once, its `requeued` line logged by the
    worker just before it exits, and written."""
    daemon = vq.start_daemon("--grace", "30", workers=1, terminal=True)
    job = vq.submit("test-sleep", {"seconds": 20, "steps": 40}, "--user", "ann")
    vq.wait_for(job, statuses=("started",))
    time.sleep(0.3)  # into the handler
    daemon.send_signal(signal.SIGINT)
    time.sleep(0.5)
    daemon.send_signal(signal.SIGINT)
    assert daemon.wait(25) == 0
    time.sleep(0.3)  # the terminal copier's last chunk
    assert vq.json("show", job)["status"] == "queued"
    said = [e for j, e in _lines(vq) if j == job]
    assert "requeued" in [item["event"] for item in events.read(redis_conn) if item["jobId"] == job]
    assert said[0] == "started" and "requeued" in said, vq.daemon_log()[-3000:]


def test_every_line_arrives_across_max_jobs_restarts(vq, redis_conn):
    """daemon.maxJobsPerWorker: the worker exits right after its last job's `finished` line,
    and the daemon starts another; no line of the one that exited is lost."""
    vq.configure(daemon={"maxJobsPerWorker": 3})
    daemon = vq.start_daemon(workers=1, terminal=True)
    jobs = [vq.submit("test-noop", {}, "--user", "ann") for _ in range(7)]
    for job in jobs:
        vq.wait_for(job)
    lines = _settle(vq, lambda lines: all((job, "finished") in lines for job in jobs))
    for job in jobs:
        assert [e for j, e in lines if j == job] == ["started", "finished"], vq.daemon_log()[-3000:]
    assert len({m for m in re.findall(r"worker=(\S+)", vq.daemon_log())}) >= 3  # two restarts
    assert vq.stop_daemon(daemon) == 0


def test_every_line_arrives_after_a_reload(vq, redis_conn):
    daemon = vq.start_daemon(workers=1, terminal=True)
    job = vq.submit("test-sleep", {"seconds": 1.0, "steps": 2}, "--user", "ann")
    vq.wait_for(job, statuses=("started",))
    before = vq.json("workers")[0]["pid"]
    daemon.send_signal(signal.SIGHUP)  # the worker finishes its job, exits, and comes back
    assert vq.wait_for(job)["status"] == "finished"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = vq.json("workers")
        if workers and workers[0]["pid"] != before:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the worker did not come back after the reload\n" + vq.daemon_log()[-3000:])
    after = vq.submit("test-noop", {}, "--user", "bob")
    vq.wait_for(after)
    lines = _settle(vq, lambda lines: (after, "finished") in lines)
    # The old worker's last line (the job it finished while reloading) is there, before the stop
    assert [e for j, e in lines if j == job] == ["started", "finished"], vq.daemon_log()[-3000:]
    assert [e for j, e in lines if j == after] == ["started", "finished"], vq.daemon_log()[-3000:]
    assert vq.stop_daemon(daemon) == 0


def test_a_handlers_lines_come_between_its_jobs_started_and_finished(vq):
    """The handler's own lines are written at once, the event lines in batches: the batch
    still waiting is written first, so the terminal shows them in the order they happened."""
    vq.configure(job_types={"test-chatty": {"handler": "tests.plugins:chatty", "attempts": 1}})
    daemon = vq.start_daemon(workers=1, terminal=True)
    jobs = [vq.submit("test-chatty", {"word": f"word-{n}"}, "--user", "ann") for n in range(5)]
    for job in jobs:
        vq.wait_for(job)
    _settle(vq, lambda lines: (jobs[-1], "finished") in lines, timeout=5)
    assert vq.stop_daemon(daemon) == 0
    log = vq.daemon_log().splitlines()
    for n, job in enumerate(jobs):

        def at(text: str) -> int:
            found = [i for i, line in enumerate(log) if text in line]
            assert len(found) == 1, (text, found, "\n".join(log[-60:]))
            return found[0]

        started = at(f"vq.events: job {job} test-chatty started")
        says = at(f"chatty handler says word-{n} [job {job}]")
        library = at(f"some.library: a library inside the handler speaks [job {job}]")
        finished = at(f"vq.events: job {job} test-chatty finished")
        assert started < says < library < finished, "\n".join(log[started - 2 : finished + 3])


def test_json_lines_stay_one_object_each_with_the_jobs_fields(vq, redis_conn):
    """Each line once, a forked job's (`isolation: fork`) too: its child writes its
    `finished` line at once (the batch stays with its worker, which writes what the child
    inherited waiting)."""
    daemon = vq.start_daemon("--log-format", "json", workers=2, terminal=True)
    jobs = [vq.submit("test-noop", {}, "--user", f"user-{n}") for n in range(30)]
    jobs += [vq.submit("test-forked", {"seconds": 0.05, "steps": 1}, "--user", f"user-{n}") for n in range(30, 33)]
    for job in jobs:
        vq.wait_for(job)
    assert vq.stop_daemon(daemon) == 0
    time.sleep(0.3)  # the terminal copier's last chunk
    records = []
    for line in vq.daemon_log().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not one JSON object: {line!r}") from None
    for n, job in enumerate(jobs):
        said = {r["event"]: r for r in records if r.get("job_id") == job and r["logger"] == "vq.events"}
        assert set(said) == {"started", "finished"}, said  # once each (the CLI's `created` is its own)
        for event in ("started", "finished"):  # the job's fields, taken on the worker's job thread
            r = said[event]
            assert r["process"].startswith("worker-") and r["user_id"] == f"user-{n}", r
            assert r["worker"] and r["job_type"] in ("test-noop", "test-forked") and r["level"] == "INFO", r


def test_a_warning_or_another_loggers_line_first_writes_the_batch_waiting():
    stream = io.StringIO()
    target = logs.Handler(stream)
    target.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    batched = log_batching.Batched(target, every=60)
    target.addFilter(log_batching.FlushFirst(batched))

    def record(name: str, level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, None, None)

    batched.handle(record("vq.events", logging.INFO, "job a started"))
    batched.handle(record("vq.events", logging.INFO, "job b started"))
    assert stream.getvalue() == ""  # waiting for the writer
    target.handle(record("vq.handler.x", logging.INFO, "analysed 2 words"))
    batched.handle(record("vq.events", logging.INFO, "job a finished"))
    batched.handle(record("vq.events", logging.WARNING, "a warning is never held back"))
    assert stream.getvalue().splitlines() == [
        "INFO vq.events: job a started",
        "INFO vq.events: job b started",
        "INFO vq.handler.x: analysed 2 words",
        "INFO vq.events: job a finished",
        "WARNING vq.events: a warning is never held back",
    ]
    batched.close()
