"""A warm `python -m vq` for the tests: one process imports the CLI once, then forks a
child per call, which runs `vq.cli.app.main()` as `python -m vq` would run it.

Why: ~500 `vq` calls in the suite each paid 0.3-1 s of interpreter start and imports;
a fork costs milliseconds. The child is still a process of its own, so what a test sees
is what a user sees: its own environment (the call's, replacing the server's), argv, exit
code (sys.exit, an uncaught exception's 1), stdin, stdout and stderr (the caller's files,
passed over a Unix socket), atexit handlers and non-daemon threads waited for at exit.
Nothing one call changes in its process reaches the next. Tests about the interpreter
itself (start-up time, imports, the installed `vq` script) keep running real
subprocesses (tests/test_cli_startup.py, tests/test_completion.py).

Protocol: the client sends one JSON request ({"args", "env", "cwd"}) with three fds
(stdin, stdout, stderr); the server answers "<pid>\n" once it forked the child and, having
reaped it, "<exit code>\n" (negative: the signal that killed it, as subprocess says).
`run` waits for the code (a timeout kills the pid); `spawn` returns a Popen-like handle
(the daemons of tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAIN = str(Path(__file__).resolve().parent.parent / "vq" / "__main__.py")


def _child(request: dict, fds: list[int]) -> None:
    """In the forked child: become `python -m vq *args` and exit with its code."""
    code = 1
    try:
        from vq.procutil import die_with_parent

        die_with_parent(signal.SIGKILL)  # the server's death (the test run's) ends it, as a Popen child's
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [MAIN, *request["args"]]
        sys.modules["__main__"].__package__ = "vq"  # click names the program `python -m vq`, as the real one
        from vq.cli.app import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # noqa: BLE001 -- the forked call reports any failure as a traceback
            import traceback

            traceback.print_exc()
            code = 1
        import atexit
        import threading

        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code & 0xFF)


def _warm_up(cli_app) -> None:
    """Import now what a call would import on its way: what typer imports on its first
    parse, and every vq module (importing one has no side effect beyond definitions)."""
    import contextlib
    import importlib
    import io
    import pkgutil

    import vq

    saved = dict(os.environ), list(sys.argv)
    home = tempfile.mkdtemp(prefix="vq-cli-warm-")  # whatever a command caches lands here, not in a real HOME
    for name in [k for k in os.environ if k.startswith("XDG_")]:
        del os.environ[name]
    os.environ.update(HOME=home, VQ_CONFIG=os.devnull + "/none")  # no config: each command stops after its options
    for name in cli_app.COMMANDS:
        sys.argv = [MAIN, name, "x"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                cli_app.main()
            except BaseException:  # noqa: BLE001 - usage errors, exits: only the imports matter
                pass
    os.environ.clear()
    os.environ.update(saved[0])
    sys.argv = saved[1]
    shutil.rmtree(home, ignore_errors=True)
    from vq.cli import output

    for console in vars(output).values():  # made on the warm-up's streams: each call makes its own
        if hasattr(console, "_console"):
            console._console = None
    for module in pkgutil.walk_packages(vq.__path__, "vq."):
        if module.name == "vq.__main__":  # it runs the CLI
            continue
        try:
            importlib.import_module(module.name)
        except Exception:  # noqa: BLE001 - an optional extra not installed: imported by the call, if at all
            pass
    for name in ("sqlite_utils", "encodings.idna", "unicodedata"):
        importlib.import_module(name)


def serve(path: str) -> None:
    """Import the CLI (every command module), then fork a child per request and tell its
    client its pid, then its exit code."""
    from vq.procutil import die_with_parent

    die_with_parent(signal.SIGKILL)
    import ctypes

    # Orphans of its children (the workers of a daemon killed at a test's end) come to it,
    # and are reaped below, rather than waiting as zombies for an init that may not reap.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    from vq.cli import app as cli_app

    cli_app.build_app(cli_app.MODULES)  # imports typer, rich, redis and every command's module
    _warm_up(cli_app)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector below: a child to reap
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    clients: dict[int, socket.socket] = {}  # pid -> the connection its exit code goes to
    print("ready", flush=True)
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj == wake_r:
                os.read(wake_r, 4096)
                continue
            conn, _ = server.accept()
            try:
                message, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
                request = json.loads(message)
            except Exception:  # noqa: BLE001 - a client gone: the next one
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for sock in (server, conn, *clients.values()):
                    sock.close()
                os.close(wake_r)
                os.close(wake_w)
                selector.close()
                _child(request, fds)
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(f"{pid}\n".encode())
            except OSError:
                pass
            clients[pid] = conn
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = clients.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                conn.close()


class Child:
    """A child of the server, as a subprocess.Popen of it: pid, poll, wait, send_signal."""

    def __init__(self, conn: socket.socket, args: list[str]):
        self.conn = conn
        self.args = args
        self.returncode: int | None = None
        self._data = b""
        pid = self._line(60)
        if pid is None:
            raise RuntimeError("the vq CLI server did not fork")
        self.pid = int(pid)

    def _line(self, timeout: float | None) -> str | None:
        """The server's next line; None if it does not come within `timeout` seconds
        (0: only what has arrived; None: wait for it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._data:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.conn.settimeout(left)
            try:
                chunk = self.conn.recv(64)
            except (TimeoutError, BlockingIOError):
                return None
            if not chunk:  # the server is gone, and its children with it (they die with it)
                chunk = f"{-signal.SIGKILL}\n".encode()
            self._data += chunk
        line, _, self._data = self._data.partition(b"\n")
        return line.decode()

    def poll(self) -> int | None:
        if self.returncode is None:
            self._ended(self._line(0))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._ended(self._line(timeout))
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _ended(self, line: str | None) -> None:
        if line is not None:
            self.returncode = int(line)
            self.conn.close()

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class CliServer:
    """The test side: start the server once, then `run` behaves as subprocess.run(
    [sys.executable, "-m", "vq", *args], capture_output=True, text=True, env=env)."""

    def __init__(self, env: dict[str, str]):
        self.startup = _startup(env)
        self.dir = tempfile.mkdtemp(prefix="vq-cli-")
        self.path = os.path.join(self.dir, "sock")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from tests.cli_server import serve; serve({self.path!r})"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            cwd=str(Path(MAIN).parent.parent),
            text=True,
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the vq CLI server did not start (exit {self.proc.poll()})")

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a call with this environment may be forked from the server: not when it
        changes what an interpreter does as it starts (PYTHONPATH, whose sitecustomize may
        patch the resolver, as tests/test_webhooks.py does; PYTHONHASHSEED, PYTHONWARNINGS,
        ...): such a call needs a new interpreter."""
        return _startup(env) == self.startup

    def spawn(self, args: list[str], env: dict[str, str], stdin: int, stdout: int, stderr: int) -> Child:
        """Start `python -m vq *args` on these fds; a Popen-like handle of it."""
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.path)
        request = json.dumps({"args": list(args), "env": env, "cwd": os.getcwd()}).encode()
        socket.send_fds(conn, [request], [stdin, stdout, stderr])
        return Child(conn, [sys.executable, "-m", "vq", *args])

    def run(
        self, args: list[str], env: dict[str, str], input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        with (
            tempfile.TemporaryFile() as stdout,
            tempfile.TemporaryFile() as stderr,
            tempfile.TemporaryFile() if input is not None else open(os.devnull, "rb") as stdin,
        ):
            if input is not None:
                stdin.write(input.encode())
                stdin.flush()
                stdin.seek(0)
            child = self.spawn(args, env, stdin.fileno(), stdout.fileno(), stderr.fileno())
            try:
                code = child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                raise
            stdout.seek(0)
            stderr.seek(0)
            return subprocess.CompletedProcess(child.args, code, _text(stdout.read()), _text(stderr.read()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def _startup(env: dict[str, str]) -> dict[str, str]:
    """What in an environment acts when an interpreter starts (bytecode caching aside)."""
    return {
        k: v for k, v in env.items() if (k.startswith("PYTHON") and k != "PYTHONDONTWRITEBYTECODE") or k == "LD_PRELOAD"
    }


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) decodes: the locale's encoding, universal newlines."""
    return data.decode(errors="strict").replace("\r\n", "\n").replace("\r", "\n")
