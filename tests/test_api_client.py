"""The OpenAPI document as a contract: a client generated from the live /openapi.json
(openapi-python-client, offline) creates and fetches a job with its typed models over
loopback; every operation has a camelCase operationId and documents its JSON errors; a
401 challenges with `WWW-Authenticate: Bearer` (RFC 6750)."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.test_api import SECRET, serve

GENERATOR = shutil.which("openapi-python-client")
CAMEL = re.compile(r"^[a-z][A-Za-z0-9]*$")


@pytest.fixture
def api(vq):
    """A daemon serving the API over loopback."""
    return serve(vq, jwt_secret=SECRET, rateLimit={"requests": 1000, "window": 60000})


def test_a_generated_client_creates_a_job_and_reads_its_status_as_a_typed_attribute(api, tmp_path):
    if GENERATOR is None:
        pytest.fail(
            "openapi-python-client is not installed: pip install --no-deps openapi-python-client==0.29.1 ruamel.yaml"
        )
    ann = api.token("ann")
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(api.call("GET", "/openapi.json", ann).body))
    config = tmp_path / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no ruff formatting: the generator runs offline, with nothing else
    out = tmp_path / "vq_api_client"
    proc = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(out),
            "--config",
            str(config),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "Warning" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        client_module = importlib.import_module("vq_api_client")
        create_job = importlib.import_module("vq_api_client.api.jobs.create_job")
        get_job = importlib.import_module("vq_api_client.api.jobs.get_job")
        get_progress = importlib.import_module("vq_api_client.api.jobs.get_job_progress")
        cancel_job = importlib.import_module("vq_api_client.api.jobs.cancel_job")
        models = importlib.import_module("vq_api_client.models")
    finally:
        sys.path.remove(str(tmp_path))
    client = client_module.AuthenticatedClient(base_url=api.base, token=ann, timeout=20)
    body = models.CreateJobBody.from_dict({"projectId": "p1", "note": "typed"})
    created = create_job.sync(job_type="test-noop", client=client, body=body)
    assert isinstance(created, models.Job), created
    assert created.job_type == "test-noop" and created.user_id == "ann" and created.project_id == "p1"
    deadline = time.monotonic() + 30
    fetched = get_job.sync(job_type="test-noop", job_id=created.id, client=client)
    while fetched.status != "finished" and time.monotonic() < deadline:
        time.sleep(0.1)
        fetched = get_job.sync(job_type="test-noop", job_id=created.id, client=client)
    assert isinstance(fetched, models.Job) and fetched.id == created.id and fetched.status == "finished"
    progress = get_progress.sync(job_type="test-noop", job_id=created.id, client=client)
    assert isinstance(progress, models.JobProgress) and progress.progress.percent == 100.0
    ended = cancel_job.sync(job_type="test-noop", job_id=created.id, client=client, now=True)
    assert isinstance(ended, models.ErrorBody) and ended.error.code == "conflict", "a finished job: 409"
    later = create_job.sync(job_type="test-noop", client=client, body=models.CreateJobBody.from_dict({"delay": 60000}))
    canceled = cancel_job.sync(job_type="test-noop", job_id=later.id, client=client, now=True, reason="typed")
    assert isinstance(canceled, models.Job) and canceled.status == "canceled" and canceled.error.message == "typed"
    missing = get_job.sync(job_type="test-noop", job_id="no-such-job-0000", client=client)
    assert isinstance(missing, models.ErrorBody) and missing.error.code == "not_found"


def test_every_operation_has_a_camel_case_id_and_documents_its_errors(api):
    document = api.call("GET", "/openapi.json", api.token("ann")).body
    ids = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert CAMEL.match(operation["operationId"]), (method, path, operation["operationId"])
            for parameter in operation.get("parameters", []):
                assert CAMEL.match(parameter["name"]), (path, parameter["name"])
            for status in ("401", "403", "422", "503") if path != "/api/jobs/health" else ("401", "429"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
    assert len(ids) == len(set(ids))
    assert {
        "createJob",
        "getJob",
        "getJobProgress",
        "cancelJob",
        "listUserHistory",
        "pauseQueue",
        "listQueueStats",
    } <= set(ids)
    schemas = document["components"]["schemas"]
    for name in ("Job", "ErrorBody", "QueueStats", "HistoryRow", "JobProgress", "JobResult", "Health"):
        assert name in schemas, name
        for prop in schemas[name].get("properties", {}):
            assert CAMEL.match(prop), (name, prop)
    job = document["paths"]["/api/jobs/{jobType}/{jobId}"]["get"]["responses"]["200"]["content"]
    assert job["application/json"]["schema"] == {"$ref": "#/components/schemas/Job"}


def test_a_401_challenges_with_www_authenticate_bearer(api):
    missing = api.call("GET", "/api/jobs/types")
    assert missing.status == 401 and missing.headers["www-authenticate"] == 'Bearer realm="vq"'
    forged = api.call("GET", "/api/jobs/types", "not.a.token")
    assert forged.status == 401
    assert forged.headers["www-authenticate"].startswith('Bearer realm="vq", error="invalid_token"')
    malformed = api.call("GET", "/api/jobs/types", headers={"Authorization": "Basic abc"})
    assert malformed.status == 401 and 'error="invalid_request"' in malformed.headers["www-authenticate"]
