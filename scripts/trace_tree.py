#!/usr/bin/env python3
"""A job's trace as a tree of spans, from what an OTLP/HTTP receiver captured (docs/tracing.md).

  python scripts/trace_tree.py receive --port 4318 --out spans.jsonl   # a receiver: point vq's telemetry.endpoint here
  python scripts/trace_tree.py show spans.jsonl --job JOB_ID           # the trace that job is in
  python scripts/trace_tree.py show spans.jsonl                        # every trace captured

`receive` decodes each export (POST /v1/traces, protobuf, as the SDK's OTLP/HTTP exporter
sends it) and appends its spans to the file as JSON lines; `show` prints each span as
`name  kind  +start  duration  attributes` under its parent, offsets from the trace's first.
Needs the `otel` extra (opentelemetry-proto) for `receive`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
SHOWN = (  # the attributes worth a column, in this order
    "vq.wait.reason",
    "vq.job.attempt",
    "vq.job.outcome",
    "error.type",
    "vq.provider",
    "http.route",
    "http.response.status_code",
)


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def receive(port: int, out: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    lock = threading.Lock()
    answer = ExportTraceServiceResponse().SerializeToString()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            lines = []
            for rs in request.resource_spans:
                service = {a.key: _value(a.value) for a in rs.resource.attributes}.get("service.name")
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        span = {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex() or None,
                            "name": s.name,
                            "kind": KINDS.get(s.kind, str(s.kind)),
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "error": s.status.code == 2,
                            "service": service,
                            "attributes": {a.key: _value(a.value) for a in s.attributes},
                        }
                        lines.append(json.dumps(span) + "\n")
            with lock, out.open("a") as f:
                f.writelines(lines)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"receiving OTLP/HTTP on http://127.0.0.1:{server.server_address[1]} into {out}", file=sys.stderr)
    server.serve_forever()


def tree(spans: list[dict], job: str | None = None) -> str:
    """The traces (the one `job` is in, when given) as indented lines."""
    if job:
        traces = {s["trace_id"] for s in spans if s["attributes"].get("messaging.message.id") == job}
        if not traces:
            raise SystemExit(f"no span names job {job}")
        spans = [s for s in spans if s["trace_id"] in traces]
    by_trace: dict[str, list[dict]] = {}
    for s in spans:
        by_trace.setdefault(s["trace_id"], []).append(s)
    out = []
    for trace_id, members in by_trace.items():
        first = min(s["start"] for s in members)
        ids = {s["span_id"] for s in members}
        children: dict[str | None, list[dict]] = {}
        for s in members:
            children.setdefault(s["parent"] if s["parent"] in ids else None, []).append(s)
        out.append(f"trace {trace_id}")
        _walk(out, children, first, None, 1)
    return "\n".join(out)


def _walk(out: list[str], children: dict, first: int, parent: str | None, depth: int) -> None:
    for s in sorted(children.get(parent, []), key=lambda s: (s["start"], s["name"])):
        shown = "  ".join(f"{k}={s['attributes'][k]}" for k in SHOWN if k in s["attributes"])
        line = (
            f"{'  ' * depth}{s['name']:<{max(1, 36 - 2 * depth)}} {s['kind']:<8} "
            f"+{(s['start'] - first) / 1e6:8.1f} ms {(s['end'] - s['start']) / 1e6:8.1f} ms"
            f"{'  ERROR' if s['error'] else ''}  {shown}"
        )
        out.append(line.rstrip())
        _walk(out, children, first, s["span_id"], depth + 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("receive", help="run an OTLP/HTTP receiver that writes spans as JSON lines")
    r.add_argument("--port", type=int, default=4318)
    r.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("show", help="print the captured traces as trees")
    s.add_argument("capture", type=Path)
    s.add_argument("--job", help="only the trace this job id is in")
    args = p.parse_args(argv)
    if args.command == "receive":
        receive(args.port, args.out)
        return 0
    try:
        spans = [json.loads(line) for line in args.capture.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        print(f"trace_tree: {args.capture}: {exc}", file=sys.stderr)
        return 2
    print(tree(spans, args.job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
