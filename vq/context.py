"""What a handler sees of its job: ids, progress reporting, an artifacts folder, a logger.

A handler is a plain function `handler(ctx, data) -> dict`. It never touches Redis or RQ
itself; the worker builds the context and turns what the handler returns or raises into
the job's result or failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vq.private import private_dir

if TYPE_CHECKING:
    from vq.providers.calls import ProviderCalls


@dataclass(frozen=True)
class Upstream:
    """The outcome of a job this one depends on: its id, type, plan step and result."""

    id: str
    job_type: str
    step: str | None
    result: dict | None


@dataclass
class HandlerContext:
    job_id: str
    job_type: str
    user_id: str
    project_id: str | None
    attempt: int
    artifacts_root: Path
    log: logging.Logger
    report_progress: Callable[[float, str | None], None] = field(repr=False)
    load_upstream: Callable[[], list[Upstream]] = field(repr=False, default=lambda: [])
    provider_client: ProviderCalls | None = field(repr=False, default=None)
    readable_roots: Callable[[], list[Path]] | None = field(repr=False, default=None)  # None: artifacts_root
    # What the job holds of its worker's resources (vq/capacity.py): gpu as the device indices
    # it was given ({"gpu": [1], "vram": 24}), every other resource as its amount; {} for none.
    resources: dict = field(default_factory=dict)
    # The state this job's last checkpoint saved, when an earlier attempt saved one (after a
    # retry, a stalled-job recovery or a requeue at shutdown); None: it starts from scratch.
    resumed_from: object = None
    save_checkpoint: Callable[[object], None] | None = field(repr=False, default=None)  # None: kept here only
    last_checkpoint: object = field(repr=False, default=None)
    # Whether `vq cancel --now` reached the worker for this job (vq/cancel_now.py); no I/O.
    is_canceled: Callable[[], bool] = field(repr=False, default=lambda: False)
    # CanceledNow when `vq cancel --now` reached the job and this is its handler's thread
    # (vq/handler_stop.py): ctx calls raise the cancellation again in a handler that caught it.
    stop_if_canceled: Callable[..., None] = field(repr=False, default=lambda only_if_interrupted=False: None)
    cancel_hooks: list[Callable[[], object]] = field(repr=False, default_factory=list)

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report how far the job is (0-100) with an optional short message; shown live."""
        self.stop_if_canceled()
        percent = max(0.0, min(100.0, float(percent)))
        self.report_progress(percent, message)

    def checkpoint(self, state: object) -> None:
        """Save how far the job got (JSON, at most limits.maxCheckpointBytes): if this attempt
        does not finish, the next one starts with it as `ctx.resumed_from`. Call it after each
        unit of work that need not be done again (a scene rendered, a page fetched). Fenced
        by the job's lease: a worker that lost the job is stopped here, its state not saved.
        When the daemon is stopping and stops jobs at checkpoints (daemon.stopAtCheckpoint),
        the job is requeued from here."""
        self.stop_if_canceled()  # a job canceled now saves nothing more: its checkpoint goes with it
        if self.save_checkpoint is None:  # outside a queue (tests, run-local): kept here, as JSON
            self.last_checkpoint = json.loads(json.dumps(state))
            return
        self.save_checkpoint(state)
        self.last_checkpoint = state

    @property
    def canceled(self) -> bool:
        """Whether the job was canceled with `vq cancel --now`. A handler in the main thread
        is interrupted anyway; one that runs in a thread (`concurrencyPerWorker` above 1) is
        interrupted only between two Python steps, not inside a blocking call, so it checks
        this between steps of its own (ctx.progress raises too) and may simply return: the
        job ends canceled either way, its result not kept. Once the interruption was raised
        in the handler and it ran on (it caught it), this raises it again instead."""
        self.stop_if_canceled(only_if_interrupted=True)
        return self.is_canceled()

    def on_cancel(self, cleanup: Callable[[], object]) -> Callable[[], object]:
        """Register clean-up to run when the job is canceled while it runs (a temporary
        file, a remote job to stop): called without arguments in the worker, after the
        handler was interrupted, newest first, all of them within daemon.cancelCleanup (5 s
        by default); its errors are logged, not raised. An `isolation: fork` job's run in
        its child process (unless the interruption cannot reach it there and the child is
        killed).
        Returns `cleanup`, so it can be used as a decorator."""
        self.cancel_hooks.append(cleanup)
        return cleanup

    @property
    def artifacts_dir(self) -> Path:
        """A folder of this job's own for the files it produces, readable only by vq's user;
        created on first use."""
        path = self.artifacts_root / self.job_id
        if not path.is_dir():
            private_dir(self.artifacts_root)
            path.mkdir(mode=0o700, exist_ok=True)
        return path

    def input_file(self, value: object, field: str) -> Path:
        """A file a handler is asked to read (named in job data or an upstream result),
        allowed only inside this job's artifacts or those of the jobs it depends on: no value
        in job data can make a handler read elsewhere (`../../etc/passwd`, absolute paths,
        symlinks out)."""
        from vq.errors import PermanentError

        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise PermanentError(f"{field}: expected the path of a file in the job's artifacts")
        path = Path(value)
        if not path.is_absolute():
            path = self.artifacts_dir / path
        real = path.resolve()
        roots = self.readable_roots() if self.readable_roots else [self.artifacts_root]
        if not any(real.is_relative_to(root.resolve()) for root in [self.artifacts_root / self.job_id, *roots]):
            raise PermanentError(f"{field}: {value} is outside this job's and its upstream jobs' artifacts")
        if not real.is_file():
            raise PermanentError(f"{field}: no such file: {value}")
        return real

    def call_provider(self, *args, units: dict | None = None, provider: str | None = None) -> dict:
        """Call an AI provider declared in config and return its JSON answer:
        `ctx.call_provider(payload, units={"characters": 1200})`.

        The first provider the job's type allows that can take the call now is used, with
        failover to the next (vq/providers/calls.py); `provider=` (or the older form
        `call_provider(name, payload)`) pins one. `units` are what the call consumed, priced
        with the provider's cost model; an answer's own numeric `usage` counts too.
        Failures arrive as vq's error categories."""
        if len(args) == 2:
            provider, payload = args
        elif len(args) == 1:
            (payload,) = args
        else:
            raise TypeError("call_provider(payload, units=None, provider=None)")
        if self.provider_client is None:
            from vq.errors import PermanentError

            raise PermanentError("provider: no providers are configured here")
        return self.provider_client.call(payload, units=units, provider=provider)

    @property
    def providers(self) -> list[str]:
        """The HTTP providers this job may call, in order of preference."""
        if self.provider_client is None:
            return []
        return self.provider_client.http_chain

    @property
    def provider_used(self) -> str | None:
        """The provider that answered this job's latest call."""
        return getattr(self.provider_client, "last", None)

    def upstream(self) -> list[Upstream]:
        """Results of the jobs this one depends on, in the order they were named."""
        return self.load_upstream()

    def upstream_by_step(self) -> dict[str, Upstream]:
        """Upstream results keyed by their plan step (for jobs created by a plan)."""
        return {u.step: u for u in self.upstream() if u.step}


def local_context(
    job_id: str,
    job_type: str,
    artifacts_root: Path,
    upstream: list[Upstream] | None = None,
    user_id: str = "local",
    project_id: str | None = None,
) -> tuple[HandlerContext, list]:
    """A context outside any queue, for running a handler directly (tests, `vq run-local`).

    Returns the context and the list its progress reports are appended to.
    """
    reports: list[tuple[float, str | None]] = []
    ctx = HandlerContext(
        job_id=job_id,
        job_type=job_type,
        user_id=user_id,
        project_id=project_id,
        attempt=1,
        artifacts_root=artifacts_root,
        log=logging.getLogger(f"vq.handler.{job_type}"),
        report_progress=lambda p, m: reports.append((p, m)),
        load_upstream=lambda: list(upstream or []),
    )
    return ctx, reports
