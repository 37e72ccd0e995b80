"""Operator tools: job templates (`submit --template NAME --set k=v`) and bulk operations
(retry every failed job of a type or user, cancel a user's waiting jobs, remove finished
jobs older than a time), each showing what it will touch and asking unless --yes."""

from __future__ import annotations

import json
import time

from vq.config import load_settings
from vq.submission import Submission, submit


def test_a_template_fills_type_data_and_priority_and_set_changes_fields(vq):
    vq.configure(
        templates={
            "thumb": {
                "jobType": "test-echo",
                "priority": "low",
                "data": {"size": {"width": 320, "height": 180}, "format": "png"},
            }
        }
    )
    made = vq.run(
        "submit",
        "--template",
        "thumb",
        "--user",
        "ann",
        "--set",
        "size.width=640",
        "--set",
        "format=webp",
        "--set",
        "tags=[\"a\", \"b\"]",
    )
    assert made.returncode == 0, made.stderr
    view = vq.json("show", made.stdout.strip())
    assert view["jobType"] == "test-echo" and view["priority"] == "low"
    assert view["data"] == {"size": {"width": 640, "height": 180}, "format": "webp", "tags": ["a", "b"]}
    unknown = vq.run("submit", "--template", "nope", "--user", "ann")
    assert unknown.returncode == 4 and "no template 'nope' (templates: thumb)" in unknown.stderr
    bad = vq.run("submit", "--template", "thumb", "--user", "ann", "--set", "novalue")
    assert bad.returncode == 2 and "--set: 'novalue' is not key=value" in bad.stderr
    stray = vq.run("submit", "test-echo", "--user", "ann", "--set", "a=1")
    assert stray.returncode == 2 and "--set: only with --template" in stray.stderr


def test_retry_every_failed_job_of_a_type_asks_first(vq):
    vq.start_daemon()
    failed = [vq.submit("test-broken", {}, "--user", u) for u in ("ann", "bob", "cy")]
    ok = vq.submit("test-noop", {}, "--user", "ann")
    for job in failed + [ok]:
        vq.wait_for(job)
    declined = vq.run("retry", "--all", "--type", "test-broken", input="n\n")
    assert declined.returncode == 1
    assert "3 job(s) to retry" in declined.stderr and all(j in declined.stderr for j in failed)
    assert "Retry 3 failed job(s)?" in declined.stderr
    assert all(vq.json("show", j)["attempts"] == 1 for j in failed)  # nothing touched
    done = vq.json("retry", "--all", "--type", "test-broken", "--user", "bob", "--yes")
    assert done == {"action": "retry", "matched": 1, "done": [failed[1]], "skipped": []}
    deadline = time.monotonic() + 15
    while (
        vq.json("show", failed[1])["finishedAt"] == vq.json("show", failed[0])["finishedAt"]
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    audit = vq.json("audit")
    assert any(a["action"] == "retry" and a["target"] == failed[1] for a in audit)


def test_cancel_every_waiting_job_of_a_user(vq, redis_conn):
    settings = load_settings(vq.config_path)
    mine = [submit(redis_conn, settings, Submission("test-noop", user_id="ann")) for _ in range(4)]
    later = submit(redis_conn, settings, Submission("test-noop", user_id="ann", delay_ms=3_600_000))
    theirs = submit(redis_conn, settings, Submission("test-noop", user_id="bob"))
    missing = vq.run("cancel", "--all")
    assert missing.returncode == 2 and "--all: give --user U" in missing.stderr
    both = vq.run("cancel", mine[0], "--all", "--user", "ann")
    assert both.returncode == 2 and "give either ID or --all, not both" in both.stderr
    out = vq.run("cancel", "--all", "--user", "ann", input="y\n")
    assert (
        out.returncode == 0 and "5 job(s) to cancel" in out.stderr and "Cancel 5 waiting job(s) of ann?" in out.stderr
    )
    assert all(vq.json("show", j)["status"] == "canceled" for j in [*mine, later])
    assert vq.json("show", theirs)["status"] == "queued"


def test_remove_finished_jobs_older_than_a_time(vq, redis_conn):
    vq.configure(queue={"defaultJobOptions": {"removeOnComplete": 1000}})
    vq.start_daemon()
    old = [vq.submit("test-noop", {}, "--user", "ann") for _ in range(3)]
    for job in old:
        vq.wait_for(job)
    time.sleep(6.2)  # the new job stays younger than 5 s through the next CLI calls
    new = vq.submit("test-noop", {}, "--user", "ann")
    vq.wait_for(new)
    preview = vq.run("rm", "--finished", "--older-than", "5s", input="n\n")
    assert preview.returncode == 1 and "3 job(s) to remove" in preview.stderr and new not in preview.stderr
    done = vq.json("rm", "--finished", "--older-than", "5s", "--yes")
    assert sorted(done["done"]) == sorted(old) and done["matched"] == 3
    assert vq.run("show", old[0]).returncode == 4
    assert vq.json("show", new)["status"] == "finished"
    none = json.loads(vq.run("rm", "--finished", "--older-than", "1h", "--json", "--yes").stdout)
    assert none["matched"] == 0
    bad = vq.run("rm", "--finished", "--older-than", "soon", "--yes")
    assert bad.returncode == 2 and "--older-than" in bad.stderr


def test_bulk_forms_with_json_but_no_yes_fail_with_a_json_error_and_touch_nothing(vq, redis_conn):
    """A script (no terminal) that forgot --yes gets a JSON error naming --yes, exit 2, and
    no table or prompt; without --json, a closed stdin is a declined question, not 'Aborted.'."""
    settings = load_settings(vq.config_path)
    waiting = [submit(redis_conn, settings, Submission("test-noop", user_id="ann")) for _ in range(3)]
    for args in (
        ["clear", "test-noop"],
        ["cancel", "--all", "--user", "ann"],
        ["dlq", "purge"],
        ["dlq", "retry", "--all"],
    ):
        proc = vq.run(*args, "--json", input="")
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        answer = json.loads(proc.stdout)
        assert answer["error"]["code"] == "confirmation_required" and "--yes" in answer["error"]["message"], args
        assert proc.stderr.count("\n") == 1 and "to cancel" not in proc.stderr and "?" not in proc.stderr, args
    assert all(vq.json("show", j)["status"] == "queued" for j in waiting), "nothing was touched"
    closed = vq.run("clear", "test-noop", input="")
    assert closed.returncode == 1 and "Aborted" not in closed.stderr
    assert "nothing deleted (--yes skips the question)" in closed.stderr
    done = vq.json("cancel", "--all", "--user", "ann", "--yes")
    assert sorted(done["done"]) == sorted(waiting)
