"""The plumbing of scripts/bench/bullmq.py, worker_scale.py and job_profile.py (issue 28's measures): their
option errors, how workers are spread over daemons, and BullMQ's side of a drain against a
real Redis (skipped where node or the bench's BullMQ install is missing). The figures
themselves are the benches' to print, not a test's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
sys.path.insert(0, str(BENCH))

import bullmq as bullmq_bench  # noqa: E402
import job_profile  # noqa: E402
import worker_scale  # noqa: E402


def test_workers_are_spread_evenly_over_the_fewest_daemons():
    assert worker_scale.split(2, 50) == [2]
    assert worker_scale.split(100, 50) == [50, 50]
    assert worker_scale.split(101, 50) == [34, 34, 33]


def test_the_profile_sorts_each_sample_into_the_deepest_step_it_names(tmp_path):
    """scripts/bench/job_profile.py reads py-spy's collapsed stacks: a worker's sample goes to
    the deepest step its frames name (a log line inside the job's end is a log line), a
    thread outside the worker loop to the other threads, and the archiver is recognised."""
    loop = 'process 10:"vq daemon";process 11:"vq daemon";BaseWorker.work (rq/worker/base.py:1)'
    end = f"{loop};JobOutcomes._finish_in_one_trip (vq/job_outcomes.py:2)"
    raw = tmp_path / "raw"
    raw.write_text(
        f"{end};say (vq/events.py:3);Logger.info (logging/__init__.py:4) 7\n"
        f"{end};_finish_payload (vq/job_outcomes.py:5) 3\n"
        f"{loop};JobLeases._arm (vq/worker_leases.py:6);Event.set (threading.py:7) 2\n"
        'process 10:"vq daemon";process 11:"vq daemon";Fence._renew_loop (vq/fence.py:8) 1\n'
        'process 10:"vq daemon";process 12:"vq daemon";Archiver.step (vq/history/archiver.py:9) 5\n'
        'process 10:"vq daemon" 4\n'  # a sample with no Python frame (a thread starting or ending)
        "\n"
    )
    per = job_profile.read_raw(raw)
    assert per[11]["event log lines (started, finished)"] == 7
    assert per[11][job_profile.CATEGORIES[5][1]] == 3  # the end's payload
    assert per[11][job_profile.WAKE_STEP] == 2
    assert per[11][job_profile.OTHER_THREADS] == 1
    assert per[12]["<archiver>"] == 5
    assert per[0][job_profile.OTHER_THREADS] == 4


@pytest.mark.parametrize(
    ("script", "args", "said"),
    [
        ("bullmq.py", ["--parts", "drain,nope"], "--parts: unknown ['nope']"),
        ("bullmq.py", ["--concurrency", "1,x"], "--concurrency: '1,x' is not"),
        ("bullmq.py", ["--per-worker", "65"], "--per-worker: from 1 to 64"),
        ("worker_scale.py", ["--sizes", "2,0"], "--sizes: each must be at least 1"),
        ("job_profile.py", ["--jobs", "10"], "--jobs must be at least 1000"),
        ("idle_admission.py", ["--idle", "0,-1"], "--idle: each must be 0 or more"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(script, args, said):
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert said in done.stderr
    assert "Traceback" not in done.stderr


CACHE = Path.home() / ".cache" / "vq-bench" / "bullmq"


@pytest.mark.slow  # two Node processes and 200 jobs
@pytest.mark.skipif(
    not shutil.which("node") or not (CACHE / "node_modules" / "bullmq").is_dir(),
    reason="node or BullMQ (installed by scripts/bench/bullmq.py into ~/.cache/vq-bench/bullmq) is missing",
)
def test_bullmq_drains_every_job_no_op_and_against_the_stub(redis_conn, redis_server, tmp_path):
    args = SimpleNamespace(cache_dir=CACHE, timeout=60)
    noop = bullmq_bench.run_bullmq(redis_conn, args, 1, redis_server.url, 200, 4, None)
    assert (noop.system, noop.jobs) == ("bullmq-c4", 200)
    assert noop.steady_s and 0 < noop.steady_s <= noop.drain_s

    stub = bullmq_bench.Stub(50, tmp_path)
    try:
        io = bullmq_bench.run_bullmq(redis_conn, args, 1, redis_server.url, 20, 10, stub.url)
    finally:
        stub.stop()
    # 20 calls of 50 ms, 10 at a time: two waves at least, so never under 0.1 s
    assert io.steady_s and io.steady_s >= 0.1


def test_the_raw_http_client_keeps_its_connection_and_reads_both_body_framings():
    """http_submit.py's load generator (raw_http.py) against a real socket server: a
    Content-Length answer, a chunked one, a `Connection: close` (the next request opens a
    new connection, counted), and a garbled answer (HttpError, not a hang)."""
    import asyncio

    from raw_http import HttpError, RawClient

    answers = [
        b'HTTP/1.1 201 Created\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{"id": "a"}',
        b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"id\r\n7\r\n\": \"b\"}\r\n0\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno",
        b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok",
        b"SMTP ready\r\n\r\n",
    ]
    seen: list[bytes] = []

    async def serve(reader, writer):
        while answers:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(v for k, v in (h.split(b": ", 1) for h in head.split(b"\r\n")[1:-2]) if k == b"Content-Length")
            )
            seen.append(head.split(b"\r\n", 1)[0] + b" " + await reader.readexactly(length))
            answer = answers.pop(0)
            writer.write(answer)
            await writer.drain()
            if b"connection: close" in answer:
                writer.close()
                return
        writer.close()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, RawClient(f"http://127.0.0.1:{port}", {"Authorization": "Bearer t"}, timeout=5) as client:
            got = [await client.post("/api/jobs/x", b'{"n": %d}' % n) for n in range(4)]
            with pytest.raises(HttpError, match="not an HTTP/1.1 answer"):
                await client.post("/api/jobs/x", b"{}")
            return got, len(client.local_ports)

    got, connections = asyncio.run(main())
    assert got == [(201, b'{"id": "a"}'), (201, b'{"id": "b"}'), (503, b"no"), (201, b"ok")]
    assert seen[:4] == [b'POST /api/jobs/x HTTP/1.1 {"n": %d}' % n for n in range(4)]
    assert connections == 2  # one, then one more after the server's `Connection: close`
