"""Resource-aware admission (vq/capacity.py): a daemon's resources split over its workers, a
job given only to a worker whose free share covers its need, the GPUs it holds seen by its
handler, a job too big for every worker waiting with a reason (or refused at submission),
a killed worker's resources reclaimed, and `vq doctor` naming the needs no live worker
covers. Judged by the `tracked` handler's own records
(tests/plugins.py): what ran at once, per type and per GPU device, and what each job saw."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.plugins import handler_pid
from vq import capacity
from vq.errors import InvalidInput

GPU_TYPE = {"handler": "tests.plugins:tracked", "attempts": 1, "resources": {"gpu": 1}}


def _gpu_types(vq, queue: dict | None = None, daemon: dict | None = None) -> None:
    vq.configure(
        job_types={"test-gpu": GPU_TYPE},
        concurrency={"type": {"test-gpu": 10, "test-track": 10}},
        queue={"defaultJobOptions": {"removeOnComplete": False}, **(queue or {})},
        **({"daemon": daemon} if daemon else {}),
    )


def _max(redis_conn, name: str) -> int:
    return int(redis_conn.get(f"test:active:{name}:max") or 0)


def _running(vq, ids: list[str], count: int, timeout: float = 20) -> list[str]:
    """The jobs of `ids` that run, once `count` of them do (whichever admission chose)."""
    deadline = time.monotonic() + timeout
    while True:
        running = [i for i in ids if vq.json("show", i)["status"] == "started"]
        if len(running) >= count or time.monotonic() > deadline:
            assert len(running) == count, running
            return running
        time.sleep(0.1)


def _seen(redis_conn, job_id: str) -> dict:
    return json.loads(redis_conn.hget("test:resources", job_id) or "null")


@pytest.mark.parametrize(
    "total, workers, shares",
    [
        ({"gpu": 2, "vram": 80}, 2, [({"gpu": 1, "vram": 40}, [0]), ({"gpu": 1, "vram": 40}, [1])]),
        ({"gpu": 3}, 2, [({"gpu": 2}, [0, 1]), ({"gpu": 1}, [2])]),
        ({"gpu": 1, "vram": 7.5}, 3, [({"gpu": 1, "vram": 2.5}, [0])] + [({"gpu": 0, "vram": 2.5}, [])] * 2),
    ],
)
def test_a_daemons_resources_are_split_over_its_workers(total, workers, shares):
    assert [(s.amounts, s.devices) for s in capacity.split(total, workers)] == shares
    each = capacity.per_worker({"gpu": 1, "vram": 24}, 3)
    assert [(s.amounts, s.devices) for s in each] == [({"gpu": 1, "vram": 24}, [i]) for i in range(3)]


@pytest.mark.parametrize("text", ["gpu", "gpu=x", "gpu=1.5", "gpu=-1", "g pu=1"])
def test_a_bad_resources_option_is_refused(text):
    with pytest.raises(InvalidInput):
        capacity.parse(text, "--resources")


@pytest.mark.parametrize(
    "blocks, key",
    [
        ({"job_types": {"test-gpu": {**GPU_TYPE, "resources": {"gpu": 1.5}}}}, "job_types.test-gpu.resources"),
        ({"daemon": {"resourcesPerWorker": {"gpu": 0.5}}}, "daemon.resourcesPerWorker"),
        ({"job_types": {"test-gpu": {**GPU_TYPE, "resources": {"g pu": 1}}}}, "job_types.test-gpu.resources"),
    ],
)
def test_a_bad_resources_block_in_the_config_is_refused_naming_its_key(vq, blocks, key):
    vq.configure(**blocks)
    proc = vq.run("types")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{key}: " in proc.stderr, proc.stderr


def test_gpu_jobs_run_two_at_once_on_two_gpus_each_on_its_own_device(vq, redis_conn):
    _gpu_types(vq)
    ids = [vq.submit("test-gpu", {"gate": "g"}, "--user", f"u{i}", "-s", "enterprise") for i in range(4)]
    plain = vq.submit("test-track", {"seconds": 0.1}, "--user", "p", "-s", "enterprise")
    assert json.loads(redis_conn.hget(f"rq:job:{ids[0]}", "vq_resources")) == {"gpu": 1}
    vq.start_daemon("--resources", "gpu=2,vram=80", workers=3)
    assert vq.wait_for(plain, timeout=20)["status"] == "finished", "a job without needs runs on a GPU host too"
    running = _running(vq, ids, 2)
    assert sorted(_seen(redis_conn, i)["gpu"][0] for i in running) == [0, 1], "each its own device"
    assert all(_seen(redis_conn, i) == {"gpu": _seen(redis_conn, i)["gpu"]} for i in running)
    assert {redis_conn.hget("test:cuda", i).decode() for i in running} == {"0", "1"}
    waiting = [i for i in ids if i not in running]
    view = vq.json("show", waiting[0])
    assert view["status"] == "limited" and view["waitReason"] == "waiting for a worker with gpu=1 free", view
    workers = vq.json("workers")
    shares = [w["resources"] for w in workers if w.get("resources")]
    assert sorted(json.dumps(s["capacity"], sort_keys=True) for s in shares) == [
        '{"gpu": 0, "vram": 26}',
        '{"gpu": 1, "vram": 27}',
        '{"gpu": 1, "vram": 27}',
    ], "gpu=2 over 3 workers: whole devices, the remainder to the first; vram evenly"
    assert sorted(d for s in shares for d in s["inUse"].get("gpu", [])) == [0, 1]
    assert vq.json("limits")["resources"] == [
        {"resource": "gpu", "inUse": 2, "capacity": 2, "workers": 2},
        {"resource": "vram", "inUse": 0, "capacity": 80, "workers": 3},
    ]
    log = vq.daemon_log()
    assert "resources gpu=1,vram=27, GPU devices 1" in log and "resources gpu=0,vram=26" in log, log
    text = vq.run("workers").stdout
    assert text.count("gpu 1/1") == 2 and text.count("gpu 0/0") == 1, text
    text = vq.run("limits").stdout
    assert "resources (live workers)" in text and "2/2" in text and "0/80" in text, text
    vq.open_gate("g")
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=30)["status"] == "finished"
    assert _max(redis_conn, "type:test-gpu") == 2, "never more GPU jobs at once than GPUs"
    devices = [k.decode() for k in redis_conn.keys("test:active:device:*:max")]
    assert len(devices) == 2 and all(int(redis_conn.get(k)) == 1 for k in devices), "no device used twice at once"
    assert not any(redis_conn.zcard(k) for k in redis_conn.keys("vq:running:resources:*")), "all given back"


def test_a_job_bigger_than_every_worker_waits_with_a_reason_then_runs_where_it_fits(vq, redis_conn):
    _gpu_types(vq)
    big = vq.submit("test-track", {"seconds": 0.1}, "--user", "u", "--resources", "gpu=2")
    daemon = vq.start_daemon("--resources", "gpu=2", workers=2)
    small = vq.submit("test-gpu", {"seconds": 0.1}, "--user", "v")
    assert vq.wait_for(small, timeout=20)["status"] == "finished"
    view = vq.json("show", big)
    assert view["status"] == "limited" and view["waitReason"] == "needs gpu=2: the largest worker has gpu=1", view
    vq.stop_daemon(daemon)
    vq.start_daemon("--resources-per-worker", "gpu=2", workers=1)
    assert vq.wait_for(big, timeout=20)["status"] == "finished"
    assert _seen(redis_conn, big) == {"gpu": [0, 1]}
    assert redis_conn.hget("test:cuda", big) == b"0,1"


def test_a_job_needing_more_than_this_host_has_is_refused_at_submit(vq, redis_conn):
    _gpu_types(vq, daemon={"resources": {"gpu": 2, "vram": 80}})
    proc = vq.run("submit", "test-gpu", "--user", "u", "--resources", "gpu=3")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "needs gpu=3" in proc.stderr and "(gpu=2)" in proc.stderr, proc.stderr
    proc = vq.run("submit", "test-gpu", "--user", "u", "--resources", "tpu=1")
    assert proc.returncode == 2 and "needs tpu=1" in proc.stderr, proc.stderr
    assert vq.submit("test-gpu", {}, "--user", "u", "--resources", "gpu=2,vram=80")  # all of it: one worker may
    line = json.dumps({"jobType": "test-gpu", "userId": "u", "resources": {"gpu": 5}, "data": {}})
    batch = vq.run("submit", "--batch", "-", input=line)
    assert "needs gpu=5" in batch.stdout + batch.stderr, (batch.stdout, batch.stderr)


def test_without_resources_configured_a_big_job_is_accepted_to_wait(vq, redis_conn):
    _gpu_types(vq)
    job_id = vq.submit("test-track", {}, "--user", "u", "--resources", "gpu=8")
    assert vq.json("show", job_id)["status"] in ("queued", "limited")


def test_a_killed_workers_resources_are_reclaimed_and_another_worker_runs_its_job(vq, redis_conn):
    _gpu_types(vq, queue={"settings": {"lockDuration": 1000, "stalledInterval": 1000, "maxStalledCount": 1}})
    doomed = vq.submit("test-gpu", {"gate": "g"}, "--user", "a")
    vq.start_daemon("--resources-per-worker", "gpu=1", workers=1)
    vq.wait_for(doomed, statuses=("started",), timeout=20)
    holder = json.loads(redis_conn.hget(f"rq:job:{doomed}", "vq_held"))["holder"]
    time.sleep(2.5)  # past lockDuration: only the renewals keep the lease
    now = int(time.time() * 1000)
    assert redis_conn.zrangebyscore(f"vq:running:resources:{holder}", now, "+inf") == [doomed.encode()]
    first_pid = handler_pid(redis_conn, doomed)
    redis_conn.delete(f"test:pid:{doomed}")
    os.kill(first_pid, signal.SIGKILL)
    second_pid = handler_pid(redis_conn, doomed, timeout=20)  # requeued, and run by the restarted worker
    assert second_pid != first_pid
    vq.open_gate("g")  # only now: a token pushed while the killed worker's read was still open could be lost
    assert vq.wait_for(doomed, timeout=30)["status"] == "finished"
    assert redis_conn.zcard(f"vq:running:resources:{holder}") == 0, "the dead worker's lease is dropped"


def test_a_worker_replaced_after_its_max_jobs_leaves_only_its_successors_share_counted(vq, redis_conn):
    """A worker's key lives a minute after a clean exit; its share must not (`vq limits`
    counted gpu 3 on 3 workers for one GPU, and doctor's largest worker could be a dead one)."""
    _gpu_types(vq)
    vq.configure(daemon={"maxJobsPerWorker": 1})
    vq.start_daemon("--resources-per-worker", "gpu=1", workers=1)
    first = vq.submit("test-gpu", {"seconds": 0.1}, "--user", "a")
    assert vq.wait_for(first, timeout=30)["status"] == "finished"
    second = vq.submit("test-gpu", {"seconds": 0.1}, "--user", "a")  # run by the replacement
    assert vq.wait_for(second, timeout=30)["status"] == "finished"
    ran_by = {redis_conn.hget(f"rq:job:{job}", "worker_name").decode() for job in (first, second)}
    assert len(ran_by) == 2, ran_by
    deadline = time.monotonic() + 20  # the third worker, started after the second's one job
    while not (advertised := [k.decode() for k in redis_conn.hkeys("vq:workers:resources")]):
        assert time.monotonic() < deadline, "no worker advertises its share"
        time.sleep(0.1)
    assert len(advertised) == 1 and advertised[0] not in ran_by, (advertised, ran_by)
    assert vq.json("limits")["resources"] == [{"resource": "gpu", "inUse": 0, "capacity": 1, "workers": 1}]


def test_two_daemons_race_for_jobs_needing_their_only_gpu(vq, redis_conn):
    _gpu_types(vq)
    ids = [vq.submit("test-gpu", {"seconds": 0.2}, "--user", f"u{i % 3}", "-s", "enterprise") for i in range(8)]
    vq.start_daemon("--resources", "gpu=1", workers=2)
    vq.another_host("second").start_daemon("--resources", "gpu=1", workers=2)
    for job_id in ids:
        assert vq.wait_for(job_id, timeout=60)["status"] == "finished"
    assert _max(redis_conn, "type:test-gpu") <= 2, "two GPUs in all"
    devices = [k.decode() for k in redis_conn.keys("test:active:device:*:max")]
    assert devices and all(int(redis_conn.get(k)) == 1 for k in devices), "no GPU used twice at once"
    assert all(_seen(redis_conn, i) == {"gpu": [0]} for i in ids), "each host's one GPU is its device 0"


def test_over_http_a_jobs_own_need_is_taken_and_too_big_a_one_refused(vq, redis_conn):
    from tests.test_api import SECRET, serve

    _gpu_types(vq, daemon={"resources": {"gpu": 1}})  # over the daemon's 2 workers: gpu=1 and gpu=0
    api = serve(vq, jwt_secret=SECRET, rateLimit={"requests": 1000, "window": 60000})
    ann = api.token("ann")
    refused = api.call("POST", "/api/jobs/test-track", ann, {"data": {}, "resources": {"gpu": 2}})
    assert refused.status == 422 and "needs gpu=2" in json.dumps(refused.body), refused.body
    created = api.call("POST", "/api/jobs/test-track", ann, {"data": {"seconds": 0.1}, "resources": {"gpu": 1}})
    assert created.status == 201, created.body
    assert vq.wait_for(created.body["id"], timeout=20)["status"] == "finished"
    assert _seen(redis_conn, created.body["id"]) == {"gpu": [0]}


def test_on_a_share_run_in_threads_a_big_job_is_not_starved_by_small_ones(vq, redis_conn):
    threaded = {**GPU_TYPE, "concurrencyPerWorker": 3}
    vq.configure(
        job_types={"test-gpu": threaded},
        concurrency={"type": {"test-gpu": 10}},
        queue={"defaultJobOptions": {"removeOnComplete": False}},
    )
    first = [vq.submit("test-gpu", {"gate": f"g{i}"}, "--user", f"u{i}", "-s", "enterprise") for i in range(2)]
    vq.start_daemon("--resources-per-worker", "gpu=2", workers=1)
    for job_id in first:
        vq.wait_for(job_id, statuses=("started",), timeout=20)
    assert sorted(_seen(redis_conn, i)["gpu"][0] for i in first) == [0, 1], "two threads, a device each"
    big = vq.submit("test-gpu", {"seconds": 0.1}, "--user", "big", "-s", "enterprise", "--resources", "gpu=2")
    deadline = time.monotonic() + 10
    while not (redis_conn.hvals("vq:resources:reserved") or [b""])[0].startswith(big.encode()):
        assert time.monotonic() < deadline, "the big job reserves the share it waits for"
        time.sleep(0.05)
    small = [vq.submit("test-gpu", {"seconds": 0.1}, "--user", f"s{i}", "-s", "enterprise") for i in range(2)]
    vq.open_gate("g0")  # device 0 comes free: kept for the big job, not given to a small one
    assert vq.wait_for(first[0], timeout=20)["status"] == "finished"
    assert [vq.json("show", i)["status"] for i in small] == ["limited", "limited"]
    vq.open_gate("g1")
    for job_id in [first[1], big, *small]:
        assert vq.wait_for(job_id, timeout=20)["status"] == "finished"
    order = [i.decode() for i in redis_conn.lrange("test:started", 0, -1)]
    assert order.index(big) < min(order.index(i) for i in small), order
    assert _seen(redis_conn, big) == {"gpu": [0, 1]}
    assert _max(redis_conn, "type:test-gpu") == 2


def test_vq_show_and_the_api_give_a_jobs_need_what_it_holds_its_groups_and_deadline(vq):
    from tests.test_api import SECRET, serve

    _gpu_types(vq)
    vq.configure(
        concurrency={"groups": {"model": {"key": "data.model", "limit": {"default": 2}, "types": ["test-gpu"]}}}
    )
    api = serve(vq, jwt_secret=SECRET)
    vq.start_daemon("--resources", "gpu=2", workers=2)
    job = vq.submit("test-gpu", {"gate": "g", "model": "sdxl"}, "--user", "ann", "--deadline", "1h")
    view = vq.wait_for(job, statuses=("started",))
    device = view["resourcesHeld"]["gpu"][0]
    assert view["resourcesHeld"] == {"gpu": [device]} and device in (0, 1)
    assert view["resources"] == {"gpu": 1} and view["groups"] == {"model": "sdxl"} and view["deadline"]
    reply = api.call("GET", f"/api/jobs/test-gpu/{job}", api.token("ann", "user"))
    assert reply.status == 200, reply.body
    assert {k: reply.body[k] for k in ("resources", "resourcesHeld", "groups", "deadline")} == {
        "resources": {"gpu": 1},
        "resourcesHeld": {"gpu": [device]},
        "groups": {"model": "sdxl"},
        "deadline": view["deadline"],
    }
    assert ": resources in use gpu 1/2" in vq.run("workers").stdout, "the host's, under the workers"
    text = vq.run("show", job).stdout
    for row in ("groups", "model=sdxl", "needs", "gpu=1", "holds", f"gpu=1 (device {device})", "deadline"):
        assert row in text, (row, text)
    vq.open_gate("g")
    ended = vq.wait_for(job, timeout=20)
    assert ended["status"] == "finished" and ended["resourcesHeld"] is None and ended["resources"] == {"gpu": 1}
    assert "holds" not in vq.run("show", job).stdout


def test_a_job_that_needs_nothing_shows_empty_needs_and_groups(vq):
    job = vq.submit("test-noop", {}, "--user", "ann")
    view = vq.json("show", job)
    assert (view["resources"], view["resourcesHeld"], view["groups"]) == ({}, None, {})
    text = vq.run("show", job).stdout
    assert "needs" not in text and "holds" not in text and "groups" not in text, text


def _doctor_resources(vq, status: str, timeout: float = 20, mentions: str = "") -> tuple[int, dict]:
    """`vq doctor --json`'s resources finding, once it has `status` and its detail `mentions`
    the given text (the daemon reports itself every 2 s and each worker advertises its share
    as it starts, so under load the first findings may not yet see the worker)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = vq.run("doctor", "--json")
        assert "Traceback" not in proc.stderr, proc.stderr
        found = [f for f in json.loads(proc.stdout) if f["check"] == "resources"]
        ready = found and found[0]["status"] == status and mentions in found[0]["detail"]
        if ready or time.monotonic() > deadline:
            assert ready, found
            return proc.returncode, found[0]
        time.sleep(0.3)


def test_doctor_names_a_type_and_waiting_jobs_that_no_live_worker_can_run(vq, redis_conn):
    big_type = {**GPU_TYPE, "resources": {"gpu": 3}}
    vq.configure(
        job_types={"test-gpu": GPU_TYPE, "test-big": big_type},
        concurrency={"type": {"test-gpu": 10, "test-big": 10, "test-track": 10}},
    )
    vq.start_daemon("--resources-per-worker", "gpu=2", workers=1)
    own = vq.submit("test-track", {}, "--user", "u", "--resources", "gpu=4")  # this host configures none: accepted
    vq.wait_for(own, statuses=("limited",), timeout=20)
    code, found = _doctor_resources(vq, "warn", mentions="the largest live worker has gpu=2")
    assert code >= 1
    detail = found["detail"]
    assert "job type test-big needs gpu=3 (job_types.test-big.resources): the largest live worker has gpu=2" in detail
    assert f"1 waiting job(s) of test-track need more than any live worker has (e.g. {own} needs gpu=4" in detail
    assert "test-gpu" not in detail, "gpu=1 fits"
    assert "--resources-per-worker" in found["fix"] and "vq cancel" in found["fix"]
    view = vq.json("show", own)
    assert view["waitReason"] == "needs gpu=4: the largest worker has gpu=2", view


def test_doctor_warns_of_jobs_needing_resources_while_no_live_worker_has_any(vq, redis_conn):
    _gpu_types(vq)
    vq.start_daemon(workers=1)
    job_id = vq.submit("test-gpu", {"seconds": 0.1}, "--user", "u")
    _code, found = _doctor_resources(vq, "warn")
    assert "job type test-gpu needs gpu=1" in found["detail"], found
    assert "no live worker advertises any resources" in found["detail"], found
    view = vq.wait_for(job_id, statuses=("limited",), timeout=20)
    assert vq.json("show", job_id)["waitReason"] == "needs gpu=1: no live worker has gpu", view
    vq.another_host("gpu-host").start_daemon("--resources", "gpu=1", workers=1)
    assert vq.wait_for(job_id, timeout=30)["status"] == "finished"
    _code, found = _doctor_resources(vq, "ok")
    assert found["detail"] == "every need fits a live worker (the largest has gpu=1)", found
