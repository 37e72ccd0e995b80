"""The core never imports an adapter's framework: the CLI, HTTP API and TUI sit on top of
the same service functions, which stay usable without any of them."""

from __future__ import annotations

import subprocess
import sys

CORE = ["vq.config", "vq.submission", "vq.jobs", "vq.queues", "vq.worker", "vq.daemon", "vq.execution",
        "vq.maintenance", "vq.timer", "vq.recurring", "vq.recurring_runs", "vq.recurring_store", "vq.cron", "vq.events",
        "vq.model", "vq.embedded", "vq.redis_admin", "vq.rq_seam.worker", "vq.rq_seam.queue", "vq.rq_seam.job",
        "vq.rq_seam.private", "vq.rq_seam.log_filters", "vq.rq_seam.contract", "vq.worker_leases", "vq.worker_starts",
        "vq.job_outcomes", "vq.worker_memory", "vq.worker_threads"]


def test_core_modules_import_no_cli_or_ui_framework():
    code = (f"import {', '.join(CORE)}, sys; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'rich', 'textual'}))")
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
