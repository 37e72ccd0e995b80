"""The HTTP child's access lines, written in batches off the event loop (vq/api/access_log.py):
one line per request, none written on the request's own path, none lost on a stop."""

from __future__ import annotations

import io
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from tests.test_logs import _serve
from vq import logs
from vq.api import access_log
from vq.api.request_id import access_record


def test_lines_wait_for_the_writer_then_come_in_order_in_vqs_format():
    stream = io.StringIO()
    target = logs.Handler(stream)
    target.addFilter(logs.Context())
    target.setFormatter(logs.Plain(logs.Text("%(levelname)s %(name)s: %(message)s")))
    batched = access_log.Batched(target, every=60)
    scope = {"method": "POST", "path": "/api/jobs/x", "client": ("127.0.0.1", 5000)}
    for n in range(100):
        batched.handle(access_record(scope, 201, 0.0012, f"req-{n}"))
    assert stream.getvalue() == ""  # the request's path only queued it
    batched.close()  # what the HTTP child's shutdown does
    lines = stream.getvalue().splitlines()
    assert lines == [f"INFO vq.http.access: POST /api/jobs/x 201 1.2ms request req-{n}" for n in range(100)]


def test_every_request_has_its_line_after_a_burst_and_after_sigterm(vq):
    daemon, api = _serve(vq, terminal=False)

    def burst(tag: str, count: int) -> set[str]:
        ids = {f"{tag}-{n}" for n in range(count)}
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda rid: api.call("GET", "/api/jobs/types", headers={"X-Request-Id": rid}), ids))
        assert {r.status for r in replies} == {401}
        return ids

    def logged() -> list[str]:
        records = [json.loads(line) for line in vq.daemon_log().splitlines() if line.strip()]
        return [r["request_id"] for r in records if r["logger"] == "vq.http.access" and "request_id" in r]

    first = burst("first", 200)
    deadline = time.monotonic() + 10
    while not first <= set(logged()) and time.monotonic() < deadline:
        time.sleep(0.1)  # written within EVERY seconds, while the server runs
    assert first <= set(logged())
    last = burst("last", 200)
    assert vq.stop_daemon(daemon) == 0  # at once: the last lines are still waiting in the child
    seen = logged()
    assert sorted(r for r in seen if r.startswith(("first-", "last-"))) == sorted(first | last)  # each once


def test_outside_the_http_child_the_access_logger_writes_as_any_other(caplog):
    with caplog.at_level(logging.INFO, logger=access_log.ACCESS):
        logging.getLogger(access_log.ACCESS).handle(
            access_record({"method": "GET", "path": "/livez", "client": None}, 200, 0.0, "r")
        )
    assert [r.getMessage() for r in caplog.records] == ["GET /livez 200 0.0ms request r"]
