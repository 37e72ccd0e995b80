"""Jobs plain RQ enqueues onto vq's queues (the obvious migration path) are refused safely:
failed with a clear category and message, never unpickled, and every read path shows them."""

from __future__ import annotations

import json

from rq import Queue
from rq.serializers import JSONSerializer

from tests.test_api import SECRET, serve

NOT_VQ = "not a vq job: enqueued by plain RQ; submit through vq.submission.submit or the HTTP API"


def _no_traceback(proc) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_plain_rq_jobs_on_a_vq_queue_fail_as_not_vq_jobs_and_every_view_shows_them(vq, redis_conn):
    pickled = Queue("test-echo.normal", connection=redis_conn).enqueue("tests.plugins.noop", {"x": 1})
    as_json = Queue("test-echo.normal", connection=redis_conn, serializer=JSONSerializer).enqueue(
        "tests.plugins.noop", "first-argument", {"x": 2}
    )
    posing = Queue("test-echo.high", connection=redis_conn, serializer=JSONSerializer).enqueue(
        "vq.execution.run_job", "test-echo", {"x": 3}
    )  # vq's function, but not made by vq: no limits known
    for job in (pickled, as_json, posing):  # waiting, before any daemon refused them
        _no_traceback(vq.run("show", job.id))
        assert vq.json("show", job.id)["jobType"] == "test-echo"
    stray = Queue("test-noop.normal", connection=redis_conn).enqueue("tests.plugins.noop", {"x": 5})
    cleared = vq.run("clear", "test-noop", "--yes", "--json")
    _no_traceback(cleared)
    assert json.loads(cleared.stdout)["removed"] == 1 and not redis_conn.exists(f"rq:job:{stray.id}")
    api = serve(vq, jwt_secret=SECRET)
    ops = api.token("ops", "operator")
    ours = vq.submit("test-echo", {"x": 4}, "--user", "ann")
    assert vq.wait_for(ours)["status"] == "finished", "vq's own jobs run beside them"
    for job in (pickled, as_json, posing):
        view = vq.wait_for(job.id)
        assert view["status"] == "failed", view
        assert view["error"]["category"] == "not_vq" and NOT_VQ in view["error"]["message"], view["error"]
        assert view["jobType"] == "test-echo", view["jobType"]
        assert view["attempts"] == 0 and view["data"] == {}, view
        _no_traceback(vq.run("show", job.id))
    assert redis_conn.get("test:ran") is None, "no plain RQ job's function ran"
    for args in (("dlq", "list"), ("jobs", "--type", "test-echo"), ("jobs", "--status", "failed")):
        _no_traceback(vq.run(*args))
        listed = vq.json(*args)
        if args[0] == "dlq":
            assert {pickled.id, as_json.id, posing.id} <= {v["id"] for v in listed}
    _no_traceback(vq.run("history", pickled.id))
    again = vq.run("retry", pickled.id)
    assert again.returncode == 2 and "not a vq job" in again.stderr and "Traceback" not in again.stderr
    for job in (pickled, as_json):
        reply = api.call("GET", f"/api/jobs/test-echo/{job.id}", ops)
        assert reply.status == 200 and reply.body["error"]["category"] == "not_vq", reply.body
    listed = api.call("GET", "/api/jobs/queues/stats", ops)
    assert listed.status == 200, listed.body
    log = vq.daemon_log()
    assert "Traceback" not in log and "DeserializationError" not in log, log
