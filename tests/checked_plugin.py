"""An operator's job type whose module checks its data at submit, as the built-in types'
modules do (docs/job-types.md, "Plug-in handlers"): `check(data)` beside `handle`."""

from __future__ import annotations

from vq.errors import PermanentError


def check(data: dict) -> None:
    if isinstance(data.get("size"), bool) or not isinstance(data.get("size"), int):
        raise PermanentError("size: required, a whole number")


def handle(ctx, data: dict) -> dict:
    return {"size": data["size"]}
