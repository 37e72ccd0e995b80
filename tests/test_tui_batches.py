"""The dashboard's batches (issue 25), driven with Textual's pilot against a real Redis and a
real daemon: `b` lists every batch with its progress and callbacks, filtered by state; a
batch opens on its jobs; a job shows its batch, the checkpoint kept for its next attempt and
the one its attempt resumed from; an open batch is closed from its screen, after a question.
What is asserted is what the operator reads on screen, and it agrees with `vq batch show`."""

from __future__ import annotations

import json

from tests.test_tui import banner, dashboard, on_screen, rows, run, select, shown, until
from vq.tui.batch_screens import BatchesScreen, BatchScreen
from vq.tui.dialogs import ConfirmScreen
from vq.tui.screens import JobScreen

RESUMES = {"handler": "tests.plugins:checkpointer", "attempts": 2, "backoff": {"type": "fixed", "delay": 200}}
WAITS = {"handler": "tests.plugins:checkpointer", "attempts": 2, "backoff": {"type": "fixed", "delay": 600_000}}


def _jobs_file(tmp_path, name: str, *jobs: dict) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return str(path)


def _wait(vq, batch_id: str, check, what: str, timeout: float = 60) -> dict:
    import time

    deadline = time.monotonic() + timeout
    view: dict = {}
    while time.monotonic() < deadline:
        vq.check_daemons()
        view = vq.json("batch", "show", batch_id)
        if check(view):
            return view
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id}: {what} not seen: {view}\n{vq.log_tails()}")


def test_batches_view_batch_screen_and_a_job_s_batch_and_checkpoint(vq, tmp_path):
    vq.configure(job_types={"test-cp-resumes": RESUMES, "test-cp-waits": WAITS})
    vq.start_daemon()
    # alice's batch: a job that fails once and resumes from its checkpoint, and one that
    # fails for good; closed at once, so it completes and its two callbacks fire.
    done = vq.json(
        "batch",
        "create",
        _jobs_file(
            tmp_path,
            "alice.jsonl",
            {"jobType": "test-cp-resumes", "data": {"steps": 3, "seconds": 0.05, "fail_at": 1}},
            {"jobType": "test-odd", "data": {}},
        ),
        "--user",
        "alice",
        "--description",
        "[bold]renders[/] of the week",
        "--on-complete",
        json.dumps({"jobType": "test-noop", "data": {}}),
        "--on-success",
        json.dumps({"jobType": "test-noop", "data": {}}),
    )["id"]
    # bob's batch stays open: its job failed once after a checkpoint and waits 10 minutes to resume.
    waiting = vq.json(
        "batch",
        "create",
        _jobs_file(
            tmp_path, "bob.jsonl", {"jobType": "test-cp-waits", "data": {"steps": 3, "seconds": 0.05, "fail_at": 1}}
        ),
        "--user",
        "bob",
        "--open",
    )["id"]
    done_view = _wait(
        vq, done, lambda v: v["callbacks"]["complete"]["delivered"] and v["complete"], "complete, delivered"
    )
    assert done_view["counts"] == {"total": 2, "done": 1, "failed": 1, "canceled": 0, "pending": 0}
    (resumed_job,) = [j["id"] for j in done_view["jobs"] if j["outcome"] == "done"]
    (waiting_job,) = [j["id"] for j in vq.json("batch", "show", waiting)["jobs"]]
    kept = vq.wait_for(waiting_job, statuses=("scheduled",))["checkpoint"]
    assert kept and kept["attempt"] == 1
    resumed = vq.json("show", resumed_job)["resumed"]
    assert resumed["attempt"] == 2

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: rows(app, "queues"), what="the overview")
            await pilot.press("b")
            await on_screen(pilot, app, BatchesScreen)
            listed = await until(pilot, lambda: len(rows(app, "batches")) == 2 and rows(app, "batches"))
            assert list(listed) == [waiting, done]  # newest first
            # batch, user, state, done, failed, pending, jobs, callbacks fired (of those it has)
            assert listed[done][:8] == [done[:12], "alice", "complete", "1", "1", "0", "2", "1/2"]
            assert listed[waiting][:8] == [waiting[:12], "bob", "open", "0", "0", "1", "1", "-"]
            assert "(2 of 2)" in banner(app)
            await pilot.press("s")  # state: open
            await until(pilot, lambda: list(rows(app, "batches")) == [waiting], what="only the open batch")
            assert "state: open" in banner(app)
            await pilot.press("s", "s")  # closed (none), then complete
            await until(pilot, lambda: list(rows(app, "batches")) == [done], what="only the complete batch")
            select(app, "batches", done)
            await pilot.press("enter")
            await on_screen(pilot, app, BatchScreen)
            await until(pilot, lambda: len(rows(app, "batch-jobs")) == 2, what="the batch's jobs")
            info = shown(app, "#batch-info")
            assert "[bold]renders[/] of the week" in info  # literal text, never markup
            assert "done 1  failed 1  canceled 0  pending 0  of 2" in info
            assert "on complete test-noop  delivered " + f"{done}-complete" in info
            assert "on success test-noop  not fired" in info
            assert rows(app, "batch-jobs")[resumed_job] == [resumed_job[:12], "done"]  # enter opens it by the whole id
            assert "complete" in banner(app) and done in banner(app)
            select(app, "batch-jobs", resumed_job)
            await pilot.press("enter")
            await on_screen(pilot, app, JobScreen)
            detail = await until(pilot, lambda: "resumed" in shown(app, "#detail") and shown(app, "#detail"))
            assert f"batch {done}" in detail
            assert "checkpoint none kept" in detail  # deleted once the job finished
            assert f"resumed attempt 2 from the checkpoint saved {resumed['checkpointAt']}" in detail
            await pilot.press("b")  # back to its batch from the job
            await on_screen(pilot, app, BatchScreen)
            assert isinstance(app.screen, BatchScreen) and app.screen.batch_id == done
            for _ in range(3):
                await pilot.press("escape")
            assert isinstance(app.screen, BatchesScreen)
            await pilot.press("s")  # all again
            await until(pilot, lambda: len(rows(app, "batches")) == 2, what="both batches")
            select(app, "batches", waiting)
            await pilot.press("enter")
            await until(pilot, lambda: waiting_job in rows(app, "batch-jobs"), what="bob's job")
            assert rows(app, "batch-jobs")[waiting_job] == [waiting_job[:12], "scheduled"]
            select(app, "batch-jobs", waiting_job)
            await pilot.press("enter")
            detail = await until(pilot, lambda: "checkpoint" in shown(app, "#detail") and shown(app, "#detail"))
            assert f"checkpoint {kept['bytes']:,} B saved {kept['at']} by attempt 1" in detail
            assert "resumed" not in detail
            await pilot.press("escape")
            await pilot.press("c")  # close bob's batch: asks first
            await on_screen(pilot, app, ConfirmScreen)
            await pilot.press("n")
            await pilot.pause(0.5)
            assert vq.json("batch", "show", waiting)["open"]
            await pilot.press("c")
            await pilot.press("y")
            await until(pilot, lambda: "closed" in banner(app), what="the batch closed")

    run(scenario())
    assert vq.json("batch", "show", waiting)["state"] == "closed"
    audit = vq.json("audit")
    assert ("batch-close", waiting) in {(a["action"], a["target"]) for a in audit}
