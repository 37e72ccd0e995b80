"""Build vq's wheel, install it into a new venv and use the `vq` it installs as an operator
would: --version, `vq config example`, the man page and the systemd unit where the wheel
put them, `vq types --json` and `vq doctor` against a private redis-server, and a
content-analysis job submitted and run to finished by `vq daemon` from the venv.

    python3 scripts/wheel_smoke.py            # fast: the venv sees the machine's packages
    python3 scripts/wheel_smoke.py --fresh    # a venv of its own, dependencies from PyPI

The fast mode (the test suite's, tests/test_wheel.py) makes the venv with
--system-site-packages and installs the wheel with --no-deps: the dependencies are the
ones already installed, but vq itself, its entry point and its data files come from the
wheel alone (checked: `vq` and its package are the venv's). --fresh installs the wheel with
its dependencies from PyPI, pinned by constraints.txt, which proves the dependency list too
(a minute or two; pip's cache makes it faster the second time).

The wheel is built from a copy of the source tree without build/ and *.egg-info, so a stale
setuptools build directory cannot put a removed module back. Exit 0 when every check passed;
otherwise the first failed check, with what the command printed."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".git",
    ".pytest_cache",
    ".venv",
    ".schemathesis",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    "site",
    "tests",
)


class SmokeFailed(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="a venv of its own, dependencies from PyPI")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vq-wheel-"))
    try:
        smoke(work, fresh=args.fresh)
    except SmokeFailed as exc:
        print(f"wheel smoke test FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        if args.keep:
            print(f"work folder: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("wheel smoke test passed")


def smoke(work: Path, *, fresh: bool) -> None:
    wheel = build_wheel(work)
    venv = make_venv(work, wheel, fresh=fresh)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VQ_", "REDIS_", "PYTHON"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        HOME=str(work / "home"),
        XDG_CONFIG_HOME=str(work / "home" / ".config"),
    )
    (work / "home").mkdir()

    def vq(*argv: str, ok=(0,), timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(bin_dir / "vq"), *argv], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
        )
        if proc.returncode not in ok or "Traceback" in proc.stderr:
            raise SmokeFailed(f"vq {' '.join(argv)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "vq" / "__init__.py").read_text()).group(1)
    check(vq("--version").stdout.strip() == f"vq {version}", f"vq --version does not say vq {version}")
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import vq, vq.cli.app; print(vq.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    check(where.startswith(str(venv)), f"vq was imported from {where!r}, not from the venv's install")
    # the web dashboard's pages and assets (vq/webui) ship in the wheel: nothing is fetched at run time
    installed_ui = Path(where).parent / "webui"
    for name in ("templates/base.html", "templates/job.html", "static/htmx.min.js", "static/vq.css"):
        check(
            (installed_ui / name).read_bytes() == (ROOT / "vq" / "webui" / name).read_bytes(),
            f"vq/webui/{name} not in the wheel",
        )
    check(
        vq("config", "example").stdout == (ROOT / "config.example.yaml").read_text(),
        "vq config example does not print config.example.yaml",
    )
    for installed, source in (
        ("share/man/man1/vq.1", "man/vq.1"),
        ("share/vq/vq.service", "scripts/vq.service"),
        ("share/vq/config.example.yaml", "config.example.yaml"),
    ):
        path = venv / installed
        check(path.is_file() and path.read_bytes() == (ROOT / source).read_bytes(), f"{installed} not in the venv")
    if shutil.which("man"):  # as the README says: MANPATH=$VIRTUAL_ENV/share/man:$MANPATH man vq
        found = subprocess.run(
            ["man", "-w", "vq"], env=dict(env, MANPATH=f"{venv}/share/man:"), capture_output=True, text=True
        ).stdout.strip()
        check(found == str(venv / "share/man/man1/vq.1"), f"man -w vq found {found!r}")

    redis_dir = work / "redis"
    redis_dir.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    daemon = None
    try:
        config = work / "config.yaml"
        config.write_text(f"redis:\n  url: redis://127.0.0.1:{port}/0\ndata_dir: {work / 'data'}\n")
        env["VQ_CONFIG"] = str(config)
        wait_for(lambda: vq("doctor", "--json", ok=(0, 1, 2)).returncode in (0, 1, 2), "Redis to answer")
        types = json.loads(vq("types", "--json").stdout)
        check(
            "content-analysis" in [row["jobType"] for row in types],
            f"vq types --json lists no content-analysis: {str(types)[:300]}",
        )
        job = vq(
            "submit", "content-analysis", "--user", "smoke", "--data", '{"content": "AI makes video. Video needs AI."}'
        ).stdout.strip()
        daemon = subprocess.Popen(
            [str(bin_dir / "vq"), "daemon", "--workers", "1", "--no-http"],
            cwd=work,
            env=env,
            stdout=open(work / "daemon.log", "w"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: json.loads(vq("show", job, "--json").stdout)["status"] in ("finished", "failed"),
            "the job to end",
            seconds=90,
            alive=daemon,
        )
        shown = json.loads(vq("show", job, "--json").stdout)
        check(shown["status"] == "finished", f"job {job} ended {shown['status']}: {shown.get('error')}")
        check(json.loads(vq("result", job, "--json").stdout), "the finished job has no result")
        for _ in ("cold", "warm"):  # a shell's TAB: the first builds the completion cache, the second reads it
            tab = subprocess.run(
                [str(bin_dir / "vq")],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=60,
                env=dict(env, _VQ_COMPLETE="complete_bash", COMP_WORDS="vq show ", COMP_CWORD="2"),
            )
            check(
                tab.returncode == 0 and tab.stdout.split() == [job], f"vq show <TAB> gave {tab.stdout!r} {tab.stderr}"
            )
        doctor = vq("doctor", "--json", ok=(0, 1))  # 1: warnings, e.g. no fsync every write; 2 would be a problem
        findings = json.loads(doctor.stdout)
        check(isinstance(findings, (list, dict)), "vq doctor --json is not JSON")
        daemon.send_signal(signal.SIGTERM)
        check(daemon.wait(60) == 0, "vq daemon did not exit 0 on SIGTERM")
        log = (work / "daemon.log").read_text()
        check("Traceback" not in log, f"the daemon's log has a traceback:\n{log[-3000:]}")
    except SmokeFailed as exc:
        log = (work / "daemon.log").read_text() if (work / "daemon.log").exists() else ""
        raise SmokeFailed(f"{exc}\n--- daemon log ---\n{log[-3000:]}" if log else str(exc)) from None
    finally:
        for proc in (daemon, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


def build_wheel(work: Path) -> Path:
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(source)])
    wheels = list((work / "dist").glob("vq-*.whl"))
    check(len(wheels) == 1, f"pip wheel made {wheels}")
    return wheels[0]


def make_venv(work: Path, wheel: Path, *, fresh: bool) -> Path:
    """fresh: a venv with its own pip. Otherwise the venv sees the machine's packages, pip
    among them, so it gets none of its own (ensurepip cost 5 s of CPU per run): the machine's
    pip, run by the venv's python, installs into the venv."""
    venv = work / "venv"
    run([sys.executable, "-m", "venv", *([] if fresh else ["--system-site-packages", "--without-pip"]), str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if fresh:
        run([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], timeout=900)
    else:
        run([*pip, "--no-deps", str(wheel)])
    return venv


def run(argv: list[str], timeout: float = 300) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SmokeFailed(f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")


def check(condition, message: str) -> None:
    if not condition:
        raise SmokeFailed(message)


def wait_for(condition, what: str, seconds: float = 30, alive: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise SmokeFailed(f"vq daemon exited {alive.returncode} while waiting for {what}")
        try:
            if condition():
                return
        except (SmokeFailed, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise SmokeFailed(f"timed out after {seconds:.0f} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
