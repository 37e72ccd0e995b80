"""The core never imports an adapter's framework: the CLI, HTTP API and TUI sit on top of
the same service functions, which stay usable without any of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ADAPTERS = ("vq.cli", "vq.api", "vq.tui", "vq.webui", "vq.__main__")


def core_modules() -> list[str]:
    """Every module of vq but the adapters (the CLI, HTTP API and TUI) and the entry point."""
    import pkgutil

    import vq

    return sorted(m.name for m in pkgutil.walk_packages(vq.__path__, "vq.") if not m.name.startswith(ADAPTERS))


def test_import_contracts_hold():
    """pyproject's import-linter contracts: the core imports no adapter, an adapter is imported
    only by its launcher (`vq tui` starts the TUI, the daemon serves the API), and only the CLI
    and the TUI import typer, rich or textual. `lint-imports` runs the same at a shell."""
    code = "from importlinter.cli import lint_imports_command as lint; lint(['--no-cache'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") >= 4


def test_core_modules_import_no_cli_or_ui_framework():
    """At run time too (a library the core imports could pull one in): importing every core
    module loads no CLI or UI framework."""
    modules = core_modules()
    assert {"vq.submission", "vq.worker", "vq.daemon", "vq.rq_seam.worker", "vq.tokens"} <= set(modules)
    code = (
        f"import {', '.join(modules)}, sys; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'rich', 'textual'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_jobs_are_stored_as_json_never_pickle(vq, redis_conn):
    import json
    import zlib

    job_id = vq.submit("test-echo", {"x": 1}, "--user", "u")
    raw = redis_conn.hget(f"rq:job:{job_id}", "data")
    func, _instance, args, _kwargs = json.loads(zlib.decompress(raw))
    assert func == "vq.execution.run_job" and args == ["test-echo", {"x": 1}]
    assert json.loads(redis_conn.hget(f"rq:job:{job_id}", "meta"))["userId"] == "u"
