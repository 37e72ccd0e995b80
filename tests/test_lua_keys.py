"""Every Redis name vq's Lua scripts use comes from vq/keys.py: no script writes a key
name or prefix of its own, and every key a script touches while it works is one that a
name or builder of vq/keys.py makes (so renaming a key in keys.py renames it everywhere)."""

from __future__ import annotations

import inspect
import json
import re
from importlib import resources

import redis
from rq.job import Job
from rq.queue import Queue
from rq.registry import CanceledJobRegistry, FinishedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from vq import keys, lua
from vq.admission import Admission, Start
from vq.job_end import JobEnd
from vq.limits import rebuild_effective
from vq.timer import DueMover

TYPE = "t-keys"


def _lua_files() -> dict[str, str]:
    folder = resources.files("vq.lua")
    return {entry.name: entry.read_text() for entry in folder.iterdir() if entry.name.endswith(".lua")}


def test_no_script_writes_a_key_name_or_prefix_of_its_own():
    literal = re.compile(r"""(['"])((?:vq|rq):[^'"]*)\1""")
    found = {name: [m.group(2) for m in literal.finditer(text)] for name, text in _lua_files().items()}
    assert {name: names for name, names in found.items() if names} == {}


def test_every_script_file_is_part_of_a_declared_script():
    used = {part for protocol in lua.PROTOCOLS.values() for part in protocol.parts}
    assert used == set(_lua_files()), "a .lua file that no script is assembled from, or a part that is missing"


def test_the_names_the_scripts_are_given_come_from_keys_py():
    constants = {value for value in vars(keys).values() if isinstance(value, str)}
    for name, protocol in lua.PROTOCOLS.items():
        for field, key in protocol.names:
            assert key in constants, f"{name}: K.{field} = {key!r} is not a name vq/keys.py defines"


def test_rq_names_in_keys_py_are_rqs_own():
    assert keys.rq_job("x") == Job.key_for("x")
    assert keys.rq_dependents("x") == Job.dependents_key_for("x")
    assert keys.rq_dependencies("x") == Job(id="x", connection=redis.Redis()).dependencies_key
    assert keys.rq_queue("q") == Queue.redis_queue_namespace_prefix + "q"
    assert keys.rq_worker("w") == Worker.redis_worker_namespace_prefix + "w"
    assert keys.rq_scheduled("q") == ScheduledJobRegistry.key_template.format("q")
    assert keys.rq_finished("q") == FinishedJobRegistry.key_template.format("q")
    assert keys.rq_canceled("q") == CanceledJobRegistry.key_template.format("q")


def _patterns() -> list[re.Pattern]:
    """A pattern per name and per key builder of vq/keys.py (a builder called with marks
    where its arguments go)."""
    out = []
    for value in vars(keys).values():
        if isinstance(value, str) and value.startswith(("vq:", "rq:")):
            out.append(re.compile(re.escape(value)))
        elif inspect.isfunction(value) and value.__module__ == keys.__name__:
            params = inspect.signature(value).parameters
            built = value(*[f"\x00{i}\x00" for i in range(len(params))])
            if isinstance(built, str) and built.startswith(("vq:", "rq:")):
                out.append(re.compile(re.sub(r"\\\x00\d+\\\x00|\x00\d+\x00", ".+", re.escape(built))))
    return out


def _touched_by_scripts(conn, monitor) -> set[str]:
    """The keys of every command a script ran since the monitor started."""
    conn.echo("end-of-run")
    commands = []
    while True:
        seen = monitor.next_command()
        if seen["client_type"] != "lua":
            if seen["command"] == "ECHO end-of-run":
                break
            continue
        commands.append(seen["command"].split(" "))
    touched = set()
    for args in commands:
        try:
            found = conn.command_getkeys(*args)
        except redis.ResponseError:  # a command without keys (TIME)
            continue
        touched |= {key if isinstance(key, str) else key.decode() for key in found}
    return touched


def test_every_key_a_script_touches_is_one_keys_py_builds(redis_conn):
    conn = redis_conn
    with conn.monitor() as monitor:
        conn.hset(keys.limits("type"), TYPE, 5)
        conn.hset(keys.limits("tier"), "free", 5)
        conn.hset(keys.limit_overrides("user"), "u2", 3)
        conn.sadd(keys.PAUSED, "other")
        rebuild_effective(conn)  # limits.lua
        queue = keys.queue_name(TYPE, "low")
        for i, user in enumerate(["u1", "u2", "u1"]):
            meta = {"userId": user, "subscription": "free", "jobType": TYPE}
            conn.hset(
                keys.rq_job(f"j{i}"),
                mapping={
                    "status": "queued",
                    "meta": json.dumps(meta),
                    "timeout": "60",
                    "enqueued_at": "2026-12-06T03:00:00Z",
                },
            )
        conn.zadd(keys.rq_scheduled(queue), {"j0": 0, "j1": 0, "j2": 0})
        DueMover(conn, [queue]).move(full=True)  # due.lua (a full look: these wrote no vq:scheduled:due entry)
        admission = Admission(conn, lease_ms=30_000)
        conn.delete(keys.LIMITS_EFFECTIVE)  # admission's fallback to the source hashes, too
        first = admission.admit([TYPE], start=Start("w1", "x", 420, busy=False))  # route, choose, start
        admission.renew(first.job_id, TYPE, first.user, first.token)  # renew.lua
        assert admission.promote_aged([TYPE], threshold_ms=0) == 4  # promote.lua: two jobs, low to high
        end = JobEnd(
            id=first.job_id,
            key=keys.rq_job(first.job_id),
            fields=["status", "finished"],
            ttl=60,
            registry=keys.rq_finished(queue),
            event=["event", "finished"],
            dependents=keys.rq_dependents(first.job_id),
            expire=[keys.rq_dependencies(first.job_id)],
            webhook="http://example.invalid/hook",
            token=first.token,
        )
        with conn.pipeline(transaction=False) as pipe:
            admission.admit_in(
                pipe,
                [TYPE],
                start=Start("w1", "y", 420, busy=True),
                give_back=(first.job_id, TYPE, first.user),
                finish=end,
            )  # end, give back
            second = admission.parse_admitted(pipe.execute(raise_on_error=False)[0])[1]
        assert second is not None
        assert admission.admit([TYPE]) is not None  # admitted, not started (no worker)
        assert admission.admit([TYPE]) is None  # nothing left: the look at every ring
        from vq.fence import write_meta

        job = Job(id=second.job_id, connection=conn, serializer=JSONSerializer)
        job.meta = {"userId": second.user, "jobType": TYPE}
        job._vq_lease = second.token
        write_meta(conn, job, ["event", "progress"])  # fenced.lua
        job._vq_lease = "stale"
        write_meta(conn, job)
        from vq import checkpoints
        from vq.config import Settings

        job._vq_lease = second.token
        checkpoints.save(conn, job, Settings(), {"next": 1})  # checkpoint.lua
        import logging

        from vq.job_logs import JobLog

        job_log = JobLog(conn, job.id, 1, 10, 16_384)
        job_log.add(logging.makeLogRecord({"msg": "a line", "levelname": "INFO"}))
        job_log.flush()  # job_log.lua
        from vq import events

        events.emit(conn, "retried", job.id, TYPE, webhookUrl="http://example.invalid/hook")  # event_once.lua
        from rq.job import JobStatus

        from vq.recurring.runs import record_outcome_in
        from vq.rq_seam import private

        job.meta["recurringId"] = "r1"
        private.set_status_locally(job, JobStatus.FINISHED)
        with conn.pipeline(transaction=False) as pipe:
            record_outcome_in(pipe, job)  # recurring_outcome.lua
            pipe.execute()
        touched = _touched_by_scripts(conn, monitor)
    patterns = _patterns()
    assert len(touched) > 20, touched
    strangers = sorted(key for key in touched if not any(p.fullmatch(key) for p in patterns))
    assert strangers == [], "keys the scripts built that vq/keys.py does not"
