"""Commands on job-type queues: queues, pause, resume, clear, types."""

from __future__ import annotations

import typer

from vq import audit, queues
from vq.cli import confirm
from vq.cli.helptext import example
from vq.cli.output import emit, err, out, table
from vq.cli.state import JSON_OPTION, YES_OPTION, state
from vq.errors import NotFound
from vq.jobtypes import job_types

TYPE_HELP = "A job type (see `vq types`)."
TYPE_ARGUMENT = typer.Argument(..., metavar="TYPE", help=TYPE_HELP)  # pause, resume and clear take one


def _render_counts(rows: list[dict]) -> None:
    columns = [
        "type",
        "queued",
        "limited",
        "running/limit",
        "deferred",
        "scheduled",
        "failed",
        "finished",
        "canceled",
        "paused",
    ]
    out.print(
        table(
            columns,
            [
                [
                    r["jobType"],
                    r["queued"],
                    r["limited"],
                    f"{r['running']}/{r['limit']}",
                    r["deferred"],
                    r["scheduled"],
                    f"[red]{r['failed']}[/]" if r["failed"] else 0,
                    r["finished"],
                    r["canceled"],
                    "[yellow]paused[/]" if r["paused"] else "",
                ]
                for r in rows
            ],
        )
    )


def _switch(ctx: typer.Context, job_type: str, as_json: bool, change, action: str, done: str) -> None:
    """`vq pause` and `vq resume`: the change on every host, recorded in the audit trail, said."""
    st = state(ctx)
    row = change(st.conn, st.settings, job_type)
    audit.record(st.conn, audit.cli_actor(), "operator", action, job_type)
    emit(row, as_json, lambda r: err.print(f"{r['jobType']} {done}"))


def register(app: typer.Typer) -> None:
    @app.command("queues", epilog=example("vq queues --json"))
    def list_queues(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Counts per job type and state, and whether each type is paused."""
        st = state(ctx)
        emit(queues.counts(st.conn, st.settings), as_json, _render_counts)

    @app.command("pause", epilog=example("vq pause video-generation"))
    def pause(ctx: typer.Context, job_type: str = TYPE_ARGUMENT, as_json: bool = JSON_OPTION) -> None:
        """Stop starting jobs of TYPE on every host (running ones finish)."""
        _switch(ctx, job_type, as_json, queues.pause, "pause", "paused")

    @app.command("resume", epilog=example("vq resume video-generation"))
    def resume(ctx: typer.Context, job_type: str = TYPE_ARGUMENT, as_json: bool = JSON_OPTION) -> None:
        """Start jobs of TYPE again."""
        _switch(ctx, job_type, as_json, queues.resume, "resume", "resumed")

    @app.command("clear", epilog=example("vq clear image-generation --yes"))
    def clear(
        ctx: typer.Context,
        job_type: str = TYPE_ARGUMENT,
        yes: bool = YES_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Delete TYPE's waiting jobs (queued, scheduled, deferred); asks first unless --yes."""
        st = state(ctx)
        confirm.refuse_unanswerable(yes, as_json)
        row = next((r for r in queues.counts(st.conn, st.settings) if r["jobType"] == job_type), None)
        if row is None:
            from vq.jobtypes import get_job_type

            get_job_type(st.settings, job_type)  # unknown: NotFound naming the known types
            raise NotFound(
                f"job type {job_type!r}: no queue counts", field="jobType"
            )  # counts() lists every known type
        waiting = row["queued"] + row["scheduled"] + row["deferred"]
        confirm.ask(f"Delete {waiting} waiting {job_type} jobs?", yes=yes, as_json=as_json, declined="nothing deleted")
        cleared = queues.clear(st.conn, st.settings, job_type)
        audit.record(st.conn, audit.cli_actor(), "operator", "clear", job_type, removed=cleared["removed"])
        emit(cleared, as_json, lambda r: err.print(f"{r['removed']} waiting {r['jobType']} jobs deleted"))

    @app.command("types", epilog=example("vq types --json"))
    def types(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """The job types this configuration knows, with their limits and handlers."""
        st = state(ctx)
        rows = [
            {
                "jobType": t.name,
                "description": t.description,
                "limit": t.limit,
                "timeoutMs": t.timeout_ms,
                "attempts": t.attempts,
                "handler": t.handler,
                "builtin": t.builtin,
            }
            for t in job_types(st.settings).values()
        ]
        emit(
            rows,
            as_json,
            lambda rs: out.print(
                table(
                    ["type", "limit", "timeout", "attempts", "handler", "description"],
                    [
                        [
                            r["jobType"],
                            r["limit"],
                            f"{r['timeoutMs'] // 1000}s",
                            r["attempts"],
                            r["handler"],
                            r["description"],
                        ]
                        for r in rs
                    ],
                )
            ),
        )
