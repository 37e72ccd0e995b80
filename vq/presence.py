"""Each running daemon says it is alive: its host, pid, which of its processes run, which
are crash-looping, whether its HTTP API serves, and how far its clock is from Redis's.
`vq doctor` reads it (workers and timer alive, crash loops, HTTP, clock skew between
hosts), and `vq health` (crash loops); a daemon that stopped reporting is stale after
`STALE_MS`."""

from __future__ import annotations

import json
import socket
import time

from redis import Redis

from vq import keys

STALE_MS = 30_000
FORGET_MS = 86_400_000  # entries of daemons gone for a day are deleted


def clock_offset_ms(conn: Redis) -> float:
    """This host's clock minus Redis's, in ms (the round trip's middle as our time)."""
    before = time.time()
    seconds, micros = conn.time()
    after = time.time()
    return ((before + after) / 2 - (seconds + micros / 1e6)) * 1000


def report(conn: Redis, pid: int, started_ms: int, processes: dict[str, bool], workers: int,
           weight: float = 1.0, crash_loops: dict[str, dict] | None = None, http: dict | None = None) -> None:
    """Record this daemon's state (called by its supervisor every few seconds): besides
    its processes, those in a crash loop (vq/supervision.py `Restarts.report`) and its
    HTTP API's address and whether it serves (vq/http_listener.py `state`)."""
    host = socket.gethostname()
    entry = {"host": host, "pid": pid, "startedMs": started_ms, "seenMs": int(time.time() * 1000),
             "clockOffsetMs": round(clock_offset_ms(conn), 1), "processes": processes, "workers": workers,
             "weight": weight, "crashLoops": crash_loops or {}, "http": http}
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
    """A daemon that stops cleanly takes its entry away."""
    conn.hdel(keys.DAEMONS, f"{socket.gethostname()}:{pid}")
