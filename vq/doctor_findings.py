"""What a `vq doctor` check says: a Finding, ok, warn (works, with a risk worth knowing) or
fail (jobs can be lost or nothing runs); the CLI's exit code is the worst of them."""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("ok", "warn", "fail")


@dataclass
class Finding:
    check: str
    status: str  # ok | warn | fail
    detail: str
    fix: str | None = None


def exit_code(findings: list[Finding]) -> int:
    return max((LEVELS.index(f.status) for f in findings), default=0)
