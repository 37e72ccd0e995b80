"""Job ids as printed: a unique prefix of 8 or more characters works wherever an id is taken
(CLI and HTTP); an ambiguous one is refused naming the candidates, a shorter one with a
line saying why."""

from __future__ import annotations

import time

from rq.job import Job

from tests.test_api import SECRET, _wait, serve
from vq.config import load_settings
from vq.submission import Submission, submit


def _one_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _with_ids(vq, conn, user: str, *job_ids: str) -> None:
    """Jobs with chosen ids (as a recurring tick's are chosen), made by vq's own submit()."""
    settings = load_settings(str(vq.config_path))
    for job_id in job_ids:
        submit(conn, settings, Submission(job_type="test-noop", data={}, user_id=user, job_id=job_id))


def test_every_job_command_takes_the_printed_short_id(vq):
    first = vq.submit("test-noop", {}, "--user", "ann")
    second = vq.submit("test-noop", {}, "--user", "ann", "--depends-on", first[:10])
    assert not (vq.data_dir / "history.db").exists(), "no history yet: Redis alone answers"
    tree = vq.run("show", second[:8], "--tree")
    assert tree.returncode == 0, tree.stderr
    printed = tree.stdout.split()[0]  # the 12 characters the tree prints
    assert len(printed) == 12 and vq.json("show", printed)["dependsOn"] == [first]
    assert vq.json("cancel", second[:8])["status"] == "canceled"
    assert vq.json("retry", second[:9])["id"] == second
    vq.start_daemon()
    vq.wait_for(second)
    assert vq.json("result", first[:8])["id"] == first
    assert vq.json("progress", first[:8])["status"] == "finished"
    assert vq.json("history", first[:8])["job"]["id"] == first
    assert vq.json("artifacts", "ls", first[:8])["id"] == first
    dead = vq.submit("test-broken", {}, "--user", "ann")
    vq.wait_for(dead)
    assert [v["id"] for v in vq.json("dlq", "retry", dead[:8])] == [dead]
    vq.wait_for(dead)
    assert vq.json("rm", second[:8]) == {"id": second, "removed": True}
    assert vq.run("show", second).returncode == 4


def test_an_ambiguous_or_short_prefix_is_refused_in_one_line(vq, redis_conn):
    x, y = "feedbeef" + "0" * 24, "feedbeef" + "1" * 24
    _with_ids(vq, redis_conn, "ann", x, y)
    for command in (["show"], ["show", "--tree"], ["cancel"], ["rm"], ["progress"]):
        proc = vq.run(command[0], "feedbeef", *command[1:])
        line = _one_line(proc)
        assert proc.returncode == 2 and "ambiguous" in line and x in line and y in line, (command, line)
    depends = vq.run("submit", "test-noop", "--user", "ann", "--depends-on", "feedbeef")
    assert depends.returncode == 2 and "dependsOn: job id 'feedbeef' is ambiguous" in _one_line(depends)
    assert vq.json("show", "feedbeef1")["id"] == y
    short = vq.run("show", "feedbee")
    assert short.returncode == 4 and "an id prefix needs at least 8 characters" in _one_line(short)
    vq.start_daemon()
    vq.wait_for(x)
    vq.wait_for(y)
    assert vq.json("rm", "feedbeef0")["id"] == x, "a longer prefix is unique"
    assert vq.json("show", "feedbeef")["id"] == y, "the other one is the only one left"
    history = vq.run("history", "feedbeef")  # the history database still has both
    assert history.returncode == 2 and "ambiguous" in _one_line(history)


def test_http_job_routes_take_a_prefix_and_answer_a_trimmed_job(vq, redis_conn):
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": 1}})
    api = serve(vq, jwt_secret=SECRET)
    ann, bob = api.token("ann"), api.token("bob")
    created = api.call("POST", "/api/jobs/content-analysis", ann, {"content": "AI makes video. Video needs AI."})
    assert created.status == 201, created.body
    first = created.body["id"]
    live = _wait(api, ann, "content-analysis", first)
    later = api.call("POST", "/api/jobs/content-analysis", ann, {"content": "another text"}).body["id"]
    _wait(api, ann, "content-analysis", later)
    deadline = time.monotonic() + 30
    while redis_conn.exists(Job.key_for(first)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis_conn.exists(Job.key_for(first)), "trimmed (removeOnComplete: 1)"
    base = f"/api/jobs/content-analysis/{first[:12]}"
    gone = api.call("GET", base, ann)
    assert gone.status == 200 and gone.body["trimmed"] is True and gone.body["id"] == first
    assert set(gone.body) == set(live) and gone.body["result"] == live["result"]
    result = api.call("GET", f"{base}/result", ann)
    assert result.status == 200 and result.body["result"] == live["result"] and result.body["trimmed"] is True
    progress = api.call("GET", f"{base}/progress", ann)
    assert progress.status == 200 and progress.body["status"] == "finished"
    assert progress.body["progress"]["percent"] == 100.0
    assert api.call("GET", base, bob).status == 404, "another user's trimmed job stays hidden"
    assert api.call("GET", f"/api/jobs/test-noop/{first[:12]}", ann).status == 404, "another type"

    x, y, z = ("c0ffee00" + c * 24 for c in "012")
    _with_ids(vq, redis_conn, "ann", x, y)
    _with_ids(vq, redis_conn, "bob", z)
    ambiguous = api.call("GET", "/api/jobs/test-noop/c0ffee00", ann)
    assert ambiguous.status == 409 and ambiguous.body["error"]["code"] == "ambiguous"
    message = ambiguous.body["error"]["message"]
    assert x in message and y in message and z not in message, "only the caller's own jobs are named"
    assert api.call("GET", "/api/jobs/test-noop/c0ffee00", bob).body["id"] == z, "bob's only match"
    short = api.call("GET", "/api/jobs/test-noop/c0ffee0", ann)
    assert short.status == 404 and "at least 8 characters" in short.body["error"]["message"]
    dependent = api.call("POST", "/api/jobs/test-noop", ann, {"data": {}, "dependsOn": [x[:9]]})
    assert dependent.status == 201 and dependent.body["dependsOn"] == [x]
    borrowed = api.call("POST", "/api/jobs/test-noop", bob, {"data": {}, "dependsOn": [x[:9]]})
    assert borrowed.status == 404 and borrowed.body["error"]["field"] == "dependsOn"


def test_the_dashboard_opens_a_job_by_a_typed_prefix(vq, redis_conn):
    from tests.test_tui import banner, dashboard, run, until
    from vq.tui.screens import JobScreen

    x, y = "abad1dea" + "0" * 24, "abad1dea" + "1" * 24
    _with_ids(vq, redis_conn, "ann", x, y)
    app = dashboard(vq)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            app.open_job()
            await pilot.pause()
            await pilot.press(*"abad1dea1", "enter")
            await until(
                pilot,
                lambda: isinstance(app.screen, JobScreen) and app.screen.job_id == y,
                what="the job screen of the one job the prefix names",
            )
            await until(pilot, lambda: y in banner(app), what="its summary")
            await pilot.press("escape")
            app.open_job()
            await pilot.pause()
            await pilot.press(*"abad1dea", "enter")
            await until(pilot, lambda: "ambiguous" in banner(app) and x in banner(app), what="the ambiguity")

    run(scenario())
