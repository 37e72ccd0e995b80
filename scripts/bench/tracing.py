"""The `tracing` part of scripts/bench/throughput.py: the drain with OpenTelemetry traces on
(docs/tracing.md) against the same drain with them off, in interleaved rounds of one run.

"on": the `telemetry:` block points at a local OTLP/HTTP sink (a process of its own that
decodes each export and counts its spans, as a collector would), and the jobs carry a
traceparent (the bench's own submissions are traced, as `vq submit` with telemetry on is),
so each job's wait and attempt are spans every worker exports. "off": the same config
without the block. The ratio on ÷ off is held to ≥ 0.85 (issue 26).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from _common import JOB_TYPE, BenchError, run_vq, write_vq_config

from vq import telemetry
from vq.config import load_settings
from vq.submission import Submission

USERS = 50
VARIANTS = ("off", "on")


def _sink(port_out) -> None:
    """An OTLP/HTTP receiver: decodes each POST /v1/traces, counts spans by name's first word."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    counts: dict[str, int] = {}
    answer = ExportTraceServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        word = span.name.split(" ")[0]
                        counts[word] = counts.get(word, 0) + 1
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def do_GET(self):
            data = json.dumps(counts).encode()
            if self.path == "/reset":
                counts.clear()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_out.send(server.server_address[1])
    server.serve_forever()


def _counts(url: str, reset: bool = False) -> dict[str, int]:
    with urllib.request.urlopen(url + ("/reset" if reset else "/count"), timeout=10) as r:
        return json.loads(r.read())


def _subs(n: int) -> list[Submission]:
    return [
        Submission(job_type=JOB_TYPE, data={}, user_id=f"user-{i % USERS:03d}", subscription="enterprise")
        for i in range(n)
    ]


def part_tracing(conn, args, workdir: Path, server, progress) -> dict:
    receive, send = mp.Pipe(duplex=False)
    sink = mp.get_context("fork").Process(target=_sink, args=(send,), daemon=True)
    sink.start()
    url = f"http://127.0.0.1:{receive.recv()}"
    limits = {"type": {JOB_TYPE: 1000}}
    off = write_vq_config(workdir, server.url, concurrency=limits, name="vq-tracing-off.yaml")
    on = workdir / "vq-tracing-on.yaml"
    on.write_text(yaml.safe_dump({**yaml.safe_load(off.read_text()), "telemetry": {"endpoint": url}}))
    configs = {"off": off, "on": on}
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    exported: list[dict] = []
    try:
        for run in range(1, args.runs + 1):
            for variant in VARIANTS:  # interleaved: a slow spell of the machine hits each
                telemetry.configure(load_settings(configs[variant], env={}), env={})  # the bench's submissions
                _counts(url, reset=True)
                result = run_vq(
                    conn,
                    args,
                    run,
                    workdir,
                    configs[variant],
                    args.timeout,
                    _subs(args.jobs),
                    before_drain=lambda: telemetry.flush(),  # its `send` spans gone before the clock starts
                )
                rates[variant].append(result.drain_rate)
                if variant == "on":
                    exported.append(_exported(url, args.jobs))
                progress.print(
                    f"run {run} tracing {variant:<4} drain {result.drain_s:6.2f}s = {result.drain_rate:7,.0f}/s"
                )
    finally:
        telemetry.configure(load_settings(off, env={}), env={})
        sink.kill()
    off_rate, on_rate = (statistics.median(rates[variant]) for variant in VARIANTS)
    return {
        "off_jobs_per_s": off_rate,
        "on_jobs_per_s": on_rate,
        "ratio": on_rate / off_rate,
        "ratio_per_round": [round(a / b, 3) for a, b in zip(rates["on"], rates["off"])],
        "spans_per_round": exported,
        "runs": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
    }


def _exported(url: str, jobs: int) -> dict[str, int]:
    """What the sink got in an "on" round: a wait and a process span per job (the daemon
    flushed them at its stop), else the round did not trace what it claims to."""
    counts = _counts(url)
    if counts.get("process", 0) < jobs or counts.get("wait", 0) < jobs:
        raise BenchError(f"tracing on: the sink got {counts}, expected a wait and a process span per job ({jobs})")
    return counts
