"""Hostile job data and hostile handlers: data that is not storable JSON is refused in one
place before anything is written, results have a size cap and stay out of list views,
cron takes 5 or 6 fields only, and an exception that cannot be printed is still recorded
as its own type."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import HOSTILE_JOB_TYPES, TEST_JOB_TYPES
from tests.test_api import serve
from vq.config import load_settings
from vq.connection import connect
from vq.errors import InvalidInput
from vq.submission import Submission, submit


def _one_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _strict(text: str):
    """json.loads that refuses NaN and Infinity, as every JSON parser but Python's does."""

    def refuse(name):
        raise AssertionError(f"{name} in output: not JSON")

    return json.loads(text, parse_constant=refuse)


def _jobs_and_definitions(conn) -> tuple:
    return sorted(conn.scan_iter("rq:job:*")), sorted(conn.scan_iter("vq:*:jobs")), conn.hkeys("vq:recurring")


def _nested(levels: int) -> dict:
    data: dict = {}
    inner = data
    for _ in range(levels - 1):
        inner["a"] = {}
        inner = inner["a"]
    return data


@pytest.mark.parametrize(
    "text, message",
    [
        (json.dumps(_nested(300)), "data.a.a.a.a.a.a...: nested deeper than 32 levels (limits.maxDataDepth)"),
        (json.dumps(_nested(33)), "nested deeper than 32 levels (limits.maxDataDepth)"),
        ('{"x": NaN}', "data.x: NaN is not a JSON number"),
        ('{"x": {"y": [1, Infinity]}}', "data.x.y[1]: Infinity is not a JSON number"),
        ('{"x": -Infinity}', "data.x: -Infinity is not a JSON number"),
    ],
    ids=["300-deep", "33-deep", "nan", "infinity-in-list", "minus-infinity"],
)
def test_cli_refuses_data_that_is_not_storable_json_and_writes_nothing(vq, redis_conn, text, message):
    before = redis_conn.dbsize()
    proc = vq.run("submit", "test-echo", "--user", "u", "--data", "-", input=text)
    assert proc.returncode == 2
    assert message in _one_line(proc)
    assert redis_conn.dbsize() == before, "nothing written"


def test_the_depth_limit_is_configurable_and_data_at_the_limit_is_accepted(vq):
    assert vq.run("submit", "test-echo", "--user", "u", "--data", json.dumps(_nested(32))).returncode == 0
    vq.configure(limits={"maxDataDepth": 4})
    proc = vq.run("submit", "test-echo", "--user", "u", "--data", json.dumps(_nested(5)))
    assert proc.returncode == 2 and "data.a.a.a.a: nested deeper than 4 levels" in _one_line(proc)


def test_templates_and_batches_go_through_the_same_check(vq, redis_conn):
    vq.configure(templates={"t": {"jobType": "test-echo", "data": {"size": 1}}})
    before = redis_conn.dbsize()
    proc = vq.run("submit", "--template", "t", "--user", "u", "--set", "score=NaN")
    assert proc.returncode == 2 and "data.score: NaN is not a JSON number" in _one_line(proc)
    lines = "\n".join(
        [
            json.dumps({"jobType": "test-echo", "userId": "u", "data": _nested(40)}),
            '{"jobType": "test-echo", "userId": "u", "data": {"x": NaN}}',
        ]
    )
    proc = vq.run("submit", "--batch", "-", "--json", input=lines)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    messages = [outcome["error"] for outcome in json.loads(proc.stdout)]
    assert "nested deeper than 32 levels" in messages[0] and "data.x: NaN is not a JSON number" in messages[1]
    assert redis_conn.dbsize() == before, "nothing written"


def test_python_api_raises_invalid_input_never_type_or_recursion_error(vq, redis_conn):
    settings = load_settings(vq.config_path)
    conn = connect(settings)
    looped: dict = {}
    looped["self"] = looped

    class Thing:
        pass

    cases = [
        ({"tags": {"a", "b"}}, "data.tags: 'set' is not a JSON type"),
        ({"thing": Thing()}, "data.thing: 'Thing' is not a JSON type"),
        (looped, "refers to itself (a cycle is not JSON)"),
        ({"x": float("nan")}, "data.x: NaN is not a JSON number"),
        ({"x": [float("inf")]}, "data.x[0]: Infinity is not a JSON number"),
        ({"deep": _nested(100)}, "nested deeper than 32 levels (limits.maxDataDepth)"),
        ({1: "one"}, "key 1 is not text"),
        ({"big": 10**5000}, "data.big: the whole number is out of range"),
    ]
    before = redis_conn.dbsize()
    for data, message in cases:
        with pytest.raises(InvalidInput) as caught:
            submit(conn, settings, Submission("test-echo", data, user_id="u"))
        assert message in caught.value.message, caught.value.message
    with pytest.raises(InvalidInput, match="userId: expected a string"):
        submit(conn, settings, Submission("test-echo", {}, user_id=7))
    assert redis_conn.dbsize() == before, "nothing written"


def test_http_answers_422_for_deep_or_non_finite_data_and_creates_nothing(vq, redis_conn):
    api = serve(
        vq, jwt_secret="test-secret-for-the-api-tests-0123456789", rateLimit={"requests": 1000, "window": 60000}
    )
    token = api.token("ann")
    before = _jobs_and_definitions(redis_conn)  # the daemon writes its own keys meanwhile
    for body, message in [
        ({"data": _nested(300)}, "nested deeper than 32 levels (limits.maxDataDepth)"),
        ({"data": _nested(40)}, "nested deeper than 32 levels (limits.maxDataDepth)"),
        ({"data": {"x": float("nan")}}, "data.x: NaN is not a JSON number"),
        ({"data": {"x": float("-inf")}}, "data.x: -Infinity is not a JSON number"),
    ]:
        reply = api.call("POST", "/api/jobs/test-echo", token, body)
        assert reply.status == 422, reply.body
        assert reply.body["error"]["code"] == "invalid" and message in reply.body["error"]["message"]
    reply = api.call(
        "POST",
        "/api/jobs/recurring",
        token,
        {"jobType": "test-echo", "cronExpression": "0 0 * * *", "data": {"x": float("nan")}},
    )
    assert reply.status == 422 and "data.x: NaN is not a JSON number" in reply.body["error"]["message"]
    reply = api.call("POST", "/api/jobs/recurring", token, {"jobType": "test-echo", "cronExpression": "* * * * * * *"})
    assert reply.status == 422 and "has 7 fields" in reply.body["error"]["message"], reply.body
    assert _jobs_and_definitions(redis_conn) == before, "nothing written"


def test_cron_with_seven_fields_is_refused(vq, redis_conn):
    before = redis_conn.dbsize()
    proc = vq.run("recurring", "add", "test-noop", "--cron", "* * * * * * *", "--user", "u")
    assert proc.returncode == 2
    assert "has 7 fields; expected 5" in _one_line(proc)
    assert redis_conn.dbsize() == before
    assert vq.run("recurring", "add", "test-noop", "--cron", "* * * * * */10", "--user", "u").returncode == 0


def test_results_over_the_cap_fail_permanently_and_large_ones_stay_out_of_lists(vq):
    vq.configure(limits={"maxResultBytes": 256 * 1024}, job_types={**TEST_JOB_TYPES, **HOSTILE_JOB_TYPES})
    vq.start_daemon()
    too_big = vq.submit("test-big-result", {"kib": 300}, "--user", "u")
    too_big_forked = vq.submit("test-big-result-forked", {"kib": 300}, "--user", "u")
    nan = vq.submit("test-nan-result", {}, "--user", "u")
    large = vq.submit("test-big-result", {"kib": 100}, "--user", "u")
    kept = vq.submit("test-big-result", {"kib": 30}, "--user", "u")  # within history.maxResultBytes
    small = vq.submit("test-echo", {"n": 1}, "--user", "u")
    for job_id in (too_big, too_big_forked):
        view = vq.wait_for(job_id)
        assert view["status"] == "failed" and view["attempts"] == 1, "permanent: not retried"
        assert view["error"]["category"] == "permanent"
        message = view["error"]["message"]
        assert "over the limit of 262144 bytes (limits.maxResultBytes)" in message and "artifacts" in message
    view = vq.wait_for(nan)
    assert view["status"] == "failed" and view["error"]["category"] == "permanent"
    assert "result.score: NaN is not a JSON number" in view["error"]["message"]
    _strict(vq.run("show", nan, "--json").stdout)
    assert vq.wait_for(large)["status"] == "finished" and vq.wait_for(small)["status"] == "finished"

    listed = {v["id"]: v for v in _strict(vq.run("jobs", "--json").stdout)}
    assert listed[large]["result"] is None and listed[large]["resultOmitted"] is True
    assert listed[large]["resultBytes"] > 100 * 1024
    assert listed[small]["result"]["echo"]["n"] == 1 and "resultOmitted" not in listed[small]
    assert len(vq.json("show", large)["result"]["blob"]) == 100 * 1024, "show gives the whole result"
    assert len(vq.json("result", large)["result"]["blob"]) == 100 * 1024
    assert vq.wait_for(kept)["status"] == "finished"
    deadline = time.monotonic() + 20
    while True:  # the history database's list, once the archiver has the job
        rows = {r["id"]: r for r in _strict(vq.run("history", "--user", "u", "--json").stdout)}
        if kept in rows and small in rows and rows[kept]["finished_at"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows[kept]["result"] is None and rows[kept]["result_omitted"] is True, rows.get(kept)
    assert rows[kept]["result_bytes"] > 30 * 1024
    assert json.loads(rows[small]["result"])["echo"] == {"n": 1} and not rows[small].get("result_omitted")


def test_an_exception_whose_str_raises_is_recorded_as_its_own_type(vq):
    vq.configure(job_types={**TEST_JOB_TYPES, **HOSTILE_JOB_TYPES})
    vq.start_daemon()
    view = vq.wait_for(vq.submit("test-unprintable", {}, "--user", "u"))
    assert view["status"] == "failed"
    assert view["error"]["type"] == "Unprintable"
    assert view["error"]["message"] == "<unprintable Unprintable>"
    assert vq.wait_for(vq.submit("test-echo", {}, "--user", "u"))["status"] == "finished", "the worker still works"


def _series(vq) -> tuple[list[str], set]:
    """The providers listed, and every label value of every metric series."""
    rows = vq.json("providers")
    values = {
        (f["name"], name, value)
        for f in vq.json("metrics")
        for s in f["samples"]
        for name, value in s["labels"].items()
        if name != "le"
    }
    return sorted(r["provider"] for r in rows), values


def test_provider_names_in_job_data_create_no_operator_visible_state(vq, redis_conn):
    vq.configure(job_types={**TEST_JOB_TYPES, **HOSTILE_JOB_TYPES})
    vq.start_daemon()
    assert vq.wait_for(vq.submit("test-provider-down", {"which": "made-up-0"}, "--user", "u"))["status"] == "failed"
    providers_before, series_before = _series(vq)
    assert providers_before == ["listed", "other"], "the type's own provider, and one bucket for the made-up name"
    for name in ("nosuch", "nosuch-2", "nosuch-3"):
        proc = vq.run(
            "submit",
            "ai-processing",
            "--user",
            "u",
            "--data",
            json.dumps({"provider": name, "task": "echo", "input": "x"}),
        )
        assert proc.returncode == 2
        assert f"data.provider: unknown provider {name!r} (known: listed, local)" in _one_line(proc)
    # A handler's ProviderError naming a provider config does not know counts under "other":
    # one row whatever the names.
    for name in ("made-up-1", "made-up-2", "made-up-3"):
        assert vq.wait_for(vq.submit("test-provider-down", {"which": name}, "--user", "u"))["status"] == "failed"
    providers_after, series_after = _series(vq)
    assert providers_after == providers_before
    by_provider = [{s for s in series if s[1] == "provider"} for series in (series_before, series_after)]
    assert by_provider[0] == by_provider[1], "no new provider series"
    assert not any("nosuch" in value or "made-up" in value for _, _, value in series_after)
    assert not any(b"nosuch" in k or b"made-up" in k for k in redis_conn.scan_iter("vq:*"))


def test_http_refuses_an_unknown_provider_with_422(vq):
    api = serve(vq, jwt_secret="test-secret-for-the-api-tests-0123456789")
    reply = api.call(
        "POST",
        "/api/jobs/ai-processing",
        api.token("ann"),
        {"data": {"provider": "nosuch", "task": "echo", "input": "x"}},
    )
    assert reply.status == 422 and "data.provider: unknown provider 'nosuch'" in reply.body["error"]["message"]


def test_show_json_is_strict_json_even_for_a_job_stored_with_nan(vq, redis_conn):
    """A job an older vq stored with NaN in it (here: in its meta) still prints as JSON."""
    job_id = vq.submit("test-echo", {"n": 1}, "--user", "u")
    meta = json.loads(redis_conn.hget(f"rq:job:{job_id}", "meta"))
    meta["units"] = {"tokens": float("nan"), "images": float("inf")}
    redis_conn.hset(f"rq:job:{job_id}", "meta", json.dumps(meta))
    shown = _strict(vq.run("show", job_id, "--json").stdout)
    assert shown["units"] == {"tokens": None, "images": None}
    assert _strict(vq.run("jobs", "--json").stdout)[0]["units"] == {"tokens": None, "images": None}
    api = serve(
        vq, jwt_secret="test-secret-for-the-api-tests-0123456789", rateLimit={"requests": 1000, "window": 60000}
    )
    reply = api.call("GET", f"/api/jobs/test-echo/{job_id}", api.token("u"))
    assert reply.status == 200 and reply.body["units"] == {"tokens": None, "images": None}, reply.body


def test_error_line_of_an_unprintable_exception_names_its_type():
    from tests.plugins import Unprintable
    from vq.supervision import error_line

    assert error_line(Unprintable()) == "Unprintable: <unprintable Unprintable>"


def test_a_provider_answering_nan_is_a_provider_failure_and_a_handlers_nan_units_are_not_priced(vq):
    from tests.test_providers import FakeProvider

    fake = FakeProvider()
    try:
        fake.mode = "nan-usage"
        vq.configure(
            providers={"fake": {"kind": "http", "url": fake.url, "cost": {"calls": 0.5}}},
            job_types={
                **TEST_JOB_TYPES,
                "ai-processing": {"attempts": 1},
                "test-units": {"handler": "tests.plugins:nan_units", "attempts": 1, "providers": ["fake"]},
            },
        )
        vq.start_daemon()
        job_id = vq.submit("ai-processing", {"provider": "fake", "task": "echo", "input": "x"}, "--user", "u")
        view = vq.wait_for(job_id)
        assert view["status"] == "failed" and view["error"]["category"] == "provider"
        assert "fake: answered with something that is not JSON" in view["error"]["message"]
        fake.mode = "ok"
        job_id = vq.submit("test-units", {}, "--user", "u")
        view = vq.wait_for(job_id)
        assert view["status"] == "finished", view["error"]
        assert view["units"] == {"calls": 1} and view["costMicros"] == 500_000
        _strict(vq.run("show", job_id, "--json").stdout)
    finally:
        fake.close()
