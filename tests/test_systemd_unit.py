"""scripts/vq.service as systemd judges it: `systemd-analyze security` scores its sandbox at
most 4.0 ("OK"), `systemd-analyze verify` finds nothing to say, and vq works under the rules
of the sandbox that could break Python or its libraries: no writable executable memory
(MemoryDenyWriteExecute), the system-call filter and the socket families.

The CI container has no systemd as PID 1 to start the unit, so those rules are set up as
systemd sets them up (the kernel's PR_SET_MDWE and a seccomp filter of the same system
calls); the read-only file system, namespaces and capabilities are judged by
systemd-analyze, not exercised (README: Running under systemd)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import _free_port

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "scripts" / "vq.service"
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1

needs_analyze = pytest.mark.skipif(
    not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed (apt-get install systemd)"
)


@needs_analyze
def test_the_unit_scores_at_most_4_on_systemd_analyze_security():
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True
    )
    if proc.returncode != 0 and "offline" in proc.stderr:
        pytest.skip(f"systemd-analyze is older than 250 (no --offline): {proc.stderr.strip()}")
    found = re.search(r"Overall exposure level for vq\.service: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    assert float(found.group(1)) <= 4.0, proc.stdout


@needs_analyze
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    """verify wants ExecStart's program and the Documentation= man page to exist: the copy
    under test runs this Python instead of /usr/local/bin/vq, and man finds vq(1) in a
    MANPATH laid out as an install lays it out (share/man/man1/vq.1)."""
    unit = tmp_path / "vq.service"
    text = UNIT.read_text()
    assert "\nExecStart=/usr/local/bin/vq daemon\n" in text
    unit.write_text(text.replace("ExecStart=/usr/local/bin/vq daemon", f"ExecStart={sys.executable} -m vq daemon"))
    (tmp_path / "man" / "man1").mkdir(parents=True)
    shutil.copy(ROOT / "man" / "vq.1", tmp_path / "man" / "man1" / "vq.1")
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MANPATH": f"{tmp_path / 'man'}:"},
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr  # a line it ignores is said, exit 0


class Sandbox:
    """What three of the unit's settings do to the processes under it, without systemd:
    MemoryDenyWriteExecute=yes is the kernel's PR_SET_MDWE; SystemCallFilter=@system-service
    ~@privileged with SystemCallErrorNumber=EPERM, and RestrictAddressFamilies=AF_UNIX
    AF_INET AF_INET6, are a seccomp filter (as systemd makes them) built with libseccomp from
    the sets `systemd-analyze syscall-filter` lists. Both are kept across fork and exec, so
    the daemon's workers and forked job children are under them too. Call it in the child
    before exec (preexec_fn); it is prepared in the parent."""

    ALLOW, CMP_EQ = 0x7FFF0000, 4
    ERRNO_EPERM = 0x00050000 | 1

    class ArgCmp(ctypes.Structure):
        _fields_ = [
            ("arg", ctypes.c_uint),
            ("op", ctypes.c_int),
            ("datum_a", ctypes.c_uint64),
            ("datum_b", ctypes.c_uint64),
        ]

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.seccomp = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
        self.seccomp.seccomp_init.restype = ctypes.c_void_p
        self.seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
        self.seccomp.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_void_p,
        ]
        self.seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
        self.seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        names = _syscalls("@system-service") - _syscalls("@privileged")
        numbers = {self.seccomp.seccomp_syscall_resolve_name(n.encode()) for n in names}
        self.numbers = sorted(n for n in numbers if n >= 0)  # names of other architectures resolve to < 0
        self.socket = self.seccomp.seccomp_syscall_resolve_name(b"socket")
        self.families = [
            self.ArgCmp(0, self.CMP_EQ, family, 0) for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6)
        ]

    def __call__(self) -> None:
        if self.libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")
        ctx = self.seccomp.seccomp_init(self.ERRNO_EPERM)
        for number in self.numbers:
            if number != self.socket:
                self.seccomp.seccomp_rule_add_array(ctx, self.ALLOW, number, 0, None)
        for family in self.families:
            self.seccomp.seccomp_rule_add_array(ctx, self.ALLOW, self.socket, 1, ctypes.byref(family))
        if self.seccomp.seccomp_load(ctx) != 0:  # sets no_new_privs first, as NoNewPrivileges=yes does
            raise OSError(ctypes.get_errno(), "seccomp_load")


def _syscalls(group: str) -> set[str]:
    listed = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    names: set[str] = set()
    for line in (line.strip() for line in listed):
        if line and not line.startswith("#"):
            names |= _syscalls(line) if line.startswith("@") else {line}
    return names


PROBE = """
import mmap, os, socket
for what, attempt in (("W+X memory", lambda: mmap.mmap(-1, 4096, prot=7)),
                      ("a packet socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)),
                      ("setuid (@privileged)", lambda: os.setuid(os.getuid()))):
    try:
        attempt()
        print(what, "allowed")
    except OSError as exc:
        print(what, "refused", exc.errno)
"""


@needs_analyze
def test_vq_runs_jobs_and_serves_http_in_the_units_sandbox(vq, tmp_path):
    """A daemon under the unit's memory, system-call and socket rules runs content analysis,
    image generation (Pillow), a job in a forked child, and answers over HTTP with a JWT
    (cryptography); it stops cleanly on SIGTERM."""
    try:
        sandbox = Sandbox()
        probe = subprocess.run([sys.executable, "-c", PROBE], preexec_fn=sandbox, capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"no PR_SET_MDWE (Linux 6.3+) or libseccomp here: {exc}")
    if "W+X memory refused" not in probe.stdout:
        pytest.skip(f"this kernel does not refuse writable executable memory: {probe.stdout}{probe.stderr}")
    assert "a packet socket refused" in probe.stdout and "setuid (@privileged) refused" in probe.stdout, probe.stdout
    port = _free_port()
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "vq", "daemon", "--workers", "2", "--http", f"127.0.0.1:{port}"],
        env=vq.env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        preexec_fn=sandbox,
    )
    daemon.log_path = log
    vq.daemons.append(daemon)
    jobs = [
        vq.submit("content-analysis", {"content": "AI makes video. Video needs AI."}, "--user", "ann"),
        vq.submit("image-generation", {"prompt": "a sunset", "options": {"width": 64, "height": 48}}, "--user", "ann"),
        vq.submit("test-forked", {"seconds": 0.1}, "--user", "bob"),
    ]  # a forked child of a worker
    for job in jobs:
        assert vq.wait_for(job, timeout=60)["status"] == "finished", log.read_text()[-3000:]
    token = vq.run("token", "create", "--user", "ann").stdout.strip()
    deadline = time.monotonic() + 20
    while True:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/jobs/content-analysis/{jobs[0]}",
                headers={"Authorization": f"Bearer {token}"},
            )
            body = json.loads(urllib.request.urlopen(request, timeout=10).read())
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # still starting, or a loaded machine
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert body["status"] == "finished"
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 0
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@needs_analyze
def test_an_embedded_redis_runs_in_the_units_sandbox(tmp_path):
    """With no Redis configured the daemon starts redis-server in its own sandbox: it serves,
    rewrites its AOF (a forked child) and shuts down cleanly under the same rules."""
    import redis

    try:
        sandbox = Sandbox()
    except OSError as exc:
        pytest.skip(f"no libseccomp here: {exc}")
    port = _free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        preexec_fn=sandbox,
        stdout=open(tmp_path / "redis.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "redis.log").read_text()
                time.sleep(0.05)
        client.set("k", "v")
        client.bgrewriteaof()
        while (
            client.info("persistence")["aof_rewrite_in_progress"] or client.info("persistence")["aof_rewrite_scheduled"]
        ):
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
        assert client.info("persistence")["aof_last_bgrewrite_status"] == "ok"
        client.shutdown()
        assert server.wait(10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
