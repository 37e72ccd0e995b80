"""The end of a job that succeeded, as the admission script writes it (vq/lua/admit_end.lua).

A worker ends a job, gives its slots back and takes its next job in one script call
(vq/admission.py `admit_in`); this is the typed shape of the end it sends, encoded as one
JSON object (the script's ARGV[2]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JobEnd:
    """What the script writes for a finished job: fields of its RQ hash, its expiry, RQ's
    finished registry and the `finished` event."""

    id: str
    key: str  # the job's RQ hash
    fields: list[str]  # field, value, ... to set in it (status, ended_at, last_heartbeat, result)
    ttl: int  # seconds the ended job is kept; -1: for ever
    registry: str  # RQ's finished registry of its queue
    event: list[str]  # the `finished` event, field, value, ...
    dependents: str  # RQ's set of the jobs waiting for it: expires with it; its existence is answered
    expire: list[str] = field(default_factory=list)  # other keys that expire with it (its dependencies' set)
    webhook: str = ""  # the job's webhookUrl: the event is copied to the webhook notifier's stream
    token: str | None = None  # its lease's token: fences the end and the give-back; None: started unfenced

    def encode(self) -> str:
        return json.dumps(vars(self), separators=(",", ":"))  # vars, not asdict: no deep copy per job


def encoded(end: JobEnd | str) -> str:
    """The script's argument: a JobEnd encoded, or already JSON of that shape ('' = none)."""
    return end.encode() if isinstance(end, JobEnd) else end
