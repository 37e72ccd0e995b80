"""A shell TAB answered in a few tens of milliseconds: no typer, no command module, no redis-py.

Typer's completion scripts (`vq completion bash|zsh|fish`) run `vq` with `_VQ_COMPLETE` set
(complete_bash, complete_zsh, complete_fish). `answer()` replies from cached data exactly as
typer's click would (the same resolution of the command line, the same output per shell);
when it cannot (no cache for this vq, another instruction or shell, a parameter it does not
know, a help text wider than the terminal) it returns False and main() takes the slow path:
the full typer app, with vq/cli/completers.py's completers attached, which writes the cache.

Caches, in $XDG_CACHE_HOME/vq (else ~/.cache/vq; the directory mode 0700, the files 0600):
- complete-tree-<key>.json: the command tree (commands, options, which value source each
  parameter has, the static value lists), keyed by vq's version and the size and mtime of
  the CLI's modules (and of those the static lists come from) and typer's; the 4 newest kept.
- complete-config.json: per config file (path, size, mtime and the REDIS_* / VQ_DATA_DIR
  environment): its job types and how to reach its Redis (a password included, hence 0600).
- complete-redis.json: recurring ids and names and the 50 newest job ids, kept TTL seconds;
  read from Redis over a plain socket with a short timeout. Redis unreachable: no values
  from it (for TTL seconds), the static ones still complete. The CLI's own commands that
  add or remove jobs or recurring jobs drop it, so the next TAB sees their change.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from vq import __version__

TTL = 10.0  # seconds the values read from Redis are reused
REDIS_TIMEOUT = 0.1  # seconds for connecting and reading, all told, on a TAB that refreshes the values
RECENT_JOBS = 50
COMPLETE_VAR = "_VQ_COMPLETE"
_KEEP = 4  # trees (installs), configs and Redis servers remembered

_HERE = Path(__file__).resolve().parent
_STATIC_FROM = ("model.py", "config.py", "keys.py", "jobtypes.py")  # vq/ modules static_sources() reads


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vq"


# --- files -------------------------------------------------------------------------

def _tree_key() -> str:
    parts = [__version__, sys.version.split()[0]]
    files = sorted(_HERE.glob("*.py")) + [_HERE.parent / name for name in _STATIC_FROM]
    try:
        import importlib.util

        spec = importlib.util.find_spec("typer")
        if spec and spec.origin:
            files.append(Path(spec.origin))
    except (ImportError, ValueError):
        pass
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def tree_path() -> Path:
    return cache_dir() / f"complete-tree-{_tree_key()}.json"


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data) -> None:
    """Atomically, mode 0600, in a 0700 directory; a failure only means no cache."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.chmod(path.parent, 0o700)
        except OSError:
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # left by a process of the same pid that died
            os.unlink(tmp)
            fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, separators=(",", ":"))
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        pass


def save_tree(tree: dict) -> None:
    """Write this vq's tree; keep the _KEEP newest (several installs may share the folder)."""
    path = tree_path()
    _write_json(path, tree)

    def age(old: Path) -> float:
        try:
            return old.stat().st_mtime
        except OSError:
            return 0.0

    for old in sorted(path.parent.glob("complete-tree-*.json"), key=age)[:-_KEEP]:
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass


def forget_redis_values() -> None:
    """After a command that adds or removes jobs or recurring jobs: the next TAB asks Redis."""
    try:
        (cache_dir() / "complete-redis.json").unlink()
    except OSError:
        pass


# --- values from the config and from Redis -----------------------------------------

_CONFIG_ENV = ("VQ_CONFIG", "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB", "VQ_DATA_DIR",
               "XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME")


def _config_key(config_path: str | None) -> str:
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
        common = {"username": parsed.get("username"), "password": parsed.get("password"),
                  "db": int(parsed.get("db") or 0)}
        if parsed.get("path"):
            return {"kind": "unix", "path": parsed["path"], **common}
        return {"kind": "tcp", "host": parsed.get("host") or "localhost", "port": int(parsed.get("port") or 6379),
                **common}
    password = None if block.get("password") is None else str(block["password"])
    common = {"username": None, "password": password, "db": int(block.get("db") or 0)}
    if block.get("socket"):
        return {"kind": "unix", "path": str(block["socket"]), **common}
    if block.get("host"):
        return {"kind": "tcp", "host": str(block["host"]), "port": int(block.get("port") or 6379), **common}
    return {"kind": "unix", "path": str(data_path / "redis" / "redis.sock"), "username": None, "password": None,
            "db": 0}


def _redis_py_parse_url(url: str) -> dict:
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
    """{"job_types", "redis"} of a config, read as vq/config.py's load_settings reads it (the
    file, then the REDIS_* / VQ_DATA_DIR environment) but without loading pydantic or
    validating it. tests/test_completion.py checks it against read_config_validated."""
    import yaml

    env = os.environ
    explicit = config_path or env.get("VQ_CONFIG")
    if explicit:
        source = Path(explicit).expanduser()
    else:
        source = Path(env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")) / "vq" / "config.yaml"
    raw: dict = {}
    if source.exists():
        loaded = yaml.load(source.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError("not a mapping")
        raw = loaded
    elif explicit:
        raise FileNotFoundError(explicit)
    block = dict(raw.get("redis") or {})  # vq.config._apply_env
    if env.get("REDIS_URL"):
        block = {"url": env["REDIS_URL"]}
    elif env.get("REDIS_HOST") or env.get("REDIS_PORT"):
        block.pop("url", None)
        block.pop("socket", None)
        block["host"] = env.get("REDIS_HOST") or block.get("host") or "localhost"
    for name, key in (("REDIS_PORT", "port"), ("REDIS_DB", "db")):
        if env.get(name):
            block[key] = int(env[name])
    if env.get("REDIS_PASSWORD"):
        block["password"] = env["REDIS_PASSWORD"]
    data_dir = env.get("VQ_DATA_DIR") or raw.get("data_dir")
    if data_dir:
        data_path = Path(str(data_dir)).expanduser()
    else:
        data_path = Path(env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")) / "vq"
    custom = [str(name) for name in (raw.get("job_types") or {}) if str(name) not in builtins]
    return {"job_types": [*builtins, *custom], "redis": _spec(block, data_path, _parse_url)}


def read_config_validated(config_path: str | None) -> dict:
    """The same through vq.config (validated): for a static table without the
    built-in types, and to check read_config."""
    import msgspec

    from vq.config import load_settings
    from vq.jobtypes import job_types

    settings = load_settings(config_path)
    block = msgspec.structs.asdict(settings.redis)
    return {"job_types": list(job_types(settings)), "redis": _spec(block, settings.data_path, _redis_py_parse_url)}


def _config_values(config_path: str | None, builtins: list[str] | None) -> dict:
    """{"job_types": [...], "redis": spec or None} of this config, cached by the file's identity."""
    key = _config_key(config_path)
    path = cache_dir() / "complete-config.json"
    cached = _read_json(path) or {}
    entries = cached.get("configs") if isinstance(cached.get("configs"), dict) else {}
    if key in entries:
        return entries[key]
    try:
        entry = read_config(config_path, builtins) if builtins else read_config_validated(config_path)
    except Exception:  # a broken config: the built-in types, and no Redis to ask
        entry = {"job_types": list(builtins or []), "redis": None}
    entry["config"] = config_path
    entry["at"] = time.time()
    entries[key] = entry
    newest = sorted(entries.items(), key=lambda item: item[1].get("at", 0))[-_KEEP:]
    _write_json(path, {"configs": dict(newest)})
    return entry


def _redis_values(config: dict) -> dict:
    """{"job_ids": [...], "recurring": [[id, name], ...]} from the cache (TTL) or Redis."""
    spec = config.get("redis")
    if not spec:
        return {}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "complete-redis.json"
    cached = _read_json(path) or {}
    entries = cached.get("servers") if isinstance(cached.get("servers"), dict) else {}
    entry = entries.get(key)
    now = time.time()
    if entry and 0 <= now - entry.get("at", 0) < TTL:
        return entry
    try:
        fresh = _read_redis(spec, config.get("config"))
    except Exception:  # unreachable, slow, refused: nothing from Redis for TTL seconds
        fresh = {}
    fresh["at"] = now
    entries[key] = fresh
    newest = sorted(entries.items(), key=lambda item: item[1].get("at", 0))[-_KEEP:]
    _write_json(path, {"servers": dict(newest)})
    return fresh


def _read_redis(spec: dict, config_path: str | None) -> dict:
    from vq import keys

    if spec["kind"] == "redis-py":
        from vq.config import load_settings
        from vq.connection import make_client

        client = make_client(load_settings(config_path), socket_timeout=REDIS_TIMEOUT)
        types, recurring = client.smembers(keys.JOB_TYPES_SEEN), client.hgetall(keys.RECURRING)
        types = sorted(t.decode() for t in types)
        ranked = [client.zrevrange(keys.type_jobs(t), 0, RECENT_JOBS - 1, withscores=True) for t in types]
        ranked = [[(member, score) for member, score in rows] for rows in ranked]
        recurring = [item for pair in recurring.items() for item in pair]
    else:
        with _Resp(spec) as conn:
            types, recurring = conn.call([b"SMEMBERS", keys.JOB_TYPES_SEEN], [b"HGETALL", keys.RECURRING])
            types = sorted(t.decode() for t in types)
            replies = conn.call(*[[b"ZREVRANGE", keys.type_jobs(t), b"0", str(RECENT_JOBS - 1), b"WITHSCORES"]
                                  for t in types]) if types else []
            ranked = [[(rows[i], float(rows[i + 1])) for i in range(0, len(rows), 2)] for rows in replies]
    newest = sorted((pair for rows in ranked for pair in rows), key=lambda pair: -pair[1])
    job_ids: list[str] = []
    for member, _ in newest:
        job_id = member.decode() if isinstance(member, bytes) else str(member)
        if job_id not in job_ids:
            job_ids.append(job_id)
        if len(job_ids) >= RECENT_JOBS:
            break
    definitions = []
    for index in range(1, len(recurring), 2):
        try:
            item = json.loads(recurring[index])
            definitions.append((item.get("createdAt") or "", str(item["id"]), item.get("name")))
        except (ValueError, KeyError, TypeError):
            continue
    definitions.sort()
    return {"job_ids": job_ids, "recurring": [[rid, name] for _, rid, name in definitions]}


class _Resp:
    """Just enough of the Redis protocol for a few pipelined reads, with a hard timeout."""

    def __init__(self, spec: dict):
        import socket

        started = time.monotonic()
        if spec["kind"] == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(REDIS_TIMEOUT)
            self.sock.connect(spec["path"])
        else:
            self.sock = socket.create_connection((spec["host"], int(spec["port"])), timeout=REDIS_TIMEOUT)
        self.deadline = started + REDIS_TIMEOUT
        self.buffer = b""
        hello = []
        if spec.get("password"):
            hello.append([b"AUTH", *([spec["username"]] if spec.get("username") else []), spec["password"]])
        if spec.get("db"):
            hello.append([b"SELECT", str(spec["db"])])
        if hello:
            self.call(*hello)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def call(self, *commands: list) -> list:
        out = bytearray()
        for command in commands:
            out += b"*%d\r\n" % len(command)
            for part in command:
                part = part if isinstance(part, bytes) else str(part).encode()
                out += b"$%d\r\n%s\r\n" % (len(part), part)
        self.sock.sendall(bytes(out))
        return [self._reply() for _ in commands]

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("Redis is slow")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self.buffer += chunk

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise ConnectionError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buffer) < size + 2:
                self._fill()
            data, self.buffer = self.buffer[:size], self.buffer[size + 2:]
            return data
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        raise ConnectionError(f"unexpected reply from Redis: {line[:40]!r}")


def source_values(source: str, static: dict, config_path: str | None, params: dict, incomplete: str) -> list[str]:
    """What a parameter with this source completes `incomplete` to (both paths use this)."""
    if source == "job-type-lists":  # a comma-separated list: complete its last item
        head = incomplete[:incomplete.rfind(",") + 1]
        done = set(incomplete.split(",")[:-1])
        values = [head + t for t in dynamic_values("job-types", static, config_path, params) if t not in done]
    elif source in static:
        values = static[source]
    else:
        values = dynamic_values(source, static, config_path, params)
    return [v for v in values if v.startswith(incomplete)]


def dynamic_values(source: str, static: dict, config_path: str | None, params: dict) -> list[str]:
    """The values of a config or Redis source; [] (never an error) when they cannot be had."""
    try:
        if source == "limit-names" and params.get("kind") != "type":
            return list(static.get("tiers") or []) if params.get("kind") == "tier" else []
        config = _config_values(config_path, static.get("builtin-types"))
        if source in ("job-types", "limit-names"):
            return list(config.get("job_types") or [])
        found = _redis_values(config)
        if source == "job-ids":
            return list(found.get("job_ids") or [])
        if source == "history-job":
            return ["export", *(found.get("job_ids") or [])]
        if source == "recurring":
            out: list[str] = []
            for rid, name in found.get("recurring") or []:
                for value in (rid, name):
                    if value and value not in out:
                        out.append(value)
            return out
    except Exception:
        return []
    return []


# --- click's resolution of the command line, on the cached tree -------------------

class _Fallback(Exception):
    """Something only typer itself can answer exactly: take the slow path."""


class _Usage(Exception):
    pass


class _Ctx:
    """What click's Context holds that completion looks at."""

    def __init__(self, node: dict, args: list[str]):
        self.node = node
        self.opts: dict = {}
        self.protected: list[str] = []
        self.args: list[str] = []
        self._parse(args)

    def _parse(self, args: list[str]) -> None:
        node = self.node
        longs, shorts = {}, {}
        for param in node["params"]:
            if param["kind"] != "option":
                continue
            for opts, const in ((param["opts"], True), (param["secondary"], False)):
                for opt in opts:
                    prefix, value = _split_opt(opt)
                    entry = (param, const)
                    if len(prefix) == 1 and len(value) == 1:
                        shorts[opt] = entry
                    else:
                        longs[opt] = entry
        opts, largs, rargs = self.opts, [], list(args)

        def value_for(param) -> str | tuple:
            nargs = param["nargs"]
            if len(rargs) < nargs:
                raise _Usage()
            if nargs == 1:
                return rargs.pop(0)
            taken = tuple(rargs[:nargs])
            del rargs[:nargs]
            return taken

        def process(param, const, value) -> None:
            name = param["name"]
            if param["flag"]:
                if param["multiple"]:
                    opts.setdefault(name, []).append(const)
                elif param.get("count"):
                    opts[name] = opts.get(name, 0) + 1
                else:
                    opts[name] = const
            elif param["multiple"]:
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value

        def match_long(opt: str, explicit) -> None:
            if opt not in longs:
                raise KeyError(opt)
            param, const = longs[opt]
            if param["flag"]:
                if explicit is not None:
                    raise _Usage()
                process(param, const, None)
                return
            if explicit is not None:
                rargs.insert(0, explicit)
            process(param, const, value_for(param))

        def match_short(arg: str) -> None:
            prefix = arg[0]
            for i, ch in enumerate(arg[1:], start=2):
                entry = shorts.get(f"{prefix}{ch}")
                if entry is None:
                    if node["ignore_unknown"]:
                        raise _Fallback()
                    raise _Usage()
                param, const = entry
                if param["flag"]:
                    process(param, const, None)
                    continue
                if i < len(arg):
                    rargs.insert(0, arg[i:])
                    process(param, const, value_for(param))
                    return
                process(param, const, value_for(param))

        arguments = [p for p in node["params"] if p["kind"] == "argument"]
        try:
            while rargs:
                arg = rargs.pop(0)
                if arg == "--":
                    break
                if arg[:1] == "-" and len(arg) > 1:
                    explicit = None
                    long_opt = arg
                    if "=" in arg:
                        long_opt, explicit = arg.split("=", 1)
                    try:
                        match_long(long_opt, explicit)
                    except KeyError:
                        if arg[:2] not in ("-", "--"):
                            match_short(arg)
                            continue
                        if node["ignore_unknown"]:
                            raise _Fallback() from None
                        raise _Usage() from None
                elif node["interspersed"]:
                    largs.append(arg)
                else:
                    rargs.insert(0, arg)
                    break
            pargs, rest = _unpack_args(largs + rargs, [p["nargs"] for p in arguments])
            for param, value in zip(arguments, pargs):
                if param["nargs"] > 1:
                    holes = sum(1 for x in value if x is None)
                    if holes == len(value):
                        value = None
                    elif holes:
                        raise _Usage()
                if param["nargs"] == -1 and value == ():
                    value = None
                opts[param["name"]] = value
            largs = rest
        except _Usage:
            pass
        self.args = largs
        if node["group"] and largs:
            self.protected, self.args = largs[:1], largs[1:]

    def from_command_line(self, name: str) -> bool:
        return self.opts.get(name) is not None


def _split_opt(opt: str) -> tuple[str, str]:
    first = opt[:1]
    if first.isalnum():
        return "", opt
    if opt[1:2] == first:
        return opt[:2], opt[2:]
    return first, opt[1:]


def _unpack_args(args: list[str], nargs_spec: list[int]):
    """click.parser._unpack_args."""
    from collections import deque

    args, nargs_spec = deque(args), deque(nargs_spec)
    rv: list = []
    spos = None

    def fetch(c):
        try:
            return c.popleft() if spos is None else c.pop()
        except IndexError:
            return None

    while nargs_spec:
        nargs = fetch(nargs_spec)
        if nargs == 1:
            rv.append(fetch(args))
        elif nargs > 1:
            x = [fetch(args) for _ in range(nargs)]
            if spos is not None:
                x.reverse()
            rv.append(tuple(x))
        elif nargs < 0:
            spos = len(rv)
            rv.append(None)
    if spos is not None:
        rv[spos] = tuple(args)
        args = []
        rv[spos + 1:] = reversed(rv[spos + 1:])
    return tuple(rv), list(args)


def _resolve(root: dict, args: list[str]) -> tuple[_Ctx, list[_Ctx]]:
    """click's _resolve_context: the innermost command's context (and its parents)."""
    ctx = _Ctx(root, args)
    chain = [ctx]
    rest = ctx.protected + ctx.args
    while rest and ctx.node["group"]:
        child = ctx.node["children"].get(rest[0])
        if child is None:
            break
        ctx = _Ctx(child, rest[1:])
        chain.append(ctx)
        rest = ctx.protected + ctx.args
    return ctx, chain


def completions(tree: dict, args: list[str], incomplete: str) -> list[tuple[str, list | None]]:
    """(value, help) items, as click's ShellComplete.get_completions returns them."""
    ctx, chain = _resolve(tree["root"], args)
    args = list(args)
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and incomplete[:1] == "-":
        name, _, incomplete = incomplete.partition("=")
        args.append(name)
    params = ctx.node["params"]
    if "--" not in args and incomplete[:1] == "-":
        return _command_items(ctx, incomplete)
    for param in params:
        if param["kind"] == "option" and not param["flag"]:
            last = None
            for index, arg in enumerate(reversed(args)):
                if index + 1 > param["nargs"]:
                    break
                if arg[:1] == "-":
                    last = arg
                    break
            if last is not None and last in param["opts"]:
                return _param_items(tree, chain, ctx, param, incomplete)
    for param in params:
        if param["kind"] == "argument":
            value = ctx.opts.get(param["name"])
            if (param["nargs"] == -1 or value is None
                    or (param["nargs"] > 1 and isinstance(value, (tuple, list)) and len(value) < param["nargs"])):
                return _param_items(tree, chain, ctx, param, incomplete)
    return _command_items(ctx, incomplete)


def _command_items(ctx: _Ctx, incomplete: str) -> list:
    node = ctx.node
    items = []
    if node["group"]:
        items += [(name, help) for name, hidden, help in node["commands"] if name.startswith(incomplete) and not hidden]
    if incomplete and not incomplete[0].isalnum():
        for param in node["params"]:
            if param["kind"] != "option" or param["hidden"]:
                continue
            if not param["multiple"] and ctx.from_command_line(param["name"]):
                continue
            items += [(name, param["help"]) for name in param["opts"] + param["secondary"] if name.startswith(incomplete)]
    return items


def _param_items(tree: dict, chain: list[_Ctx], ctx: _Ctx, param: dict, incomplete: str) -> list:
    if param["custom"] or param["kind"] == "other":
        raise _Fallback()
    source = param["source"]
    if source:
        config = chain[0].opts.get("config") or os.environ.get("VQ_CONFIG") or None
        return [(v, None) for v in source_values(source, tree["static"], config, ctx.opts, incomplete)]
    if param["choices"] is not None:
        if param["case_sensitive"]:
            return [(c, None) for c in param["choices"] if c.startswith(incomplete)]
        return [(c, None) for c in param["choices"] if c.lower().startswith(incomplete.lower())]
    if param["file"]:
        return [(incomplete, None)]
    return []


# --- the shells' side: typer's BashComplete, ZshComplete and FishComplete ----------

def _split(text: str) -> list[str]:
    """click's split_arg_string."""
    import shlex

    lex = shlex.shlex(text, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out = []
    try:
        for token in lex:
            out.append(token)
    except ValueError:
        out.append(lex.token)
    return out


def _terminal_width() -> int:
    """The narrowest width rich could wrap typer's help texts at (they are used only when
    they fit it; else the slow path renders them)."""
    fixed = os.environ.get("TERMINAL_WIDTH")
    if fixed:
        return int(fixed)
    widths = [80]
    for fd in (0, 1, 2):
        try:
            widths.append(os.get_terminal_size(fd).columns or 80)
        except (OSError, ValueError):
            pass
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        widths.append(int(columns) or 80)
    return min(widths)


def _help_text(help: list, which: int, width: int) -> str:
    text = help[which]
    if not text.isascii() or any(len(line) > width for line in text.split("\n")):
        raise _Fallback()
    return text


def _zsh_escape(s: str) -> str:
    return s.replace('"', '""').replace("'", "''").replace("$", "\\$").replace("`", "\\`").replace(":", r"\\:")


def answer() -> int | None:
    """The TAB's reply from the caches: the exit code, or None to take the slow path."""
    try:
        instruction = os.environ.get(COMPLETE_VAR, "")
        action, _, shell = instruction.partition("_")
        if action != "complete" or shell not in ("bash", "zsh", "fish"):
            return None
        tree = _read_json(tree_path())
        if not isinstance(tree, dict) or "root" not in tree:
            return None
        if shell == "bash":
            if "COMP_WORDS" not in os.environ or "COMP_CWORD" not in os.environ:
                return None
            words = _split(os.environ["COMP_WORDS"])
            cword = int(os.environ["COMP_CWORD"])
            args = words[1:cword]
            incomplete = words[cword] if cword < len(words) else ""
        else:
            line = os.environ.get("_TYPER_COMPLETE_ARGS", "")
            words = _split(line)
            args = words[1:]
            incomplete = ""
            if args and not line.endswith(" "):
                incomplete, args = args[-1], args[:-1]
        items = completions(tree, args, incomplete)
        width = _terminal_width()
        if shell == "bash":
            out = "\n".join(value for value, _ in items)
        elif shell == "zsh":
            lines = [f'"{_zsh_escape(value)}":"{_help_text(help, 1, width)}"' if help else f'"{_zsh_escape(value)}"'
                     for value, help in items]
            out = "_arguments '*: :((" + "\n".join(lines) + "))'" if lines else "_files"
        else:
            lines = [f"{value}\t{_help_text(help, 2, width)}" if help else value for value, help in items]
            action = os.environ.get("_TYPER_COMPLETE_FISH_ACTION", "")
            if action == "is-args":
                return 0 if lines else 1
            out = "\n".join(lines) if action == "get-args" and lines else ""
    except _Fallback:
        return None
    except Exception:  # whatever the cache held: the slow path answers
        return None
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return 0
