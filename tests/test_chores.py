"""The daemon's housekeeping chores (vq/chores.py): named, each runnable on its own, their
intervals set by daemon.chores and checked like every other key."""

from __future__ import annotations

import json
import os
import time

import pytest

from vq import chores, keys, presence
from vq.chores import REGISTRY, Chore, ChoreSpec
from vq.config import CHORE_NAMES, settings_from
from vq.daemon import Daemon, DaemonOptions


def test_the_registry_is_the_config_s_list_of_chores():
    assert tuple(REGISTRY) == CHORE_NAMES
    assert len({spec.title for spec in REGISTRY.values()}) == len(REGISTRY), "each chore has its own lock"


def test_intervals_come_from_daemon_chores_else_their_defaults():
    defaults = settings_from({}, "test")
    every = {name: spec.every(defaults) for name, spec in REGISTRY.items()}
    assert every["trim-ended"] == 5.0 and every["age-waiting"] == 2.0 and every["report-presence"] == 2.0
    assert every["recover-stalled"] == defaults.queue.settings.stalledInterval / 1000
    assert every["check-health"] == defaults.health.checkInterval / 1000
    assert every["prune-artifacts"] == defaults.artifacts.sweepInterval / 1000
    configured = settings_from(
        {"daemon": {"chores": {"trim-ended": 100, "check-health": 250}}, "health": {"checkInterval": 9000}}, "test"
    )
    assert REGISTRY["trim-ended"].every(configured) == 0.1
    assert REGISTRY["check-health"].every(configured) == 0.25, "daemon.chores wins over the older key"
    assert REGISTRY["age-waiting"].every(configured) == 2.0


@pytest.mark.parametrize(
    "chores_block, message",
    [
        ({"tidy-up": 100}, "daemon.chores: 'tidy-up' is not a chore (one of trim-ended, "),
        ({"trim-ended": 5}, "daemon.chores.trim-ended: Expected `int` >= 10"),
        ({"trim-ended": "often"}, "daemon.chores.trim-ended: Expected `int`, got `str`"),
    ],
)
def test_a_bad_chores_block_is_one_line_and_exit_2(vq, chores_block, message):
    vq.configure(daemon={"chores": chores_block})
    proc = vq.run("jobs")
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_each_chore_runs_on_its_own(vq, redis_conn):
    """A chore is a function of a daemon and a connection: each runs outside the daemon's
    loop, against the real Redis, without an error (autoscale needs a running pool)."""
    settings = settings_from(json.loads(json.dumps(_config(vq))), "test")
    daemon = Daemon(settings, DaemonOptions(workers=1, queues=None))
    for name, spec in REGISTRY.items():
        if name != "autoscale":
            spec.action(daemon, redis_conn)
    mine = [d for d in presence.daemons(redis_conn) if d["pid"] == os.getpid()]
    assert len(mine) == 1 and mine[0]["live"], "report-presence published this daemon"


def test_a_chore_runs_at_its_interval_and_one_daemon_at_a_time(vq, redis_conn):
    runs, locked = [], []
    lock = keys.PREFIX + "chore:count-runs"

    def count(daemon, conn) -> None:
        runs.append(time.monotonic())
        locked.append(conn.exists(lock))  # its lock, set just before (for 100 ms: looked at now, not after the loop)

    spec = ChoreSpec("trim-ended", "count runs", lambda s: 100, count)
    settings = settings_from({}, "test")
    mine, other = (Chore(spec, Daemon(settings, DaemonOptions(workers=1, queues=None)), redis_conn) for _ in range(2))
    passes = []  # when the loop got to the chores: a loaded machine stalls it for whole periods
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        passes.append(time.monotonic())
        for chore in (mine, other):
            chore.run_if_due()
        time.sleep(0.01)
    chances, last = 0, float("-inf")  # the periods in which a pass could run it: about 10 unloaded
    for at in passes:
        if at - last >= 0.1:
            chances, last = chances + 1, at
    # Every 100 ms it had a chance (a run or two may fall to the other's lock just expiring),
    # and not twice per period with two daemons.
    assert chances - 2 <= len(runs) <= 11, (runs, passes)
    assert any(locked), "each run holds the chore's lock, named after its title"


def test_a_daemon_runs_its_chores_at_the_configured_intervals(vq, redis_conn):
    vq.configure(daemon={"chores": {"report-presence": 100}})
    daemon = vq.start_daemon(workers=1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "ready:" not in vq.daemon_log():
        vq.check_daemons()
        time.sleep(0.05)
    seen = set()
    # Up to 1.9 s, less than the default 2 s interval (which reports at most twice in it):
    # a loaded machine may delay some of the ten reports a 100 ms interval makes in 1 s.
    started = time.monotonic()
    while time.monotonic() < started + 1.9 and len(seen) < 5:
        seen |= {d["seenMs"] for d in presence.daemons(redis_conn) if d["pid"] == daemon.pid}
        time.sleep(0.02)
    took = time.monotonic() - started
    assert len(seen) >= 5, f"presence reported {len(seen)} times in {took:.1f} s (every 100 ms asked; default 2 s)"


def _config(vq) -> dict:
    import yaml

    return yaml.safe_load(vq.config_path.read_text())


def test_the_daemon_module_keeps_no_interval_of_its_own():
    """The chores' intervals live in the registry and the config, not in daemon.py."""
    import vq.daemon as daemon_module

    for name in ("MAINTAIN_EVERY", "AGE_EVERY", "PRESENCE_EVERY"):
        assert not hasattr(daemon_module, name)
    assert chores.for_daemon(object(), None, autoscaling=False)[-1].spec.name == "prune-artifacts"
