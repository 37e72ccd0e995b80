"""The registry of job types: the spec's ten built-ins plus those an operator adds in config.

A job type bundles what the queue needs to know about a kind of work: its handler, its
timeout, attempts and backoff, and its concurrency limit. Config may override any field
of a built-in type or add a new type (which must name a handler).
"""

from __future__ import annotations

import importlib
import math
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from vq.config import Backoff, CacheSettings, Settings
from vq.errors import ConfigError, NotFound

BUILTIN_TYPES: dict[str, tuple[str, int]] = {
    # name: (description, timeout in ms)
    "video-generation": ("Complete video from a prompt: script, scenes, audio, composition", 1_800_000),
    "script-generation": ("A structured script (title, scenes with narration) from a prompt", 300_000),
    "scene-creation": ("One scene from an image and its narration audio", 300_000),
    "audio-synthesis": ("Speech for a narration, as a WAV file", 300_000),
    "image-generation": ("An image of the requested size, as a PNG file", 300_000),
    "world-building": ("A world concept: setting, palette, themes", 300_000),
    "content-analysis": ("Words, reading time, keywords and sentences of a text", 300_000),
    "video-composition": ("Scenes combined into a video (or an edit decision list)", 900_000),
    "personalization": ("Content adjusted to a user's preferences", 300_000),
    "ai-processing": ("A generic AI task dispatched to a named provider", 300_000),
}

DEFAULT_CUSTOM_TYPE_LIMIT = 5
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_HANDLER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

Handler = Callable[..., dict]


@dataclass(frozen=True)
class JobType:
    name: str
    description: str
    handler: str
    timeout_ms: int
    attempts: int
    backoff: Backoff
    limit: int
    builtin: bool
    unknown_errors: str = "temporary"
    on_deadline: str = "expire"  # or "run": a job past its deadline still runs (and counts as a miss)
    providers: tuple[str, ...] = ()
    cache: CacheSettings = field(default_factory=CacheSettings)
    isolation: str = "process"  # or "fork": a child process per job
    concurrency_per_worker: int = 1  # >1: that many jobs at once per worker process, in threads
    max_memory_mb: int | None = None  # a job's allocations past this fail it (vq/resources.py)
    max_cpu_ms: int | None = None  # a job's CPU time past this fails it
    resources: dict[str, float] = field(default_factory=dict)  # what each job needs (vq/capacity.py)

    def retry_intervals(self, rng: random.Random | None = None) -> list[float]:
        """Seconds to wait before each retry, to the millisecond: exponential (or fixed)
        backoff, capped, plus up to `jitter` of it at random so retries of many jobs do not
        arrive together. Rounded up to the millisecond, so a retry never comes early. RQ's
        `Retry` keeps them as given (JSON floats) and its `job.retry` schedules now plus the
        interval, whose microseconds vq's `schedule_job` keeps (vq/rq_seam/queue.py)."""
        uniform = rng.uniform if rng is not None else random.uniform
        intervals = []
        for retry in range(self.attempts - 1):
            ms: float
            if self.backoff.type == "fixed":
                ms = self.backoff.delay
            else:
                ms = self.backoff.delay * (self.backoff.factor**retry)
            ms = min(ms, self.backoff.max) * (1 + uniform(0, self.backoff.jitter))
            intervals.append(max(0, math.ceil(ms)) / 1000)
        return intervals


def _builtin_handler(name: str) -> str:
    return f"vq.handlers.{name.replace('-', '_')}:handle"


def job_types(settings: Settings) -> dict[str, JobType]:
    """Every job type known under these settings, built-ins first."""
    names = list(BUILTIN_TYPES) + [n for n in settings.job_types if n not in BUILTIN_TYPES]
    return {name: _build(settings, name) for name in names}


def _build(settings: Settings, name: str) -> JobType:
    defaults = settings.queue.defaultJobOptions
    override = settings.job_types.get(name)
    description, timeout = BUILTIN_TYPES.get(name, ("", defaults.timeout))
    return JobType(
        name=name,
        description=(override and override.description) or description or "custom job type",
        handler=(override and override.handler) or _builtin_handler(name),
        timeout_ms=(override and override.timeout) or timeout,
        attempts=(override and override.attempts) or defaults.attempts,
        backoff=(override and override.backoff) or defaults.backoff,
        limit=settings.concurrency.type.get(name, DEFAULT_CUSTOM_TYPE_LIMIT),
        builtin=name in BUILTIN_TYPES,
        unknown_errors=(override and override.unknownErrors) or "temporary",
        on_deadline=(override and override.onDeadline) or "expire",
        providers=tuple((override and override.providers) or ()),
        # Built-in handlers are deterministic; an operator's handler may have side effects,
        # so its results are cached only when its type asks for it.
        cache=(override and override.cache) or (settings.cache if name in BUILTIN_TYPES else CacheSettings(ttl=0)),
        # A job's own memory and CPU can only be limited in a process of its own.
        isolation="fork"
        if override and (override.maxMemory or override.maxCpuTime)
        else (override and override.isolation) or "process",
        max_memory_mb=override and override.maxMemory or None,
        max_cpu_ms=override and override.maxCpuTime or None,
        concurrency_per_worker=(override and override.concurrencyPerWorker) or 1,
        resources=dict((override and override.resources) or {}),
    )


def get_job_type(settings: Settings, name: str) -> JobType:
    if name not in BUILTIN_TYPES and name not in settings.job_types:
        raise NotFound(f"unknown job type {name!r} (known: {', '.join(job_types(settings))})", field="jobType")
    return _build(settings, name)  # only this one: submit asks for every job


# Fixed routes under /api/jobs/: a job type with one of these names would be shadowed.
RESERVED_NAMES = frozenset(
    {"delayed", "recurring", "user", "stats", "queues", "health", "performance", "types", "bulk", "events"}
)


def validate_job_type_settings(settings: Settings, source: Path | str) -> None:
    """Names must be slugs and custom types must name a handler as 'module:function'."""
    for name, block in settings.job_types.items():
        if not _NAME.match(name):
            raise ConfigError(f"{source}: job_types.{name}: name must be lowercase letters, digits and '-'")
        if name in RESERVED_NAMES:
            raise ConfigError(
                f"{source}: job_types.{name}: the name is taken by the HTTP API's "
                f"/api/jobs/{name} route (reserved: {', '.join(sorted(RESERVED_NAMES))})"
            )
        if name not in BUILTIN_TYPES and not block.handler:
            raise ConfigError(f"{source}: job_types.{name}.handler: a custom job type needs a handler")
        if block.handler and not _HANDLER.match(block.handler):
            raise ConfigError(f"{source}: job_types.{name}.handler: expected 'module:function', got {block.handler!r}")


@cache
def load_handler(path: str) -> Handler:
    """Import 'package.module:function'. Raises ConfigError naming the path when it cannot."""
    module_name, _, func_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 -- an operator's module may fail in any way on import
        raise ConfigError(f"handler {path!r}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"handler {path!r}: {module_name} has no function {func_name}")
    return func


def handler_companion(path: str, name: str) -> Callable | None:
    """A function beside a handler in its module (`plan`, `check`), or None: also when the
    handler cannot be imported here (it may live only on worker hosts; the worker says so)."""
    try:
        handler = load_handler(path)
    except ConfigError:
        return None
    found = getattr(sys.modules[handler.__module__], name, None)
    return found if callable(found) else None
