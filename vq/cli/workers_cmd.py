"""`vq workers`: every worker process of every host and how it is doing."""

from __future__ import annotations

import typer

from vq import workers
from vq.cli.helptext import example
from vq.cli.output import emit, out, table
from vq.cli.state import JSON_OPTION, state


def _age(ms) -> str:
    return "-" if ms is None else f"{ms / 1000:.0f}s"


def _render(rows: list[dict]) -> None:
    if not rows:
        out.print("[dim]no workers registered (is a `vq daemon` running?)[/]")
        return
    out.print(
        table(
            ["worker", "host", "pid", "state", "job", "heartbeat", "done", "failed", "busy s", "memory MB"],
            [
                [
                    r["name"],
                    r["host"],
                    r["pid"],
                    r["state"] if r["alive"] else f"[red]{r['state']} (silent)[/]",
                    r["currentJob"] or "",
                    _age(r["heartbeatAgeMs"]),
                    r["jobsDone"],
                    r["jobsFailed"],
                    r["busySeconds"],
                    "" if r["memoryMb"] is None else f"{r['memoryMb']:.0f}",
                ]
                for r in rows
            ],
        )
    )
    alive = sum(1 for r in rows if r["alive"])
    out.print(
        f"{alive} alive, {sum(1 for r in rows if r['alive'] and r['state'] == 'busy')} busy, {len(rows) - alive} silent"
    )


def register(app: typer.Typer) -> None:
    @app.command("workers", epilog=example("vq workers --json"))
    def workers_command(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Every worker process of every host: state, current job, heartbeat, memory.

        Also jobs done and failed and busy time. A worker whose heartbeat is older than
        health.heartbeatAge is shown as silent."""
        st = state(ctx)
        emit(workers.listing(st.conn, st.settings.health.heartbeatAge), as_json, _render)
