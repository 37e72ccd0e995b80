"""Job templates: named presets in config (`templates:`) that `vq submit --template NAME`
starts from; `--set key=value` changes one field of the data (dotted keys reach into
objects; a value is JSON when it parses as JSON, else text)."""

from __future__ import annotations

import copy
import json

from vq.config import Settings, TemplateSettings
from vq.errors import InvalidInput, NotFound


def get(settings: Settings, name: str) -> TemplateSettings:
    if name not in settings.templates:
        known = ", ".join(sorted(settings.templates)) or "none are configured"
        raise NotFound(f"no template {name!r} (templates: {known})")
    return settings.templates[name]


def data_with(base: dict, assignments: list[str]) -> dict:
    """`base` with each `key=value` (or `a.b.c=value`) applied, in order."""
    data = copy.deepcopy(base)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--set: {assignment!r} is not key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = data
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise InvalidInput(f"--set: {'.'.join(parts[: depth + 1])} is not an object in the template's data")
            target = nxt
        target[parts[-1]] = value
    return data
