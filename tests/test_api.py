"""The HTTP API over real HTTP on loopback, served by `vq daemon`: every spec endpoint, the
error statuses, tokens and access rules."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest

from tests.conftest import _free_port
from tests.plugins import handler_pid

SECRET = "test-secret-for-the-api-tests-0123456789"


@dataclass
class Reply:
    status: int
    body: object
    headers: dict


class Api:
    def __init__(self, vq, base: str):
        self.vq = vq
        self.base = base

    def token(self, user: str, role: str = "user", *extra: str) -> str:
        proc = self.vq.run("token", "create", "--user", user, "--role", role, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: object = None,
        raw: bytes | None = None,
        headers: dict | None = None,
    ) -> Reply:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                status, text, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, text, got = exc.code, exc.read(), dict(exc.headers)
        try:
            parsed = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = text.decode()
        except UnicodeDecodeError:
            parsed = text  # bytes: an artifact
        return Reply(status, parsed, {k.lower(): v for k, v in got.items()})


def serve(vq, **http) -> Api:
    """Start a daemon serving the API on a free port with these `http` settings; wait for it."""
    port = _free_port()
    vq.configure(http={"enabled": True, "listen": f"127.0.0.1:{port}", **http})
    vq.start_daemon()
    client = Api(vq, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if client.call("GET", "/livez").status == 200:
                return client
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError("the API did not come up:\n" + vq.daemon_log())


@pytest.fixture
def api(vq):
    return serve(vq, jwt_secret=SECRET, rateLimit={"requests": 1000, "window": 60000})


def _wait(api: Api, token: str, job_type: str, job_id: str, statuses=("finished", "failed", "canceled")) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = api.call("GET", f"/api/jobs/{job_type}/{job_id}", token)
        assert reply.status == 200, reply.body
        if reply.body["status"] in statuses:
            return reply.body
        time.sleep(0.1)
    raise AssertionError(f"{job_id} did not end")


def test_job_lifecycle_through_the_spec_endpoints(api):
    ann = api.token("user-123", "user", "--tier", "pro")
    created = api.call(
        "POST",
        "/api/jobs/content-analysis",
        ann,
        {"userId": "user-123", "projectId": "project-456", "content": "Analyze this content", "type": "text"},
    )
    assert created.status == 201, created.body
    job = created.body
    assert job["userId"] == "user-123" and job["subscription"] == "pro" and job["jobType"] == "content-analysis"
    done = _wait(api, ann, "content-analysis", job["id"])
    assert done["status"] == "finished"
    progress = api.call("GET", f"/api/jobs/content-analysis/{job['id']}/progress", ann)
    assert progress.status == 200 and progress.body["progress"]["percent"] == 100.0
    result = api.call("GET", f"/api/jobs/content-analysis/{job['id']}/result", ann)
    assert result.status == 200 and result.body["result"]["wordCount"] == 3
    removed = api.call("DELETE", f"/api/jobs/content-analysis/{job['id']}", ann)
    assert removed.status == 200
    assert api.call("GET", f"/api/jobs/content-analysis/{job['id']}", ann).status == 404


def test_retry_delayed_recurring_history_and_types(api):
    ann = api.token("ann")
    failed = api.call("POST", "/api/jobs/test-broken", ann, {"x": 1}).body
    assert _wait(api, ann, "test-broken", failed["id"])["status"] == "failed"
    retried = api.call("POST", f"/api/jobs/test-broken/{failed['id']}/retry", ann)
    assert retried.status == 200 and retried.body["status"] in ("queued", "limited", "started", "failed")
    assert _wait(api, ann, "test-broken", failed["id"])["status"] == "failed"  # it ran again, and failed
    delayed = api.call("POST", "/api/jobs/delayed", ann, {"jobType": "test-noop", "data": {}, "delay": 60000})
    assert delayed.status == 201 and delayed.body["status"] == "scheduled"
    recurring = api.call(
        "POST",
        "/api/jobs/recurring",
        ann,
        {"jobType": "test-noop", "data": {}, "cronExpression": "0 0 * * *", "options": {"skipCache": True}},
    )
    assert recurring.status == 201 and recurring.body["userId"] == "ann", recurring.body
    ran = api.call("POST", f"/api/jobs/recurring/{recurring.body['id']}/run", ann)
    assert ran.status == 201 and ran.body["jobType"] == "test-noop" and ran.body["userId"] == "ann", ran.body
    assert api.call("POST", f"/api/jobs/recurring/{recurring.body['id']}/run", api.token("bob")).status == 404
    assert api.call("DELETE", f"/api/jobs/recurring/{recurring.body['id']}", ann).status == 200
    assert api.call("DELETE", f"/api/jobs/recurring/{recurring.body['id']}", ann).status == 404
    history = api.call("GET", "/api/jobs/user/ann/history", ann)
    assert history.status == 200 and {j["id"] for j in history.body["jobs"]} >= {failed["id"], delayed.body["id"]}
    row = next(j for j in history.body["jobs"] if j["id"] == failed["id"])
    assert (row["jobType"], row["userId"], row["status"], row["cached"]) == ("test-broken", "ann", "failed", False)
    assert row["createdAt"].endswith("Z") and row["errorCategory"] and row["runMs"] is not None, (
        "camelCase, as every route"
    )
    assert row["job_type"] == "test-broken", "the snake_case names stay readable for one release"
    types = api.call("GET", "/api/jobs/types", ann)
    assert types.status == 200 and "video-generation" in {t["name"] for t in types.body}


def test_operator_endpoints(api):
    op, user = api.token("ops", "operator"), api.token("ann")
    for method, path in [
        ("GET", "/api/jobs/stats"),
        ("GET", "/api/jobs/queues/stats"),
        ("GET", "/api/jobs/performance"),
        ("POST", "/api/jobs/queues/test-noop/pause"),
        ("POST", "/api/jobs/queues/test-noop/resume"),
        ("DELETE", "/api/jobs/queues/test-noop/clear"),
        ("GET", "/metrics"),
    ]:
        assert api.call(method, path, user).status == 403, path
        reply = api.call(method, path, op)
        assert reply.status == 200, (path, reply.body)
    assert api.call("POST", "/api/jobs/queues/test-noop/pause", op).body["paused"] is True
    health = api.call("GET", "/api/jobs/health", user)
    assert health.status == 200 and health.body["status"] in ("healthy", "degraded", "unhealthy")
    assert "vq_jobs{" in api.call("GET", "/metrics", op).body


def _forge(claims: dict, alg: str = "HS256", secret: str = SECRET) -> str:
    import jwt

    if alg == "none":
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        return (header + b"." + payload + b".").decode()
    return jwt.encode(claims, secret, algorithm=alg)


def _hmac_token(claims: dict, key: bytes) -> str:
    """An HS256 token made by hand (PyJWT itself refuses to key HMAC with a PEM key)."""
    import hashlib
    import hmac

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + b64(json.dumps(claims).encode())
    return (signing_input + b"." + b64(hmac.new(key, signing_input, hashlib.sha256).digest())).decode()


def test_bad_tokens_get_401(api):
    now = int(time.time())
    cases = {
        "missing": None,
        "expired": _forge({"sub": "ann", "exp": now - 60}),
        "wrong signature": _forge({"sub": "ann", "exp": now + 60}, secret="not-the-secret-at-all-0123456789"),
        "alg none": _forge({"sub": "ann", "exp": now + 60}, alg="none"),
        "malformed": "not.a.token",
        "no exp": _forge({"sub": "ann"}),
        "bad role": _forge({"sub": "ann", "exp": now + 60, "role": "root"}),
    }
    for name, token in cases.items():
        reply = api.call("GET", "/api/jobs/types", token)
        assert reply.status == 401, (name, reply.body)
        assert reply.body["error"]["code"] == "unauthorized"
    basic = api.call("GET", "/api/jobs/types", headers={"Authorization": "Basic YW5uOnB3"})
    assert basic.status == 401 and "Bearer" in basic.body["error"]["message"]
    assert api.call("GET", "/livez").status == 200  # the liveness probe alone needs no token


def test_access_rules_between_users_and_projects(api):
    ann, bob = api.token("ann"), api.token("bob")
    job = api.call("POST", "/api/jobs/test-noop", ann, {"projectId": "p1"}).body
    assert api.call("GET", f"/api/jobs/test-noop/{job['id']}", bob).status == 404  # not 403: no leak
    assert api.call("DELETE", f"/api/jobs/test-noop/{job['id']}", bob).status == 404
    assert api.call("POST", f"/api/jobs/test-noop/{job['id']}/retry", bob).status == 404
    assert api.call("GET", "/api/jobs/user/ann/history", bob).status == 404
    as_other = api.call("POST", "/api/jobs/test-noop", bob, {"userId": "ann"})
    assert as_other.status == 403 and as_other.body["error"]["field"] == "userId"
    scoped = api.token("ann", "user", "--project", "p2")
    assert api.call("GET", f"/api/jobs/test-noop/{job['id']}", scoped).status == 404  # project p1 not in token
    assert api.call("POST", "/api/jobs/test-noop", scoped, {"projectId": "p1"}).status == 403
    assert api.call("POST", "/api/jobs/test-noop", scoped, {"projectId": "p2"}).status == 201
    recurring = {"jobType": "test-noop", "cronExpression": "0 0 * * *", "data": {"projectId": "p1"}}
    assert api.call("POST", "/api/jobs/recurring", scoped, recurring).status == 403  # the same rule for schedules
    assert api.call("POST", "/api/jobs/recurring", scoped, {**recurring, "data": {"projectId": "p2"}}).status == 201
    op = api.token("ops", "operator")
    assert api.call("GET", f"/api/jobs/test-noop/{job['id']}", op).status == 200
    for_ann = api.call("POST", "/api/jobs/test-noop", op, {"userId": "ann", "priority": "high"})
    assert for_ann.status == 201 and for_ann.body["userId"] == "ann" and for_ann.body["priority"] == "high"


def test_a_recurring_job_takes_its_project_from_its_data_as_a_job_does(api):
    """Found in a new user's trial: a definition created with `projectId` inside `data` showed
    `"projectId": null` (its jobs had it), so the project-scoped token that made it could
    neither run nor remove it (404)."""
    scoped = api.token("ann", "user", "--project", "p2")
    body = {"jobType": "test-noop", "cronExpression": "0 0 * * *", "data": {"projectId": "p2"}}
    made = api.call("POST", "/api/jobs/recurring", scoped, body)
    assert made.status == 201 and made.body["projectId"] == "p2", made.body
    ran = api.call("POST", f"/api/jobs/recurring/{made.body['id']}/run", scoped)
    assert ran.status == 201 and ran.body["projectId"] == "p2", ran.body
    assert api.vq.json("recurring", "show", made.body["id"])["projectId"] == "p2"
    assert api.call("DELETE", f"/api/jobs/recurring/{made.body['id']}", scoped).status == 200


def test_cancel_over_http_interrupts_a_running_job_now(vq, redis_conn):
    vq.configure(job_types={"test-cancelable": {"handler": "tests.plugins:cancelable", "attempts": 3}})
    api = serve(vq, jwt_secret=SECRET)
    ann, bob = api.token("ann"), api.token("bob")
    job = api.call("POST", "/api/jobs/test-cancelable", ann, {"seconds": 60}).body
    handler_pid(redis_conn, job["id"])
    path = f"/api/jobs/test-cancelable/{job['id']}/cancel"
    assert api.call("POST", path + "?now=true", bob).status == 404, "only its owner (or an operator)"
    reply = api.call("POST", path + "?now=true&reason=too%20slow", ann)
    assert reply.status == 200, reply.body
    assert (reply.body["status"], reply.body["error"]["message"], reply.body["attempts"]) == ("canceled", "too slow", 1)
    again = api.call("POST", path + "?now=true", ann)
    assert again.status == 409 and again.body["error"]["code"] == "conflict"
    waiting = api.call("POST", "/api/jobs/delayed", ann, {"jobType": "test-cancelable", "data": {}, "delay": 60000})
    plain = api.call("POST", f"/api/jobs/test-cancelable/{waiting.body['id']}/cancel", ann)
    assert plain.status == 200 and plain.body["error"]["message"] == "canceled by ann"


def test_the_tier_comes_from_the_token_not_the_body(api):
    free = api.token("ann", "user", "--tier", "free")
    job = api.call("POST", "/api/jobs/test-noop", free, {"userSubscription": "enterprise", "priority": "high"}).body
    assert job["subscription"] == "free" and job["priority"] == "normal"  # capped by the free tier


def test_error_statuses(api, vq):
    ann = api.token("ann")
    malformed = api.call("POST", "/api/jobs/test-noop", ann, raw=b'{"userId": ')
    assert malformed.status == 400 and malformed.body["error"]["code"] == "malformed"
    invalid = api.call("POST", "/api/jobs/test-noop", ann, {"priority": "urgent"})
    assert invalid.status == 422 and invalid.body["error"]["field"] == "priority"
    empty = api.call("POST", "/api/jobs/image-generation", ann, {"data": {}})
    assert empty.status == 422 and empty.body["error"]["field"] == "data", empty.body
    assert empty.body["error"]["message"] == "data: prompt: required and must be a non-empty string"
    unknown = api.call("POST", "/api/jobs/no-such-type", ann, {})
    assert unknown.status == 404 and "unknown job type" in unknown.body["error"]["message"]
    missing = api.call("GET", "/api/jobs/test-noop/0123456789abcdef", ann)
    assert missing.status == 404
    big = api.call("POST", "/api/jobs/test-noop", ann, {"blob": "x" * 3_000_000})
    assert big.status == 413 and big.body["error"]["code"] == "too_large"
    not_done = api.call("POST", "/api/jobs/delayed", ann, {"jobType": "test-noop", "data": {}, "delay": 60000}).body
    conflict = api.call("GET", f"/api/jobs/test-noop/{not_done['id']}/result", ann)
    assert conflict.status == 409 and conflict.body["error"]["code"] == "conflict"
    negative = api.call("POST", "/api/jobs/delayed", ann, {"jobType": "test-noop", "data": {}, "delay": -5})
    assert negative.status == 422 and negative.body["error"]["field"] == "delay"


def test_rate_limit_answers_429_with_retry_after(vq):
    client = serve(vq, jwt_secret=SECRET, rateLimit={"requests": 5, "window": 60000})
    ann, bob = client.token("ann"), client.token("bob")
    statuses = [client.call("GET", "/api/jobs/types", ann).status for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    limited = client.call("GET", "/api/jobs/types", ann)
    assert limited.body["error"]["code"] == "rate_limited" and 1 <= int(limited.headers["retry-after"]) <= 60
    assert client.call("GET", "/api/jobs/types", bob).status == 200  # per user


def test_redis_down_answers_503(api, redis_server):
    ann = api.token("ann")
    redis_server.kill()
    try:
        reply = api.call("POST", "/api/jobs/test-noop", ann, {})
        assert reply.status == 503 and reply.body["error"]["code"] == "redis_unavailable"
    finally:
        redis_server.start()


def test_openapi_document_lists_every_route(api):
    assert api.call("GET", "/openapi.json").status == 401
    doc = api.call("GET", "/openapi.json", api.token("ann")).body
    paths = set(doc["paths"])
    for path in [
        "/api/jobs/{jobType}",
        "/api/jobs/{jobType}/{jobId}",
        "/api/jobs/{jobType}/{jobId}/progress",
        "/api/jobs/{jobType}/{jobId}/result",
        "/api/jobs/{jobType}/{jobId}/retry",
        "/api/jobs/{jobType}/{jobId}/cancel",
        "/api/jobs/delayed",
        "/api/jobs/recurring",
        "/api/jobs/recurring/{recurringJobId}",
        "/api/jobs/user/{userId}/history",
        "/api/jobs/history",
        "/api/jobs/stats",
        "/api/jobs/queues/stats",
        "/api/jobs/health",
        "/api/jobs/performance",
        "/api/jobs/queues/{jobType}/pause",
        "/api/jobs/queues/{jobType}/resume",
        "/api/jobs/queues/{jobType}/clear",
        "/api/jobs/types",
        "/api/limits",
        "/api/batches",
        "/api/batches/{batchId}",
        "/api/batches/{batchId}/jobs",
        "/api/batches/{batchId}/close",
    ]:
        assert path in paths, path
    # A create answers 201 for a new job, 200 for the job a uniqueKey already holds (README: Unique jobs).
    for path in ("/api/jobs/{jobType}", "/api/jobs/delayed"):
        assert {"200", "201"} <= set(doc["paths"][path]["post"]["responses"]), path
    assert "unique" in doc["components"]["schemas"]["Job"]["properties"]
    listing = doc["paths"]["/api/batches"]["get"]  # vq batch list's twin (issue 25)
    assert listing["operationId"] == "listBatches"
    assert {p["name"] for p in listing["parameters"]} == {"status", "userId", "limit", "page"}
    assert "state" in doc["components"]["schemas"]["BatchSummary"]["properties"]


def test_schemathesis_finds_no_server_error_and_no_response_off_the_document(api, tmp_path):
    """Property-based requests generated from /openapi.json (schemathesis, fixed seed) as an
    operator, against the running daemon: no 5xx, and every status, content type, header and
    body as the document says. (The live event stream never ends, nor does a job log's stream while its job waits, so both are left out.)"""
    ops = api.token("ops", "operator")
    for job_type in ("test-noop", "test-broken"):  # some real jobs for the job routes to find
        api.call("POST", f"/api/jobs/{job_type}", ops, {"userId": "ann"})
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(api.call("GET", "/openapi.json", ops).body))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(document),
            "--url",
            api.base,
            "-H",
            f"Authorization: Bearer {ops}",
            "--max-examples",
            "25",
            "--seed",
            "20261129",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_headers_conformance,response_schema_conformance",
            "--exclude-path",
            "/api/jobs/events",
            "--exclude-path",
            "/api/jobs/{jobType}/{jobId}/logs/stream",  # lasts as long as its job (a paused queue's: for ever)
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.split("SUMMARY")[-1]


def test_the_specs_fetch_examples_run_as_written(api):
    """The three `fetch` examples of the spec, verbatim, with Node's built-in fetch."""
    import os
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the spec's JavaScript examples need it (apt-get install nodejs)")
    token = api.token("user-123", "user", "--tier", "pro")
    env = {**os.environ, "VQ_API": api.base, "VQ_TOKEN": token}
    script = os.path.join(os.path.dirname(__file__), "spec_examples.js")
    proc = subprocess.run([node, script], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    video, delayed, recurring = json.loads(proc.stdout)
    assert video["status"] == 201 and video["body"]["jobType"] == "video-generation"
    assert video["body"]["priority"] == "high" and video["body"]["userId"] == "user-123"
    assert video["body"]["data"]["options"] == {"quality": "high", "resolution": "1080p", "style": "modern"}
    assert delayed["status"] == 201 and delayed["body"]["status"] == "scheduled"
    assert delayed["body"]["jobType"] == "image-generation"
    assert recurring["status"] == 201 and recurring["body"]["cronExpression"] == "0 0 * * *"
    assert recurring["body"]["options"] == {"skipCache": True}


def test_route_names_are_reserved_and_bad_options_are_one_line(vq, tmp_path):
    from tests.conftest import write_config

    config = write_config(tmp_path / "reserved.yaml", {"job_types": {"stats": {"handler": "tests.plugins:noop"}}})
    proc = vq.run("--config", str(config), "types")
    assert (
        proc.returncode == 2
        and "job_types.stats: the name is taken by the HTTP API's /api/jobs/stats route" in proc.stderr
    )
    bad_role = vq.run("token", "create", "--user", "u", "--role", "root")
    assert bad_role.returncode == 2 and "--role: 'root' is not one of user, operator, admin" in bad_role.stderr
    bad_listen = vq.run("daemon", "--http", "nowhere")
    assert bad_listen.returncode == 2 and "--http: 'nowhere' is not HOST:PORT" in bad_listen.stderr
    token = vq.run("token", "create", "--user", "u", "--ttl", "5m", "--json")
    assert token.returncode == 0 and json.loads(token.stdout)["ttlSeconds"] == 300
    secret = vq.data_dir / "jwt.secret"
    assert secret.exists() and oct(secret.stat().st_mode & 0o777) == "0o600"  # made once, owner only


def test_bulk_reports_each_item(api):
    ann = api.token("ann")
    reply = api.call(
        "POST",
        "/api/jobs/bulk",
        ann,
        {
            "jobs": [
                {"jobType": "test-noop", "data": {"i": 1}},
                {"jobType": "no-such-type", "data": {}},
                {"jobType": "test-noop", "userId": "bob", "data": {}},
                {"jobType": "test-noop", "data": {}, "delay": 60000},
                "not an object",
            ]
        },
    )
    assert reply.status == 200, reply.body
    results = reply.body["results"]
    assert [r["ok"] for r in results] == [True, False, False, True, False]
    assert results[1]["error"]["code"] == "not_found" and results[2]["error"]["code"] == "forbidden"
    assert (reply.body["submitted"], reply.body["rejected"]) == (2, 3)
    assert api.call("GET", f"/api/jobs/test-noop/{results[3]['id']}", ann).body["status"] == "scheduled"
    assert api.call("POST", "/api/jobs/bulk", ann, {"jobs": []}).status == 422


def test_rs256_tokens_with_a_public_key_and_no_algorithm_confusion(vq, tmp_path):
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "jwt.pub").write_bytes(public_pem)
    client = serve(vq, jwt_public_key=str(tmp_path / "jwt.pub"))
    claims = {"sub": "ann", "exp": int(time.time()) + 60}
    good = jwt.encode(claims, key, algorithm="RS256")
    assert client.call("GET", "/api/jobs/types", good).status == 200
    confused = _hmac_token(claims, public_pem)  # HS256 keyed with the public key: algorithm confusion
    assert client.call("GET", "/api/jobs/types", confused).status == 401
    refused = vq.run("token", "create", "--user", "ann")
    assert refused.returncode == 2 and "RS256" in refused.stderr


HOSTILE = [
    "'; DROP TABLE render_jobs; --",
    "\" OR 1=1 --",
    "$(rm -rf /tmp/x) `id` | ; &&",
    "ä\u0000\u202e\ud7ff" * 3,
    "x" * 5000,
    "%s%s%n",
    "../../etc/passwd",
]


def test_hostile_strings_are_stored_and_returned_intact(api, vq):
    op = api.token("ops", "operator")
    ids = []
    for value in HOSTILE:
        reply = api.call(
            "POST",
            "/api/jobs/test-echo",
            op,
            {"userId": "ann", "projectId": value[:200], "note": value, "nested": {value[:50]: [value]}},
        )
        assert reply.status == 201, reply.body
        assert reply.body["data"]["note"] == value and reply.body["data"]["nested"] == {value[:50]: [value]}
        ids.append(reply.body["id"])
    for job_id, value in zip(ids, HOSTILE):
        view = _wait(api, op, "test-echo", job_id)
        assert view["result"]["echo"]["note"] == value and view["projectId"] == value[:200]
    rows = json.loads("[" + ",".join(vq.run("history", "export", "--format", "json").stdout.splitlines()) + "]")
    assert sorted(r["project_id"] for r in rows) == sorted(v[:200] for v in HOSTILE)
    for value in HOSTILE:  # as filters, they match nothing and break nothing (argv cannot carry NUL)
        if "\x00" not in value:
            assert vq.json("history", "--user", value[:100], "--type", value[:100]) == []
    history = api.call("GET", "/api/jobs/user/ann/history?limit=100", op)
    assert history.status == 200 and len(history.body["jobs"]) == len(HOSTILE)


def test_every_write_is_audited_with_the_acting_user(api, vq):
    ann, op = api.token("ann"), api.token("ops", "operator")
    job = api.call("POST", "/api/jobs/test-broken", ann, {}).body
    _wait(api, ann, "test-broken", job["id"])
    api.call("POST", f"/api/jobs/test-broken/{job['id']}/retry", ann)
    _wait(api, ann, "test-broken", job["id"], statuses=("failed",))
    api.call("DELETE", f"/api/jobs/test-broken/{job['id']}", ann)
    api.call("POST", "/api/jobs/queues/test-noop/pause", op)
    api.call("POST", "/api/jobs/queues/test-noop/resume", op)
    api.call("DELETE", "/api/jobs/queues/test-noop/clear", op)
    assert vq.run("pause", "test-echo").returncode == 0  # and at the shell
    rows = vq.json("audit")
    trail = [(r["actor"], r["action"], r["target"]) for r in reversed(rows)]
    assert trail == [
        ("ann", "create", job["id"]),
        ("ann", "retry", job["id"]),
        ("ann", "remove", job["id"]),
        ("ops", "pause", "-"),
        ("ops", "resume", "-"),
        ("ops", "clear", "-"),
        (trail[-1][0], "pause", "-"),
    ]
    assert trail[-1][0].startswith("cli:")
    assert [r["action"] for r in vq.json("audit", "--actor", "ops")] == ["clear", "resume", "pause"]


def _read_sse(api: Api, token: str, seen: list, stop: threading.Event, path: str = "/api/jobs/events") -> None:
    request = urllib.request.Request(api.base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event = {}
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                event = json.loads(line[6:])
            elif line == "" and event:
                seen.append(event)
                event = {}
            if stop.is_set():
                return


def test_server_sent_events_show_only_the_callers_jobs(api):
    ann, bob, op = api.token("ann"), api.token("bob"), api.token("ops", "operator")
    seen_ann, seen_op, stop = [], [], threading.Event()
    # From the stream's start: a reader still connecting on a loaded machine misses nothing.
    since = "/api/jobs/events?since=0-0"
    readers = [
        threading.Thread(target=_read_sse, args=(api, ann, seen_ann, stop, since), daemon=True),
        threading.Thread(target=_read_sse, args=(api, op, seen_op, stop, since), daemon=True),
    ]
    for reader in readers:
        reader.start()
    time.sleep(1.0)
    mine = api.call("POST", "/api/jobs/test-noop", ann, {"n": 1}).body["id"]
    theirs = api.call("POST", "/api/jobs/test-noop", bob, {"n": 2}).body["id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(e["jobId"] == theirs and e["event"] == "finished" for e in seen_op):
        time.sleep(0.1)
    stop.set()
    assert [e["event"] for e in seen_ann if e["jobId"] == mine][:1] == ["created"]
    assert any(e["jobId"] == mine and e["event"] == "finished" for e in seen_ann)
    assert not any(e["jobId"] == theirs for e in seen_ann)  # bob's job is not ann's business
    assert {mine, theirs} <= {e["jobId"] for e in seen_op}


def _chunked(api: Api, token: str, path: str, chunks, timeout: float = 30) -> tuple[int, dict, int, int]:
    """POST a body with Transfer-Encoding: chunked over a raw socket, reading while sending;
    the sender stops once the answer starts to come. (status, JSON body, bytes sent when it
    started to come, bytes there were to send)."""
    host, port = api.base.rsplit("/", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    sent, total, answered, received = [0], sum(len(c) for c in chunks), threading.Event(), []

    def read():
        data = b""
        try:
            while True:
                more = sock.recv(65536)
                if not more:
                    break
                if not data:
                    received.append(sent[0])
                    answered.set()
                data += more
                head, _, body = data.partition(b"\r\n\r\n")
                length = [
                    line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")
                ]
                if length and len(body) >= int(length[0]):
                    break
        except OSError:
            pass
        answered.set()
        received.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for chunk in chunks:
            if answered.is_set():
                break
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent[0] += len(chunk)
            time.sleep(0.002)  # a client on a network: the reader gets its turn
        else:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    reader.join(timeout)
    sock.close()
    sent_then, data = (received[0], received[-1]) if len(received) == 2 else (sent[0], b"")
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    return status, json.loads(body) if body else {}, sent_then, total


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(api):
    """No Content-Length: the body is counted as it comes and refused at the limit (2 MiB),
    not read whole (200 MiB) and parsed first."""
    ann = api.token("ann")
    piece = b"x" * (1 << 20)
    started = time.monotonic()
    status, body, sent, total = _chunked(api, ann, "/api/jobs/test-noop", [b'{"blob": "'] + [piece] * 200)
    took = time.monotonic() - started
    assert status == 413, (status, body)
    assert body["error"]["code"] == "too_large"
    assert body["error"]["message"] == (
        "body: more than 2097152 bytes is over the limit of 2097152 bytes (http.maxBodyBytes)"
    )
    assert sent < total // 2, f"the answer came after {sent} of {total} bytes were sent"
    assert took < 5
    small = json.dumps({"userId": "ann", "n": 1}).encode()
    status, body, _, _ = _chunked(api, ann, "/api/jobs/test-noop", [small[:5], small[5:]])
    assert status == 201 and body["data"]["n"] == 1  # a chunked body under the limit is taken as before


def test_out_of_range_query_parameters_are_422_naming_them(api):
    ann, op = api.token("ann"), api.token("op", "operator")
    for path, token, field in [
        ("/api/jobs/user/ann/history?offset=9223372036854775808", ann, "offset"),  # 2^63: past SQLite's integers
        ("/api/jobs/user/ann/history?limit=9223372036854775808", ann, "limit"),
        ("/api/jobs/user/ann/history?since=99999999999999999999999d", ann, "since"),
        ("/api/jobs/performance?window=99999999999999999999d", op, "window"),  # read a bucket per day: hung
        ("/api/jobs/performance?window=100000d", op, "window"),
        ("/api/providers?window=" + "9" * 400 + "d", op, "window"),
        ("/api/costs?since=9999999d", ann, "since"),
        ("/api/jobs/events?since=99999999999999999999999-0", ann, "since"),
    ]:
        reply = api.call("GET", path, token)
        assert reply.status == 422, (path, reply.status, reply.body)
        assert reply.body["error"]["field"] == field, (path, reply.body)
        assert (
            reply.body["error"]["message"]
            .lstrip("-")
            .startswith(("offset", "limit", "since", "window", "Last-Event-ID"))
        ), reply.body
    infinite = api.call("POST", "/api/jobs/delayed", ann, raw=b'{"jobType": "test-noop", "data": {}, "delay": 1e400}')
    assert infinite.status == 422 and infinite.body["error"] == {
        "code": "invalid",
        "field": "delay",
        "message": "delay: not a finite number",
    }


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_json_nested_too_deeply_is_named(api, depth):
    ann = api.token("ann")
    for raw in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        reply = api.call("POST", "/api/jobs/test-noop", ann, raw=raw)
        assert reply.status == 400, reply.body
        assert reply.body["error"] == {"code": "malformed", "message": "body: JSON nested too deeply", "field": None}
