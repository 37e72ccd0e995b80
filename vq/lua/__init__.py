"""vq's Lua scripts, one file each, and the one way to load them."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def source(name: str) -> str:
    """A script's text, read once per process."""
    return resources.files(__name__).joinpath(name).read_text()


def script(conn, name: str):
    """The script bound to `conn` (redis-py runs it by SHA and loads it when Redis lacks it)."""
    return conn.register_script(source(name))
