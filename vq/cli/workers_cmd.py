"""`vq workers`: every worker process of every host and how it is doing."""

from __future__ import annotations

import typer

from vq import capacity, workers
from vq.cli.helptext import example
from vq.cli.output import emit, escape, out, table
from vq.cli.state import JSON_OPTION, state


def _age(ms) -> str:
    return "-" if ms is None else f"{ms / 1000:.0f}s"


def _resources(share: dict | None) -> str:
    """`gpu 1/2 vram 24/40`: in use / capacity, per resource."""
    return capacity.usage_text(share["capacity"], share["inUse"]) if share else ""


def _render(rows: list[dict]) -> None:
    if not rows:
        out.print("[dim]no workers registered (is a `vq daemon` running?)[/]")
        return
    with_resources = any(r.get("resources") for r in rows)  # the column only where a worker has some
    out.print(
        table(
            ["worker", "host", "pid", "state", "job", "heartbeat", "done", "failed", "busy s", "memory MB"]
            + (["resources (in use/has)"] if with_resources else []),
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
                    *([_resources(r.get("resources"))] if with_resources else []),
                ]
                for r in rows
            ],
        )
    )
    for host in workers.hosts(rows):
        if host["resources"]:
            out.print(f"{escape(host['host'])}: resources in use {workers.resources_text(host['resources'])}")
    alive = sum(1 for r in rows if r["alive"])
    out.print(
        f"{alive} alive, {sum(1 for r in rows if r['alive'] and r['state'] == 'busy')} busy, {len(rows) - alive} silent"
    )


def register(app: typer.Typer) -> None:
    @app.command("workers", epilog=example("vq workers --json"))
    def workers_command(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Every worker process of every host: state, current job, heartbeat, memory.

        Also jobs done and failed, busy time, and the resources of a worker that has some (in use/has). A worker whose heartbeat is older than
        health.heartbeatAge is shown as silent."""
        st = state(ctx)
        emit(workers.listing(st.conn, st.settings.health.heartbeatAge), as_json, _render)
