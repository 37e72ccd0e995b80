"""Reading the file, overlaying the environment and validating, with every problem as one line
that names the file and the dotted key."""

import os
import re
from pathlib import Path
from typing import Annotated, Literal, TypeGuard

import msgspec

from vq.config.base import _InvalidKey
from vq.config.queue import KeepJobs
from vq.config.settings import Settings
from vq.errors import ConfigError


def default_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vq" / "config.yaml"


# msgspec's errors read "<message> - at `$.queue.defaultJobOptions`" (or "... - at `key` in
# `$.priority.byTier`" for a mapping's key); a mapping's value is "[...]", not its key.
_AT = re.compile(r"(?s)(.*) - at (`key` in )?`\$(.*)`")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def _unwrap(kind: object) -> object:
    """The type a path steps into: Annotated's own type; of a union, the Struct, mapping or
    list in it (vq's unions hold at most one)."""
    from typing import Union, get_args, get_origin

    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin is Union or type(kind).__name__ == "UnionType":
            inner = [arg for arg in get_args(kind) if arg is not type(None)]
            kind = next(
                (arg for arg in inner if get_origin(_unwrap(arg)) in (dict, list) or _is_struct(_unwrap(arg))),
                inner[0],
            )
        else:
            return kind


def _is_struct(kind: object) -> TypeGuard[type[msgspec.Struct]]:
    return isinstance(kind, type) and issubclass(kind, msgspec.Struct)


def _choices(kind: object) -> tuple | None:
    from typing import Union, get_args, get_origin

    if get_origin(kind) is Annotated:
        return _choices(get_args(kind)[0])
    if get_origin(kind) is Literal:
        return get_args(kind)
    if get_origin(kind) is Union or type(kind).__name__ == "UnionType":
        return next((found for found in map(_choices, get_args(kind)) if found), None)
    return None


def _locate(exc: msgspec.ValidationError, raw: object, kind: object) -> tuple[list[str], str]:
    """The dotted key an error is about, and its message: msgspec names a mapping's value
    `[...]`, so the value that fails is found again by converting each in turn."""
    from typing import get_args

    text = str(exc)
    match = _AT.fullmatch(text)
    message, in_key, path = (match[1], match[2], match[3]) if match else (text, None, "")
    keys: list[str] = []
    for name, index in _STEP.findall(path):
        kind = _unwrap(kind)
        if name:
            keys.append(name)
            if not _is_struct(kind):  # msgspec names a field only inside a Struct
                raise TypeError(f"{kind!r} has no field {name!r}")
            kind = next(f.type for f in msgspec.structs.fields(kind) if f.name == name)
            raw = raw.get(name) if isinstance(raw, dict) else None
        elif index == "...":
            value_kind = get_args(kind)[1]
            for key, value in raw.items() if isinstance(raw, dict) else ():
                try:
                    msgspec.convert(value, value_kind, strict=False)
                except msgspec.ValidationError as inner:
                    more, message = _locate(inner, value, value_kind)
                    return [*keys, str(key), *more], message
            keys.append("[...]")
            break
        else:
            keys.append(index)
            kind = get_args(kind)[0]
            raw = raw[int(index)] if isinstance(raw, list) and int(index) < len(raw) else None
    if isinstance(exc.__cause__, _InvalidKey):
        keys.append(exc.__cause__.key)
    if found := re.fullmatch(r"Object contains unknown field `(.*)`", message):
        return [*keys, found[1]], "unknown key"
    if found := re.fullmatch(r"Object missing required field `(.*)`", message):
        return [*keys, found[1]], "missing (required)"
    if found := re.fullmatch(r"Invalid enum value (.*)", message):
        choices = _choices(get_args(_unwrap(kind))[0] if in_key else kind)
        if choices:
            message = f"{found[1]} is not one of {', '.join(map(str, choices))}"
    return keys, message


def _keep_form(value: object) -> str | None:
    """What is wrong with a removeOnComplete / removeOnFail value as written, relative to its
    key (": message" or ".age: message"), else None. Checked before the models are built
    (`_before`), so a bad value gets one line, not one per form the union tried."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value >= 0 else ": a count of jobs must be 0 or more"
    if isinstance(value, dict):
        try:
            msgspec.convert(value, KeepJobs, strict=False)
        except msgspec.ValidationError as exc:
            keys, message = _locate(exc, value, KeepJobs)
            return "".join(f".{key}" for key in keys) + f": {message}"
        return None
    return f": {value!r}: expected true, false, a number of jobs or {{age: ms, count: n}}"


def _apply_env(raw: dict, env: dict[str, str]) -> dict:
    """Overlay REDIS_URL / REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_DB (and VQ_DATA_DIR)."""
    redis_block = dict(raw.get("redis") or {})
    if env.get("REDIS_URL"):
        redis_block = {"url": env["REDIS_URL"]}
    elif env.get("REDIS_HOST") or env.get("REDIS_PORT"):
        redis_block.pop("url", None)
        redis_block.pop("socket", None)
        redis_block["host"] = env.get("REDIS_HOST") or redis_block.get("host") or "localhost"
    for name, key in (("REDIS_PORT", "port"), ("REDIS_DB", "db")):
        if env.get(name):
            try:
                redis_block[key] = int(env[name])
            except ValueError:
                raise ConfigError(f"{name}: expected a whole number, got {env[name]!r}") from None
    if env.get("REDIS_PASSWORD"):
        redis_block["password"] = env["REDIS_PASSWORD"]
    out = dict(raw)
    if redis_block:
        out["redis"] = redis_block
    if env.get("VQ_DATA_DIR"):
        out["data_dir"] = env["VQ_DATA_DIR"]
    return out


def _before(raw: dict) -> str | None:
    """The checks that look at a value as written, before it is converted: removeOnComplete /
    removeOnFail, whose forms (true, false, a number, {age, count}) a union would otherwise
    report one error per form for. The problem as one line, else None."""
    queue = raw.get("queue")
    options = queue.get("defaultJobOptions") if isinstance(queue, dict) else None
    for name in ("removeOnComplete", "removeOnFail"):
        if isinstance(options, dict) and name in options:
            problem = _keep_form(options[name])
            if problem:
                return f"queue.defaultJobOptions.{name}{problem}"
    return None


def settings_from(raw: dict, source: str | Path = "config") -> Settings:
    """Validate a mapping of settings (a parsed config file) into Settings. Raises ConfigError
    with one line, `<source>: <dotted.key>: <message>`."""
    problem = _before(raw)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        keys, message = _locate(exc, raw, Settings)
        raise ConfigError(f"{source}: {'.'.join(keys) or '(top level)'}: {message}") from None


def config_source(path: str | Path | None = None, env: dict[str, str] | None = None) -> Path:
    """The file the settings are read from: `path`, else $VQ_CONFIG, else the default path."""
    explicit = path or (os.environ if env is None else env).get("VQ_CONFIG")
    return Path(explicit).expanduser() if explicit else default_config_path()


def read_raw(path: str | Path | None = None, env: dict[str, str] | None = None) -> tuple[Path, dict]:
    """The file's settings as written, with the environment overlaid, not yet validated: (the
    file it came from, the mapping). Raises ConfigError with one line."""
    env = dict(os.environ) if env is None else env
    explicit = path or env.get("VQ_CONFIG")
    source = config_source(path, env)
    raw: dict = {}
    if source.exists():
        import yaml  # here: with no config file (the default), a command does without it (~10 ms)

        try:
            loaded = yaml.load(source.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{source}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read ({exc.strerror})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of settings at the top level")
        raw = loaded
    elif explicit:
        raise ConfigError(f"{source}: config file not found")
    return source, _apply_env(raw, env)


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read, overlay the environment and validate. Raises ConfigError with one line."""
    source, raw = read_raw(path, env)
    settings = settings_from(raw, source)
    from vq.jobtypes import validate_job_type_settings

    validate_job_type_settings(settings, source)
    return settings
