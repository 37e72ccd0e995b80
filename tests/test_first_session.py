"""The README's "A first session", run verbatim as a new operator runs it: a fresh HOME, no
config (so the embedded Redis), `python3 -m vq daemon` on a real terminal, and every line
of the README's block typed into an interactive bash on another terminal. Each line must
exit 0 (`vq clear` asks first and is answered "y"; `vq tui` is quit with "q").

When the README's block changes, this test runs the new block: nothing here repeats it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "__vq_first_session__$ "
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")


def readme_session() -> list[str]:
    """The lines of the README's first-session block, as written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## A first session", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _user_env(home: Path) -> dict[str, str]:
    """What a new operator's shell has: no vq or Redis settings, a HOME of its own."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_", "XDG_", "PYTEST", "COLUMNS", "LINES"))
    }
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        HOME=str(home),
        PYTHONPATH=str(ROOT),
        TERM="xterm-256color",
        LANG="C.UTF-8",
        PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    return env


class Terminal:
    """A process on a pseudo-terminal whose output is read all the time (as a terminal
    emulator does), so the process never blocks on a full pty."""

    def __init__(self, command: str, args: list[str], env: dict[str, str], cwd: Path):
        self.child = pexpect.spawn(
            command,
            args,
            env=env,
            cwd=str(cwd),
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(50, 250),
            timeout=None,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                self.output.append(self.child.read_nonblocking(65536, timeout=0.2))
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError, ValueError):
                return

    def text(self) -> str:
        return ANSI.sub("", "".join(self.output))

    def wait_for(self, pattern: str, since: int = 0, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text()[since:])
            if found:
                return found
            if not self.child.isalive():
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{pattern!r} did not appear within {timeout}s; the terminal shows:\n{self.text()[since:][-4000:]}"
        )


def process_tree(root: int) -> list[int]:
    """`root` and every process under it (from /proc), parents first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            parents.setdefault(int(stat.rpartition(")")[2].split()[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def wait_until_stopped(terminal: Terminal, timeout: float = 60) -> None:
    """ "vq daemon stopped" on the daemon's terminal; if it does not come, the failure shows
    what still runs and where each of its threads is (`kill -TTIN`, vq/procutil.py), so a
    stop that hangs once in a loaded CI run can be told apart from a slow one."""
    try:
        terminal.wait_for(r"vq daemon stopped", timeout=timeout)
    except AssertionError as exc:
        mark = len(terminal.text())
        tree = process_tree(terminal.child.pid)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGTTIN)
            except ProcessLookupError:
                pass
        time.sleep(2)
        ps = subprocess.run(
            ["ps", "-o", "pid,ppid,stat,wchan:24,etime,args", "-p", ",".join(map(str, tree))],
            capture_output=True,
            text=True,
        ).stdout
        raise AssertionError(f"{exc}\n--- still running:\n{ps}\n--- their stacks:\n{terminal.text()[mark:]}") from None


@pytest.fixture
def home():
    # Short, so the embedded Redis's unix socket path fits (108 bytes).
    path = Path(tempfile.mkdtemp(prefix="vq-home-", dir="/tmp"))
    yield path
    pid_file = path / ".local/share/vq/redis/redis.pid"
    if pid_file.exists():  # the embedded Redis outlives the daemon by design: stop it
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(420)
def test_the_readme_first_session_runs_verbatim_against_a_daemon_on_a_terminal(home):
    env = _user_env(home)
    daemon = Terminal(sys.executable, ["-m", "vq", "daemon"], env, ROOT)
    shell = None
    try:
        daemon.wait_for(r"ready: ", timeout=60)
        shell = Terminal("bash", ["--norc", "--noprofile", "-i"], {**env, "PS1": PROMPT}, home)
        shell.wait_for(re.escape(PROMPT), timeout=20)
        for line in readme_session():
            mark = len(shell.text())
            shell.child.sendline(line)
            if line.startswith("vq tui"):
                shell.wait_for(r"job queue dashboard", since=mark, timeout=30)
                shell.wait_for(r"video-composition", since=mark, timeout=30)  # the overview's rows are read
                time.sleep(1.5)  # a refresh or two of the live dashboard
                shell.child.send("q")
            elif line.startswith("vq clear"):
                shell.wait_for(r"\[y/N\]", since=mark, timeout=30)
                shell.child.sendline("y")
            shell.wait_for(re.escape(PROMPT), since=mark + len(line), timeout=240)
            shell.child.sendline('echo "__rc=$?"')
            code = int(shell.wait_for(r"__rc=(\d+)", since=mark).group(1))
            assert code == 0, f"`{line}` exited {code}:\n{shell.text()[mark:][-3000:]}"
        # What the session's lines promised: the dependent job ran once both had finished.
        listing = subprocess.run(
            [sys.executable, "-m", "vq", "jobs", "--user", "bob", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        bob = json.loads(listing.stdout)
        after = next(j for j in bob if j["jobType"] == "content-analysis")
        deadline = time.monotonic() + 30
        while after["status"] != "finished" and time.monotonic() < deadline:
            time.sleep(0.2)
            after = json.loads(
                subprocess.run(
                    [sys.executable, "-m", "vq", "show", after["id"], "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                ).stdout
            )
        assert after["status"] == "finished", after
        # Ctrl-C, as the operator stops it: the terminal signals the daemon's whole process
        # group (its workers and HTTP server too), and it stops with no traceback from any.
        daemon.child.sendintr()
        wait_until_stopped(daemon)
        deadline = time.monotonic() + 30
        while daemon.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not daemon.child.isalive(), "the daemon did not exit after Ctrl-C"
        time.sleep(0.5)  # the reader takes the terminal's last lines
        log = daemon.text()
        if os.environ.get("VQ_TEST_TRANSCRIPT"):
            Path(os.environ["VQ_TEST_TRANSCRIPT"]).write_text(shell.text() + "\n=== daemon ===\n" + log)
        assert "Traceback" not in log and "unhandled exception" not in log, log[-4000:]
        assert "KeyboardInterrupt" not in log, log[-4000:]
    finally:
        if shell is not None:
            shell.child.terminate(force=True)
        daemon.child.kill(signal.SIGINT)  # Ctrl-C, as the operator stops it
        deadline = time.monotonic() + 40
        while daemon.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if daemon.child.isalive():
            daemon.child.terminate(force=True)
