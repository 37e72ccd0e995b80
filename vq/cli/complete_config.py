"""Completion's view of a config: its job types and how to reach its Redis, read by
vq/config/loader.py's reader (the file, then the REDIS_* / VQ_DATA_DIR environment) without
validating it or importing redis-py, and cached per config file in complete-config.json (a
password included, hence the file's mode 0600). Only a cache miss reads the file; a warm TAB
uses the standard library alone (`_config_key` finds the file as the loader does).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from vq.cli.complete_files import KEEP, cache_dir, read_json, write_json

_CONFIG_ENV = (
    "VQ_CONFIG",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "VQ_DATA_DIR",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "HOME",
)


def _config_key(config_path: str | None) -> str:
    """The config file's identity (path, size, mtime, inode) and the environment it is read with."""
    explicit = config_path or os.environ.get("VQ_CONFIG")
    if explicit:
        path = os.path.expanduser(explicit)
    else:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        path = os.path.join(base, "vq", "config.yaml")
    try:
        stat = os.stat(path)
        seen = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    except OSError:
        seen = "missing"
    parts = [os.path.abspath(path), seen, str(config_path)] + [f"{k}={os.environ.get(k, '')}" for k in _CONFIG_ENV]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def _spec(block: dict, data_path: Path, parse_url) -> dict:
    """How to reach Redis over a plain socket, from the config's redis block (after the
    environment) as vq/connection.py chooses: "redis-py" when only redis-py can (TLS, Sentinel)."""
    if block.get("sentinel"):
        return {"kind": "redis-py"}
    if block.get("url"):
        parsed = parse_url(block["url"])
        if parsed.get("tls"):
            return {"kind": "redis-py"}
        common = {
            "username": parsed.get("username"),
            "password": parsed.get("password"),
            "db": int(parsed.get("db") or 0),
        }
        if parsed.get("path"):
            return {"kind": "unix", "path": parsed["path"], **common}
        return {
            "kind": "tcp",
            "host": parsed.get("host") or "localhost",
            "port": int(parsed.get("port") or 6379),
            **common,
        }
    password = None if block.get("password") is None else str(block["password"])
    common = {"username": None, "password": password, "db": int(block.get("db") or 0)}
    if block.get("socket"):
        return {"kind": "unix", "path": str(block["socket"]), **common}
    if block.get("host"):
        return {"kind": "tcp", "host": str(block["host"]), "port": int(block.get("port") or 6379), **common}
    return {
        "kind": "unix",
        "path": str(data_path / "redis" / "redis.sock"),
        "username": None,
        "password": None,
        "db": 0,
    }


def _redis_py_parse_url(url: str) -> dict:
    """redis-py's own parse_url (the validated reader may import redis-py), with `tls` added."""
    from redis.connection import SSLConnection, parse_url

    parsed = parse_url(url)
    parsed["tls"] = parsed.get("connection_class") is SSLConnection
    return parsed


def _parse_url(url: str) -> dict:
    """redis-py's parse_url, for what completion needs, without importing redis-py."""
    from urllib.parse import parse_qs, unquote, urlparse

    if not url.lower().startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("not a Redis URL")
    parts = urlparse(url)
    out: dict = {}
    for name, value in parse_qs(parts.query).items():
        if value:
            out[name] = int(value[0]) if name == "db" else value[0]
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.password:
        out["password"] = unquote(parts.password)
    if parts.scheme == "unix":
        if parts.path:
            out["path"] = unquote(parts.path)
        return out
    if parts.hostname:
        out["host"] = unquote(parts.hostname)
    if parts.port is not None:
        out["port"] = int(parts.port)
    if parts.path and "db" not in out:
        try:
            out["db"] = int(unquote(parts.path).replace("/", ""))
        except ValueError:
            pass
    out["tls"] = parts.scheme == "rediss"
    return out


def read_config(config_path: str | None, builtins: list[str]) -> dict:
    """{"job_types", "redis", "limit_groups"} of a config, read by vq/config's own reader (the file, then the
    REDIS_* / VQ_DATA_DIR environment) but not validated, and without redis-py: a config
    with a bad value elsewhere still completes. tests/test_completion.py checks it against
    read_config_validated."""
    from vq.config.loader import read_raw

    _source, raw = read_raw(config_path)
    data_dir = raw.get("data_dir")
    if data_dir:
        data_path = Path(str(data_dir)).expanduser()
    else:
        data_path = Path(os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")) / "vq"
    custom = [str(name) for name in (raw.get("job_types") or {}) if str(name) not in builtins]
    concurrency = raw.get("concurrency")
    in_groups = concurrency.get("groups") if isinstance(concurrency, dict) else None
    return {
        "job_types": [*builtins, *custom],
        "redis": _spec(dict(raw.get("redis") or {}), data_path, _parse_url),
        "limit_groups": [str(name) for name in in_groups] if isinstance(in_groups, dict) else [],
    }


def read_config_validated(config_path: str | None) -> dict:
    """The same through vq.config (validated): for a static table without the
    built-in types, and to check read_config."""
    import msgspec

    from vq.config import load_settings
    from vq.jobtypes import job_types

    settings = load_settings(config_path)
    block = msgspec.structs.asdict(settings.redis)
    return {
        "job_types": list(job_types(settings)),
        "redis": _spec(block, settings.data_path, _redis_py_parse_url),
        "limit_groups": list(settings.concurrency.groups),
    }


def config_values(config_path: str | None, builtins: list[str] | None) -> dict:
    """{"job_types": [...], "redis": spec or None, "limit_groups": [...]} of this config, cached by
    the file's identity."""
    key = _config_key(config_path)
    path = cache_dir() / "complete-config.json"
    cached = read_json(path) or {}
    entries = cached.get("configs")
    if not isinstance(entries, dict):
        entries = {}
    if key in entries:
        return entries[key]
    try:
        entry = read_config(config_path, builtins) if builtins else read_config_validated(config_path)
    except Exception:  # noqa: BLE001 -- a broken config: the built-in types, and no Redis to ask
        entry = {"job_types": list(builtins or []), "redis": None}
    entry["config"] = config_path
    entry["at"] = time.time()
    entries[key] = entry
    newest = sorted(entries.items(), key=lambda item: item[1].get("at", 0))[-KEEP:]
    write_json(path, {"configs": dict(newest)})
    return entry
