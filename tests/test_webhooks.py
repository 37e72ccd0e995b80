"""Job webhooks: a job's webhookUrl is POSTed its JSON when it ends, signed, retried with
back-off when the receiver fails, and delivered once per ending by one of several daemons."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

WEBHOOK_SECRET = "whsec-test"


class Receiver:
    """A real HTTP endpoint on loopback that records what it is sent (the platform's side)."""

    def __init__(self):
        self.received: list[dict] = []
        self.fail_first: dict[str, int] = {}  # path -> how many requests to answer 500
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                left = receiver.fail_first.get(self.path, 0)
                receiver.received.append({"path": self.path, "body": body, "signature": self.headers.get(
                    "X-Vq-Signature"), "answered": 500 if left else 200})
                if left:
                    receiver.fail_first[self.path] = left - 1
                self.send_response(500 if left else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, path: str, count: int = 1, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.received if r["path"] == path]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(got)} of {count} deliveries after {timeout}s")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def _verify(delivery: dict) -> dict:
    stamp, mac = (part.split("=", 1)[1] for part in delivery["signature"].split(","))
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + delivery["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected), "signature does not match the body"
    assert abs(int(stamp) - time.time()) < 60
    return json.loads(delivery["body"])


def test_finished_and_failed_jobs_call_their_webhooks_once_signed(vq, receiver):
    vq.configure(webhooks={"secret": WEBHOOK_SECRET, "backoff": 100})
    vq.start_daemon()
    vq.start_daemon()  # two daemons share the deliveries: each is sent once
    ok = vq.submit("test-echo", {"n": 1}, "--user", "u", "--webhook", f"{receiver.url}/ok")
    vq.submit("test-broken", {}, "--user", "u", "--webhook", f"{receiver.url}/bad")
    plain = vq.submit("test-noop", {}, "--user", "u")
    vq.wait_for(plain)
    done = _verify(receiver.wait_for("/ok")[0])
    assert done["event"] == "job.finished" and done["job"]["id"] == ok
    assert done["job"]["status"] == "finished" and done["job"]["result"]["echo"] == {"n": 1}
    failed = _verify(receiver.wait_for("/bad")[0])
    assert failed["event"] == "job.failed" and failed["job"]["error"]["message"] == "input can never work"
    time.sleep(1.5)
    assert len(receiver.received) == 2  # once each, none for the job without a webhook
    assert vq.json("show", ok)["webhookUrl"] == f"{receiver.url}/ok"
    assert f"{receiver.url}/ok" not in vq.daemon_log(0) + vq.daemon_log(1)  # URLs may carry tokens: not logged


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(vq, receiver):
    vq.configure(webhooks={"backoff": 200, "attempts": 3})
    receiver.fail_first = {"/flaky": 2, "/down": 99}
    vq.start_daemon()
    flaky = vq.submit("test-noop", {}, "--user", "u", "--webhook", f"{receiver.url}/flaky")
    down = vq.submit("test-noop", {}, "--user", "v", "--webhook", f"{receiver.url}/down")
    tries = receiver.wait_for("/flaky", 3)
    assert [t["answered"] for t in tries] == [500, 500, 200]
    assert tries[0]["signature"] is None  # no secret configured: unsigned
    assert len(receiver.wait_for("/down", 3)) == 3
    time.sleep(1.5)
    assert len([r for r in receiver.received if r["path"] == "/down"]) == 3  # webhooks.attempts, then no more
    log = vq.daemon_log()
    assert f"job {down}: webhook 127.0.0.1" in log and "failed 3 times, giving up: HTTP 500" in log
    assert f"job {flaky}: webhook" in log


@pytest.mark.parametrize("url", ["ftp://example.com/x", "not a url", "http://"])
def test_a_bad_webhook_url_is_refused(vq, url):
    proc = vq.run("submit", "test-noop", "--user", "u", "--webhook", url)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "webhookUrl:" in proc.stderr and "http:// or https:// URL" in proc.stderr
