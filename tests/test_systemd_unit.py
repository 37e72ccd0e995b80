"""scripts/vq.service as systemd judges it: `systemd-analyze security` scores its sandbox at
most 4.0 ("OK"), `systemd-analyze verify` finds nothing to say, and vq works under the one
rule of the sandbox that could break Python itself, MemoryDenyWriteExecute (the kernel's
PR_SET_MDWE is the same rule: no memory both writable and executable, ever).

The CI container has no systemd as PID 1, so the seccomp filter, namespaces and read-only
file system are judged by systemd-analyze, not exercised; the sandbox's other options take
nothing vq uses away (README: Running under systemd)."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import signal
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

needs_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"),
                                   reason="systemd-analyze is not installed (apt-get install systemd)")


@needs_analyze
def test_the_unit_scores_at_most_4_on_systemd_analyze_security():
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                          capture_output=True, text=True)
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
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "MANPATH": f"{tmp_path / 'man'}:"})
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr  # a line it ignores is said, exit 0


def _refuse_writable_executable_memory() -> None:
    """In the child before exec: what MemoryDenyWriteExecute=yes sets up (kept across fork and exec)."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_supported() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, prot=7)"],
                           preexec_fn=_refuse_writable_executable_memory, capture_output=True, text=True)
    return probe.returncode != 0 and "Permission denied" in probe.stderr  # the rule holds: W+X refused


def test_vq_runs_jobs_and_serves_http_with_memory_deny_write_execute(vq, tmp_path):
    try:
        if not _mdwe_supported():
            pytest.skip("this kernel does not refuse writable executable memory (PR_SET_MDWE: Linux 6.3+)")
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"PR_SET_MDWE unavailable: {exc}")
    port = _free_port()
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen([sys.executable, "-m", "vq", "daemon", "--workers", "2", "--http", f"127.0.0.1:{port}"],
                              env=vq.env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                              preexec_fn=_refuse_writable_executable_memory)
    daemon.log_path = log
    vq.daemons.append(daemon)
    jobs = [vq.submit("content-analysis", {"content": "AI makes video. Video needs AI."}, "--user", "ann"),
            vq.submit("image-generation", {"prompt": "a sunset", "options": {"width": 64, "height": 48}},
                      "--user", "ann"),
            vq.submit("test-forked", {"seconds": 0.1}, "--user", "bob")]  # a forked child of a worker
    for job in jobs:
        assert vq.wait_for(job, timeout=60)["status"] == "finished", log.read_text()[-3000:]
    token = vq.run("token", "create", "--user", "ann").stdout.strip()
    deadline = time.monotonic() + 20
    while True:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/jobs/content-analysis/{jobs[0]}",
                                             headers={"Authorization": f"Bearer {token}"})
            body = json.loads(urllib.request.urlopen(request, timeout=2).read())
            break
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert body["status"] == "finished"
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 0
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
