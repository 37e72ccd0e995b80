"""What every config block shares: the tiers, priorities and chore names, and the strict Struct
base whose unknown keys are errors."""

import msgspec

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


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
