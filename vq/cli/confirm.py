"""Asking before a destructive command, and refusing to ask where nobody can answer.

A script that passes --json but not --yes has no terminal to answer at: it gets a JSON
error naming --yes (exit 2) instead of a table, a prompt and click's bare "Aborted."."""

from __future__ import annotations

import sys

import typer

from vq.cli.output import err, error, print_json


def refuse_unanswerable(yes: bool, as_json: bool) -> None:
    """Exit 2 with a JSON error when the question could not be answered: --json, no --yes,
    and no terminal on stdin. Call it before printing any preview."""
    if yes or not as_json or sys.stdin.isatty():
        return
    message = (
        "this command asks before it changes anything: pass --yes (with --json and no terminal there is nobody to ask)"
    )
    print_json({"error": {"code": "confirmation_required", "message": message, "field": "--yes"}})
    error(message)
    raise typer.Exit(2)


def ask(question: str, *, yes: bool, as_json: bool, declined: str = "nothing done") -> None:
    """Return once the operator agreed (or passed --yes); exit 1 when they declined or
    stdin ended without an answer, exit 2 when nobody could be asked."""
    if yes:
        return
    refuse_unanswerable(yes, as_json)
    try:
        agreed = typer.confirm(question, err=True, default=False)
    except typer.Abort:  # stdin closed before an answer
        agreed = False
        err.print("")
    if not agreed:
        err.print(f"{declined} (--yes skips the question)")
        raise typer.Exit(1)
