"""An operator's job type whose module's `check(data)` has a bug of its own (a KeyError):
the submission is accepted with a warning, not refused and not a traceback."""

from __future__ import annotations


def check(data: dict) -> None:
    data["missing"]  # the bug


def handle(ctx, data: dict) -> dict:
    return {"ran": True}
