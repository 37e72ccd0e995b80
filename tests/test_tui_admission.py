"""The dashboard shows admission (issue 24) as `vq workers`, `vq limits` and `vq show` do, on a
real Redis and a real daemon: a host's resources in use and each worker's, a running job's
GPU, a waiting job's reason, deadline and limit groups, and a user's waiting jobs."""

from __future__ import annotations

from tests.test_tui import banner, dashboard, on_screen, rows, run, shown, until
from vq.tui.limits_screens import LimitsScreen, UserScreen
from vq.tui.screens import JobScreen

GPU_TYPE = {"handler": "tests.plugins:tracked", "attempts": 1, "resources": {"gpu": 1}}
MODEL = {"key": "data.model", "limit": {"default": 2, "sdxl": 1}, "rate": "100/1h", "types": ["test-track"]}


async def _open_job(pilot, app, job_id: str) -> None:
    await pilot.press("j")
    await pilot.press(*job_id[:12], "enter")  # a unique prefix, as people type one (each key costs ~0.15 s)
    await until(pilot, lambda: isinstance(app.screen, JobScreen) and job_id in banner(app), what="the job screen")


def test_a_hosts_gpus_in_use_and_the_running_jobs_gpu_are_shown(vq):
    vq.configure(job_types={"test-gpu": GPU_TYPE}, concurrency={"type": {"test-gpu": 10}})
    vq.start_daemon("--resources", "gpu=2", workers=2)
    job = vq.submit("test-gpu", {"gate": "g"}, "--user", "ann")
    view = vq.wait_for(job, statuses=("started",))
    device = view["resourcesHeld"]["gpu"][0]
    assert view["resources"] == {"gpu": 1} and view["resourcesHeld"] == {"gpu": [device]}

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(100, 30)) as pilot:
            host = await until(pilot, lambda: next(iter(rows(app, "hosts").values())), what="the hosts tab")
            await until(pilot, lambda: "gpu 1/2" in next(iter(rows(app, "hosts").values()))[2], what="gpu 1/2")
            assert next(iter(rows(app, "hosts").values()))[1] == "2/2" and host[0]
            workers = await until(
                pilot,
                lambda: sorted(r[5] for r in rows(app, "workers").values() if r[5]),
                what="the workers' resources",
            )
            assert workers == ["gpu 0/1", f"gpu 1/1 (#{device})"], workers
            await pilot.press("l")
            await on_screen(pilot, app, LimitsScreen)
            gpu = await until(pilot, lambda: rows(app, "limit-resources").get("gpu"), what="the limits' resources")
            assert gpu[1:] == ["1/2", "2"]
            await pilot.press("escape")
            await _open_job(pilot, app, job)
            detail = await until(pilot, lambda: "holds" in shown(app, "#detail") and shown(app, "#detail"))
            assert f"needs gpu=1  holds gpu=1 (device {device})" in detail, detail

    try:
        run(scenario())
    finally:
        vq.open_gate("g")
    assert vq.wait_for(job)["status"] == "finished"


def test_a_waiting_job_shows_why_its_deadline_and_groups_and_its_users_screen_lists_it(vq):
    vq.configure(concurrency={"type": {"test-track": 10}, "groups": {"model": MODEL}})
    vq.start_daemon()
    assert vq.run("limits", "set", "user", "ann", "1").returncode == 0
    running = vq.submit("test-track", {"gate": "g", "model": "sdxl"}, "--user", "ann")
    vq.wait_for(running, statuses=("started",))
    waiting = vq.submit("test-track", {"gate": "g", "model": "sdxl"}, "--user", "ann", "--deadline", "1h")
    vq.wait_for(waiting, statuses=("limited",))

    async def scenario():
        app = dashboard(vq)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: rows(app, "queues"), what="the overview")
            await pilot.press("u")
            await pilot.press(*"ann", "enter")
            await on_screen(pilot, app, UserScreen)
            line = await until(pilot, lambda: rows(app, "waiting").get(waiting), what="ann's waiting job")
            assert line[1:3] == ["test-track", "limited"] and line[4].startswith("in ") and line[5] == "user limit 1/1"
            assert list(rows(app, "running")) == [running]
            assert "running 1/1" in banner(app) and "waiting 1  weight 1" in banner(app)
            await pilot.press("escape")
            await pilot.press("l")
            group = await until(pilot, lambda: rows(app, "limit-groups").get("model=sdxl"), what="the group's key")
            assert group == ["model", "sdxl", "1/1", "1", "1 of 100/1h"]  # its waiting job; one start
            assert rows(app, "limit-users")["ann"][2:4] == ["1/1", "1"]
            await pilot.press("escape")
            await _open_job(pilot, app, waiting)
            detail = await until(pilot, lambda: "user limit" in shown(app, "#detail") and shown(app, "#detail"))
            assert "waiting user limit 1/1  position 1" in detail, detail
            assert "groups model=sdxl" in detail and "deadline 20" in detail and "(in " in detail, detail
            await pilot.press("escape")
            await _open_job(pilot, app, running)
            detail = await until(pilot, lambda: "groups" in shown(app, "#detail") and shown(app, "#detail"))
            assert "groups model=sdxl" in detail and "needs" not in detail and "deadline" not in detail, detail

    try:
        run(scenario())
    finally:
        vq.open_gate("g")
    assert vq.wait_for(waiting)["status"] == "finished"
