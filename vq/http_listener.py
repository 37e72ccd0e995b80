"""The daemon's HTTP port, bound by the supervisor itself and handed to the HTTP child.

Bound here rather than by uvicorn, so a port some other process holds does not become an
HTTP child that dies at start and is restarted again and again, printing uvicorn's own
error each time: the daemon says once, in its log, that the address is in use and by
which process (when /proc tells), runs everything else, and tries the address again with
back-off, quietly. A crashed HTTP child is restarted on the same socket, so no other
process can take the port meanwhile. `vq doctor` reads `state()` from the presence the
daemon publishes.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time

log = logging.getLogger("vq.daemon")
RETRY_FIRST = 1.0  # seconds before the second try; doubled per try
RETRY_MAX = 10.0
BACKLOG = 2048  # uvicorn's default


class HttpListener:
    def __init__(self, listen: str, what: str = "HTTP API"):
        self.listen, self.what = listen, what
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.sock: socket.socket | None = None
        self.problem: str | None = None  # why the address could not be bound (logged once)
        self.since_ms: int | None = None
        self._retry_at = 0.0
        self._delay = RETRY_FIRST

    def bind(self) -> bool:
        """Bind when not bound yet and a try is due; True when it is bound."""
        if self.sock is not None:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            self.sock = _bind(self.host, self.port)
        except OSError as exc:
            if self.problem is None:
                self.problem, self.since_ms = _why(exc, self.listen, self.port), int(time.time() * 1000)
                log.error(
                    "%s not serving: %s; everything else runs, and the daemon tries the address "
                    "again with back-off (up to every %.0fs)",
                    self.what,
                    self.problem,
                    RETRY_MAX,
                )
            self._retry_at, self._delay = now + self._delay, min(RETRY_MAX, self._delay * 2)
            return False
        return True

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def was_taken(self) -> bool:
        """It is bound now, after an address in use: worth saying when it serves."""
        return self.sock is not None and self.problem is not None

    def served(self) -> None:
        """The HTTP child answers on the socket: the earlier problem is over."""
        self.problem = self.since_ms = None

    def state(self, serving: bool) -> dict:
        return {
            "listen": self.listen,
            "serving": serving,
            "problem": None if self.sock else self.problem,
            "sinceMs": None if self.sock else self.since_ms,
        }

    def answers(self) -> bool:
        """Something speaks HTTP on the bound socket (the HTTP child has started)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        try:
            with socket.create_connection((host, self.port), timeout=0.5) as conn:
                conn.sendall(b"GET /livez HTTP/1.0\r\n\r\n")
                return conn.recv(5) == b"HTTP/"
        except OSError:
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on the address (IPv4 first for a name such as localhost, which
    is what clients of 127.0.0.1 reach)."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, address = next((f for f in found if f[0] == socket.AF_INET), found[0])
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's create_server does
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def _why(exc: OSError, listen: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        holder = holder_of(port)
        return f"{listen} is already in use" + (f" (by {holder})" if holder else "")
    if exc.errno == errno.EACCES:
        return f"{listen}: permission denied (a port below 1024 needs privileges)"
    return f"cannot bind {listen}: {exc.strerror or exc}"


def holder_of(port: int) -> str | None:
    """`pid 1234: python3 -m vq daemon`, the process listening on `port`, from /proc
    (Linux; only the processes this user may look into); None when it cannot tell."""
    try:
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            if not os.path.exists(table):
                continue
            with open(table) as rows:
                for row in list(rows)[1:]:
                    cols = row.split()
                    if cols[3] == "0A" and int(cols[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                        inodes.add(f"socket:[{cols[9]}]")
        if not inodes:
            return None
        for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        command = " ".join(cmdline.read().decode(errors="replace").replace("\0", " ").split())
                    return f"pid {pid}: {command[:100]}" if command else f"pid {pid}"
            except OSError:
                continue
    except (OSError, ValueError, IndexError):
        return None
    return None
