"""Data protection and files: credentials encrypted at rest and hidden from everyone but the
handler and the job's owner; artifacts served only to their owner; no job data can make a
handler or the server read outside the job's artifacts; tiers from server-side config."""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.test_api import SECRET, Api, _wait, serve

CREDENTIAL = "sk-live-0123456789abcdef"


@pytest.fixture
def api(vq):
    vq.configure(
        job_types={"test-credential": {"handler": "tests.plugins:uses_credential", "attempts": 1}},
        subscriptions={"paula": "pro"},
    )
    return serve(vq, jwt_secret=SECRET, rateLimit={"requests": 1000, "window": 60000})


def test_credentials_are_encrypted_at_rest_and_shown_only_to_the_owner(api: Api, vq, redis_conn):
    ann, bob, ops = api.token("ann"), api.token("bob"), api.token("ops", "operator")
    body = {"prompt": "a cat", "auth": {"apiKey": CREDENTIAL}, "maxTokens": 5}
    job = api.call("POST", "/api/jobs/test-credential", ann, body).body
    done = _wait(api, ann, "test-credential", job["id"])
    assert done["status"] == "finished", done["error"]
    assert done["result"] == {"keyLength": len(CREDENTIAL), "keyPrefix": "sk-", "prompt": "a cat"}  # the handler saw it
    assert done["data"]["auth"]["apiKey"] == CREDENTIAL and done["data"]["maxTokens"] == 5  # the owner sees it
    as_operator = api.call("GET", f"/api/jobs/test-credential/{job['id']}", ops).body
    assert as_operator["data"]["auth"]["apiKey"] == "[redacted]" and as_operator["data"]["prompt"] == "a cat"
    assert api.call("GET", f"/api/jobs/test-credential/{job['id']}", bob).status == 404
    cli = vq.json("show", job["id"])
    assert cli["data"]["auth"]["apiKey"] == "[redacted]"
    dump = b"".join(redis_conn.dump(k) or b"" for k in redis_conn.keys("*"))  # every key, every structure
    assert CREDENTIAL.encode() not in dump
    assert CREDENTIAL not in vq.daemon_log()
    forged = api.call("POST", "/api/jobs/test-credential", ann, {"auth": {"apiKey": {"$vq:encrypted": "x"}}})
    assert forged.status == 422 and forged.body["error"]["field"] == "data.auth.apiKey.$vq:encrypted"


def test_recurring_definitions_keep_credentials_encrypted_in_redis_and_history(api: Api, vq, redis_conn):
    ann = api.token("ann")
    made = api.call(
        "POST",
        "/api/jobs/recurring",
        ann,
        {
            "jobType": "test-credential",
            "cronExpression": "* * * * *",
            "data": {"prompt": "nightly", "auth": {"apiKey": CREDENTIAL}},
        },
    )
    assert made.status == 201 and made.body["data"]["auth"]["apiKey"] == "[redacted]"
    assert CREDENTIAL.encode() not in redis_conn.hget("vq:recurring", made.body["id"])
    listed = vq.json("recurring", "show", made.body["id"])
    assert listed["data"]["auth"]["apiKey"] == "[redacted]"
    db = vq.data_dir / "history.db"
    deadline = time.monotonic() + 15
    row = None
    while time.monotonic() < deadline and row is None:  # copied every 5 s
        if db.exists():
            row = (
                sqlite3.connect(db)
                .execute("SELECT data FROM recurring_jobs WHERE id = ?", (made.body["id"],))
                .fetchone()
            )
        time.sleep(0.5)
    assert row is not None and "$vq:encrypted" in row[0] and CREDENTIAL not in row[0]


def test_artifacts_are_served_to_their_owner_only_and_never_outside_the_folder(api: Api, vq):
    ann, bob, ops = api.token("ann"), api.token("bob"), api.token("ops", "operator")
    job = api.call(
        "POST", "/api/jobs/image-generation", ann, {"prompt": "a red square", "options": {"width": 32, "height": 24}}
    ).body
    assert _wait(api, ann, "image-generation", job["id"])["status"] == "finished"
    base = f"/api/jobs/image-generation/{job['id']}/artifacts"
    listing = api.call("GET", base, ann)
    assert listing.status == 200 and [a["name"] for a in listing.body["artifacts"]] == ["image.png"]
    png = api.call("GET", f"{base}/image.png", ann)
    assert png.status == 200 and png.headers["content-type"] == "image/png" and png.body[:4] == b"\x89PNG"
    assert api.call("GET", f"{base}/image.png", ops).status == 200
    assert api.call("GET", f"{base}/image.png", bob).status == 404
    assert api.call("GET", base, bob).status == 404
    folder = vq.data_dir / "artifacts" / job["id"]
    assert folder.stat().st_mode & 0o777 == 0o700
    (folder / "escape").symlink_to("/etc/passwd")
    for hostile in (
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "escape",
        "..%2Fhistory.db",
        "%2E%2E/%2E%2E/jwt.secret",
        "nothing-here.png",
    ):
        reply = api.call("GET", f"{base}/{hostile}", ann)
        assert reply.status in (404, 422), (hostile, reply.status)
        assert "root:" not in str(reply.body)


def test_job_data_cannot_point_a_handler_outside_its_artifacts(api: Api, vq):
    ann, bob = api.token("ann"), api.token("bob")
    theirs = api.call("POST", "/api/jobs/image-generation", bob, {"prompt": "bob's private image"}).body
    assert _wait(api, bob, "image-generation", theirs["id"])["status"] == "finished"
    bobs_png = str(vq.data_dir / "artifacts" / theirs["id"] / "image.png")
    for image in ("/etc/passwd", "../../../../etc/passwd", bobs_png):
        job = api.call("POST", "/api/jobs/scene-creation", ann, {"imagePath": image, "audioPath": "/etc/hosts"}).body
        failed = _wait(api, ann, "scene-creation", job["id"])
        assert failed["status"] == "failed"
        assert "outside this job's and its upstream jobs' artifacts" in failed["error"]["message"], failed["error"]
    composed = api.call(
        "POST",
        "/api/jobs/video-composition",
        ann,
        {"scenes": [{"image": bobs_png, "durationSeconds": 1}], "format": "edl"},
    ).body
    failed = _wait(api, ann, "video-composition", composed["id"])
    assert failed["status"] == "failed" and "scenes[0].image" in failed["error"]["message"]
    stolen = api.call("POST", "/api/jobs/test-echo", ann, {"dependsOn": [theirs["id"]], "data": {}})
    assert stolen.status == 404 and stolen.body["error"]["field"] == "dependsOn"  # nor borrow another's results


def test_a_users_tier_comes_from_server_config_when_the_token_has_none(api: Api):
    paula = api.token("paula")  # config: subscriptions: {paula: pro}
    job = api.call("POST", "/api/jobs/test-noop", paula, {"userSubscription": "free"}).body
    assert job["subscription"] == "pro"
    other = api.call("POST", "/api/jobs/test-noop", api.token("quinn"), {"userSubscription": "enterprise"}).body
    assert other["subscription"] == "free"  # priority.defaultSubscription
    tokened = api.call("POST", "/api/jobs/test-noop", api.token("paula", "user", "--tier", "basic"), {}).body
    assert tokened["subscription"] == "basic"  # the token's tier wins


def test_data_folder_and_files_are_private_from_the_start(vq, tmp_path):
    """A CLI that makes the data folder before any daemon does (umask 022) makes it 0700 and
    its files 0600, as a daemon would: never world-readable, not even for a moment."""
    import os
    import stat
    import subprocess
    import sys

    import yaml

    fresh = tmp_path / "fresh-home"
    data_dir = fresh / ".local" / "share" / "vq"
    config = yaml.safe_load(vq.config_path.read_text())
    config["data_dir"] = str(data_dir)
    config["job_types"]["test-credential"] = {"handler": "tests.plugins:uses_credential", "attempts": 1}
    path = tmp_path / "fresh.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**vq.env, "HOME": str(fresh), "VQ_CONFIG": str(path)}

    def run(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "vq", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            preexec_fn=lambda: os.umask(0o022),
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    run("submit", "test-credential", "--user", "ann", "--data", '{"auth": {"apiKey": "sk-1"}}')  # the key
    run("history")  # the history database, caught up with the submission's event
    run("token", "create", "--user", "ann")  # the signing secret

    def mode(p):
        return stat.S_IMODE(p.stat().st_mode)

    made = [data_dir, data_dir.parent, data_dir.parent.parent]  # every folder the CLI made
    assert {str(d): oct(mode(d)) for d in made} == {str(d): "0o700" for d in made}
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert {"history.db", "encryption.key", "jwt.secret"} <= {p.name for p in files}, files
    assert {p.name: oct(mode(p)) for p in files} == {p.name: "0o600" for p in files}


def test_a_submitter_whose_key_the_daemons_lack_refuses_sensitive_data(vq, redis_conn):
    """A CLI with another data folder has its own key: its sensitive fields could never be
    decrypted by the daemons, so it refuses them, naming both keys' places."""
    vq.configure(job_types={"test-credential": {"handler": "tests.plugins:uses_credential", "attempts": 1}})
    laptop = vq.another_host("laptop")
    secret = '{"prompt": "a cat", "auth": {"apiKey": "sk-live-1"}}'
    before = laptop.run("submit", "test-credential", "--user", "ann", "--data", secret)
    assert before.returncode == 0, "no daemon has published its key yet: submitted as before"
    vq.start_daemon()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and b'"encryption"' not in b"".join(redis_conn.hvals("vq:daemons")):
        time.sleep(0.2)
    refused = laptop.run("submit", "test-credential", "--user", "ann", "--data", secret)
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    assert str(laptop.data_dir / "encryption.key") in line and str(vq.data_dir / "encryption.key") in line, line
    assert "data.auth.apiKey" in line
    plain = laptop.submit("test-echo", {"prompt": "no secrets here"}, "--user", "ann")
    assert vq.wait_for(plain)["status"] == "finished"
    same = vq.submit("test-credential", {"prompt": "a cat", "auth": {"apiKey": "sk-live-1"}}, "--user", "ann")
    assert vq.wait_for(same)["status"] == "finished"
    assert vq.wait_for(before.stdout.strip())["error"]["category"] == "permanent", "what the check prevents"
