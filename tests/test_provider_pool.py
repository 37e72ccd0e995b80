"""Provider calls reuse a kept-alive connection: a worker's calls to one provider open one
TCP connection, not one per call, and a forked child opens its own (never the parent's socket)."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vq.config import ProviderSettings
from vq.providers import pool as http_pool
from vq.providers.http import call_http


@pytest.fixture
def stub():
    """A keep-alive HTTP/1.1 provider that counts the TCP connections made to it."""
    peers: list = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            peers.append(self.client_address)

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"pid": self.headers.get("X-Test-Pid"), "ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    http_pool.close_all()
    yield ProviderSettings(url=f"http://127.0.0.1:{server.server_port}/v1", timeout=3000), peers
    http_pool.close_all()
    server.shutdown()
    server.server_close()


def test_twenty_calls_open_one_connection(stub):
    provider, peers = stub
    for _ in range(20):
        assert call_http("stub", provider, {"n": 1})["ok"] is True
    assert len(peers) == 1, f"20 calls opened {len(peers)} connections"


def test_a_forked_child_opens_its_own_connection(stub):
    provider, peers = stub
    call_http("stub", provider, {})
    parent_peer = peers[-1]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: calls twice, reports success through the pipe
        ok = all(call_http("stub", provider, {})["ok"] for _ in range(2))
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    call_http("stub", provider, {})  # the parent's connection still works after the child's calls
    assert len(peers) == 2, "the child opens exactly one connection of its own"
    assert peers[1] != parent_peer
