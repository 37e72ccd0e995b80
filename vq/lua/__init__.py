"""vq's Lua scripts and the one way to load them.

Each script's protocol is declared here (`PROTOCOLS`): the files it is assembled from, and
the Redis names it is given. No key name or prefix is written in Lua: the loader puts a
prologue before the script's text that fills a table `K` from KEYS (in the order declared
here, from vq/keys.py) and a table `C` of constants (also from vq/keys.py), and every call
passes those names first in KEYS, then the caller's own keys (`K_N` is the number of named
ones). tests/test_lua_keys.py checks that every key a script touches is one vq/keys.py
builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from vq import keys


@dataclass(frozen=True)
class Protocol:
    """What a script is made of and what it is given."""

    parts: tuple[str, ...]  # its files, assembled in this order
    names: tuple[tuple[str, str], ...] = ()  # (K's field, the key or key prefix): KEYS[1..n]
    constants: tuple[tuple[str, str | tuple[str, ...]], ...] = field(default=())  # C's fields


_LEASE = (("lease_field", keys.LEASE_FIELD),)
_GROUPS = (("groups_field", keys.GROUPS_FIELD),)
_HELD = (("held_field", keys.HELD_FIELD),)

PROTOCOLS: dict[str, Protocol] = {
    # Admission, in one script of nine parts with one concern each (vq/lua/admit_common.lua
    # describes the call): shared options and helpers, limit groups, resources, the finished job's end, routing,
    # the choice of the job, its start, and the call's sequence.
    "admit.lua": Protocol(
        parts=(
            "admit_common.lua",
            "lease.lua",
            "groups.lua",
            "resources.lua",
            "admit_resources.lua",
            "admit_end.lua",
            "admit_deadline.lua",
            "admit_route.lua",
            "admit_choose.lua",
            "admit_start.lua",
            "admit_main.lua",
        ),
        names=(
            ("inbox", keys.INBOX),
            ("idle", keys.IDLE_WORKERS),
            ("usertier", keys.USER_TIER),
            ("effective", keys.LIMITS_EFFECTIVE),
            ("paused", keys.PAUSED),
            ("admitted", keys.ADMITTED),
            ("wake", keys.WAKE),
            ("events", keys.EVENTS),
            ("webhook_events", keys.WEBHOOK_EVENTS),
            ("stale_refused", keys.STALE_REFUSED),
            ("job", keys.RQ_JOB_PREFIX),
            ("queue", keys.RQ_QUEUE_PREFIX),
            ("worker", keys.RQ_WORKER_PREFIX),
            ("canceled", keys.RQ_CANCELED_PREFIX),
            ("wait", keys.WAIT_PREFIX),
            ("edf", keys.EDF_PREFIX),
            ("ring", keys.RING_PREFIX),
            ("waitsince", keys.WAIT_SINCE_PREFIX),
            ("running_type", keys.RUNNING_TYPE_PREFIX),
            ("running_user", keys.RUNNING_USER_PREFIX),
            ("limits", keys.LIMITS_PREFIX),
            ("overrides", keys.LIMIT_OVERRIDES_PREFIX),
            ("turns", keys.ADMISSION_TURNS),
            ("running_group", keys.RUNNING_GROUP_PREFIX),
            ("group_starts", keys.GROUP_STARTS_PREFIX),
            ("group_waiting", keys.GROUP_WAITING_PREFIX),
            ("group_keys", keys.GROUP_KEYS_PREFIX),
            ("running_resources", keys.RUNNING_RESOURCES_PREFIX),
            ("reserved", keys.RESOURCES_RESERVED),
        ),
        constants=(
            *_LEASE,
            *_GROUPS,
            *_HELD,
            ("resources_field", keys.RESOURCES_FIELD),
            ("handed_out_field", keys.HANDED_OUT_FIELD),
            ("idle_hint", keys.INBOX_IDLE_HINT),
            ("legacy_idle", keys.LEGACY_INBOX_IDLE),
            ("priorities", keys.PRIORITY_ORDER),
        ),
    ),
    "promote.lua": Protocol(
        parts=("promote.lua",),
        names=(
            ("job", keys.RQ_JOB_PREFIX),
            ("wait", keys.WAIT_PREFIX),
            ("edf", keys.EDF_PREFIX),
            ("ring", keys.RING_PREFIX),
            ("waitsince", keys.WAIT_SINCE_PREFIX),
            ("inbox", keys.INBOX),
            ("aged", keys.AGED),
        ),
        constants=(("priorities", keys.PRIORITY_ORDER),),
    ),
    "renew.lua": Protocol(
        parts=("lease.lua", "groups.lua", "resources.lua", "renew.lua"),
        names=(("running_group", keys.RUNNING_GROUP_PREFIX), ("running_resources", keys.RUNNING_RESOURCES_PREFIX)),
        constants=(*_LEASE, *_GROUPS, *_HELD, ("cancel_now_field", keys.CANCEL_NOW_FIELD)),
    ),
    # A job's limit-group slots and resources back (vq/admission.py release_in).
    "release_groups.lua": Protocol(
        parts=("lease.lua", "groups.lua", "resources.lua", "release_groups.lua"),
        names=(("running_group", keys.RUNNING_GROUP_PREFIX), ("running_resources", keys.RUNNING_RESOURCES_PREFIX)),
        constants=(*_GROUPS, *_HELD),
    ),
    "limits.lua": Protocol(
        parts=("limits.lua",),
        names=(
            ("effective", keys.LIMITS_EFFECTIVE),
            ("paused", keys.PAUSED),
            ("limits", keys.LIMITS_PREFIX),
            ("overrides", keys.LIMIT_OVERRIDES_PREFIX),
        ),
        constants=(("limit_kinds", keys.LIMIT_KINDS),),
    ),
    "fenced.lua": Protocol(
        parts=("fenced.lua",), names=(("stale_refused", keys.STALE_REFUSED), ("events", keys.EVENTS)), constants=_LEASE
    ),
    "checkpoint.lua": Protocol(
        parts=("checkpoint.lua",), names=(("stale_refused", keys.STALE_REFUSED),), constants=_LEASE
    ),
    "job_log.lua": Protocol(parts=("job_log.lua",), names=(("pending", keys.JOB_LOGS_PENDING),)),
    "due.lua": Protocol(
        parts=("due.lua",),
        names=(
            ("job", keys.RQ_JOB_PREFIX),
            ("queue", keys.RQ_QUEUE_PREFIX),
            ("scheduled", keys.RQ_SCHEDULED_PREFIX),
            ("inbox", keys.INBOX),
            ("events", keys.EVENTS),
            ("wake", keys.WAKE),
            ("due", keys.SCHEDULED_DUE),
        ),
    ),
    "create.lua": Protocol(
        parts=("create.lua",),
        names=(("events", keys.EVENTS), ("job", keys.RQ_JOB_PREFIX), ("queue", keys.RQ_QUEUE_PREFIX)),
    ),
    "event_once.lua": Protocol(
        parts=("event_once.lua",), names=(("events", keys.EVENTS), ("webhook_events", keys.WEBHOOK_EVENTS))
    ),
    "recurring_outcome.lua": Protocol(parts=("recurring_outcome.lua",)),  # its keys are the caller's
    "breaker.lua": Protocol(parts=("breaker.lua",)),  # all its keys are the caller's
    "archiver_lease.lua": Protocol(parts=("archiver_lease.lua",)),
    "batch_sync.lua": Protocol(parts=("batch_sync.lua",)),  # all its keys are the caller's (vq/batches.py)
    "batch_take.lua": Protocol(parts=("batch_take.lua",)),
}


def _lua_value(value: str | tuple[str, ...]) -> str:
    if isinstance(value, tuple):
        return "{" + ", ".join(_lua_value(v) for v in value) + "}"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def prologue(protocol: Protocol) -> str:
    """The Lua that names KEYS[1..n] in `K` and the constants in `C`."""
    named = ", ".join(f"{name} = KEYS[{i}]" for i, (name, _key) in enumerate(protocol.names, 1))
    constants = ", ".join(f"{name} = {_lua_value(value)}" for name, value in protocol.constants)
    return (
        f"-- Generated by vq/lua/__init__.py from vq/keys.py.\n"
        f"local K = {{{named}}}\nlocal K_N = {len(protocol.names)}\nlocal C = {{{constants}}}\n"
    )


@cache
def part(name: str) -> str:
    """One file's text, read once per process."""
    return resources.files(__name__).joinpath(name).read_text()


@cache
def source(name: str) -> str:
    """The text Redis runs for a script: its prologue, then its parts in order."""
    protocol = PROTOCOLS[name]
    return prologue(protocol) + "\n".join(part(p) for p in protocol.parts)


def names(name: str) -> list[str]:
    """The keys and prefixes a script is given first in KEYS."""
    return [key for _field, key in PROTOCOLS[name].names]


class Script:
    """A script bound to a connection: redis-py runs it by SHA and loads it when Redis lacks
    it. Calls pass the script's named keys, then the caller's `keys`."""

    def __init__(self, conn, name: str):
        self._script = conn.register_script(source(name))
        self.names = names(name)
        self.sha = self._script.sha
        self.script = self._script.script

    def __call__(self, keys=(), args=(), client=None):
        return self._script(keys=[*self.names, *keys], args=args, client=client)

    def evalsha_in(self, pipe, keys=(), args=()) -> None:
        """Queue the call by SHA in a pipeline, without redis-py's load-on-NOSCRIPT (the
        caller handles that reply)."""
        pipe.evalsha(self.sha, len(self.names) + len(keys), *self.names, *keys, *args)


def script(conn, name: str) -> Script:
    """The script `name` (a key of PROTOCOLS) bound to `conn`."""
    return Script(conn, name)
