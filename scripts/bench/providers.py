#!/usr/bin/env python3
"""Provider calls per second: vq's pooled httpx client against one new connection per call.

A stub provider (a threaded HTTP/1.1 server with keep-alive, on loopback) answers every
POST with a small JSON body. Per round, N calls go through each path in turn, timed:

* pooled   -- `vq.providers.http.call_http`, vq's real call path: one httpx.Client per provider
              per process (vq/providers/pool.py), so the calls share a kept-alive connection.
* urllib   -- the path vq used before: `urllib.request.urlopen`, a new TCP connection per
              call. That code is gone from vq, so a minimal equivalent is kept here (same
              request, headers, timeout and JSON parsing) as the baseline.

Printed: calls/s for each (median over rounds) and their ratio; `--json` prints it as JSON.
Loopback makes a connection as cheap as it ever is, so the gain against a real provider
(a TCP and TLS handshake across the internet per call) is larger than measured here.

Run from the repository root:  python scripts/bench/providers.py [--calls 2000 --runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vq.config import ProviderSettings
from vq.providers import pool as http_pool
from vq.providers.http import call_http

ANSWER = json.dumps({"text": "ok", "usage": {"tokens": 12}}).encode()


class Stub:
    """A keep-alive HTTP/1.1 provider on a free loopback port; counts the connections made."""

    def __init__(self):
        outer = self
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as production servers do (uvicorn, nginx)

            def setup(self):
                super().setup()
                outer.connections += 1

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                self.wfile.write(ANSWER)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/generate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def urllib_call(provider: ProviderSettings, payload: dict) -> dict:
    """The old path, kept only as the baseline: a new connection per call."""
    request = urllib.request.Request(
        provider.url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=provider.timeout / 1000) as response:
        result = json.loads(response.read() or b"{}")
    return result if isinstance(result, dict) else {"result": result}


def pooled_call(provider: ProviderSettings, payload: dict) -> dict:
    return call_http("stub", provider, payload)


def rate(call, provider: ProviderSettings, calls: int) -> float:
    payload = {"prompt": "hello"}
    call(provider, payload)  # warm: imports, the pooled client and its first connection
    started = time.perf_counter()
    for _ in range(calls):
        assert call(provider, payload)["text"] == "ok"
    return calls / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.calls < 1 or args.runs < 1:
        parser.error("--calls and --runs must be at least 1")
    stub = Stub()
    provider = ProviderSettings(url=stub.url, timeout=5000)
    rounds: dict[str, list[float]] = {"urllib": [], "pooled": []}
    connections: dict[str, int] = {}
    try:
        for _ in range(args.runs):
            for name, call in (("urllib", urllib_call), ("pooled", pooled_call)):
                before = stub.connections
                rounds[name].append(rate(call, provider, args.calls))
                connections[name] = stub.connections - before
                http_pool.close_all()
    finally:
        stub.close()
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    result = {
        "calls": args.calls,
        "runs": args.runs,
        "python": platform.python_version(),
        "calls_per_s": {k: round(v, 1) for k, v in medians.items()},
        "rounds": {k: [round(v, 1) for v in vs] for k, vs in rounds.items()},
        "connections_last_round": connections,
        "ratio_pooled_vs_urllib": round(medians["pooled"] / medians["urllib"], 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.calls} calls x {args.runs} rounds against a loopback stub provider (median calls/s)")
        for name, label in (
            ("urllib", "urllib, new connection per call (old vq)"),
            ("pooled", "httpx pooled client (vq now)"),
        ):
            print(f"  {label:44s} {medians[name]:8.0f} calls/s  ({connections[name]} connections)")
        print(f"  ratio pooled / urllib: {result['ratio_pooled_vs_urllib']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
