"""RQ's internals that vq depends on (vq/rq_seam), held to the RQ installed: an RQ release
that renames, re-signs or drops any of them fails here, not in a running worker.
scripts/rq_contract_newest.sh runs this file against RQ's newest release."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from datetime import UTC
from pathlib import Path

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker, WorkerStatus

from vq.rq_seam import contract, private
from vq.rq_seam.job import ReadableJob
from vq.rq_seam.log_filters import REDIS_DOWN_LINE, UNHANDLED_LINE
from vq.rq_seam.queue import VqQueue
from vq.rq_seam.worker import ThreadWorker, VqWorker

LUA = Path(__file__).resolve().parent.parent / "vq" / "lua"


def _names(func) -> tuple[str, ...]:
    return tuple(inspect.signature(func).parameters)


def _rq_attribute(cls, name):
    found = inspect.getattr_static(cls, name, None)
    assert found is not None, f"RQ's {cls.__name__} has no {name} any more (vq relies on it: vq/rq_seam)"
    return getattr(cls, name)


@pytest.mark.parametrize("name", sorted(contract.WORKER_OVERRIDES))
def test_each_worker_method_vq_overrides_has_the_signature_vq_expects(name):
    expected = contract.WORKER_OVERRIDES[name]
    assert _names(_rq_attribute(Worker, name)) == expected, f"rq.Worker.{name} changed its parameters"
    ours = ThreadWorker if name in vars(ThreadWorker) else VqWorker
    assert _names(vars(ours)[name]) == expected, f"vq's {name} override and vq/rq_seam/contract.py disagree"


@pytest.mark.parametrize(
    ("cls", "overrides", "rq_class"),
    [
        (VqQueue, contract.QUEUE_OVERRIDES, Queue),
        (ReadableJob, contract.JOB_OVERRIDES, Job),
    ],
    ids=["Queue", "Job"],
)
def test_each_queue_and_job_method_vq_overrides_has_the_signature_vq_expects(cls, overrides, rq_class):
    for name, expected in overrides.items():
        assert _names(_rq_attribute(rq_class, name)) == expected, f"rq {rq_class.__name__}.{name} changed"
        ours = inspect.signature(getattr(cls, name)).parameters
        if name == "dequeue_any":  # (queues, timeout, connection, **kwargs): the kwargs reach _restore_admitted
            assert tuple(ours)[:3] == expected[:3] and set(expected[3:]) <= set(_names(cls._restore_admitted))
            continue
        assert tuple(ours) == expected, f"vq's {cls.__name__}.{name} and the contract disagree"


def test_the_worker_loop_still_takes_what_vq_passes_and_reads():
    for name, params in contract.WORKER_PASSED_THROUGH.items():
        assert set(params) <= set(_names(_rq_attribute(Worker, name))), f"rq.Worker.{name}"
    for name in contract.WORKER_PROPERTIES:
        assert isinstance(inspect.getattr_static(Worker, name, None), property), f"rq.Worker.{name} is a property"
    for name in contract.WORKER_CLASS_ATTRIBUTES:
        _rq_attribute(Worker, name)


def test_vq_overrides_no_method_of_rqs_that_the_contract_does_not_list():
    """A vq helper method whose name RQ starts using would silently replace RQ's."""
    known = (
        set(contract.WORKER_OVERRIDES)
        | set(contract.WORKER_PASSED_THROUGH)
        | set(contract.WORKER_PROPERTIES)
        | set(contract.WORKER_CLASS_ATTRIBUTES)
        | {"get_heartbeat_ttl", "__init__"}
    )
    for cls in VqWorker.__mro__[: VqWorker.__mro__.index(Worker)] + (ThreadWorker,):
        clashes = {n for n in vars(cls) if not n.startswith("__") and hasattr(Worker, n)} - known
        assert not clashes, f"{cls.__name__} overrides RQ's {sorted(clashes)} without the contract saying so"
    for cls, rq_class, listed in (
        (VqQueue, Queue, contract.QUEUE_OVERRIDES),
        (ReadableJob, Job, contract.JOB_OVERRIDES),
    ):
        clashes = {n for n in vars(cls) if not n.startswith("__") and hasattr(rq_class, n)} - set(listed)
        assert not clashes, f"{cls.__name__} overrides RQ's {sorted(clashes)} without the contract saying so"


@pytest.mark.parametrize("where", sorted(contract.CALLED), ids=lambda w: ".".join(p for p in w if p))
def test_each_rq_internal_vq_calls_still_takes_its_arguments(where):
    module, cls, name = where
    owner = importlib.import_module(module)
    if cls is not None:
        owner = _rq_attribute(owner, cls)
    params = inspect.signature(_rq_attribute(owner, name)).parameters
    expected = contract.CALLED[where]
    assert tuple(params)[: len(expected)] == expected, f"{module}.{cls}.{name} changed its parameters"
    extra = [
        p
        for p in list(params.values())[len(expected) :]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    assert not extra, f"{module}.{cls}.{name} has new required parameters: {extra}"


def test_the_private_attributes_vq_uses_are_on_real_rq_objects(redis_conn):
    worker = VqWorker(["contract.normal"], connection=redis_conn, serializer=JSONSerializer, name="vq.contract")
    for name in contract.WORKER_INSTANCE_ATTRIBUTES:
        assert hasattr(worker, name), f"rq.Worker objects have no {name} any more"
    assert private.stop_requested(worker) is False
    private.request_stop(worker)
    assert private.stop_requested(worker) is True
    assert private.stopped_job_id(worker) is None and private.exception_handlers(worker) == []
    assert [q.name for q in private.ordered_queues(worker)] == ["contract.normal"]
    private.set_state_locally(worker, WorkerStatus.BUSY)
    assert worker.get_state() == WorkerStatus.BUSY, "RQ reads the state vq set"

    queue = Queue("contract.normal", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("vq.execution.run_job", "x", {}, meta={"userId": "u"}, depends_on=None)
    for name in contract.JOB_PRIVATE_ATTRIBUTES:
        assert hasattr(job, name), f"rq.job.Job objects have no {name} any more"
    assert private.dependency_ids(job) == []
    assert json.loads(private.serialize_meta(job)) == {"userId": "u"}, "the meta RQ stores is vq's JSON"


def test_rqs_private_enqueue_and_finish_do_what_vq_relies_on(redis_conn):
    queue = Queue("contract.normal", connection=redis_conn, serializer=JSONSerializer)
    first = queue.enqueue("vq.execution.run_job", "x", {})
    late = Job.create(
        "vq.execution.run_job", args=("x", {}), connection=redis_conn, serializer=JSONSerializer, origin=queue.name
    )
    late.save()
    private.enqueue_job(queue, late, at_front=True)  # how vq puts a job back in line
    assert queue.get_job_ids() == [late.id, first.id]
    assert Job.fetch(late.id, connection=redis_conn, serializer=JSONSerializer).get_status() == JobStatus.QUEUED

    private.set_result(first, {"done": 1})
    with redis_conn.pipeline() as pipe:
        private.end_as_finished(first, 500, pipeline=pipe)  # a cached submission is born finished
        pipe.execute()
    again = Job.fetch(first.id, connection=redis_conn, serializer=JSONSerializer)
    assert again.get_status() == JobStatus.FINISHED and again.return_value() == {"done": 1}
    assert first.id in FinishedJobRegistry(queue.name, connection=redis_conn).get_job_ids()
    private.set_status_locally(again, JobStatus.STARTED)
    assert again.get_status(refresh=False) == JobStatus.STARTED


def _lua_job_fields() -> dict[str, set[str]]:
    """The field names vq's Lua scripts write into, or read from, RQ job hashes, by script."""
    job_key = r"(?:jk|key|f\.key|K\.job\s*\.\.\s*\w+)"
    found = {}
    for script in LUA.glob("*.lua"):
        for call in re.findall(r"redis\.call\('(?:HSET|HGET|HMGET)',\s*" + job_key + r",([^)]*)\)", script.read_text()):
            words = re.findall(r"'([a-z_]+)'", call)
            # HSET key f1 v1 f2 v2 ...: literal values ('started') follow their field
            fields = {w for w in words if w not in {s.value for s in JobStatus}}
            found.setdefault(script.name, set()).update(fields)
    return found


def test_the_job_hash_fields_vqs_lua_writes_and_reads_are_rqs_own(redis_conn):
    job = Job.create(
        "vq.execution.run_job",
        args=("x", {}),
        connection=redis_conn,
        serializer=JSONSerializer,
        origin="contract.normal",
        meta={"a": 1},
        description="d",
        retry=None,
    )
    from datetime import datetime

    job.enqueued_at = job.started_at = job.ended_at = job.last_heartbeat = datetime.now(UTC)
    job.worker_name, job.retry_intervals = "w", [1]  # every field RQ may write
    job.enqueue_at_front = job.enqueue_at_front_on_retry = True
    private.set_result(job, 1)
    rqs = set(job.to_dict())
    written = _lua_job_fields()
    assert written.get("admit_start.lua") and written.get("admit_route.lua"), (
        "no job fields found in admission's start or routing: update _lua_job_fields"
    )
    for script, fields in written.items():
        vqs_own = {f for f in fields if f.startswith("vq_")}
        assert fields - vqs_own <= rqs, f"{script} uses {sorted(fields - vqs_own - rqs)}, not fields of RQ's job hash"
    assert {"started", "queued", "finished"} <= {s.value for s in JobStatus}


def test_the_redis_keys_vq_spells_out_are_rqs(redis_conn):
    from rq.worker_registration import REDIS_WORKER_KEYS

    prefixes = contract.KEY_PREFIXES
    assert Job.key_for("j") == prefixes["job"] + "j"
    assert Queue("q", connection=redis_conn).key == prefixes["queue"] + "q"
    assert Worker.redis_worker_namespace_prefix == prefixes["worker"] and REDIS_WORKER_KEYS == prefixes["workers"]
    assert ScheduledJobRegistry("q", connection=redis_conn).key == prefixes["scheduled"] + "q"
    assert FailedJobRegistry("q", connection=redis_conn).key == prefixes["failed"] + "q"
    assert FinishedJobRegistry("q", connection=redis_conn).key == prefixes["finished"] + "q"


def test_rqs_log_colours_can_still_be_turned_off():
    from rq import logutils

    assert hasattr(logutils.colorizer, "notty")
    private.no_log_colours()
    assert logutils.blue("x") == "x" and logutils.blue(None) is None


def test_rqs_log_lines_vq_recognises_are_still_said():
    source = "".join(inspect.getsource(sys.modules[c.__module__]) for c in Worker.__mro__ if c is not object)
    assert REDIS_DOWN_LINE in source, "RQ's reconnect line changed (vq/rq_seam/log_filters.py SayOnce)"
    assert UNHANDLED_LINE in source, "RQ's line for a quitting work loop changed (log_filters.LastError)"


def test_a_job_vq_starts_and_ends_reads_back_in_rq_as_rq_would_have_written_it(vq, redis_conn, monkeypatch):
    """Through vq's own paths (admission's start and end: vq/lua/admit_start.lua and
    admit_end.lua, the one-trip end, the batched counts): RQ's Job and Worker read back
    what vq wrote."""
    from vq import execution, limits
    from vq.config import load_settings
    from vq.model import result_of
    from vq.submission import Submission, submit

    settings = load_settings(vq.config_path, env={})
    monkeypatch.setenv("VQ_CONFIG", str(vq.config_path))
    monkeypatch.setattr(execution, "_runtime", None)
    limits.publish_config_limits(redis_conn, settings)
    job_id = submit(redis_conn, settings, Submission("test-echo", data={"n": 7}, user_id="ann"))
    queued = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert queued.get_status() == JobStatus.QUEUED and queued.func_name == "vq.execution.run_job"
    assert queued.args == ["test-echo", {"n": 7}] and queued.meta["userId"] == "ann"

    worker = VqWorker(
        [f"test-echo.{p}" for p in ("high", "normal", "low")],
        connection=redis_conn,
        serializer=JSONSerializer,
        name="vq.contract.e2e",
    )
    worker.register_birth()
    try:
        job, queue = worker.dequeue_job_and_maintain_ttl(timeout=5)
        started = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
        assert started.get_status() == JobStatus.STARTED and started.worker_name == worker.name
        assert started.started_at is not None and started.last_heartbeat is not None
        assert Worker.find_by_key(worker.key, connection=redis_conn).get_state() == WorkerStatus.BUSY

        worker.execute_job(job, queue)

        done = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
        assert done.get_status() == JobStatus.FINISHED
        assert done.ended_at is not None and done.ended_at >= done.started_at
        # in the hash's `result` field, which RQ's Job.restore still reads (RQ's return_value()
        # reads only its result stream: vq.model.result_of reads both)
        assert private.result(done) == {"echo": {"n": 7}, "upstream": []} == result_of(done)
        assert job_id in FinishedJobRegistry(queue.name, connection=redis_conn).get_job_ids()
        assert 0 < redis_conn.ttl(done.key) <= done.get_result_ttl(worker.default_result_ttl)

        worker.set_state(WorkerStatus.IDLE)  # the counts held back while busy are written
        seen = Worker.find_by_key(worker.key, connection=redis_conn)
        assert seen.successful_job_count == 1 and seen.total_working_time > 0
        assert set(contract.WORKER_HASH_FIELDS) <= {k.decode() for k in redis_conn.hkeys(worker.key)}
    finally:
        worker.register_death()


def test_outside_the_seam_vq_touches_no_private_name_of_rqs(redis_conn):
    """Every private attribute or method of RQ's Job, Queue and Worker (on real objects) is
    reached only from vq/rq_seam: elsewhere, through vq.rq_seam.private."""
    queue = Queue("contract.normal", connection=redis_conn, serializer=JSONSerializer)
    objects = [
        queue.enqueue("vq.execution.run_job", "x", {}),
        queue,
        Worker([queue], connection=redis_conn, serializer=JSONSerializer, name="vq.contract.names"),
    ]
    names = set()
    for obj in objects:
        names |= {n for n in list(dir(type(obj))) + list(vars(obj)) if n.startswith("_") and not n.startswith("__")}
    assert {"_result", "_stop_requested", "_enqueue_job"} <= names
    reach = re.compile(r"(?<!self)\.(" + "|".join(sorted(map(re.escape, names))) + r")\b")
    root = LUA.parent
    # in VqWorker's mixins (outside the seam), `self` is an RQ worker too
    mixins = {sys.modules[c.__module__].__file__ for c in VqWorker.__mro__ if c.__module__.startswith("vq.")}
    on_self = re.compile(r"\bself\.(" + "|".join(sorted(map(re.escape, names))) + r")\b")
    assert reach.search("job._serialize_meta()") and not reach.search("self._state") and on_self.search("self._state")
    found = [
        f"{path.relative_to(root.parent)}:{number}: {line.strip()}"
        for path in root.rglob("*.py")
        if "rq_seam" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for code in [re.sub(r"`[^`]*`", "", line.split("#")[0])]  # not in comments or `quoted`
        if reach.search(code) or (str(path) in mixins and on_self.search(code))
    ]
    assert not found, "RQ's private names used outside vq/rq_seam:\n" + "\n".join(found)


def test_rqs_job_restore_reads_its_dates_through_the_name_vq_replaces_and_gets_the_same_answer(redis_conn):
    """vq.rq_seam.job.lean_jobs swaps `rq.job.str_to_date`: RQ must still read a job's dates
    through that module-level name, and every date of a restored job must equal RQ's
    own parse of the text it wrote (strptime), older and malformed shapes included."""
    import rq.job
    from rq.utils import str_to_date, utcparse

    from vq.rq_seam.job import parse_rq_date

    assert "str_to_date(" in inspect.getsource(Job.restore), "RQ's Job.restore no longer calls str_to_date"
    assert rq.job.str_to_date is parse_rq_date, "importing the seam installs vq's reader"
    queue = Queue("contract.normal", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("vq.execution.run_job", "x", {}, meta={"userId": "u"})
    redis_conn.hset(job.key, mapping={"started_at": "2026-12-07T03:00:29Z", "last_heartbeat": "2026-12-07T03:00:29.5Z"})
    raw = redis_conn.hgetall(job.key)
    restored = Job(job.id, connection=redis_conn, serializer=JSONSerializer)
    restored.restore(raw)
    for field, value in (("created_at", restored.created_at), ("enqueued_at", restored.enqueued_at)):
        assert value == utcparse(raw[field.encode()].decode()) and value.tzinfo == UTC
    assert restored.started_at == utcparse("2026-12-07T03:00:29Z")
    assert restored.last_heartbeat == utcparse("2026-12-07T03:00:29.5Z")
    for bad in ("2026-12-07 03:00:29.747853Z", "2026-12-07T03:00:29.74785xZ", "2026-12-07T03:00:29.747853+", ""):
        with pytest.raises(ValueError):
            str_to_date(bad)  # RQ's own
        with pytest.raises(ValueError):
            parse_rq_date(bad)


def test_rqs_objects_check_their_serializer_through_the_name_vq_replaces_and_keep_rqs_answers():
    """vq.rq_seam.job.lean_jobs swaps `resolve_serializer` in the RQ modules that build
    objects with one: each must still call it by that name, and the answers stay RQ's
    (a serializer without dumps/loads is refused, every time; a name is looked up)."""
    from rq import serializers

    from vq.rq_seam.job import SERIALIZER_USERS, resolve_serializer_once

    for name in SERIALIZER_USERS:
        module = importlib.import_module(name)
        assert module.resolve_serializer is resolve_serializer_once, f"{name} still checks each time"
        assert "resolve_serializer(" in inspect.getsource(module), f"{name} no longer calls resolve_serializer"
    assert resolve_serializer_once(JSONSerializer) is JSONSerializer
    assert resolve_serializer_once(JSONSerializer) is JSONSerializer
    assert resolve_serializer_once(None) is serializers.PickleSerializer
    assert resolve_serializer_once("rq.serializers.JSONSerializer") is JSONSerializer

    class NoLoads:
        dumps = staticmethod(json.dumps)

    for _ in range(2):
        with pytest.raises(NotImplementedError):
            resolve_serializer_once(NoLoads)


def test_vqs_date_writer_writes_rqs_text():
    """vq.rq_seam.job.format_rq_date writes what RQ's utcformat would (the job hash's dates
    and admission's start time), which RQ and vq's Lua read back."""
    from datetime import datetime

    from rq.utils import utcformat

    from vq.rq_seam.job import format_rq_date, parse_rq_date

    for dt in (
        datetime(2026, 12, 7, 3, 0, 29, 747853, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(999, 1, 1, tzinfo=UTC),
    ):
        assert format_rq_date(dt) == utcformat(dt)
        if dt.year >= 1000:
            assert parse_rq_date(format_rq_date(dt)) == dt
