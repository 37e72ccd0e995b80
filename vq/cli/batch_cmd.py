"""`vq batch`: a set of jobs followed as one, with callbacks on success, complete and death."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from vq import audit, batch_lists, batches
from vq.batch_views import STATES, fired_text
from vq.cli.helptext import example, one_of
from vq.cli.output import emit, escape, out, print_json, status_text, table
from vq.cli.state import JSON_OPTION, SUBSCRIPTION_OPTION, state
from vq.cli.submit_cmd import parse_data, submissions_from
from vq.errors import InvalidInput

CALLBACK_HELP = (
    "A webhook URL, or a job as JSON: {\"jobType\": T, \"data\": {...}} (gets the batch's summary in data.batch)."
)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "-"


BATCH_ID = "The batch's id, or a unique prefix of at least 8 characters (vq tui shows 12)."
STATE_STYLE = {"complete": "green", "open": "yellow", "closed": "cyan"}


def _state_text(state_name: str) -> str:
    return f"[{STATE_STYLE.get(state_name, 'white')}]{state_name}[/]"


def render_batch(view: dict) -> None:
    counts = view["counts"]
    out.print(f"[bold]{view['id']}[/]  user {escape(view['userId'])}  {_state_text(view['state'])}")
    if view["description"]:
        out.print(escape(view["description"]))
    out.print(
        f"total {counts['total']}  done {counts['done']}  failed {counts['failed']}  "
        f"canceled {counts['canceled']}  pending {counts['pending']}"
    )
    out.print(
        f"created {_when(view['createdAt'])}  closed {_when(view['closedAt'])}  complete {_when(view['completedAt'])}"
    )
    for kind, cb in view["callbacks"].items():
        target = escape(str(cb.get("url") or cb.get("jobType")))
        if cb["delivered"]:
            how = f"delivered {cb['delivered'].get('jobId') or ''}".rstrip()
        elif cb["undelivered"]:
            how = f"[red]not delivered: {escape(cb['undelivered'])}[/]"
        else:
            how = "fired, delivering" if cb["fired"] else "not fired"
        out.print(f"on {kind}: {target}  {how}")
    rows = [
        [j["id"], escape(j.get("jobType") or "-"), status_text(j["outcome"] or j.get("status") or "-")]
        for j in view.get("jobs", [])
    ]
    if rows:
        out.print(table(["job", "type", "outcome / status"], rows))


def _counts_text(view: dict) -> str:
    counts = view["counts"]
    return f"{counts['done']}/{counts['failed']}/{counts['canceled']}/{counts['pending']}"


def render_batches(listing: dict) -> None:
    views = listing["batches"]
    shown = len(views)
    footer = (
        f"{listing['offset'] + 1:,}–{listing['offset'] + shown:,} of {listing['total']:,}"
        if shown
        else f"0 of {listing['total']:,}"
    )
    if not views:
        out.print(f"[dim]no batches[/] ({footer})")
        return
    rows = [
        [
            v["id"],
            escape(v["userId"]),
            _state_text(v["state"]),
            v["counts"]["total"],
            _counts_text(v),
            fired_text(v),
            _when(v["createdAt"]),
            escape(v["description"] or ""),
        ]
        for v in views
    ]
    out.print(
        table(
            ["id", "user", "state", "jobs", "done/failed/canceled/pending", "callbacks", "created", "description"], rows
        )
    )
    out.print(footer)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Batches: jobs followed as one, with callbacks on success, complete and death.",
        epilog=example("vq batch create jobs.jsonl --user alice --on-complete https://example.com/hook"),
        no_args_is_help=True,
    )
    app.add_typer(group, name="batch")

    @group.command(
        "create",
        epilog=example("vq batch create scenes.jsonl --user alice --open --on-death https://hooks.example.com/vq"),
    )
    def create(
        ctx: typer.Context,
        file: str = typer.Argument(
            ..., metavar="FILE", help="JSON-lines file of jobs (as `vq submit --batch`), or - for stdin."
        ),
        user: str | None = typer.Option(None, "--user", "-u", help="The batch's user (default: its jobs' user)."),
        subscription: str | None = SUBSCRIPTION_OPTION,
        on_success: str | None = typer.Option(None, "--on-success", help="When every job finished. " + CALLBACK_HELP),
        on_complete: str | None = typer.Option(None, "--on-complete", help="When every job ended. " + CALLBACK_HELP),
        on_death: str | None = typer.Option(
            None, "--on-death", help="At the first job failed for good. " + CALLBACK_HELP
        ),
        description: str | None = typer.Option(None, "--description", help="Text the callbacks and `show` carry."),
        meta: str | None = typer.Option(None, "--meta", help="JSON object the callbacks carry: JSON, @file, or -."),
        open_: bool = typer.Option(False, "--open", help="Keep it open for `vq batch add` until `vq batch close`."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Submit FILE's jobs as one batch. Every line is checked first: one bad line submits nothing.

        Without --open the batch is closed at once; on success and on complete fire only once it
        is closed, on death at the first job that fails for good. Each fires exactly once."""
        st = state(ctx)
        items = submissions_from(file, "FILE")
        owner = user or _jobs_user(items)
        callbacks = {k: v for k, v in (("success", on_success), ("complete", on_complete), ("death", on_death)) if v}
        new = batches.NewBatch(
            user_id=owner,
            subscription=subscription,
            callbacks=callbacks,
            description=description,
            meta=parse_data(meta, "--meta") if meta is not None else None,
            open=open_,
        )
        view = batches.create(st.conn, st.settings, new, items)
        audit.record(
            st.conn, audit.cli_actor(), "operator", "batch-create", None, view["id"], jobs=view["counts"]["total"]
        )
        emit(view, as_json, lambda v: out.print(v["id"]))

    @group.command("list", epilog=example("vq batch list --status open --user alice"))
    def list_command(
        ctx: typer.Context,
        status: str | None = typer.Option(
            None,
            "--status",
            metavar="STATE",
            callback=one_of("--status", STATES),
            help="Only batches in this state: open (takes jobs), closed (jobs still pending), complete.",
        ),
        user: str | None = typer.Option(None, "--user", "-u", help="Only this user's batches."),
        limit: int = typer.Option(50, "--limit", "-n", help="Batches per page."),
        page: int = typer.Option(1, "--page", help="Page number, from 1."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """List batches, newest first, a page at a time, with their progress and the total.

        --json prints {"batches", "total", "offset", "page", "limit"}, each batch as `vq batch show
        --json` without its jobs."""
        if page < 1 or limit < 1:
            raise InvalidInput("--page and --limit must be at least 1")
        listing = batch_lists.page_batches(state(ctx).conn, status=status, user=user, limit=limit, page=page)
        emit(listing, as_json, render_batches)

    @group.command("show", epilog=example("vq batch show 3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7"))
    def show(
        ctx: typer.Context,
        batch_id: str = typer.Argument(..., metavar="ID", help=BATCH_ID),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Progress (done, failed, canceled, pending), callbacks and each job of a batch."""
        conn = state(ctx).conn
        emit(batches.show(conn, batch_lists.resolve_id(conn, batch_id)), as_json, render_batch)

    @group.command("add", epilog=example("vq batch add 3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7 more.jsonl"))
    def add(
        ctx: typer.Context,
        batch_id: str = typer.Argument(
            ..., metavar="ID", help="An open batch's id, or a unique prefix of at least 8 characters."
        ),
        file: str = typer.Argument(..., metavar="FILE", help="JSON-lines file of jobs, or - for stdin."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Add FILE's jobs to a batch created with --open (all lines checked first)."""
        st = state(ctx)
        view = batches.add(
            st.conn, st.settings, batch_lists.resolve_id(st.conn, batch_id), submissions_from(file, "FILE")
        )
        audit.record(st.conn, audit.cli_actor(), "operator", "batch-add", None, view["id"])
        emit(view, as_json, render_batch)

    @group.command("close", epilog=example("vq batch close 3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7"))
    def close(
        ctx: typer.Context,
        batch_id: str = typer.Argument(
            ..., metavar="ID", help="An open batch's id, or a unique prefix of at least 8 characters."
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Close an open batch: no more jobs; on success and on complete may fire from now on."""
        st = state(ctx)
        view = batches.close(st.conn, batch_lists.resolve_id(st.conn, batch_id))
        audit.record(st.conn, audit.cli_actor(), "operator", "batch-close", None, view["id"])
        if as_json:
            print_json(view)
        else:
            render_batch(view)


def _jobs_user(items: list) -> str:
    """The one user the jobs name, for a batch created without --user."""
    users = {sub.user_id or (sub.data.get("userId") if isinstance(sub.data, dict) else None) for _label, sub in items}
    users.discard(None)
    if len(users) != 1:
        raise InvalidInput(
            "--user: missing (the jobs name no user)" if not users else "--user: missing (the jobs name several users)"
        )
    return str(users.pop())
