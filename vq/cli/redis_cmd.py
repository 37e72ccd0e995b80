"""`vq redis status|start|stop`: the embedded Redis, which outlives daemon restarts (vq/redis_admin.py)."""

from __future__ import annotations

import typer

from vq import redis_admin
from vq.cli.helptext import example
from vq.cli.output import emit, err, escape, out
from vq.cli.state import JSON_OPTION, state


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _render_status(view: dict) -> None:
    if view["mode"] == "configured":
        out.print(f"a Redis is configured ({escape(view['address'])}): vq runs no embedded one", highlight=False)
        return
    lines = []
    if view["answering"]:
        lines.append(
            f"embedded Redis: [green]running[/] (pid {view['pid']}), Redis {view['version']}, "
            f"up {view['uptimeSeconds']}s"
        )
    elif view["running"]:
        lines.append(
            f"embedded Redis: [yellow]running but not answering[/] (pid {view['pid']}): loading its AOF, "
            f"or hung (see the log)"
        )
    else:
        lines.append("embedded Redis: [red]not running[/]; `vq redis start` or `vq daemon` starts it")
    lines += [
        f"  socket       {escape(view['socket'])}",
        f"  dir          {escape(view['dir'])}",
        f"  log          {escape(view['log'])}",
    ]
    if view["stalePidFile"]:
        lines.append(
            f"  [yellow]stale pid file[/] {escape(view['stalePidFile'])} (left by a crash or a reboot; "
            "the next start replaces it)"
        )
    p, m = view["persistence"], view["memory"]
    if p is not None:
        aof = (
            f"AOF on, appendfsync {p['appendfsync']}, {_size(p['aofBytes'])} (last write {p['lastWrite']})"
            if p["aof"]
            else "[red]AOF off[/]: a restart loses every job"
        )
        lines.append(f"  persistence  {aof}")
    if m is not None:
        cap = f"maxmemory {_size(m['maxmemory'])}" if m["maxmemory"] else "no maxmemory"
        lines.append(
            f"  memory       {_size(m['usedBytes'])} used (peak {_size(m['peakBytes'])}), {cap}, policy {m['policy']}"
        )
        lines.append(f"  clients      {view['clients']}; keys {view['keys']}")
        daemons = ", ".join(f"{d['host']}:{d['pid']}" for d in view["daemons"]) or "none"
        lines.append(f"  daemons      {daemons}")
    out.print("\n".join(lines), highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The embedded Redis (when none is configured): status, start, stop.",
        no_args_is_help=True,
        epilog=example("vq redis status"),
    )

    @group.command("status", epilog=example("vq redis status --json"))
    def status(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Whether the embedded Redis runs: pid, socket, persistence, memory, the daemons using it.

        Exits 3 when it does not run."""
        view = redis_admin.status(state(ctx).settings)
        emit(view, as_json, _render_status)
        if view["mode"] == "embedded" and not view["answering"]:
            raise typer.Exit(3)

    @group.command("start", epilog=example("vq redis start && vq submit image-generation --user alice"))
    def start(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Start the embedded Redis without a daemon, so jobs can be submitted before one runs.

        They run once a daemon starts, which reuses this Redis; nothing happens when it runs already."""
        view = redis_admin.start(state(ctx).settings)
        emit(
            view,
            as_json,
            lambda v: out.print(
                f"embedded Redis {'started' if v['started'] else 'already running'} (pid {v['pid']}) at "
                f"unix://{escape(v['socket'])}",
                highlight=False,
            ),
        )

    @group.command("stop", epilog=example("vq redis stop"))
    def stop(
        ctx: typer.Context,
        force: bool = typer.Option(
            False,
            "--force",
            help="Stop it even while a daemon uses it (the daemon starts it again at once: a Redis restart).",
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Stop the embedded Redis (SIGTERM: the AOF is flushed first).

        Refused while a daemon on it runs, unless --force."""
        view = redis_admin.stop(state(ctx).settings, force=force)
        if view["daemons"]:
            err.print(
                f"[yellow]warning:[/] vq daemon (pid {', '.join(map(str, view['daemons']))}) starts the "
                "embedded Redis again at once",
                highlight=False,
            )
        emit(
            view,
            as_json,
            lambda v: out.print(
                f"embedded Redis stopped (pid {v['pid']})" if v["stopped"] else "embedded Redis was not running",
                highlight=False,
            ),
        )

    app.add_typer(group, name="redis")
