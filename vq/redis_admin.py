"""The embedded Redis as an operator handles it: its status, starting it, stopping it.

The embedded server outlives daemon restarts (vq/embedded.py), so stopping it is a choice
of its own: `vq redis stop`, or `vq daemon --stop-redis`. A daemon that still runs would
start it again within a second (it restarts a Redis that exits), so stopping it under a
daemon is refused unless forced (it is then a Redis restart, e.g. after an upgrade of
redis-server). `vq redis start` lets jobs be submitted before any daemon runs (after a
boot, from cron); the CLI never starts it by itself: a command run with a wrong data
directory or HOME would otherwise queue jobs into a new, empty Redis nobody serves, where
exit 3 tells the operator at once.
"""

from __future__ import annotations

import socket

import redis

from vq import presence
from vq.config import Settings
from vq.connection import describe_address
from vq.embedded import EmbeddedRedis, pid_running
from vq.errors import Conflict, InvalidInput


def server(settings: Settings) -> EmbeddedRedis:
    """The embedded server of these settings; InvalidInput when a Redis is configured."""
    if settings.redis.configured:
        raise InvalidInput(
            f"a Redis is configured ({describe_address(settings)}): vq runs no embedded one, and "
            "`vq redis` manages only that"
        )
    return EmbeddedRedis(settings.data_path)


def status(settings: Settings) -> dict:
    """Where the embedded Redis lives, whether it runs, its persistence and memory, and
    which daemons use it. With a configured Redis: only that address."""
    if settings.redis.configured:
        return {"mode": "configured", "address": describe_address(settings), "running": None}
    srv = server(settings)
    view = {
        "mode": "embedded",
        "running": False,
        "answering": False,
        "pid": srv.server_pid(),
        "socket": str(srv.socket_path),
        "dir": str(srv.folder),
        "log": str(srv.log_file),
        "stalePidFile": None,
        "version": None,
        "uptimeSeconds": None,
        "persistence": None,
        "memory": None,
        "clients": None,
        "keys": None,
        "daemons": [],
    }
    if view["pid"] is None and srv.pid_file.exists():
        view["stalePidFile"] = str(srv.pid_file)  # a crash or a reboot left it; the next start replaces it
    if not srv.alive():
        view["running"] = view["pid"] is not None  # runs, but does not answer (yet): loading its AOF
        return view
    client = srv.client()
    try:
        info = client.info()
        fsync = client.config_get("appendfsync").get("appendfsync")
        view.update(
            running=True,
            answering=True,
            pid=int(info["process_id"]),
            version=info.get("redis_version"),
            uptimeSeconds=int(info.get("uptime_in_seconds", 0)),
            clients=int(info.get("connected_clients", 0)),
            keys=client.dbsize(),
            daemons=_daemons_using(client),
            persistence={
                "aof": bool(info.get("aof_enabled")),
                "appendfsync": fsync,
                "aofBytes": int(info.get("aof_current_size", 0) or 0),
                "lastWrite": info.get("aof_last_write_status"),
                "rewriting": bool(info.get("aof_rewrite_in_progress")),
            },
            memory={
                "usedBytes": int(info.get("used_memory", 0)),
                "peakBytes": int(info.get("used_memory_peak", 0)),
                "maxmemory": int(info.get("maxmemory", 0) or 0),
                "policy": info.get("maxmemory_policy"),
            },
        )
    except (redis.RedisError, OSError):
        pass  # it stopped while we asked: what we have is the answer
    finally:
        client.close()
    return view


def start(settings: Settings) -> dict:
    """Start the embedded Redis (or find it running) and return once it answers."""
    srv = server(settings)
    how = srv.start()
    srv.detach()  # this process exits now; the server stays, in its own session
    return {"started": how == "started", "pid": srv.pid, "socket": str(srv.socket_path)}


def stop(settings: Settings, force: bool = False) -> dict:
    """Stop the embedded Redis (SIGTERM: the AOF is flushed). Refused while a daemon uses
    it, unless `force`: that daemon starts it again at once."""
    srv = server(settings)
    daemons = []
    if srv.alive():
        client = srv.client()
        try:
            daemons = _daemons_using(client)
        except (redis.RedisError, OSError):
            daemons = []
        finally:
            client.close()
    if daemons and not force:
        pids = ", ".join(str(d["pid"]) for d in daemons)
        raise Conflict(
            f"vq daemon (pid {pids}) uses the embedded Redis and would start it again at once: stop the "
            "daemon first (`vq daemon --stop-redis` stops Redis with it), or pass --force to restart Redis "
            "under it"
        )
    pid = srv.shutdown()
    return {
        "stopped": pid is not None,
        "pid": pid,
        "socket": str(srv.socket_path),
        "daemons": [d["pid"] for d in daemons],
    }


def _daemons_using(client) -> list[dict]:
    """The live daemons on this Redis; on this host, only those whose process still runs (a
    daemon killed with -9 is still 'live' for up to 30 s by its last report)."""
    here = socket.gethostname()
    return [
        {"host": d["host"], "pid": d["pid"]}
        for d in presence.daemons(client)
        if d["live"] and (d["host"] != here or pid_running(d["pid"]))
    ]
