"""Traces (docs/tracing.md): a real OTLP/HTTP receiver on loopback, started here, gets the
spans a real daemon exports; a stand-in provider records the headers it is sent.

A job submitted over HTTP with a W3C `traceparent` yields, in that trace: the HTTP submit
(SERVER), the job's `send` (PRODUCER), its wait for a slot (with the limit that held it),
its attempt (CONSUMER) and its provider call (CLIENT), parented as the path of the job goes;
and the provider receives the propagated header."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # the otel extra (scripts/test.sh)
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.test_api import SECRET, serve

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces with an ExportTraceServiceRequest
    (protobuf); keeps each span as a dict, with its service's name."""

    def __init__(self):
        self.spans: list[dict] = []
        self.posts = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 404
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    with lock:
                        outer.posts += 1
                        outer.spans += outer._decoded(request)
                    status = 200
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _decoded(request) -> list[dict]:
        out = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    out.append(
                        {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex() or None,
                            "name": s.name,
                            "kind": KINDS.get(s.kind, str(s.kind)),
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                            "error": s.status.code == 2,
                            "links": [(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                            "service": resource.get("service.name"),
                            "host": resource.get("host.name"),
                        }
                    )
        return out

    def wait_for(self, found, timeout: float = 15.0) -> list[dict]:
        """The spans once `found(spans)` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = list(self.spans)
            if found(spans):
                return spans
            time.sleep(0.1)
        raise AssertionError(f"spans never arrived; have {json.dumps(self.spans, indent=1)[:4000]}")


class Provider:
    """A provider stand-in: answers {"answer": input}; records each request's headers."""

    def __init__(self):
        self.headers: list[dict] = []
        self.gate = threading.Event()  # a request whose input is "held" waits until it is set
        self.gate.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                if body.get("input") == "held":
                    outer.gate.wait(30)
                data = json.dumps({"answer": body.get("input")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/generate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.server.shutdown()


@pytest.fixture
def provider():
    made = Provider()
    yield made
    made.server.shutdown()


def _one(spans: list[dict], **match) -> dict:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items() if k != "attrs")]
    found = [s for s in found if all(s["attributes"].get(k) == v for k, v in match.get("attrs", {}).items())]
    assert len(found) == 1, f"{match}: {len(found)} spans\n{json.dumps(spans, indent=1)[:6000]}"
    return found[0]


def test_an_http_submission_with_a_traceparent_is_traced_to_its_provider_call(vq, receiver, provider):
    vq.configure(
        telemetry={"endpoint": receiver.url, "serviceName": "vq-test"},
        providers={"alpha": {"kind": "http", "url": provider.url, "timeout": 5000}},
        job_types={
            "ai-processing": {"providers": ["alpha"], "attempts": 1},
            "ai-forked": {  # the same handler in a child process per job
                "handler": "vq.handlers.ai_processing:handle",
                "providers": ["alpha"],
                "attempts": 1,
                "isolation": "fork",
            },
        },
        concurrency={"type": {"ai-processing": 1}},  # the second job waits for the first's slot
        webhooks={"allowNetworks": ["127.0.0.0/8"]},  # the stand-in takes the webhook too
    )
    vq.env["OTEL_BSP_SCHEDULE_DELAY"] = "100"  # spans leave within 0.1 s, not the SDK's 5 s
    api = serve(vq, jwt_secret=SECRET, rateLimit={"requests": 1000, "window": 60000})
    token = api.token("ann")
    provider.gate.clear()  # the first job holds the type's one slot until the gate opens
    first = api.call("POST", "/api/jobs/ai-processing", token, body={"userId": "ann", "task": "echo", "input": "held"})
    assert first.status == 201, first.body
    deadline = time.monotonic() + 20
    while not provider.headers and time.monotonic() < deadline:  # it is in its provider call
        time.sleep(0.02)

    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    body = {"userId": "ann", "task": "echo", "input": "traced", "webhookUrl": provider.url}
    reply = api.call(
        "POST", "/api/jobs/ai-processing", token, body=body, headers={"traceparent": f"00-{trace_id}-{caller_span}-01"}
    )
    assert reply.status == 201, reply.body
    job_id = reply.body["id"]
    time.sleep(0.5)  # it waits for the first job's slot
    assert vq.json("show", job_id)["status"] in ("queued", "limited")
    provider.gate.set()
    assert vq.wait_done(job_id)["status"] == "finished"

    spans = receiver.wait_for(
        lambda spans: (
            {"server", "producer", "internal", "consumer", "client"}
            <= {s["kind"] for s in spans if s["trace_id"] == trace_id}
        )
    )
    mine = [s for s in spans if s["trace_id"] == trace_id]
    server = _one(mine, kind="server")
    assert server["parent"] == caller_span, "the caller's trace carries on into vq"
    assert server["name"] == "POST /api/jobs/{jobType}" and server["attributes"]["http.route"] == "/api/jobs/{jobType}"
    assert server["attributes"]["http.response.status_code"] == reply.status
    assert server["service"] == "vq-test"

    send = _one(mine, kind="producer")
    assert send["parent"] == server["span_id"]
    assert send["name"] == "send ai-processing"
    assert send["attributes"]["messaging.system"] == "vq"
    assert send["attributes"]["messaging.operation.type"] == "send"
    assert send["attributes"]["messaging.destination.name"] == "ai-processing"
    assert send["attributes"]["messaging.message.id"] == job_id

    wait = _one(mine, kind="internal", name="wait ai-processing")
    assert wait["parent"] == send["span_id"]
    assert wait["attributes"]["vq.wait.reason"] == "type limit 1/1", "the limit that held it"
    assert wait["end"] - wait["start"] > 0.2e9, "it waited for the first job's slot"

    attempt = _one(mine, kind="consumer")
    assert attempt["parent"] == send["span_id"] and attempt["name"] == "process ai-processing"
    assert attempt["attributes"]["messaging.operation.type"] == "process"
    assert attempt["attributes"]["messaging.message.id"] == job_id
    assert attempt["attributes"]["vq.job.outcome"] == "finished"
    assert attempt["attributes"]["vq.job.attempt"] == 1
    assert attempt["attributes"]["messaging.client.id"].startswith("vq.")  # the worker
    assert attempt["host"], "host.name: the resource's"
    assert attempt["start"] >= wait["end"] - 1e6

    call = _one(mine, kind="client", attrs={"vq.provider": "alpha"})
    assert call["parent"] == attempt["span_id"]
    assert call["attributes"]["http.request.method"] == "POST"
    assert call["attributes"]["http.response.status_code"] == 200
    assert call["attributes"]["vq.provider"] == "alpha"

    spans = receiver.wait_for(
        lambda spans: any(s["trace_id"] == trace_id and "vq.webhook.attempt" in s["attributes"] for s in spans)
    )
    hook = _one([s for s in spans if s["trace_id"] == trace_id], kind="client", attrs={"vq.webhook.attempt": 1})
    assert hook["parent"] == send["span_id"] and not hook["error"], "delivered, in the job's trace"
    sent = [h["traceparent"] for h in provider.headers if h.get("traceparent", "").split("-")[1:2] == [trace_id]]
    assert sent == [f"00-{trace_id}-{call['span_id']}-01", f"00-{trace_id}-{hook['span_id']}-01"], (
        "the provider got the trace, its parent the call's span; then the webhook's"
    )
    # In a forked child per job: its provider call's span (made and sent by the child) too.
    forked_trace = uuid.uuid4().hex
    reply = api.call(
        "POST",
        "/api/jobs/ai-forked",
        token,
        body={k: v for k, v in body.items() if k != "webhookUrl"},
        headers={"traceparent": f"00-{forked_trace}-{caller_span}-01"},
    )
    assert reply.status == 201, reply.body
    assert vq.wait_done(reply.body["id"])["status"] == "finished"
    spans = receiver.wait_for(
        lambda spans: {"consumer", "client"} <= {s["kind"] for s in spans if s["trace_id"] == forked_trace}
    )
    attempt = _one(spans, kind="consumer", trace_id=forked_trace)
    assert attempt["attributes"]["vq.job.outcome"] == "finished", "read back from what the child wrote"
    assert _one(spans, kind="client", trace_id=forked_trace)["parent"] == attempt["span_id"]
    # A retry: both attempts under the job's `send`, the first failed and retrying, the
    # second's wait from when its back-off (1 s) was over.
    retried = uuid.uuid4().hex
    reply = api.call(
        "POST",
        "/api/jobs/test-flaky",
        token,
        body={"userId": "ann", "succeed_on": 2},
        headers={"traceparent": f"00-{retried}-{caller_span}-01"},
    )
    assert reply.status == 201, reply.body
    assert vq.wait_done(reply.body["id"])["status"] == "finished"
    spans = receiver.wait_for(
        lambda spans: sum(s["trace_id"] == retried and s["kind"] == "consumer" for s in spans) == 2
    )
    send = _one(spans, kind="producer", trace_id=retried)
    one, two = (_one(spans, kind="consumer", trace_id=retried, attrs={"vq.job.attempt": n}) for n in (1, 2))
    assert one["parent"] == two["parent"] == send["span_id"]
    assert one["attributes"]["vq.job.outcome"] == "retrying" and one["error"]
    assert one["attributes"]["error.type"] == one["attributes"]["vq.error.category"] == "temporary"
    assert two["attributes"]["vq.job.outcome"] == "finished" and not two["error"]
    wait = _one(spans, name="wait test-flaky", trace_id=retried, attrs={"vq.job.attempt": 2})
    assert wait["parent"] == send["span_id"] and wait["start"] >= one["end"] + 0.9e9, (
        "runnable once its back-off was over"
    )
    # A batch (one request, plain jobs created 500 to a transaction): one `send` for the
    # batch, and a `send` and an attempt per job under it, all in the request's trace.
    batch_trace = uuid.uuid4().hex
    reply = api.call(
        "POST",
        "/api/jobs/bulk",
        token,
        body={"jobs": [{"jobType": "test-noop", "userId": "ann", "data": {"i": i}} for i in range(3)]},
        headers={"traceparent": f"00-{batch_trace}-{caller_span}-01"},
    )
    assert reply.status == 200 and reply.body["submitted"] == 3, reply.body
    ids = [r["id"] for r in reply.body["results"]]
    for job_id in ids:
        assert vq.wait_done(job_id)["status"] == "finished"
    spans = receiver.wait_for(
        lambda spans: sum(s["trace_id"] == batch_trace and s["kind"] == "consumer" for s in spans) == 3
    )
    request = _one(spans, kind="server", trace_id=batch_trace)
    batch = _one(spans, kind="producer", trace_id=batch_trace, name="send")
    assert batch["parent"] == request["span_id"] and batch["attributes"]["messaging.batch.message_count"] == 3
    for job_id in ids:
        send = _one(spans, kind="producer", trace_id=batch_trace, attrs={"messaging.message.id": job_id})
        assert send["parent"] == batch["span_id"]
        assert _one(spans, kind="consumer", attrs={"messaging.message.id": job_id})["parent"] == send["span_id"]
    # Exemplars: scraped as OpenMetrics, a run-time bucket of the type links to one of its traces.
    ops = api.token("ops", "operator")
    deadline, linked = time.monotonic() + 15, []
    while not linked and time.monotonic() < deadline:  # once the archiver has counted the attempts
        scrape = api.call("GET", "/metrics", ops, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert scrape.status == 200 and scrape.headers["content-type"].startswith("application/openmetrics-text")
        rows = [
            x for x in scrape.body.splitlines() if x.startswith('vq_job_run_seconds_bucket{job_type="ai-processing"')
        ]
        linked = [m[1] for x in rows if (m := re.search(r' # \{[^}]*trace_id="(\w+)"', x))]
        time.sleep(0.2)
    traced = {s["trace_id"] for s in spans if s["kind"] == "consumer"}
    assert linked and set(linked) <= traced, "each exemplar names a trace of an ai-processing attempt"
    parsed = {f.name: f for f in text_string_to_metric_families(scrape.body)}  # valid OpenMetrics, exemplars too
    assert any(s.exemplar for s in parsed["vq_job_run_seconds"].samples)
    plain = api.call("GET", "/metrics", ops)
    assert plain.headers["content-type"].startswith("text/plain") and "trace_id" not in plain.body
    # The first job, submitted without a traceparent, has a trace of its own.
    other = {s["trace_id"] for s in spans if s["attributes"].get("messaging.message.id") == first.body["id"]}
    assert len(other) == 1 and trace_id not in other


def test_a_cli_submission_starts_a_trace_and_exports_it_before_exiting(vq, receiver, redis_conn):
    vq.configure(telemetry={"endpoint": receiver.url})
    job_id = vq.submit("test-noop", {}, "--user", "ann")
    # No daemon, and the CLI has exited: its span was sent on the way out.
    send = _one(receiver.spans, kind="producer", attrs={"messaging.message.id": job_id})
    assert send["parent"] is None, "a root: the CLI started the trace"
    assert send["name"] == "send test-noop"
    meta = json.loads(redis_conn.hget(f"rq:job:{job_id}", "meta"))
    assert meta["traceparent"].startswith(f"00-{send['trace_id']}-{send['span_id']}-"), "the job carries its trace"
    # `vq submit --batch`: one trace, the batch's span at its root, a `send` per job under it.
    lines = "\n".join(json.dumps({"jobType": "test-noop", "userId": "ann", "data": {"i": i}}) for i in range(2))
    made = [o["id"] for o in vq.json("submit", "--batch", "-", input=lines)]
    sends = [_one(receiver.spans, kind="producer", attrs={"messaging.message.id": i}) for i in made]
    batch = _one(receiver.spans, kind="producer", name="send", trace_id=sends[0]["trace_id"])
    assert batch["parent"] is None and {s["parent"] for s in sends} == {batch["span_id"]}
    traces = [f for f in json.loads(vq.run("doctor", "--json").stdout) if f["check"] == "traces"]
    assert traces == [
        {
            "check": "traces",
            "status": "ok",
            "detail": f"exported over OTLP/HTTP to {receiver.url} as service vq",
            "fix": None,
        }
    ]
    # A dependent submitted later starts its own trace, linked to what it waits for.
    after = vq.submit("test-noop", {}, "--user", "ann", "--depends-on", job_id)
    then = _one(receiver.spans, kind="producer", attrs={"messaging.message.id": after})
    assert then["trace_id"] != send["trace_id"] and then["links"] == [(send["trace_id"], send["span_id"])]


def test_without_telemetry_nothing_is_imported_started_or_stored(vq, redis_conn):
    """No `telemetry:` block and no OTEL_* variable: OpenTelemetry's tracing SDK and exporter
    are never imported, no exporter thread starts, and the job's meta carries no trace."""
    script = """
import json, sys, threading
from vq import telemetry
from vq.config import load_settings
from vq.connection import connect
from vq.submission import Submission, submit
settings = load_settings()
telemetry.configure(settings)
job_id = submit(connect(settings), settings, Submission(job_type="test-noop", data={}, user_id="ann"))
tracing = ("vq.telemetry.sdk", "opentelemetry.sdk.trace", "opentelemetry.exporter")  # redis-py imports the rest
print(json.dumps({"on": telemetry.on(), "imported": sorted(m for m in sys.modules if m.startswith(tracing)),
                  "threads": [t.name for t in threading.enumerate()], "job": job_id}))
"""
    env = {k: v for k, v in vq.env.items() if not k.startswith("OTEL_")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {**out, "on": False, "imported": []}
    assert out["threads"] == ["MainThread"]
    assert not [f for f in json.loads(vq.run("doctor", "--json").stdout) if f["check"] == "traces"], "no line"
    meta = json.loads(redis_conn.hget(f"rq:job:{out['job']}", "meta"))
    assert "traceparent" not in meta
