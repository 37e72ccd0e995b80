"""The submission service, called directly as the HTTP API will call it."""

from __future__ import annotations

import pytest

from vq.config import load_settings
from vq.errors import InvalidInput
from vq.jobs import show
from vq.submission import Submission, submit


@pytest.fixture
def settings(redis_server, tmp_path):
    return load_settings(
        env={"REDIS_URL": redis_server.url, "VQ_DATA_DIR": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    )


@pytest.mark.parametrize(
    "tier, asked, granted",
    [
        ("free", "high", "normal"),
        ("basic", "high", "normal"),
        ("pro", "high", "high"),
        ("enterprise", "low", "low"),
        ("free", None, "low"),
        ("enterprise", None, "high"),
    ],
)
def test_a_tier_caps_the_priority_a_user_may_ask_for(redis_conn, settings, tier, asked, granted):
    job_id = submit(
        redis_conn,
        settings,
        Submission("content-analysis", {"content": "x"}, user_id="u", subscription=tier, priority=asked),
    )
    assert show(redis_conn, job_id)["priority"] == granted


def test_an_operator_may_set_any_priority(redis_conn, settings):
    job_id = submit(
        redis_conn,
        settings,
        Submission(
            "content-analysis", {"content": "x y"}, user_id="u", subscription="free", priority="high", privileged=True
        ),
    )
    assert show(redis_conn, job_id)["priority"] == "high"


def test_spec_body_shape_is_accepted(redis_conn, settings):
    body = {
        "userId": "user-123",
        "projectId": "project-456",
        "prompt": "Create a video about AI technology",
        "options": {"quality": "high"},
        "priority": "high",
        "userSubscription": "pro",
    }
    job_id = submit(redis_conn, settings, Submission.from_mapping(body, job_type="image-generation"))
    view = show(redis_conn, job_id)
    assert (view["userId"], view["projectId"], view["priority"], view["subscription"]) == (
        "user-123",
        "project-456",
        "high",
        "pro",
    )
    assert view["data"]["prompt"] == "Create a video about AI technology"
    assert view["data"]["options"] == {"quality": "high"}  # the spec's options are the job's own data
    delayed = {"jobType": "image-generation", "data": {"userId": "user-123", "prompt": "sunset"}, "delay": 300000}
    view = show(redis_conn, submit(redis_conn, settings, Submission.from_mapping(delayed)))
    assert view["status"] == "scheduled" and view["userId"] == "user-123"


def test_unknown_field_beside_data_is_named(redis_conn, settings):
    with pytest.raises(InvalidInput, match="colour: unknown field"):
        Submission.from_mapping({"jobType": "image-generation", "userId": "u", "data": {}, "colour": "red"})


def test_a_built_in_handler_can_be_replaced_in_config(vq):
    import yaml

    config = yaml.safe_load(vq.config_path.read_text())
    config["job_types"]["content-analysis"] = {"handler": "tests.plugins:echo"}
    vq.config_path.write_text(yaml.safe_dump(config))
    types = {t["jobType"]: t for t in vq.json("types")}
    assert types["content-analysis"]["handler"] == "tests.plugins:echo"
    vq.start_daemon()
    job_id = vq.submit("content-analysis", {"content": "hello"}, "--user", "u")
    assert vq.wait_for(job_id)["result"]["echo"] == {"content": "hello"}


def test_daemon_refuses_to_start_with_a_handler_that_cannot_import(vq):
    import yaml

    config = yaml.safe_load(vq.config_path.read_text())
    config["job_types"]["thumbnail"] = {"handler": "nowhere.to.be:found"}
    vq.config_path.write_text(yaml.safe_dump(config))
    proc = vq.run("daemon", "--workers", "1")
    assert proc.returncode == 2
    assert "handler 'nowhere.to.be:found': cannot import nowhere.to.be" in proc.stderr


def test_new_jobs_are_stored_as_rq_stores_them(redis_conn, settings):
    """submit and submit_each write a new job's hash from a template RQ made (vq/jobhash.py):
    what RQ's own enqueue stores, less the fields RQ writes empty (it reads a missing field
    as empty), apart from the clock and the retries' jitter; the description included,
    which RQ's worker logs for each job it takes."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from vq.model import VQ_FUNC
    from vq.rq_seam.queue import rq_queue
    from vq.submission import submit_each
    from vq.submission.spec import job_spec
    from vq.submission.validation import resolve

    def submission():
        return Submission(
            job_type="content-analysis",
            data={"text": "a b c", "n": 1},
            user_id="u1",
            subscription="pro",
            project_id="p",
            skip_cache=True,
        )

    single = submit(redis_conn, settings, submission())
    [outcome] = submit_each(redis_conn, settings, [submission()], lambda s: s)
    assert outcome["ok"]
    by_rq = rq_queue(redis_conn, "content-analysis.normal").enqueue_call(
        VQ_FUNC, **job_spec(settings, resolve(redis_conn, settings, submission()), "by-rq", None, None, [], None)
    )
    ours, batch, theirs = (redis_conn.hgetall(f"rq:job:{job_id}") for job_id in (single, outcome["id"], by_rq.id))
    assert ours.keys() == batch.keys()
    assert {k for k in theirs if theirs[k] != b""} == set(ours)
    assert ours[b"description"] == b"content-analysis for u1"
    clock = {b"created_at", b"enqueued_at", b"retry_intervals"}
    assert {k for k in ours if ours[k] != batch[k]} <= clock
    assert {k for k in ours if ours[k] != theirs[k]} <= clock
    jobs = Job.fetch_many([single, outcome["id"], by_rq.id], connection=redis_conn, serializer=JSONSerializer)
    shapes = {
        (
            j.func_name,
            repr(j.args),
            repr(j.kwargs),
            repr(j.meta),
            j.retries_left,
            j.timeout,
            j.origin,
            j.get_status(refresh=False),
            j.started_at,
            j.worker_name,
        )
        for j in jobs
    }
    assert len(shapes) == 1, shapes
    assert show(redis_conn, outcome["id"], settings)["status"] == "queued"
    assert redis_conn.lrange("rq:queue:content-analysis.normal", 0, -1)[:2] == [single.encode(), outcome["id"].encode()]
