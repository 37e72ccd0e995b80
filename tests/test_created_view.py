"""The HTTP create's answer (vq/created_view.py) is what `jobs.show(explain=False)` says of
the new job, read in one round trip with the audit record: compared on jobs of every kind
against a real Redis. And the verified-token memory of the API server (vq/tokens.py)."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.conftest import TEST_JOB_TYPES, write_config
from vq import audit, keys, queues
from vq.config import load_settings
from vq.created_view import created_view
from vq.jobs import show
from vq.submission import Submission, submit
from vq.tokens import LEEWAY, TokenRequest, Unauthorized, VerifiedTokens, create, verify_key


@pytest.fixture
def settings(redis_server, tmp_path):
    path = write_config(
        tmp_path / "config.yaml",
        {
            "redis": {"url": redis_server.url},
            "data_dir": str(tmp_path),
            "job_types": {
                **TEST_JOB_TYPES,
                "test-gpu": {"handler": "tests.plugins:tracked", "attempts": 1, "resources": {"gpu": 1}},
            },
            "concurrency": {
                "groups": {"model": {"key": "data.model", "limit": {"default": 2}, "types": ["test-track"]}}
            },
            "http": {"jwt_secret": "s" * 40},
        },
    )
    return load_settings(path, env={})


KINDS = {
    "plain": Submission("test-noop", {"prompt": "x"}, user_id="u1"),
    "priority": Submission("test-noop", {}, user_id="u1", priority="low"),
    "delayed": Submission("test-noop", {}, user_id="u1", delay_ms=60_000),
    "group": Submission("test-track", {"model": "sdxl"}, user_id="u1", project_id="p1"),
    "resources": Submission("test-gpu", {}, user_id="u1"),
    "sensitive": Submission("test-echo", {"api_key": "k-123", "prompt": "y"}, user_id="u1"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_answer_is_what_show_says(redis_conn, settings, kind):
    sub = KINDS[kind]
    job_id = submit(redis_conn, settings, sub)
    answer = created_view(redis_conn, settings, job_id, sub.job_type, "u1")
    assert answer == show(redis_conn, job_id, settings, explain=False, reveal_to="u1")
    stranger = created_view(redis_conn, settings, job_id, sub.job_type, "someone-else")
    assert stranger == show(redis_conn, job_id, settings, explain=False, reveal_to="someone-else")
    if kind == "sensitive":
        assert answer["data"]["api_key"] == "k-123" and stranger["data"]["api_key"] != "k-123"


def test_a_dependent_and_a_limited_job(redis_conn, settings):
    first = submit(redis_conn, settings, Submission("test-noop", {}, user_id="u1"))
    then = submit(redis_conn, settings, Submission("test-noop", {}, user_id="u1", depends_on=[first]))
    assert created_view(redis_conn, settings, then, "test-noop", "u1") == show(
        redis_conn, then, settings, explain=False, reveal_to="u1"
    )
    assert show(redis_conn, then, settings, explain=False)["status"] == "deferred"
    # a job in its user's waiting line (what admission does when it routes it): `limited`
    job_id = submit(redis_conn, settings, Submission("test-track", {"model": "m"}, user_id="u1"))
    redis_conn.zadd(keys.wait_since_all("test-track")[1], {job_id: 1})
    answer = created_view(redis_conn, settings, job_id, "test-track", "u1")
    assert answer["status"] == "limited"
    assert answer == show(redis_conn, job_id, settings, explain=False, reveal_to="u1")
    queues.pause(redis_conn, settings, "test-track")  # a paused type's jobs wait for the resume: queued
    answer = created_view(redis_conn, settings, job_id, "test-track", "u1")
    assert answer["status"] == "queued"
    assert answer == show(redis_conn, job_id, settings, explain=False, reveal_to="u1")


def test_the_audit_record_goes_in_the_same_round_trip(redis_conn, settings):
    job_id = submit(redis_conn, settings, Submission("test-noop", {}, user_id="u1"))
    before = redis_conn.xlen(keys.EVENTS)
    created_view(
        redis_conn,
        settings,
        job_id,
        "test-noop",
        "u1",
        lambda pipe: audit.record(pipe, "u1", "user", "create", "test-noop", job_id, delayed=True),
    )
    assert redis_conn.xlen(keys.EVENTS) == before + 1
    (_, fields), *_ = redis_conn.xrevrange(keys.EVENTS, count=1)
    record = {k.decode(): v.decode() for k, v in fields.items()}
    assert record["event"] == "audit" and job_id in record.values(), record


def test_another_type_or_a_vanished_job_is_left_to_show(redis_conn, settings):
    job_id = submit(redis_conn, settings, Submission("test-noop", {}, user_id="u1"))
    # told the wrong type: the read-back is not trusted, show answers
    assert created_view(redis_conn, settings, job_id, "test-echo", "u1") == show(
        redis_conn, job_id, settings, explain=False, reveal_to="u1"
    )


def test_a_remembered_token_is_refused_once_it_expires(settings):
    tokens = VerifiedTokens(settings, verify_key(settings))
    header = "Bearer " + create(settings, TokenRequest(user_id="u1", ttl_seconds=60))
    assert tokens.decode(header).user_id == "u1"
    assert header in tokens.known  # the next request is not verified again
    assert tokens.decode(header).user_id == "u1"
    # expired 3.5 s ago: still within the 5 s leeway, so it passes and is remembered...
    expires = time.time() - 3.5
    late = "Bearer " + jwt.encode({"sub": "u2", "exp": int(expires)}, settings.http.jwt_secret, algorithm="HS256")
    assert tokens.decode(late).user_id == "u2"
    assert late in tokens.known
    time.sleep(max(0.0, int(expires) + LEEWAY + 0.2 - time.time()))
    # ...until the leeway is over too: refused, though remembered
    with pytest.raises(Unauthorized, match="expired"):
        tokens.decode(late)


def test_a_bad_token_is_never_remembered(settings):
    tokens = VerifiedTokens(settings, verify_key(settings))
    forged = jwt.encode({"sub": "u1", "exp": int(time.time()) + 60}, "another-secret-" + "x" * 32, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(Unauthorized, match="signature"):
            tokens.decode(f"Bearer {forged}")
    with pytest.raises(Unauthorized):
        tokens.decode(None)
    assert tokens.known == {}


def _with_the_pool_taken(app, token: str, requests: list[tuple[str, str]]) -> list:
    """Send `requests` ((method, path), in turn) to `app` while every thread of anyio's
    default pool (FastAPI's run_in_threadpool) is taken: a request that needs one waits
    until the 5 s timeout fails the test."""
    import asyncio

    import anyio.to_thread
    import httpx

    async def main():
        limiter = anyio.to_thread.current_default_thread_limiter()
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:
            await limiter.acquire_on_behalf_of(holder)
        try:
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://vq", headers=headers) as client:
                answers = []
                for method, path in requests:
                    body = {"prompt": "x"} if method == "POST" else None
                    answers.append(await asyncio.wait_for(client.request(method, path, json=body), 5))
                return answers
        finally:
            for holder in holders:
                limiter.release_on_behalf_of(holder)

    return asyncio.run(main())


def test_a_create_needs_no_thread_from_the_pool(redis_conn, settings):
    """POST /api/jobs/{jobType} answers with every thread of the server's pool taken, with the
    per-user rate limit on as by default: the create and the rate check run on the event loop
    (vq/api/context.py: Context.create, check_rate), the ~0.4 ms of CPU per submission of a
    hop to a pool thread saved."""
    from vq.api.app import create_app

    assert settings.http.rateLimit.requests == 600  # the default: on
    app = create_app(settings, redis_conn)
    token = create(settings, TokenRequest(user_id="u1", ttl_seconds=600))
    (answer,) = _with_the_pool_taken(app, token, [("POST", "/api/jobs/test-noop")])
    assert answer.status_code == 201, answer.text
    assert answer.json() == show(redis_conn, answer.json()["id"], settings, explain=False, reveal_to="u1")


def test_the_rate_limit_refuses_without_a_thread_from_the_pool(redis_conn, settings):
    """Over the per-user limit the answer is still 429 `rate_limited` with Retry-After, the
    check made on the event loop; requests of any route count, and the refused create makes
    no job."""
    from vq.api.app import create_app

    settings.http.rateLimit.requests = 2
    app = create_app(settings, redis_conn)
    token = create(settings, TokenRequest(user_id="u1", ttl_seconds=600))
    created, livez, types, refused = _with_the_pool_taken(
        app,
        token,
        [
            ("POST", "/api/jobs/test-noop"),
            ("GET", "/livez"),
            ("GET", "/api/jobs/types"),
            ("POST", "/api/jobs/test-noop"),
        ],
    )
    assert created.status_code == 201 and livez.status_code == 200  # /livez asks for no token: not counted
    assert types.status_code == 200, types.text  # the second counted request
    assert refused.status_code == 429, refused.text
    seconds = int(refused.headers["retry-after"])
    assert 1 <= seconds <= 60
    assert refused.json() == {
        "error": {
            "code": "rate_limited",
            "message": f"rate limit: 2 requests per 60s; retry in {seconds}s",
            "field": None,
        }
    }
    assert redis_conn.zcard(keys.user_jobs("u1")) == 1  # the refused create made no job
