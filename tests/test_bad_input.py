"""Bad input gets one clear line naming what is wrong and the documented exit code;
nothing already in Redis is lost or changed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_config


def _one_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "no-such-type", "--user", "u"),
        ("limits", "set", "type", "no-such-type", "3"),
        ("limits", "reset", "type", "no-such-type"),
        ("pause", "no-such-type"),
        ("clear", "no-such-type", "--yes"),
        ("stats", "--type", "no-such-type"),  # were an empty table, exit 0
        ("perf", "--type", "no-such-type"),
    ],
)
def test_unknown_type_exits_4(vq, args):
    proc = vq.run(*args)
    assert proc.returncode == 4, proc.stderr
    assert "unknown job type 'no-such-type'" in _one_line(proc)


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "--data: not valid JSON"),
        ("[1, 2]", "--data: expected a JSON object"),
    ],
)
def test_malformed_data_exits_2(vq, data, message):
    proc = vq.run("submit", "test-noop", "--user", "u", "--data", data)
    assert proc.returncode == 2
    assert message in _one_line(proc)


def test_oversize_data_is_rejected(vq):
    big = json.dumps({"blob": "x" * (1024 * 1024 + 10)})
    proc = vq.run("submit", "test-noop", "--user", "u", "--data", "-", input=big)
    assert proc.returncode == 2
    assert "over the limit of 1048576 bytes" in _one_line(proc)


def test_missing_user_priority_and_tier_are_named(vq):
    assert "userId: missing" in _one_line(vq.run("submit", "test-noop"))
    proc = vq.run("submit", "test-noop", "--user", "u", "--priority", "urgent")
    assert proc.returncode == 2 and "priority: 'urgent'" in _one_line(proc)
    proc = vq.run("submit", "test-noop", "--user", "u", "--subscription", "gold")
    assert proc.returncode == 2 and "--subscription: 'gold' is not one of free, basic, pro, enterprise" in _one_line(
        proc
    )


def test_unknown_dependency_exits_4(vq):
    proc = vq.run("submit", "test-noop", "--user", "u", "--depends-on", "nope")
    assert proc.returncode == 4
    assert "dependsOn: no such job 'nope'" in _one_line(proc)


@pytest.mark.parametrize("delay", ["soon", "-5s", "5 parsecs"])
def test_bad_delay_exits_2(vq, delay):
    proc = vq.run("submit", "test-noop", "--user", "u", "--delay", delay)
    assert proc.returncode == 2
    assert "--delay" in _one_line(proc)


def test_bad_at_exits_2(vq):
    proc = vq.run("submit", "test-noop", "--user", "u", "--at", "tomorrow-ish")
    assert proc.returncode == 2 and "is not an ISO 8601 time" in _one_line(proc)


def test_unknown_job_exits_4_for_every_job_command(vq):
    for command in ("show", "result", "retry", "cancel", "rm", "progress", "artifacts ls", "artifacts get"):
        for job_id in ("0123456789abcdef", "a@b.c"):  # the second is not even a possible RQ id
            proc = vq.run(*command.split(), job_id, *(["x.png"] if command == "artifacts get" else []))
            assert proc.returncode == 4, (command, job_id)
            assert f"no such job '{job_id}'" in _one_line(proc)


@pytest.mark.parametrize(
    "content, message",
    [
        ("queue:\n  defaultJobOptions:\n    attempts: lots\n", "queue.defaultJobOptions.attempts"),
        ("queue:\n  defaultJobOptions:\n    atempts: 3\n", "queue.defaultJobOptions.atempts: unknown key"),
        ("concurrency:\n  user:\n    gold: 3\n", "unknown subscription tier 'gold'"),
        ("job_types:\n  my-type:\n    timeout: 5000\n", "job_types.my-type.handler: a custom job type needs a handler"),
        # A mapping's entries are named by their key, not by position or a placeholder.
        (
            "job_types:\n  my-type:\n    handler: m:f\n    timeout: 5\n",
            "job_types.my-type.timeout: Expected `int` >= 1000",
        ),
        (
            "templates:\n  intro:\n    jobType: x\n    priority: urgent\n",
            "templates.intro.priority: 'urgent' is not one of high, normal, low",
        ),
        (
            "priority:\n  byTier:\n    gold: high\n",
            "priority.byTier: 'gold' is not one of free, basic, pro, enterprise",
        ),
        ("templates:\n  intro:\n    data: {}\n", "templates.intro.jobType: missing (required)"),
        ("daemon:\n  cancelCleanup: -1\n", "daemon.cancelCleanup: Expected `int` >= 0"),
        ("daemon:\n  cancelCleanup: 3600000\n", "daemon.cancelCleanup: Expected `int` <= 600000"),
        ("daemon:\n  metricsListen: 9464\n", "daemon.metricsListen: Expected `str | null`"),
        ("daemon:\n  metricsListen: localhost\n", "daemon.metricsListen: 'localhost' is not HOST:PORT"),
        ("daemon:\n  workerSeriesTtl: 1000\n", "daemon.workerSeriesTtl: Expected `int` >= 60000"),
        ("redis: [1, 2\n", "is not valid YAML"),
    ],
)
def test_bad_config_is_one_line_exit_2(vq, tmp_path, content, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    proc = vq.run("--config", str(bad), "queues")
    assert proc.returncode == 2
    line = _one_line(proc)
    assert message in line and str(bad) in line


def test_unreachable_redis_exits_3_naming_the_address(vq, tmp_path):
    config = write_config(tmp_path / "down.yaml", {"redis": {"host": "127.0.0.1", "port": 1}})
    proc = vq.run("--config", str(config), "queues")
    assert proc.returncode == 3
    line = _one_line(proc)
    assert "127.0.0.1:1" in line and "cannot reach Redis" in line


def test_environment_wins_over_the_config_file(vq):
    env = dict(vq.env, REDIS_PORT="1", REDIS_HOST="127.0.0.1")
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vq", "queues"], env=env, capture_output=True, text=True)
    assert proc.returncode == 3 and "127.0.0.1:1" in proc.stderr


def test_batch_reports_each_line_and_keeps_going(vq):
    existing = vq.submit("test-noop", {}, "--user", "keep")
    lines = "\n".join(
        [
            json.dumps({"jobType": "test-echo", "userId": "u1", "data": {"n": 1}}),
            "{broken json",
            json.dumps({"jobType": "nope", "userId": "u1", "data": {}}),
            json.dumps({"jobType": "test-echo", "data": {"userId": "u2", "projectId": "p9", "n": 2}}),
        ]
    )
    proc = vq.run("submit", "--batch", "-", "--json", input=lines)
    assert proc.returncode == 2
    outcomes = json.loads(proc.stdout)
    assert [o["ok"] for o in outcomes] == [True, False, False, True]
    assert "not valid JSON" in outcomes[1]["error"]
    assert "unknown job type 'nope'" in outcomes[2]["error"]
    second = vq.json("show", outcomes[3]["id"])
    assert second["userId"] == "u2" and second["projectId"] == "p9"
    assert vq.json("show", existing)["status"] == "queued", "existing jobs are untouched"


def test_batch_refuses_per_job_options_instead_of_dropping_them(vq):
    """Each batch line names its own subscription, priority, delay...: a flag for one job
    beside --batch would be silently ignored, so it is refused, and nothing is submitted."""
    line = json.dumps({"jobType": "test-noop", "userId": "u", "data": {}})
    proc = vq.run("submit", "--batch", "-", "--subscription", "pro", "--priority", "high", input=line)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "vq: error: --batch: --priority (priority), --subscription (userSubscription) set one job; "
        "put them in each line's JSON instead"
    )
    assert vq.json("jobs") == [], "nothing was submitted"


def test_batch_reads_the_file_named_as_documented(vq, tmp_path):
    """`vq submit --batch FILE.jsonl` is the README's, the man page's and --help's form."""
    batch = tmp_path / "jobs.jsonl"
    batch.write_text(
        "\n".join(json.dumps({"jobType": "test-echo", "userId": "u1", "data": {"n": n}}) for n in range(3)) + "\n"
    )
    proc = vq.run("submit", "--batch", str(batch))
    assert proc.returncode == 0, proc.stderr
    ids = proc.stdout.split()
    assert len(ids) == 3 and [vq.json("show", i)["data"]["n"] for i in ids] == [0, 1, 2]
    assert len(vq.json("submit", "--batch", f"@{batch}")) == 3, "the @FILE form still works"
    missing = vq.run("submit", "--batch", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == f"vq: error: --batch: no such file '{tmp_path / 'nope.jsonl'}'"


@pytest.mark.parametrize(
    "ttl, said",
    [
        ("1", "--ttl: '1' has no unit (use s, m, h or d: e.g. 15m, 1h, 30d)"),
        ("500ms", "--ttl: at least 1s"),
        ("99999999999d", "--ttl: 99999999999d is longer than 100 years"),
    ],
)
def test_a_token_lifetime_without_a_unit_or_too_short_is_named(vq, ttl, said):
    proc = vq.run("token", "create", "--user", "u", "--ttl", ttl)
    assert proc.returncode == 2 and said in _one_line(proc)


@pytest.mark.parametrize(
    "args, said",
    [
        (("costs", "--since", "9999999d"), "since: 9999999d is longer than 100 years"),
        (("perf", "--window", "500d"), "--window: between 1m and 400d"),
        (("perf", "--window", "99999999999999999999d"), "--window: 99999999999999999999d is longer than 100 years"),
    ],
)
def test_durations_out_of_range_are_named(vq, args, said):
    proc = vq.run(*args, timeout=20)
    assert proc.returncode == 2 and said in _one_line(proc)


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_a_wait_timeout_not_above_zero_is_refused_before_the_job_is_made(vq, value):
    # --timeout -1 --wait made the job, waited not at all and exited 1 showing it `started`
    proc = vq.run("submit", "test-noop", "--user", "u", "--wait", "--timeout", value)
    assert proc.returncode == 2
    assert "--timeout:" in _one_line(proc) and "seconds above 0" in proc.stderr
    assert vq.json("jobs") == []


def test_a_bad_batch_meta_is_named_as_meta(vq, tmp_path):
    # it was refused as "--data: expected a JSON object", an option the command does not have
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"jobType": "test-noop", "data": {}}) + "\n")
    proc = vq.run("batch", "create", str(jobs), "--user", "u", "--meta", "[1]")
    assert proc.returncode == 2 and _one_line(proc) == "vq: error: --meta: expected a JSON object"
    proc = vq.run("batch", "create", str(jobs), "--user", "u", "--meta", "{nope")
    assert proc.returncode == 2 and _one_line(proc).startswith("vq: error: --meta: not valid JSON")


def test_a_video_whose_scenes_is_a_count_is_refused_naming_scene_count(vq):
    # `"scenes": 6` made the default 3 scenes without a word (sceneCount is the count)
    proc = vq.run("submit", "video-generation", "--user", "u", "--data", '{"prompt": "oceans", "scenes": 6}')
    assert proc.returncode == 2
    assert _one_line(proc) == (
        "vq: error: data: scenes: expected a list of scenes (for a number of scenes: sceneCount)"
    )
    assert vq.json("jobs") == []


def test_data_nested_past_what_the_parser_can_read_is_one_line_not_a_traceback(vq, tmp_path):
    # thousands of levels: json.loads overflowed (RecursionError traceback, exit 1) before
    # the data's depth check (limits.maxDataDepth) could name it; the HTTP API said 400
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    proc = vq.run("submit", "test-noop", "--user", "u", "--data", "-", input=deep)
    assert proc.returncode == 2 and _one_line(proc) == "vq: error: --data: JSON nested too deeply"
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"jobType": "test-noop", "userId": "u", "data": ' + deep + "}\n")
    proc = vq.run("submit", "--batch", str(lines))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == ["vq: error: line 1: JSON nested too deeply", "0 submitted, 1 rejected"]
    proc = vq.run("batch", "create", str(lines), "--user", "u")
    assert proc.returncode == 2 and _one_line(proc) == "vq: error: FILE: line 1: JSON nested too deeply"
    proc = vq.run("recurring", "add", "test-noop", "--cron", "0 0 * * *", "--user", "u", "--data", "-", input=deep)
    assert proc.returncode == 2 and _one_line(proc) == "vq: error: --data: JSON nested too deeply"
    assert vq.json("jobs") == []


EMPTY_DATA_REFUSED = {
    "image-generation": "prompt: required and must be a non-empty string",
    "audio-synthesis": "text: required (or narration, or a sceneIndex with an upstream script)",
    "script-generation": "prompt: required and must be a non-empty string",
    "content-analysis": "content: required, the text to analyse",
    "scene-creation": "imagePath: required and must be a non-empty string",
    "world-building": "prompt: required and must be a non-empty string",
    "video-composition": "scenes: required, a non-empty list of {image, audio, durationSeconds}",
    "personalization": "content: required, a non-empty string or object",
    "ai-processing": "task: required (the built-in provider's: summarize, classify, extract-keywords, echo)",
    "video-generation": "prompt: required and must be a non-empty string",
}


@pytest.mark.parametrize(("job_type", "said"), sorted(EMPTY_DATA_REFUSED.items()))
def test_every_built_in_type_refuses_at_submit_data_its_handler_could_only_fail_on(vq, job_type, said):
    # they were queued, and each failed as `permanent` when a worker took it
    proc = vq.run("submit", job_type, "--user", "u", "--data", "{}")
    assert proc.returncode == 2 and _one_line(proc) == f"vq: error: data: {said}"
    assert vq.json("jobs") == []


def test_a_dependent_may_leave_its_input_to_its_dependencies(vq):
    first = vq.submit("script-generation", {"prompt": "Robots paint."}, "--user", "u", "--delay", "1h")
    proc = vq.run("submit", "audio-synthesis", "--user", "u", "--depends-on", first, "--data", '{"sceneIndex": 0}')
    assert proc.returncode == 0, proc.stderr
    proc = vq.run("submit", "image-generation", "--user", "u", "--data", '{"prompt": "a", "width": 0}')
    assert proc.returncode == 2 and _one_line(proc) == "vq: error: data: width: must be from 1 to 4096, got 0"


def test_a_plug_in_type_s_module_check_refuses_at_submit(vq):
    vq.configure(job_types={"test-checked": {"handler": "tests.checked_plugin:handle"}})
    proc = vq.run("submit", "test-checked", "--user", "u", "--data", '{"size": "big"}')
    assert proc.returncode == 2 and _one_line(proc) == "vq: error: data: size: required, a whole number"
    assert vq.run("submit", "test-checked", "--user", "u", "--data", '{"size": 3}').returncode == 0


def test_a_plug_in_check_with_a_bug_of_its_own_accepts_the_job_with_one_warning(vq):
    vq.configure(job_types={"test-broken-check": {"handler": "tests.broken_check_plugin:handle"}})
    proc = vq.run("submit", "test-broken-check", "--user", "u", "--data", "{}")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "tests.broken_check_plugin:handle's check(data) failed (KeyError: 'missing')" in proc.stderr
    assert vq.json("show", proc.stdout.strip())["status"] == "queued"


@pytest.mark.parametrize("provider", ["[1]", "3", "{}"])
def test_a_provider_that_is_not_a_name_is_refused_at_submit(vq, provider):
    data = '{"task": "echo", "input": "x", "provider": ' + provider + "}"
    proc = vq.run("submit", "ai-processing", "--user", "u", "--data", data)
    assert proc.returncode == 2 and _one_line(proc).startswith("vq: error: data.provider: expected a provider's name")
