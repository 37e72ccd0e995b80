"""One pooled HTTP client per provider per process, so a worker's calls to a provider reuse
a kept-alive connection instead of opening (and, for https, handshaking) one per call.

Clients are made lazily, keyed by the process id as well as the provider and its settings:
a forked work-horse child never writes to its parent's sockets (two processes on one TLS
stream corrupt both) but opens its own. `close_all()` closes this process's clients (the
worker's teardown). Redirects are not followed and the URL's own host is connected to, as
with the urllib calls this replaces; the timeout is the provider's `timeout`.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

# httpx sends a request's headers and body in two writes; with Nagle's algorithm the body
# waits for the server's delayed ACK of the headers (40 ms a call on a kept-alive connection).
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
_clients: dict[tuple, httpx.Client] = {}
_lock = threading.Lock()


def client(name: str, timeout_ms: float) -> httpx.Client:
    """This process's client for provider `name` (made on first use)."""
    import httpx  # here: importing httpx imports its CLI's click and rich, which the core must not

    key = (os.getpid(), name, timeout_ms)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            _forget_inherited()
            transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=8), socket_options=NO_DELAY)
            found = _clients[key] = httpx.Client(transport=transport, timeout=timeout_ms / 1000, follow_redirects=False)
        return found


def _forget_inherited() -> None:
    """Drop clients a parent process made (without closing: their sockets are the parent's)."""
    pid = os.getpid()
    for key in [k for k in _clients if k[0] != pid]:
        del _clients[key]


def close_all() -> None:
    """Close this process's clients and their connections (worker shutdown)."""
    with _lock:
        _forget_inherited()
        for key in list(_clients):
            _clients.pop(key).close()
