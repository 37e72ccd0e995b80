"""Per-job logs (vq/job_logs.py, vq/job_log_store.py): what a handler logs through ctx.log
or plain `logging` is kept with its job, bounded, and shown by `vq logs ID`, the HTTP API
(JSON and SSE) and the TUI's job screen; real daemons, the handler tests/plugins.py logger."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request

from tests.plugins import handler_pid

LOGGER = {"handler": "tests.plugins:logger", "attempts": 1, "timeout": 120000}
MARKUP = "[bold]not bold[/] [link=x]x \x1b[2J cleared? \x1b[31mred"


def _lines(vq, job_id: str) -> list[dict]:
    proc = vq.run("logs", job_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _archived(redis_conn, job_id: str, timeout: float = 20) -> None:
    """Until the archiver has copied the job's log into the history database."""
    deadline = time.monotonic() + timeout
    while redis_conn.sismember("vq:logs:pending", job_id):
        assert time.monotonic() < deadline, f"job {job_id}'s log was not archived"
        time.sleep(0.05)


def test_ctx_log_and_plain_logging_are_kept_in_order_with_levels_and_outlive_redis(vq, redis_conn):
    """Both ways of logging land in `vq logs --json`, in order, with levels; markup and
    escape codes are shown as text, a huge line is cut; once Redis no longer has the job,
    its lines come from the history database."""
    vq.configure(job_types={"test-log": LOGGER})
    say = [
        ["ctx", "INFO", "rendering scene 1"],
        ["logging", "WARNING", "library: slow disk"],
        ["ctx", "ERROR", MARKUP],
        ["logging", "INFO", "y" * 10_000],
    ]
    job_id = vq.submit("test-log", {"say": say}, "--user", "u")
    vq.start_daemon(workers=1)
    assert vq.wait_done(job_id)["status"] == "finished"
    lines = _lines(vq, job_id)
    assert [(line["level"], line["message"][:40]) for line in lines] == [
        ("INFO", "rendering scene 1"),
        ("WARNING", "library: slow disk"),
        ("ERROR", MARKUP[:40]),
        ("INFO", "y" * 40),
    ]
    assert lines[2]["message"] == MARKUP
    assert [line["seq"] for line in lines] == [1, 2, 3, 4] and {line["attempt"] for line in lines} == {1}
    assert lines[3]["message"] == "y" * 4096 + "… [5904 more characters cut]"
    assert all(abs(line["time"] - time.time()) < 120 for line in lines)
    text = vq.run("logs", job_id).stdout
    assert "[bold]not bold[/] [link=x]x \\x1b[2J cleared? \\x1b[31mred" in text  # literal, escapes spelt out
    assert "\x1b" not in text and "WARNING  library: slow disk" in text
    # Trimmed from Redis (as its expiry does): the history database still has its lines.
    _archived(redis_conn, job_id)
    assert redis_conn.ttl(f"vq:log:{job_id}") == redis_conn.ttl(f"rq:job:{job_id}")  # expires with the job
    redis_conn.delete(f"rq:job:{job_id}", f"vq:log:{job_id}", f"vq:logmeta:{job_id}")
    assert _lines(vq, job_id) == lines
    missing = vq.run("logs", "0123456789abcdef0123456789abcdef")
    assert missing.returncode == 4 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr


def test_over_the_cap_the_first_and_last_lines_are_kept_and_the_drop_counted(vq, redis_conn):
    vq.configure(job_types={"test-log": LOGGER}, limits={"maxLogLines": 10})
    job_id = vq.submit("test-log", {"count": 50}, "--user", "u")
    vq.start_daemon(workers=1)
    vq.wait_done(job_id)
    lines = _lines(vq, job_id)
    messages = [line.get("message") for line in lines]
    assert messages == [*(f"line {i}" for i in range(1, 6)), None, *(f"line {i}" for i in range(46, 51))]
    assert lines[5] == {"dropped": 40}
    assert "… 40 lines dropped (limits.maxLogLines / limits.maxLogBytes) …" in vq.run("logs", job_id).stdout
    assert vq.run("rm", job_id).returncode == 0  # its log goes with it
    assert redis_conn.exists(f"vq:log:{job_id}", f"vq:logmeta:{job_id}") == 0
    assert vq.run("logs", job_id).returncode == 4


def test_over_the_byte_cap_the_first_and_last_lines_are_kept(vq, redis_conn):
    vq.configure(job_types={"test-log": LOGGER}, limits={"maxLogBytes": 16_384})
    job_id = vq.submit("test-log", {"count": 60, "pad": 1000}, "--user", "u")
    vq.start_daemon(workers=1)
    vq.wait_done(job_id)
    lines = _lines(vq, job_id)
    kept = [line for line in lines if "seq" in line]
    assert kept[0]["message"].startswith("line 1x") and kept[-1]["message"].startswith("line 60x")
    dropped = [line["dropped"] for line in lines if "dropped" in line]
    assert len(dropped) == 1 and dropped[0] + len(kept) == 60 and len(kept) < 16, lines
    assert sum(len(raw) for raw in redis_conn.lrange(f"vq:log:{job_id}", 0, -1)) <= 16_384


def test_a_retried_jobs_lines_carry_their_attempt(vq):
    vq.configure(
        job_types={"test-log": {**LOGGER, "attempts": 2}},
        queue={"defaultJobOptions": {"backoff": {"type": "fixed", "delay": 200}}},
    )
    job_id = vq.submit("test-log", {"count": 2, "fail_until": 2}, "--user", "u")
    vq.start_daemon(workers=1)
    assert vq.wait_done(job_id)["status"] == "finished"
    lines = _lines(vq, job_id)
    assert [(line["seq"], line["attempt"], line["message"]) for line in lines] == [
        (1, 1, "line 1"),
        (2, 1, "line 2"),
        (3, 2, "line 1"),
        (4, 2, "line 2"),
    ]


def test_two_thread_jobs_in_one_process_keep_only_their_own_lines(vq, redis_conn):
    threaded = {**LOGGER, "concurrencyPerWorker": 2}
    vq.configure(job_types={"test-log": threaded})
    vq.start_daemon(workers=1)
    first = vq.submit("test-log", {"before": 3, "count": 6, "gate": "both"}, "--user", "a")
    second = vq.submit("test-log", {"before": 3, "count": 6, "gate": "both"}, "--user", "b")
    assert handler_pid(redis_conn, first) == handler_pid(redis_conn, second)  # one process, two threads
    vq.open_gate("both")
    for job_id in (first, second):
        vq.wait_done(job_id)
        assert [line["message"] for line in _lines(vq, job_id)] == [f"line {i}" for i in range(1, 7)]


def test_a_fork_isolated_jobs_lines_are_kept(vq, redis_conn):
    vq.configure(job_types={"test-log": {**LOGGER, "isolation": "fork"}})
    ids = [
        vq.submit("test-log", {"say": [["logging", "INFO", f"child {n}"]], "count": 2}, "--user", "u") for n in (1, 2)
    ]
    vq.start_daemon(workers=1)
    pids = {vq.wait_done(job_id)["result"]["pid"] for job_id in ids}
    assert len(pids) == 2, "each job ran in a child of its own"
    for n, job_id in enumerate(ids, 1):
        assert [line["message"] for line in _lines(vq, job_id)] == [f"child {n}", "line 1", "line 2"]


def test_follow_prints_lines_while_the_job_runs_and_exits_when_it_ends(vq, redis_conn):
    vq.configure(job_types={"test-log": LOGGER})
    job_id = vq.submit("test-log", {"before": 2, "count": 4, "gate": "f"}, "--user", "u")
    vq.start_daemon(workers=1)
    handler_pid(redis_conn, job_id)
    follower = subprocess.Popen(
        [sys.executable, "-m", "vq", "logs", job_id, "--follow", "--json"],
        env=vq.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        early = [json.loads(follower.stdout.readline())["message"] for _ in range(2)]  # while it still runs
        assert early == ["line 1", "line 2"]
        assert vq.json("show", job_id)["status"] == "started"
        vq.open_gate("f")
        rest, errors = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, errors
    assert [json.loads(line)["message"] for line in rest.splitlines()] == ["line 3", "line 4"]


def test_http_and_sse_give_a_users_own_job_log_only(vq, redis_conn):
    from tests.test_api import SECRET, serve

    vq.configure(job_types={"test-log": LOGGER})
    api = serve(vq, jwt_secret=SECRET)
    ann, bob, ops = api.token("ann"), api.token("bob"), api.token("ops", "operator")
    job_id = vq.submit("test-log", {"before": 1, "count": 3, "gate": "h"}, "--user", "ann")
    handler_pid(redis_conn, job_id)
    path = f"/api/jobs/test-log/{job_id}/logs"
    got: list[tuple[str, dict]] = []
    reader = threading.Thread(target=_read_sse, args=(api.base + path + "/stream", ann, got), daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got and got[0][0] == "log" and got[0][1]["message"] == "line 1"  # live, before the job ends
    vq.open_gate("h")
    reader.join(30)
    assert not reader.is_alive(), "the stream ends with the job"
    assert [(kind, data.get("message") or data.get("status")) for kind, data in got] == [
        ("log", "line 1"),
        ("log", "line 2"),
        ("log", "line 3"),
        ("end", "finished"),
    ]
    mine = api.call("GET", path, ann)
    assert mine.status == 200 and mine.body["ended"] is True, mine.body
    assert [line["message"] for line in mine.body["lines"]] == ["line 1", "line 2", "line 3"]
    assert [line["seq"] for line in api.call("GET", path + "?after=2", ops).body["lines"]] == [3]
    theirs = api.call("GET", path, bob)
    assert theirs.status == 404 and theirs.body["error"]["code"] == "not_found", theirs.body
    assert api.call("GET", path + "/stream", bob).status == 404
    assert api.call("GET", path).status == 401
    assert api.call("GET", path + "?after=-1", ann).status == 422
    paths = api.call("GET", "/openapi.json", ops).body["paths"]
    assert "/api/jobs/{jobType}/{jobId}/logs" in paths and "/api/jobs/{jobType}/{jobId}/logs/stream" in paths


def _read_sse(url: str, token: str, got: list) -> None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        kind = ""
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                got.append((kind, json.loads(line[6:])))


def test_the_tui_job_screen_shows_the_log_literally_and_live(vq, redis_conn):
    from tests.test_tui import dashboard, run, until
    from tests.test_tui import shown as plain
    from vq.tui.screens import JobScreen

    vq.configure(job_types={"test-log": LOGGER})
    job_id = vq.submit("test-log", {"say": [["ctx", "WARNING", MARKUP]], "count": 1, "gate": "t"}, "--user", "u")
    vq.start_daemon(workers=1)
    handler_pid(redis_conn, job_id)

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(120, 40)) as pilot:
            app.push_screen(JobScreen(job_id))
            shown = await until(pilot, lambda: "WARNING" in plain(app, "#log") and plain(app, "#log"), what="log")
            assert "[bold]not bold[/] [link=x]x \\x1b[2J cleared? \\x1b[31mred" in shown  # while it runs
            vq.open_gate("t")
            await until(pilot, lambda: "line 1" in plain(app, "#log"), what="the last line", timeout=30)

    run(scenario())
