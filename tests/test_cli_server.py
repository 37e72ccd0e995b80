"""The warm CLI the tests fork `vq` from (tests/cli_server.py) answers as a new interpreter
does: same exit codes, stdout and stderr, stdin, environment, and the same daemons."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest


def _cold(vq, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vq", *args], input=input, capture_output=True, text=True, env=vq.env, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("types",),
        ("show", "0123456789abcdef"),  # exit 4, one line
        ("show", "--colour"),  # a usage error, exit 2, naming `python -m vq`
        ("submit", "test-echo", "--data", "{not json", "--user", "u"),
        (
            "submit",
            "--help",
        ),
    ],
)
def test_a_forked_call_answers_as_a_new_interpreter_does(vq, args):
    warm, cold = vq.run(*args), _cold(vq, *args)
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)


def test_stdin_and_the_environment_are_the_call_s_own(vq, redis_conn):
    lines = "\n".join(json.dumps({"jobType": "test-echo", "userId": u, "data": {}}) for u in ("a", "b"))
    submitted = vq.json("submit", "--batch", "-", input=lines)
    assert len(submitted) == 2 and redis_conn.exists(f"rq:job:{submitted[0]['id']}")
    vq.env["VQ_CONFIG"] = str(vq.config_path.with_name("missing.yaml"))
    gone = vq.run("types")
    assert gone.returncode == 2 and "missing.yaml: config file not found" in gone.stderr, gone.stderr


def test_a_forked_daemon_is_a_process_with_a_pid_signals_and_an_exit_code(vq):
    daemon = vq.start_daemon(workers=1)
    job = vq.submit("test-echo", {"x": 1}, "--user", "u")
    assert vq.wait_done(job)["status"] == "finished"
    assert daemon.poll() is None
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0 and daemon.returncode == 0
    killed = vq.start_daemon(workers=1)
    killed.kill()
    assert killed.wait(10) == -signal.SIGKILL


def test_an_environment_that_changes_how_python_starts_gets_a_new_interpreter(vq, tmp_path):
    """A sitecustomize on PYTHONPATH (tests/resolver patches DNS so) acts only when an
    interpreter starts: such a call is not forked from the warm one."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text("import sys\nsys.stderr.write('site ran\\n')\n")
    assert "site ran" not in vq.run("--version").stderr
    vq.env["PYTHONPATH"] = f"{tmp_path / 'site'}:{vq.env['PYTHONPATH']}"
    assert "site ran" in vq.run("--version").stderr
    daemon = vq.start_daemon(workers=1)
    assert isinstance(daemon, subprocess.Popen)
    job = vq.submit("test-echo", {}, "--user", "u")
    assert vq.wait_done(job)["status"] == "finished"
    assert "site ran" in vq.daemon_log()
