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
LOOPBACK = ["127.0.0.0/8"]  # the receivers here listen on loopback, which vq refuses unless allowed


class Receiver:
    """A real HTTP endpoint on loopback that records what it is sent (the platform's side)."""

    def __init__(self):
        self.received: list[dict] = []
        self.fail_first: dict[str, int] = {}  # path -> how many requests to answer 500
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                left = receiver.fail_first.get(self.path, 0)
                receiver.received.append(
                    {
                        "path": self.path,
                        "body": body,
                        "signature": self.headers.get("X-Vq-Signature"),
                        "answered": 500 if left else 200,
                        "host": self.headers.get("Host"),
                    }
                )
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
    vq.configure(webhooks={"secret": WEBHOOK_SECRET, "backoff": 100, "allowNetworks": LOOPBACK})
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
    vq.configure(webhooks={"backoff": 200, "attempts": 3, "allowNetworks": LOOPBACK})
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


@pytest.mark.parametrize(
    "host, said",
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address; allow it with webhooks.allowNetworks"),
        ("127.1", "127.0.0.1 is a loopback address"),
        ("[::1]", "::1 is a loopback address"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1 is a loopback (IPv4 inside IPv6) address"),
        ("0.0.0.0", "0.0.0.0 is an unspecified address"),
        ("10.20.30.40", "10.20.30.40 is a private address"),
        ("[fd12::1]", "fd12::1 is a unique-local address"),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata-service address"),
        ("[fd00:ec2::254]", "fd00:ec2::254 is a cloud metadata-service address"),
        (
            "metadata.google.internal",
            "metadata.google.internal is a cloud metadata-service name; allow it with webhooks.allowHosts",
        ),
        ("localhost", "localhost is a loopback name; allow it with webhooks.allowHosts"),
    ],
)
def test_an_internal_webhook_address_is_refused_at_submit(vq, redis_conn, host, said):
    proc = vq.run("submit", "test-noop", "--user", "u", "--webhook", f"http://{host}:8080/hook")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"webhookUrl: {said}" in proc.stderr
    assert not redis_conn.keys("rq:job:*")  # refused before anything was written


def test_a_loopback_receiver_is_refused_by_default_and_reached_when_allowed(vq, receiver):
    from tests.test_api import SECRET, serve

    proc = vq.run("submit", "test-noop", "--user", "u", "--webhook", f"{receiver.url}/cli")
    assert proc.returncode == 2 and "webhookUrl: 127.0.0.1 is a loopback address" in proc.stderr
    vq.configure(webhooks={"allowNetworks": LOOPBACK})
    api = serve(vq, jwt_secret=SECRET)
    token = api.token("ann")
    refused = api.call("POST", "/api/jobs/test-noop", token, {"webhookUrl": "http://[::1]:8080/api"})
    assert refused.status == 422 and refused.body["error"]["field"] == "webhookUrl"
    assert (
        refused.body["error"]["message"] == "webhookUrl: ::1 is a loopback address; allow it with "
        "webhooks.allowNetworks"
    )  # 127.0.0.0/8 is allowed, not ::1
    created = api.call("POST", "/api/jobs/test-noop", token, {"webhookUrl": f"{receiver.url}/api"})
    assert created.status == 201, created.body
    job = vq.submit("test-noop", {}, "--user", "u", "--webhook", f"{receiver.url}/cli")
    assert json.loads(receiver.wait_for("/cli")[0]["body"])["job"]["id"] == job
    assert json.loads(receiver.wait_for("/api")[0]["body"])["job"]["id"] == created.body["id"]


def _resolving(vq, tmp_path, table: dict) -> None:
    """The vq processes started from now on resolve these names so (tests/resolver)."""
    from tests.conftest import ROOT

    vq.env["PYTHONPATH"] = f"{ROOT / 'tests' / 'resolver'}:{vq.env['PYTHONPATH']}"
    vq.env["VQ_TEST_HOSTS"] = json.dumps(table)


def test_a_name_that_resolves_to_loopback_is_refused_when_delivered_and_not_retried(vq, receiver, tmp_path):
    _resolving(vq, tmp_path, {"hooks.vq-test": ["127.0.0.1"]})
    vq.configure(webhooks={"backoff": 100, "attempts": 3})
    vq.start_daemon()
    port = receiver.url.rsplit(":", 1)[1]
    job = vq.submit("test-noop", {}, "--user", "u", "--webhook", f"http://hooks.vq-test:{port}/named")  # a name: passes
    deadline = time.monotonic() + 20
    while "refused, not sent" not in vq.daemon_log() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # three attempts at 100 ms back-off would be over by now
    log = vq.daemon_log()
    assert log.count("refused, not sent") == 1, log
    assert (
        f"job {job}: webhook hooks.vq-test:{port} refused, not sent: hooks.vq-test resolves to 127.0.0.1, "
        "a loopback address; allow it with webhooks.allowHosts or webhooks.allowNetworks"
    ) in log
    assert receiver.received == []
    assert "Traceback" not in log


def test_the_delivery_connects_to_the_address_it_checked(vq, receiver, tmp_path):
    """A name that answers an allowed address, then another (DNS rebinding): the POST goes
    to the address that was checked, with the name as its Host."""
    _resolving(vq, tmp_path, {"rebind.vq-test": ["127.0.0.1", "127.0.0.2"]})
    vq.configure(webhooks={"allowNetworks": ["127.0.0.1/32"]})
    vq.start_daemon()
    port = receiver.url.rsplit(":", 1)[1]
    job = vq.submit("test-noop", {}, "--user", "u", "--webhook", f"http://rebind.vq-test:{port}/pinned")
    got = receiver.wait_for("/pinned")[0]
    assert json.loads(got["body"])["job"]["id"] == job
    assert got["host"] == f"rebind.vq-test:{port}"
