"""The HTTP provider adapter against a real local HTTP server, and the circuit breaker's
whole cycle through a real daemon."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vq.config import ProviderSettings, load_settings
from vq.errors import PermanentError, ProviderError, RateLimitError
from vq.providers.breaker import Breakers
from vq.providers.http import call_http


class FakeProvider:
    """A local HTTP server whose answer the test chooses: ok, busy (429), down (500), bad (400), slow."""

    def __init__(self):
        self.mode = "ok"
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                if outer.mode == "slow":
                    time.sleep(1.0)
                status, headers, payload = {
                    "ok": (200, {}, {"model": "fake-1", "answer": body.get("input")}),
                    "busy": (429, {"Retry-After": "2"}, {"error": "slow down"}),
                    "down": (503, {}, {"error": "overloaded"}),
                    "bad": (400, {}, {"error": "bad prompt"}),
                    "slow": (200, {}, {}),
                    "nan-usage": (
                        200,
                        {},
                        {
                            "model": "fake-1",
                            "answer": body.get("input"),
                            "usage": {"tokens": float("nan"), "images": float("inf"), "calls": 1},
                        },
                    ),
                }[outer.mode]
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/generate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def fake():
    server = FakeProvider()
    yield server
    server.close()


def test_http_adapter_maps_answers_to_error_categories(fake, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "s3cret")
    provider = ProviderSettings(url=fake.url, apiKeyEnv="FAKE_KEY", timeout=300)
    assert call_http("fake", provider, {"input": "hi"}) == {"model": "fake-1", "answer": "hi"}
    assert fake.requests[-1]["auth"] == "Bearer s3cret"
    fake.mode = "busy"
    with pytest.raises(RateLimitError) as busy:
        call_http("fake", provider, {})
    assert busy.value.retry_after == 2.0
    fake.mode = "down"
    with pytest.raises(ProviderError, match="HTTP 503") as down:
        call_http("fake", provider, {})
    assert down.value.provider == "fake"
    fake.mode = "bad"
    with pytest.raises(PermanentError, match="HTTP 400.*bad prompt"):
        call_http("fake", provider, {})
    fake.mode = "slow"
    with pytest.raises(ProviderError, match="no answer within 300 ms"):
        call_http("fake", provider, {})
    with pytest.raises(ProviderError, match="cannot connect"):
        call_http("fake", ProviderSettings(url="http://127.0.0.1:1/x", timeout=300), {})
    monkeypatch.delenv("FAKE_KEY")
    with pytest.raises(PermanentError, match="FAKE_KEY is not set"):
        call_http("fake", provider, {})


def test_breaker_cycle_closed_open_half_open_closed(redis_conn, redis_server, tmp_path):
    settings = load_settings(env={"REDIS_URL": redis_server.url, "XDG_CONFIG_HOME": str(tmp_path)})
    settings.breaker.failureThreshold, settings.breaker.cooldown = 2, 500
    breakers = Breakers(redis_conn, settings)
    assert breakers.acquire("p") is None
    assert breakers.failure("p") == "closed"
    assert breakers.failure("p") == "open"
    retry_at = breakers.acquire("p")
    assert retry_at is not None and 0 < retry_at - time.time() <= 0.5
    time.sleep(0.55)
    assert breakers.acquire("p") is None, "after the cool-down one probe goes through"
    assert breakers.acquire("p") is not None, "and only one"
    assert breakers.failure("p") == "open", "a failed probe opens it again"
    time.sleep(0.55)
    assert breakers.acquire("p") is None
    breakers.success("p")
    assert breakers.acquire("p") is None and breakers.acquire("p") is None, "closed again"


def test_open_breaker_delays_jobs_without_failing_them(vq, fake):
    vq.configure(
        providers={
            "fake": {
                "kind": "http",
                "url": fake.url,
                "timeout": 2000,
                "breaker": {"failureThreshold": 2, "window": 60000, "cooldown": 5000},
            }
        },
        job_types={"ai-processing": {"attempts": 1}},
    )
    fake.mode = "down"
    vq.start_daemon()
    failed = [
        vq.submit("ai-processing", {"provider": "fake", "task": "echo", "input": i}, "--user", "u") for i in range(2)
    ]
    for job_id in failed:
        view = vq.wait_for(job_id)
        assert view["status"] == "failed" and view["error"]["category"] == "provider"
    row = next(r for r in vq.json("providers") if r["provider"] == "fake")
    assert row["state"] == "open" and row["failures"] == 2 and row["nextProbe"]
    fake.mode = "ok"
    waiting = vq.submit("ai-processing", {"provider": "fake", "task": "echo", "input": "later"}, "--user", "u")
    view = vq.wait_for(waiting, statuses=("scheduled",), timeout=10)
    assert view["error"]["category"] == "breaker_open" and view["attempts"] == 0
    done = vq.wait_for(waiting, timeout=15)
    assert done["status"] == "finished" and done["result"]["output"]["answer"] == "later"
    assert done["attempts"] == 1, "the delay cost no attempt"
    assert next(r for r in vq.json("providers") if r["provider"] == "fake")["state"] == "closed"
