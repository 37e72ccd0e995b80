"""The daemon's metrics listener (`daemon.metricsListen`): a process of its own that serves
GET /metrics and nothing else, without a token, so Prometheus scrapes vq with no
long-lived operator token in its config. Bind it to 127.0.0.1 (Prometheus on the host) or
to a network only Prometheus reaches: the figures are operator figures.

It binds its address itself: while the address is taken it says so once and tries again
with back-off, as the HTTP API's listener does (vq/http_listener.py), and the rest of the
daemon runs on."""

from __future__ import annotations

import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from redis import Redis

from vq import prometheus
from vq.config import Settings
from vq.http_listener import HttpListener
from vq.stopping import Stoppable

log = logging.getLogger("vq.daemon")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    def __init__(self, conn: Redis, settings: Settings, listen: str):
        self.conn, self.settings = conn, settings
        self.listener = HttpListener(listen, what="metrics listener")
        self.waits = Stoppable()

    def run(self) -> None:
        while not self.listener.bind():
            self.waits.until_stopped(time.sleep, 1.0)  # bind() spaces its tries out itself
            if self.waits.stopped:
                return
        if self.listener.problem is not None:
            log.info("metrics listener serving on %s (the address was in use until now)", self.listener.listen)
        server = _server(self.listener, self._render)
        try:
            self.waits.until_stopped(server.serve_forever, poll_interval=0.5)  # a stop signal ends it
        finally:
            server.server_close()

    def stop(self, *signal: object) -> None:
        self.waits.stop(*signal)

    def _render(self, openmetrics: bool = False) -> bytes:
        return prometheus.exposition(self.conn, self.settings, openmetrics)


def _server(listener: HttpListener, render) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.partition("?")[0] != "/metrics":
                self._answer(404, b"only /metrics is served here\n", "text/plain; charset=utf-8")
                return
            openmetrics = prometheus.wants_openmetrics(self.headers.get("Accept"))  # exemplars
            try:
                body = render(openmetrics)
            except Exception as exc:  # noqa: BLE001 - Redis away: the scrape fails, the listener stays
                log.warning("metrics listener: %s", exc)
                self._answer(503, f"cannot read the figures: {exc}\n".encode(), "text/plain; charset=utf-8")
                return
            self._answer(200, body, prometheus.OPENMETRICS if openmetrics else CONTENT_TYPE)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # no line per scrape
            pass

    server = ThreadingHTTPServer(listener.address, Handler, bind_and_activate=False)
    assert listener.sock is not None
    server.socket.close()
    server.socket = listener.sock
    server.daemon_threads = True
    return server
