"""vq as a wheel installs it: scripts/wheel_smoke.py builds the wheel, installs it into a new
venv and runs the `vq` it installed (version, `vq config example`, the man page and the
systemd unit under the venv's share/, `vq types`, `vq doctor`, and a content-analysis job
run to finished by that venv's `vq daemon` against a private redis-server).

The venv is made with --system-site-packages and the wheel installed with --no-deps, so the
test takes seconds, not the minutes a download of every dependency would: it proves the
wheel's contents, its entry point and its data files, while the dependency list itself is
proved by `python3 scripts/wheel_smoke.py --fresh` (a venv of its own, everything from PyPI
pinned by constraints.txt; run it after changing the dependencies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_the_wheel_installs_a_working_vq():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "wheel_smoke.py")], capture_output=True, text=True, timeout=280
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wheel smoke test passed" in proc.stdout


def test_config_example_in_a_checkout_is_the_repositorys_file(tmp_path):
    """Run from the source tree (an editable install), `vq config example` prints the top-level
    config.example.yaml, the one copy there is; a config made from it loads."""
    proc = subprocess.run([sys.executable, "-m", "vq", "config", "example"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "config.example.yaml").read_text()
    made = tmp_path / "config.yaml"
    made.write_text(proc.stdout)
    types = subprocess.run(
        [sys.executable, "-m", "vq", "--config", str(made), "types", "--json"], capture_output=True, text=True, cwd=ROOT
    )
    assert types.returncode == 0, types.stderr
