"""The frame every Redis-backed bench in scripts/bench/ runs in: its options shared with the
others, and one session (a temp dir, a private Redis, the consoles) whose failure is said
once, with the logs kept, and whose work dir is removed at the end unless --keep.

    args = parse_args(argv)
    with bench_session("admission") as s:
        results = measure(s.conn, s.workdir, ...)
    if s.failed is not None:
        return s.failed
    report(s.out, results, meta(args, s.redis_version))
    return s.finish(args.keep)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
from _common import BenchError, PrivateRedis, consoles, err
from rich.console import Console


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser described by the first paragraph of the script's docstring, the
    rest shown as written."""
    return argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_run_options(p: argparse.ArgumentParser, poll: float | None = 0.02, timeout: float | None = 600) -> None:
    """The options of every bench that runs `vq daemon`: its log level, how often and how long
    to wait for a drain (poll/timeout None: the bench has no such wait), --keep and --json."""
    p.add_argument("--vq-log-level", default="INFO", help="vq daemon --log-level (default INFO, as operators run it)")
    if poll is not None:
        p.add_argument("--poll", type=float, default=poll, help=f"seconds between completion checks (default {poll})")
    if timeout is not None:
        p.add_argument(
            "--timeout", type=float, default=timeout, help=f"give up on one drain after this many seconds ({timeout:g})"
        )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, daemon and worker logs)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary instead of tables")


@dataclass
class BenchSession:
    workdir: Path
    server: PrivateRedis
    out: Console
    progress: Console
    conn: redis.Redis = field(init=False)
    redis_version: str = ""
    failed: int | None = None  # the exit code, when the measuring failed (said already)
    _on_exit: list[Callable[[], None]] = field(default_factory=list)

    def on_exit(self, stop: Callable[[], None]) -> None:
        """Run `stop` (a daemon's, the workers') when the session ends, however it ends,
        before its Redis stops."""
        self._on_exit.append(stop)

    def finish(self, keep: bool, code: int = 0) -> int:
        """The work dir kept (--keep, or `code` says something failed) or removed; `code` back."""
        if keep or code:
            self.progress.print(f"[dim]kept {self.workdir}[/]")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code


@contextmanager
def bench_session(name: str, announce: bool = True) -> Iterator[BenchSession]:
    """A temp dir `vq-bench-<name>-*` and a private Redis for the `with` block; a BenchError,
    a Redis error or Ctrl-C inside it is said once on stderr, the logs kept, and `failed`
    set (1, or 130 for Ctrl-C) instead of a traceback. `announce`: say the Redis and the dir."""
    workdir = Path(tempfile.mkdtemp(prefix=f"vq-bench-{name}-"))
    server = PrivateRedis(workdir)
    out, progress = consoles()
    session = BenchSession(workdir, server, out, progress)
    try:
        session.conn = server.start()
        session.redis_version = session.conn.info("server")["redis_version"]
        if announce:
            progress.print(
                f"[dim]private redis-server {session.redis_version} on port {server.port}; work dir {workdir}[/]"
            )
        yield session
    except (BenchError, KeyboardInterrupt, redis.RedisError) as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        kind = f"{type(exc).__name__} " if isinstance(exc, redis.RedisError) else ""
        err.print(f"[red]benchmark {'interrupted' if interrupted else 'failed'}:[/] {kind}{exc}")
        err.print(f"[dim]logs kept in {workdir}[/]")
        session.failed = 130 if interrupted else 1
    finally:
        for stop in reversed(session._on_exit):
            stop()
        server.stop()
