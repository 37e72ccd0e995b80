"""Each running daemon says it is alive: its host, pid, which of its processes run, which
are crash-looping, whether its HTTP API serves, and how far its clock is from Redis's.
`vq doctor` reads it (workers and timer alive, crash loops, HTTP, clock skew between
hosts), and `vq health` (crash loops); a daemon that stopped reporting is stale after
`STALE_MS`."""

from __future__ import annotations

import json
import os
import socket
import time

from redis import Redis

from vq import keys
from vq.replies import text, texts

STALE_MS = 30_000
FORGET_MS = 86_400_000  # entries of daemons gone for a day are deleted


def clock_offset_ms(conn: Redis) -> float:
    """This host's clock minus Redis's, in ms (the round trip's middle as our time)."""
    before = time.time()
    seconds, micros = conn.time()
    after = time.time()
    return ((before + after) / 2 - (seconds + micros / 1e6)) * 1000


def report(
    conn: Redis,
    pid: int,
    started_ms: int,
    processes: dict[str, bool],
    workers: int,
    weight: float = 1.0,
    crash_loops: dict[str, dict] | None = None,
    http: dict | None = None,
    encryption: dict | None = None,
) -> None:
    """Record this daemon's state (called by its supervisor every few seconds): besides
    its processes, those in a crash loop (vq/supervision.py `Restarts.report`) and its
    HTTP API's address and whether it serves (vq/http_listener.py `state`), and its
    encryption keys' fingerprints (vq/protect.py `published`: submitters compare theirs)."""
    host = socket.gethostname()
    entry = {
        "host": host,
        "pid": pid,
        "startedMs": started_ms,
        "seenMs": int(time.time() * 1000),
        "clockOffsetMs": round(clock_offset_ms(conn), 1),
        "processes": processes,
        "workers": workers,
        "weight": weight,
        "crashLoops": crash_loops or {},
        "http": http,
        "encryption": encryption,
    }
    conn.hset(keys.DAEMONS, f"{host}:{pid}", json.dumps(entry, separators=(",", ":")))


def daemons(conn: Redis) -> list[dict]:
    """Daemons seen within STALE_MS (`live`) or gone (`live` False); forgets old ones."""
    now = int(time.time() * 1000)
    out, forget = [], []
    for field, raw in conn.hgetall(keys.DAEMONS).items():
        entry = json.loads(raw)
        age = now - entry["seenMs"]
        if age > FORGET_MS:
            forget.append(field)
            continue
        entry["live"] = age <= STALE_MS
        entry["ageMs"] = age
        out.append(entry)
    if forget:
        conn.hdel(keys.DAEMONS, *forget)
    return sorted(out, key=lambda e: (e["host"], e["pid"]))


def forget(conn: Redis, pid: int) -> None:
    """A daemon that stops cleanly takes its entry away (and its processes' problems)."""
    me = f"{socket.gethostname()}:{pid}"
    conn.hdel(keys.DAEMONS, me)
    gone = [f for f in texts(conn.hkeys(keys.DAEMON_PROBLEMS)) if f.rpartition(":")[0] == me]
    if gone:
        conn.hdel(keys.DAEMON_PROBLEMS, *gone)


def say_problem(conn: Redis, process: str, line: str | None, since_ms: int | None = None) -> None:
    """A daemon's child process (the archiver) says what keeps it from working, or (line
    None) that it works again. It is published beside its daemon's presence: `vq health` and
    `vq doctor` read it for live daemons only (`problems`)."""
    field = f"{socket.gethostname()}:{os.getppid()}:{process}"
    if line is None:
        conn.hdel(keys.DAEMON_PROBLEMS, field)
        return
    entry = {"line": line, "sinceMs": since_ms or int(time.time() * 1000)}
    conn.hset(keys.DAEMON_PROBLEMS, field, json.dumps(entry, separators=(",", ":")))


def problems(conn: Redis) -> list[dict]:
    """What the processes of live daemons say keeps them from working: daemon (host:pid),
    process, line, sinceMs. Entries of daemons gone for a day are deleted."""
    seen = {f"{d['host']}:{d['pid']}": d["live"] for d in daemons(conn)}
    now = int(time.time() * 1000)
    out, forget_them = [], []
    for field, raw in conn.hgetall(keys.DAEMON_PROBLEMS).items():
        daemon, _, process = text(field).rpartition(":")
        entry = json.loads(raw)
        if seen.get(daemon):
            out.append({"daemon": daemon, "process": process, **entry})
        elif daemon not in seen and now - entry["sinceMs"] > FORGET_MS:
            forget_them.append(field)
    if forget_them:
        conn.hdel(keys.DAEMON_PROBLEMS, *forget_them)
    return sorted(out, key=lambda e: (e["daemon"], e["process"]))
