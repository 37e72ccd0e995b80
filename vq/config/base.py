"""What every config block shares: the tiers, priorities and chore names, and the strict Struct
base whose unknown keys are errors."""

from typing import Annotated

import msgspec
from msgspec import Meta

TIERS = ("free", "basic", "pro", "enterprise")
# The daemon's housekeeping chores (vq/chores.py), the keys of daemon.chores.
CHORE_NAMES = (
    "trim-ended",
    "age-waiting",
    "expire-deadlines",
    "enqueue-dependents",
    "mark-unrouted",
    "forget-idle-marks",
    "recover-stalled",
    "check-health",
    "copy-recurring",
    "batch-callbacks",
    "sweep-batches",
    "report-presence",
    "prune-artifacts",
    "autoscale",
)
PRIORITIES = ("high", "normal", "low")


class _InvalidKey(ValueError):
    """A check in `__post_init__` failed for one key of the block: the error line names it."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class _Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Unknown keys are errors: a typo must never be silently ignored."""


# Resources by name and amount (vq/capacity.py): what a job type needs (job_types.T.resources)
# and what a daemon's workers have (daemon.resources, daemon.resourcesPerWorker).
ResourceAmounts = dict[str, Annotated[float, Meta(ge=0)]]


def check_resources(block: _Strict, *names: str) -> None:
    """Each named ResourceAmounts key of `block` as vq/capacity.py takes it (resource names,
    gpu in whole devices); the first that is not fails naming its key."""
    from vq.capacity import checked
    from vq.errors import VqError

    for name in names:
        if getattr(block, name) is not None:
            try:
                checked(getattr(block, name), name)
            except VqError as exc:
                raise _InvalidKey(name, str(exc).partition(": ")[2]) from None


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
