"""`vq doctor`'s checks of the running daemons, read from their presence in Redis: how many
and how fresh, their clocks, crash loops, the HTTP API, and the archiver with the history
file it writes."""

from __future__ import annotations

import socket

from vq import keys, presence
from vq.config import Settings
from vq.doctor_findings import Finding
from vq.history import db as historydb
from vq.history import lease as archiver_lease

SKEW_WARN_MS, SKEW_FAIL_MS = 500, 5000


def daemons(conn) -> list[Finding]:
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
            f"clocks within {spread:.0f} ms of each other (largest offset from Redis: {worst[0]} {signed_ms(worst[1])} ms)",
            "run NTP (chrony or systemd-timesyncd) on every host" if status != "ok" else None,
        )
    )
    return out


def signed_ms(offset: float) -> str:
    """An offset with its sign, never "-0" (an offset of -0.3 ms rounds to +0)."""
    return f"{round(offset):+d}"


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


def archiver(conn, settings: Settings) -> Finding:
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
