"""`vq doctor`: check what a vq installation depends on and say how to fix each problem.

Each check gives a Finding: ok, warn (works, with a risk worth knowing) or fail (jobs can be
lost or nothing runs). The CLI's exit code is the worst finding: 0 ok, 1 warn, 2 fail.
Checks never raise: an unreachable Redis is itself a finding, and the checks that need
Redis are then skipped with it named as the reason.
"""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from vq import keys, presence
from vq.config import Settings
from vq.connection import describe_address, make_client
from vq.history import db as historydb
from vq.history import lease as archiver_lease

LEVELS = ("ok", "warn", "fail")
MIN_REDIS = (6, 2)  # XAUTOCLAIM (webhooks), GETDEL, ZADD GT; RQ 3 needs 5+
SKEW_WARN_MS, SKEW_FAIL_MS = 500, 5000


@dataclass
class Finding:
    check: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


def exit_code(findings: list[Finding]) -> int:
    return max((LEVELS.index(f.status) for f in findings), default=0)


def run(settings: Settings) -> list[dict]:
    """Every check, in the order an operator would fix them."""
    findings: list[Finding] = [Finding("config", "ok", "valid (every key known, every value in range)")]
    findings += _handlers(settings)
    if not settings.redis.configured:
        findings.append(_embedded(settings))
    conn = make_client(settings, socket_timeout=5.0)
    try:
        info = conn.info()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        findings.append(
            Finding(
                "redis",
                "fail",
                f"cannot reach Redis at {describe_address(settings)}: {str(exc).splitlines()[0] if str(exc) else exc}",
                "start Redis, or fix redis.url / REDIS_URL"
                if settings.redis.configured
                else "`vq redis start` (jobs can be queued) or `vq daemon` starts the embedded one",
            )
        )
        findings.append(_sqlite(settings))
        return [asdict(f) for f in findings]
    findings.append(_version(info))
    findings.append(_persistence(conn, info))
    findings.append(_eviction(conn, info))
    findings += _daemons(conn)
    findings.append(_archiver(conn, settings))
    findings.append(_sqlite(settings))
    return [asdict(f) for f in findings]


def _handlers(settings: Settings) -> list[Finding]:
    from vq.jobtypes import job_types, load_handler

    broken = []
    for jt in job_types(settings).values():
        try:
            load_handler(jt.handler)
        except Exception as exc:  # noqa: BLE001 - any import failure is the finding
            broken.append(f"{jt.name} ({jt.handler}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if broken:
        return [
            Finding(
                "handlers",
                "fail",
                "cannot import: " + "; ".join(broken),
                "install the handler's package on this host, or fix job_types.<type>.handler (module:function)",
            )
        ]
    return [Finding("handlers", "ok", f"{len(job_types(settings))} job types, every handler importable")]


def _embedded(settings: Settings) -> Finding:
    """No Redis configured: the embedded server, which outlives daemon restarts."""
    from vq import redis_admin

    view = redis_admin.status(settings)
    if view["answering"]:
        return Finding(
            "embedded",
            "ok",
            f"embedded redis-server pid {view['pid']} in {view['dir']} (unix socket "
            "only); it outlives daemon restarts, `vq redis stop` stops it",
        )
    if view["running"]:
        return Finding(
            "embedded",
            "fail",
            f"embedded redis-server pid {view['pid']} runs but does not answer on "
            f"{view['socket']} (loading its AOF, or hung)",
            f"wait for the AOF to load; if it hangs, see {view['log']} and kill {view['pid']}",
        )
    stale = (
        f"; a stale pid file {view['stalePidFile']} (a crash or a reboot) is replaced at the next start"
        if view["stalePidFile"]
        else ""
    )
    return Finding(
        "embedded",
        "fail",
        f"the embedded Redis is not running (no Redis is configured){stale}",
        "`vq redis start` (jobs can be queued) or `vq daemon` starts it",
    )


def _version(info: dict) -> Finding:
    version = str(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS:
        return Finding(
            "redis",
            "fail",
            f"Redis {version} is older than {'.'.join(map(str, MIN_REDIS))}",
            "upgrade Redis to 6.2 or newer (7.x recommended)",
        )
    return Finding("redis", "ok", f"reachable, Redis {version}, {info.get('connected_clients', '?')} clients")


def _config(conn, name: str) -> str | None:
    try:
        return (conn.config_get(name) or {}).get(name)
    except redis.ResponseError:
        return None  # CONFIG is disabled (managed Redis): INFO is all we have


def _persistence(conn, info: dict) -> Finding:
    aof = bool(info.get("aof_enabled"))
    save = _config(conn, "save")
    if not aof and save is None:
        return Finding(
            "persistence",
            "warn",
            "AOF is off and CONFIG is disabled, so RDB snapshots cannot be checked: a restart may lose every job",
            "turn on AOF (appendonly yes)",
        )
    rdb = bool(save and save.strip())
    if aof:
        fsync = _config(conn, "appendfsync") or "everysec"
        loss = {
            "always": "nothing acknowledged",
            "everysec": "at most the last second of changes",
            "no": "what the OS had not flushed (up to ~30 s)",
        }.get(fsync, "recent changes")
        status = "warn" if fsync == "no" else "ok"
        return Finding(
            "persistence",
            status,
            f"AOF on (appendfsync {fsync}): a restart loses {loss}",
            "set appendfsync everysec" if status == "warn" else None,
        )
    if rdb:
        return Finding(
            "persistence",
            "warn",
            f"RDB snapshots only (save {save}): a restart loses every job change since the last snapshot",
            "turn on AOF: CONFIG SET appendonly yes (and appendonly yes in redis.conf)",
        )
    return Finding(
        "persistence",
        "fail",
        "no persistence (AOF off, no RDB snapshots): a Redis restart loses "
        "every waiting job, every schedule and every recurring definition",
        "CONFIG SET appendonly yes, and appendonly yes in redis.conf",
    )


def _eviction(conn, info: dict) -> Finding:
    policy = info.get("maxmemory_policy") or _config(conn, "maxmemory-policy") or "unknown"
    cap = int(info.get("maxmemory", 0) or 0)
    if policy != "noeviction":
        return Finding(
            "eviction",
            "fail",
            f"maxmemory-policy is {policy}: when memory is full Redis deletes keys, jobs among them",
            "CONFIG SET maxmemory-policy noeviction (and in redis.conf): a full Redis then refuses new jobs instead",
        )
    if not cap:
        return Finding("eviction", "ok", "noeviction, no maxmemory: Redis may grow until the host runs out", None)
    used = int(info.get("used_memory", 0))
    status = "warn" if used / cap > 0.8 else "ok"
    return Finding(
        "eviction",
        status,
        f"noeviction; memory {used / cap:.0%} of maxmemory {cap / 1_048_576:.0f} MB",
        "raise maxmemory or drain the backlog" if status == "warn" else None,
    )


def _daemons(conn) -> list[Finding]:
    found = presence.daemons(conn)
    live = [d for d in found if d["live"]]
    out = []
    if not live:
        out.append(
            Finding(
                "daemons",
                "fail",
                "no vq daemon has reported in the last 30 s: no job runs",
                "start `vq daemon` (or the vq systemd unit) on at least one host",
            )
        )
    else:
        looping = {(d["host"], d["pid"], name) for d in live for name in d.get("crashLoops") or {}}
        running = [
            (d, name)
            for d in live
            for name, alive in d["processes"].items()
            if alive and (d["host"], d["pid"], name) not in looping
        ]
        down = [
            f"{d['host']}:{d['pid']} {name}"
            for d in live
            for name, alive in d["processes"].items()
            if not alive and (d["host"], d["pid"], name) not in looping
        ]
        timers = sum(1 for _d, name in running if name == "scheduler")
        workers = sum(1 for _d, name in running if name.startswith("worker-"))
        detail = (
            f"{len(live)} daemon(s) on {len({d['host'] for d in live})} host(s): {workers} workers, "
            f"{timers} timer(s) alive" + (f" ({len(looping)} process(es) crash-looping)" if looping else "")
        )
        if down or not timers or not workers:
            out.append(
                Finding(
                    "daemons",
                    "warn",
                    detail + (f"; not running: {', '.join(down)}" if down else ""),
                    "see the daemon's log (journalctl -u vq): its supervisor restarts a dead process",
                )
            )
        else:
            out.append(Finding("daemons", "ok", detail))
        out += _crash_loops(live) + _http(live)
    gone = [d for d in found if not d["live"]]
    if gone:
        out.append(
            Finding(
                "daemons",
                "warn",
                "gone without stopping cleanly: "
                + ", ".join(f"{d['host']}:{d['pid']} ({d['ageMs'] // 1000}s ago)" for d in gone),
                "a host crashed or lost Redis: check it; its jobs are recovered as stalled",
            )
        )
    here = presence.clock_offset_ms(conn)
    offsets = [("this host", here)] + [(d["host"], d["clockOffsetMs"]) for d in live]
    spread = max(o for _h, o in offsets) - min(o for _h, o in offsets)
    worst = max(offsets, key=lambda ho: abs(ho[1]))
    status = "fail" if spread > SKEW_FAIL_MS else "warn" if spread > SKEW_WARN_MS else "ok"
    out.append(
        Finding(
            "clock",
            status,
            f"clocks within {spread:.0f} ms of each other (largest offset from Redis: {worst[0]} {worst[1]:+.0f} ms)",
            "run NTP (chrony or systemd-timesyncd) on every host" if status != "ok" else None,
        )
    )
    return out


def _crash_loops(live: list[dict]) -> list[Finding]:
    """A process its daemon restarts again and again (vq/supervision.py): it does no work."""
    loops = [(d, name, loop) for d in live for name, loop in sorted((d.get("crashLoops") or {}).items())]
    if not loops:
        return []
    detail = "; ".join(
        f"{name} of {d['host']}:{d['pid']} died {loop['deaths']} times, last: {loop['lastError']}"
        for d, name, loop in loops
    )
    return [
        Finding(
            "crash loop",
            "fail",
            detail,
            "the daemon's log has the traceback, once (journalctl -u vq, or the terminal it runs in): fix "
            "its cause (a handler that kills its process, a plugin, a resource limit); the daemon keeps "
            "restarting it with back-off, and it recovers by itself once it stays up a minute",
        )
    ]


def _http(live: list[dict]) -> list[Finding]:
    """Each daemon's HTTP API: serving, or not (its address taken: vq/http_listener.py)."""
    with_http = [d for d in live if d.get("http")]
    if not with_http:
        return []
    down = [d for d in with_http if not d["http"]["serving"]]
    if down:
        return [
            Finding(
                "http",
                "warn",
                "; ".join(
                    f"daemon {d['host']}:{d['pid']} is not serving the HTTP API: "
                    + (d["http"].get("problem") or "its HTTP process is restarting")
                    for d in down
                ),
                "free the address (stop what holds it) or give this daemon another one (--http HOST:PORT, "
                "http.listen); it binds by itself once the address is free, and the rest of the daemon runs meanwhile",
            )
        ]
    return [
        Finding(
            "http",
            "ok",
            "HTTP API serving: " + ", ".join(f"{d['http']['listen']} ({d['host']}:{d['pid']})" for d in with_http),
        )
    ]


def _archiver(conn, settings: Settings) -> Finding:
    if not settings.history.enabled:
        return Finding(
            "archiver",
            "warn",
            "history.enabled is false: no history, metrics or audit are recorded",
            "set history.enabled: true",
        )
    stuck = [p for p in presence.problems(conn) if p["process"] == "archiver"]
    if stuck:
        return Finding(
            "archiver",
            "fail",
            "; ".join(f"daemon {p['daemon']}: {p['line']}" for p in stuck)
            + ": jobs run, their events wait in Redis (vq:events) and history is not written",
            "make the file usable (remove what stands at its path, free disk space, or point the "
            f"setting named at a writable place: {historydb.setting_for(settings)}); the archiver "
            "retries on its own and catches up",
        )
    owner = conn.get(keys.ARCHIVER_LEADER)
    home = archiver_lease.home(conn)
    where = f"{home.get('path')} on {home.get('host')}" if home.get("db") else None
    if owner is None:
        return Finding(
            "archiver",
            "warn",
            "no archiver holds the lease: history and metrics are not being written"
            + (f" (the history file is {where})" if where else ""),
            f"start a vq daemon on {home.get('host')}, or wait history.handoverAfter for another "
            "host's daemon to take over"
            if where
            else "start a vq daemon with history enabled",
        )
    here = str(historydb.path_for(settings).resolve())
    elsewhere = where and (home.get("host") != socket.gethostname() or home.get("path") != here)
    return Finding(
        "archiver",
        "ok",
        f"leader: {owner.decode()}; history file: {where or '?'}"
        + ("; not this host's file: run `vq history` there" if elsewhere else ""),
    )


def _sqlite(settings: Settings) -> Finding:
    path = historydb.path_for(settings)
    target = path if path.exists() else path.parent
    if not path.exists():
        probe = _first_existing(path.parent)
        if probe is None or not _writable_dir(probe):
            return Finding("sqlite", "fail", f"cannot create {path}", f"make {path.parent} writable by vq's user")
        return Finding("sqlite", "ok", f"{path} will be created (its folder is writable)")
    try:
        db = sqlite3.connect(path, timeout=2)
        db.execute("BEGIN IMMEDIATE")  # takes the write lock, writes nothing
        db.rollback()
        db.close()
    except sqlite3.Error as exc:
        return Finding(
            "sqlite", "fail", f"{target} is not writable: {exc}", f"check the owner and mode of {path} and its folder"
        )
    return Finding("sqlite", "ok", f"{path} writable")


def _first_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _writable_dir(path: Path) -> bool:
    import os

    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
