"""The systemd notify protocol (sd_notify(3)): READY, RELOADING, STOPPING, STATUS and
WATCHDOG datagrams to $NOTIFY_SOCKET. A no-op when not run by systemd.

Written here rather than taken from a library: the protocol is one datagram on a Unix
socket, and the bindings (systemd-python) need libsystemd's headers to build."""

from __future__ import annotations

import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send `fields` ("READY=1", "STATUS=...") as one message; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall("\n".join(fields).encode())
    return True


def reloading() -> bool:
    """RELOADING=1 with the monotonic time systemd's Type=notify-reload expects."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2


def is_main_process() -> bool:
    """True when this process is a systemd service's main process (systemd >= 248 names it
    in SYSTEMD_EXEC_PID; before, a notify socket and an invocation id say so): its exit
    stops the unit, and KillMode=mixed then kills what is left in the unit's cgroup."""
    pid = os.environ.get("SYSTEMD_EXEC_PID")
    if pid:
        return pid.isdigit() and int(pid) == os.getpid()
    return bool(os.environ.get("NOTIFY_SOCKET") and os.environ.get("INVOCATION_ID"))
