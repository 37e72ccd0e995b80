"""Writes Redis runs twice: redis-py sends a command (a script, a pipeline, a transaction)
again when its connection drops before the answer comes back (Redis restarting, a timeout),
and the first one may have run. A TCP proxy between vq and the test's Redis passes chosen
requests on, then drops the connection instead of passing the reply back: redis-py sends the
same request again, and Redis runs it a second time. What a user sees must be as if it ran
once: one job per submission, one `started` and one `finished` per job, each log line once,
slots back to zero, a batch's counts exact and its callback made once (docs/architecture.md,
"Replayed writes")."""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlparse

import pytest

from vq import keys, lua

PROBE = "replay-probe"


class DroppingProxy:
    """Forwards every connection to Redis; a request whose bytes contain all of a rule's
    needles is passed on, and then the client's connection is closed instead of the reply
    being passed back (the reply is read and thrown away, so Redis runs the request whole)."""

    def __init__(self, upstream: str):
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"
        self.rules: list[list] = []  # [name, needles, times left]
        self.fired: list[str] = []
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_reply(self, name: str, *needles: bytes, times: int = 1) -> None:
        with self.lock:
            self.rules.append([name, needles, times])

    def cut_request(self, name: str, *needles: bytes, times: int = 1) -> None:
        """A request with all the needles never reaches Redis: the client's connection is
        closed instead (as when Redis restarts under it), so the write does not happen."""
        with self.lock:
            self.rules.append([name, needles, times, "cut"])

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            state = {"request": bytearray(), "drop": None}
            threading.Thread(target=self._requests, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, state), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        try:
            while data := client.recv(65536):
                with self.lock:
                    state["request"] += data
                    cut = False
                    for rule in self.rules:
                        name, needles, left = rule[:3]
                        if left > 0 and all(n in state["request"] for n in needles):
                            rule[2] -= 1
                            if len(rule) > 3:
                                cut = True
                                self.fired.append(name)
                            else:
                                state["drop"] = name
                            break
                if cut:  # whatever of the request went ahead has no EXEC: Redis discards it
                    client.shutdown(socket.SHUT_RDWR)
                    client.close()
                    server.close()
                    return
                server.sendall(data)
        except OSError:
            pass

    def _replies(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := server.recv(65536):
                with self.lock:
                    drop = state["drop"]
                    state["request"].clear()
                if drop is None:
                    client.sendall(data)
                    continue
                with self.lock:
                    self.fired.append(drop)
                client.shutdown(socket.SHUT_RDWR)
                client.close()
                server.settimeout(0.5)  # the rest of the replies, thrown away: Redis finishes the request
                while server.recv(65536):
                    pass
                break
        except OSError:
            pass
        finally:
            server.close()


@pytest.fixture
def proxy(redis_server):
    p = DroppingProxy(redis_server.url)
    yield p
    p.close()


def _sha(redis_conn, name: str) -> bytes:
    """The script's SHA, loaded: the reply dropped is then the script's, not NOSCRIPT's."""
    return redis_conn.script_load(lua.source(name)).encode()


def _events(redis_conn, job_id: str) -> list[str]:
    return [f[b"event"].decode() for _id, f in redis_conn.xrange(keys.EVENTS) if f.get(b"jobId") == job_id.encode()]


def _submitted_ids(redis_conn, job_type: str) -> list[str]:
    return [i.decode() for i in redis_conn.zrange(keys.type_jobs(job_type), 0, -1)]


def test_submissions_sent_twice_make_one_job_each(vq, redis_conn, proxy, tmp_path):
    """`vq submit` (a transaction) and `vq submit --batch` (a script) with their replies lost:
    one job each, one `created` event, one entry on the queue's list."""
    vq.configure(redis={"url": proxy.url})
    _sha(redis_conn, "create.lua")
    announced = keys.INBOX.encode()  # the transaction that makes the job marks its queue for admission
    proxy.drop_reply("submit", b"EXEC", announced)
    one = vq.submit("test-noop", {"note": "single", "userId": "alice"})
    assert proxy.fired == ["submit"]  # sent twice
    proxy.drop_reply("batch submit", b"EXEC", announced)
    lines = tmp_path / "jobs.jsonl"
    lines.write_text(json.dumps({"jobType": "test-noop", "data": {"note": "batched", "userId": "alice"}}) + "\n")
    proc = vq.run("submit", "--batch", str(lines))
    assert proc.returncode == 0, proc.stderr
    assert proxy.fired == ["submit", "batch submit"]
    ids = _submitted_ids(redis_conn, "test-noop")
    assert len(ids) == 2 and one in ids
    queue = keys.rq_queue(redis_conn.hget(keys.rq_job(one), "origin").decode())
    assert sorted(i.decode() for i in redis_conn.lrange(queue, 0, -1)) == sorted(ids)
    for job_id in ids:
        assert _events(redis_conn, job_id).count("created") == 1, job_id


def test_a_job_s_writes_sent_twice_take_effect_once(vq, redis_conn, proxy, tmp_path):
    """A batch of three jobs, created and closed, then run by a daemon, with the reply of
    each of these lost once: the batch's close, the first job's log, progress, checkpoint and
    its end (the call that also admits and starts the next job). Every job runs once (one
    `started`, one `finished`, in the history too), each log line is kept once, no slot is
    left taken or given back twice, the batch counts three done and makes its callback job once."""
    vq.configure(
        redis={"url": proxy.url},
        job_types={PROBE: {"handler": "tests.plugins:replay_probe", "attempts": 1}},
    )
    lines = tmp_path / "jobs.jsonl"
    lines.write_text("".join(json.dumps({"jobType": PROBE, "data": {"n": n}}) + "\n" for n in range(3)))
    complete = json.dumps({"jobType": "test-noop", "data": {"note": "complete"}})
    made = vq.json("batch", "create", str(lines), "--user", "alice", "--on-complete", complete, "--open")
    batch_id = made["id"]
    proxy.drop_reply("batch close", _sha(redis_conn, "batch_sync.lua"), b"close")
    closed = vq.run("batch", "close", batch_id)
    assert closed.returncode == 0, closed.stderr  # not "already closed": it was this same close
    assert proxy.fired == ["batch close"]
    first = min(made["jobs"], key=lambda j: redis_conn.hget(keys.rq_job(j["id"]), "created_at"))["id"]
    job = first.encode()
    proxy.drop_reply("log", _sha(redis_conn, "job_log.lua"), job)
    proxy.drop_reply("progress", _sha(redis_conn, "fenced.lua"), job)
    proxy.drop_reply("checkpoint", _sha(redis_conn, "checkpoint.lua"), job)
    proxy.drop_reply("end", _sha(redis_conn, "admit.lua"), job, b'"finished"')
    vq.start_daemon(workers=1)
    deadline = time.monotonic() + 15
    while not redis_conn.exists(keys.rq_job(f"{batch_id}-complete")):
        assert time.monotonic() < deadline, f"no callback job: {vq.json('batch', 'show', batch_id)}\n{vq.log_tails()}"
        vq.check_daemons()
        time.sleep(0.1)
    callback = vq.wait_done(f"{batch_id}-complete", timeout=15)
    assert callback["status"] == "finished"
    assert sorted(proxy.fired) == ["batch close", "checkpoint", "end", "log", "progress"]

    ids = [j["id"] for j in made["jobs"]]
    for job_id in ids:
        view = vq.json("show", job_id)
        assert view["status"] == "finished" and view["attempts"] == 1, view
        seen = [e for e in _events(redis_conn, job_id) if e != "audit"]
        assert seen == ["created", "started", "progress", "finished"], (job_id, seen)
    assert sorted(_submitted_ids(redis_conn, PROBE)) == sorted(ids)
    logged = [json.loads(line).get("message") for line in vq.run("logs", first, "--json").stdout.splitlines()]
    assert logged.count("probe line one") == 1 and logged.count("probe line two") == 1, logged
    for key in (keys.running_type(PROBE), keys.running_user("alice")):
        assert redis_conn.zcard(key) == 0, key
    batch = vq.json("batch", "show", batch_id)
    assert batch["counts"] == {"total": 3, "done": 3, "failed": 0, "canceled": 0, "pending": 0}
    assert _submitted_ids(redis_conn, "test-noop") == [f"{batch_id}-complete"]
    deadline = time.monotonic() + 10
    while True:  # the history database, once the archiver has it
        timeline = [t["event"] for t in vq.json("history", first)["transitions"]]
        if "finished" in timeline or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert timeline.count("started") == 1 and timeline.count("finished") == 1, timeline


def test_an_event_sent_twice_is_appended_once(vq, redis_conn, proxy):
    """`vq cancel` of a waiting job: its `canceled` event, appended after the cancel's own
    writes, has its reply lost; it is in the stream and in the history once."""
    vq.configure(redis={"url": proxy.url})
    job_id = vq.submit("test-noop", {"userId": "alice"})
    proxy.drop_reply("canceled", job_id.encode(), b"canceled", b'"reason"')  # the event, not the job's writes
    proc = vq.run("cancel", job_id)
    assert proc.returncode == 0, proc.stderr
    assert proxy.fired == ["canceled"]
    assert _events(redis_conn, job_id).count("canceled") == 1
    vq.start_daemon(workers=1)  # its archiver writes the history
    deadline = time.monotonic() + 10
    while True:
        timeline = [t["event"] for t in vq.json("history", job_id)["transitions"]]
        if "canceled" in timeline or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert timeline.count("canceled") == 1, timeline


def test_a_recurring_job_s_end_sent_twice_is_counted_once(redis_conn, proxy):
    """The worker's count of a spawned job's end (in its end pipeline), its reply lost: the
    definition's `succeeded` count (`vq recurring show`) goes up by one."""
    from rq.job import Job, JobStatus
    from rq.serializers import JSONSerializer

    from vq.config import Settings
    from vq.config.queue import RedisSettings
    from vq.connection import make_client
    from vq.recurring.runs import record_outcome_in
    from vq.rq_seam import private

    settings = Settings(redis=RedisSettings(url=proxy.url))
    conn = make_client(settings)  # vq's client: its retries are the ones that send the command again
    job = Job(id="spawned-1", connection=conn, serializer=JSONSerializer)
    job.meta = {"recurringId": "nightly"}
    private.set_status_locally(job, JobStatus.FINISHED)
    proxy.drop_reply("outcome", b"spawned-1", b"succeeded")
    with conn.pipeline(transaction=False) as pipe:
        record_outcome_in(pipe, job)
        pipe.execute()
    assert proxy.fired == ["outcome"]
    assert redis_conn.hget(keys.recurring_stats("nightly"), "succeeded") == b"1"
    assert redis_conn.hget(keys.recurring_outcomes("nightly"), "spawned-1") == b"finished"


def test_a_provider_slot_taken_twice_is_granted_once(redis_conn, proxy):
    """A call for a provider's only in-flight slot, its reply lost: the caller gets the slot
    (it is its own), not "busy" while the slot sits taken until its lease lapses."""
    from vq.config import ProviderSettings, Settings
    from vq.config.jobs import ProviderRateLimit
    from vq.config.queue import RedisSettings
    from vq.connection import make_client
    from vq.providers.gate import Grant, ProviderGate

    gate = ProviderGate(make_client(Settings(redis=RedisSettings(url=proxy.url))))
    provider = ProviderSettings(url="http://127.0.0.1:1/v1", rateLimit=ProviderRateLimit(concurrent=1))
    redis_conn.script_load(gate._take.script)  # the reply dropped is the script's, not NOSCRIPT's
    proxy.drop_reply("take", keys.provider_inflight("solo").encode())
    grant = gate.acquire("solo", provider)
    assert proxy.fired == ["take"]
    assert isinstance(grant, Grant), grant
    gate.release(grant)
    assert redis_conn.zcard(keys.provider_inflight("solo")) == 0


def test_a_breaker_probe_asked_twice_is_still_the_probe(redis_conn, proxy):
    """A provider's breaker whose cool-down is over lets one call probe; that call's ask,
    its reply lost, is answered "go ahead", not "wait for the probe" (its own)."""
    from vq.config import Settings
    from vq.config.queue import RedisSettings
    from vq.connection import make_client
    from vq.providers.breaker import Breakers

    redis_conn.hset(keys.breaker("flaky"), mapping={"state": "open", "nextProbe": 1, "probing": 0})
    breakers = Breakers(make_client(Settings(redis=RedisSettings(url=proxy.url))), Settings())
    redis_conn.script_load(lua.source("breaker.lua"))  # the reply dropped is the script's, not NOSCRIPT's
    proxy.drop_reply("acquire", keys.breaker("flaky").encode(), b"acquire")
    assert breakers.acquire("flaky") is None  # the probe: go ahead
    assert proxy.fired == ["acquire"]
    assert redis_conn.hget(keys.breaker("flaky"), "state") == b"half_open"


def test_a_failure_redis_never_got_is_run_again_not_left_started(vq, redis_conn, proxy):
    """A job whose failure RQ could not write (the transaction cut off, as when Redis
    restarts under it: RQ logs it and carries on) keeps its slots, so its lease lapses and
    stalled-job recovery runs it again; its failure is then written. Giving the slots back
    left it `started` for ever, with nothing that looks at it again (seen in CI: a Redis
    restart while a job ended)."""
    vq.configure(
        redis={"url": proxy.url},
        queue={"settings": {"stalledInterval": 1000, "lockDuration": 2000}},
        job_types={"test-fails": {"handler": "tests.plugins:broken", "attempts": 1}},
    )
    vq.start_daemon(workers=1)
    job_id = vq.submit("test-fails", {}, "--user", "ann", "--delay", "2s")
    proxy.cut_request("failure", b"MULTI", b"EXEC", job_id.encode(), b"failed")
    view = vq.wait_for(job_id, timeout=30)
    assert proxy.fired == ["failure"]
    assert view["status"] == "failed", view
    timeline = [e for e in _events(redis_conn, job_id) if e not in ("audit", "progress")]
    assert timeline.count("started") == 2 and "stalled" in timeline and timeline[-1] == "failed", timeline
    for key in (keys.running_type("test-fails"), keys.running_user("ann")):
        assert redis_conn.zcard(key) == 0, key
