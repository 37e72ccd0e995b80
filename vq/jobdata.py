"""Job data: the one check every job's `data` passes before anything is written.

Data arrives from the CLI, the HTTP API, batches, templates, recurring definitions, a
plan's steps and the Python API (`vq.submission.submit`), all through
`vq/submission/validation.py`, which calls `check` first. Whatever passes can be stored, read back
and printed as strict JSON by every reader (`vq show --json`, the HTTP API, the TUI):
only JSON's types (objects with text keys, arrays, text, finite numbers, true, false,
null), nested no deeper than `limits.maxDataDepth`, whole numbers within 64 bits, and
no more than `limits.maxDataBytes` encoded.

The walk is iterative (no RecursionError on deep or self-referencing data) and every
refusal names the place (`data.a.b[2]`) and the limit or rule it broke.
"""

from __future__ import annotations

import json
import math

from vq.errors import InvalidInput

INT_RANGE = (-(2**63), 2**64 - 1)  # what JSON parsers that keep whole numbers exact accept
_SHOWN_STEPS = 6  # a deep path is shown by its first steps, then "..."


class TooLarge(InvalidInput):
    http_status = 413
    code = "too_large"


LIST_RESULT_BYTES = 16 * 1024  # a list of jobs carries a result up to this size (compact JSON)
RESULT_DEPTH = 128  # results nest no deeper (every reader must be able to print them)


def check(
    data: object,
    max_depth: int,
    max_bytes: int,
    where: str = "data",
    *,
    depth_setting: str = "limits.maxDataDepth",
    size_setting: str = "limits.maxDataBytes",
    as_python_json: bool = False,
) -> int:
    """Raise InvalidInput naming the first thing in `data` that is not storable JSON;
    return the size of its compact JSON encoding in bytes. The settings named in the
    messages are those the limits come from (a handler's result has its own).
    `as_python_json` (a handler's result) also takes what Python's json module writes as
    JSON: tuples as arrays, number, boolean and null keys as text."""
    arrays = (list, tuple) if as_python_json else list
    key_types = (str, int, float, bool, type(None)) if as_python_json else str
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: expected a JSON object", field=where)
    # Each entry: (value, depth of the container holding it, trail). A trail is
    # (parent trail, key, container) so a path is built only when something is refused.
    stack: list[tuple[object, int, tuple | None]] = [(data, 0, None)]
    while stack:
        value, depth, trail = stack.pop()
        if isinstance(value, dict):
            if depth + 1 > max_depth:
                _too_deep(value, trail, max_depth, where, depth_setting)
            for key in value:
                if not isinstance(key, key_types) or (isinstance(key, float) and not math.isfinite(key)):
                    raise InvalidInput(
                        f"{_path(where, trail)}: key {key!r} is not text (JSON keys are strings)",
                        field=_path(where, trail),
                    )
            # reversed: popped in document order, so the first bad value is the one named
            stack.extend((item, depth + 1, (trail, key, value)) for key, item in reversed(value.items()))
        elif isinstance(value, arrays):
            if depth + 1 > max_depth:
                _too_deep(value, trail, max_depth, where, depth_setting)
            stack.extend((value[index], depth + 1, (trail, index, value)) for index in reversed(range(len(value))))
        elif isinstance(value, float):
            if not math.isfinite(value):
                name = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
                raise InvalidInput(f"{_path(where, trail)}: {name} is not a JSON number", field=_path(where, trail))
        elif isinstance(value, int) and not isinstance(value, bool):
            if not INT_RANGE[0] <= value <= INT_RANGE[1]:
                raise InvalidInput(
                    f"{_path(where, trail)}: the whole number is out of range (JSON numbers here fit in 64 bits)",
                    field=_path(where, trail),
                )
        elif not (value is None or isinstance(value, (str, bool))):
            raise InvalidInput(
                f"{_path(where, trail)}: {type(value).__name__!r} is not a JSON type "
                "(expected an object, array, string, number, true, false or null)",
                field=_path(where, trail),
            )
    size = len(json.dumps(data, separators=(",", ":"), allow_nan=False).encode())
    if size > max_bytes:
        raise TooLarge(f"{where}: {size} bytes is over the limit of {max_bytes} bytes ({size_setting})", field=where)
    return size


def _too_deep(container: object, trail: tuple | None, max_depth: int, where: str, setting: str) -> None:
    path = _path(where, trail, shorten=True)
    node = trail
    while node is not None:  # a container inside itself: say so, not "too deep"
        if node[2] is container:
            raise InvalidInput(f"{path}: refers to itself (a cycle is not JSON)", field=where)
        node = node[0]
    raise InvalidInput(f"{path}: nested deeper than {max_depth} levels ({setting})", field=where)


def _path(where: str, trail: tuple | None, shorten: bool = False) -> str:
    steps = []
    while trail is not None:
        steps.append(trail[1])
        trail = trail[0]
    steps.reverse()
    cut = shorten and len(steps) > _SHOWN_STEPS
    text = where + "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps[: _SHOWN_STEPS if cut else None])
    return text + "..." if cut else text


def finite(value: object) -> object:
    """`value` with every NaN or infinity as null: what a reader prints of a job stored
    before vq refused them, so its output is still strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps_strict(value: object, **options) -> str:
    """json.dumps that never writes NaN or Infinity (not JSON): they become null."""
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:
        return json.dumps(finite(value), allow_nan=False, **options)
