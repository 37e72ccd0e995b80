"""`vq dlq`: the dead-letter queue: list, retry and purge jobs that failed for good."""

from __future__ import annotations

import typer

from vq import dlq
from vq.cli import confirm
from vq.cli.helptext import example
from vq.cli.output import emit, err, escape, out, table
from vq.cli.state import JSON_OPTION, YES_OPTION, state
from vq.durations import parse_duration_ms
from vq.errors import InvalidInput

dlq_app = typer.Typer(
    help="The dead-letter queue: jobs that failed for good.",
    no_args_is_help=True,
    epilog=example("vq dlq list --type image-generation"),
)
TYPE_HELP = "Only this job type."


def _render(views: list[dict]) -> None:
    if not views:
        out.print("[dim]the dead-letter queue is empty[/]")
        return
    out.print(
        table(
            ["id", "type", "user", "attempts", "category", "error", "failed at"],
            [
                [
                    v["id"],
                    v["jobType"],
                    v["userId"],
                    f"{v['attempts']}/{v['maxAttempts']}",
                    (v["error"] or {}).get("category"),
                    escape(((v["error"] or {}).get("message") or "")[:80]),
                    v["finishedAt"],
                ]
                for v in views
            ],
        )
    )


@dlq_app.command("list", epilog=example("vq dlq list --type image-generation --json"))
def list_command(
    ctx: typer.Context,
    job_type: str | None = typer.Option(None, "--type", "-t", help=TYPE_HELP),
    limit: int = typer.Option(50, "--limit", "-n", help="Rows to list, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Dead jobs, newest first, with category, message, attempts (and traceback in --json)."""
    st = state(ctx)
    emit(dlq.list_dead(st.conn, st.settings, job_type, limit), as_json, _render)


@dlq_app.command("retry", epilog=example("vq dlq retry --all --type image-generation --yes"))
def retry_command(
    ctx: typer.Context,
    job_id: str | None = typer.Argument(None, metavar="ID", help="A dead job's id (or prefix). Or --all."),
    all_: bool = typer.Option(False, "--all", help="Retry every dead job (of --type)."),
    job_type: str | None = typer.Option(None, "--type", "-t", help="With --all: only this type."),
    yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Retry one dead job, or all of them (of a type) with --all."""
    st = state(ctx)
    if bool(job_id) == all_:
        raise InvalidInput("give either a job ID or --all")
    if all_ and not yes:
        confirm.refuse_unanswerable(yes, as_json)
        count = len(dlq.list_dead(st.conn, st.settings, job_type, limit=1_000_000))
        confirm.ask(f"Retry {count} dead jobs?", yes=yes, as_json=as_json, declined="nothing retried")
    views = dlq.retry_dead(st.conn, st.settings, [job_id] if job_id else None, job_type)
    emit(views, as_json, lambda vs: err.print(f"{len(vs)} jobs requeued"))


@dlq_app.command("purge", epilog=example("vq dlq purge --older-than 30d --yes"))
def purge_command(
    ctx: typer.Context,
    older_than: str | None = typer.Option(None, "--older-than", help="Only jobs that failed longer ago: 7d, 12h."),
    job_type: str | None = typer.Option(None, "--type", "-t", help=TYPE_HELP),
    yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete dead jobs (older than a duration, of a type); asks first unless --yes."""
    st = state(ctx)
    older_ms = parse_duration_ms(older_than, "--older-than") if older_than else None
    confirm.ask("Delete these dead jobs for good?", yes=yes, as_json=as_json, declined="nothing deleted")
    removed = dlq.purge(st.conn, st.settings, older_ms, job_type)
    emit({"removed": removed}, as_json, lambda r: err.print(f"{r['removed']} dead jobs deleted"))


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
