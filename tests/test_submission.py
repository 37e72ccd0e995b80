"""The submission service, called directly as the HTTP API will call it."""

from __future__ import annotations

import pytest

from vq.config import load_settings
from vq.errors import InvalidInput
from vq.jobs import show
from vq.submission import Submission, submit


@pytest.fixture
def settings(redis_server, tmp_path):
    return load_settings(env={"REDIS_URL": redis_server.url, "VQ_DATA_DIR": str(tmp_path),
                              "XDG_CONFIG_HOME": str(tmp_path)})


@pytest.mark.parametrize("tier, asked, granted", [
    ("free", "high", "normal"), ("basic", "high", "normal"), ("pro", "high", "high"),
    ("enterprise", "low", "low"), ("free", None, "low"), ("enterprise", None, "high"),
])
def test_a_tier_caps_the_priority_a_user_may_ask_for(redis_conn, settings, tier, asked, granted):
    job_id = submit(redis_conn, settings, Submission("content-analysis", {"content": "x"}, user_id="u",
                                                     subscription=tier, priority=asked))
    assert show(redis_conn, job_id)["priority"] == granted


def test_an_operator_may_set_any_priority(redis_conn, settings):
    job_id = submit(redis_conn, settings, Submission("content-analysis", {}, user_id="u", subscription="free",
                                                     priority="high", privileged=True))
    assert show(redis_conn, job_id)["priority"] == "high"


def test_spec_body_shape_is_accepted(redis_conn, settings):
    body = {"userId": "user-123", "projectId": "project-456", "prompt": "Create a video about AI technology",
            "options": {"quality": "high"}, "priority": "high", "userSubscription": "pro"}
    job_id = submit(redis_conn, settings, Submission.from_mapping(body, job_type="image-generation"))
    view = show(redis_conn, job_id)
    assert (view["userId"], view["projectId"], view["priority"], view["subscription"]) == (
        "user-123", "project-456", "high", "pro")
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
