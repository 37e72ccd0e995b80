"""Commands on single jobs: show, jobs, progress, result, retry, cancel, rm."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

import typer

from vq import artifacts, audit, bulk, job_lists, job_search, jobs
from vq.cli import confirm
from vq.cli.helptext import example, one_of
from vq.cli.output import emit, err, note, out, status_text, table
from vq.cli.render import render_job, render_jobs, render_tree
from vq.cli.state import JSON_OPTION, YES_OPTION, state
from vq.durations import parse_duration_ms
from vq.errors import InvalidInput
from vq.jobdata import dumps_strict
from vq.model import TERMINAL, Status

JOB_ID = "A job id, or a unique prefix of at least 8 characters."
STATUSES = tuple(s.value for s in Status)


def register(app: typer.Typer) -> None:
    @app.command("show", epilog=example("vq show 3f2a9c1e7d20 --tree"))
    def show(
        ctx: typer.Context,
        job_id: str = typer.Argument(..., metavar="ID", help=JOB_ID),
        tree: bool = typer.Option(False, "--tree", help="Draw the dependency graph with statuses."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Show a job: status, progress, timings, attempts, dependencies, result or error.

        For a waiting job, what it waits for and its place in line."""
        st = state(ctx)
        if tree:
            emit(jobs.tree(st.conn, job_id, st.settings), as_json, render_tree)
        else:
            emit(jobs.show(st.conn, job_id, st.settings), as_json, render_job)

    @app.command("jobs", epilog=example("vq jobs --status failed --since 2h --type image-generation"))
    def list_command(
        ctx: typer.Context,
        job_type: str | None = typer.Option(None, "--type", "-t", help="Only this job type."),
        status: str | None = typer.Option(
            None,
            "--status",
            metavar="STATUS",
            callback=one_of("--status", STATUSES),
            help="Only this status: " + ", ".join(STATUSES) + ".",
        ),
        user: str | None = typer.Option(None, "--user", "-u", help="Only this user's jobs."),
        limit: int = typer.Option(50, "--limit", "-n", help="Jobs per page."),
        page: int = typer.Option(1, "--page", help="Page number, from 1."),
        since: str | None = typer.Option(None, "--since", help="Only jobs created within this long, e.g. 30m, 2h, 1d."),
        where: list[str] = typer.Option(
            [],
            "--where",
            "-w",
            metavar="FIELD OP VALUE",
            help="Only jobs matching (repeat: all must), found through the history database's indexes: "
            "data.projectId=p1 (a field of history.indexedFields), status=failed; OP one of = != > >= < <= ~ (starts with).",
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """List jobs, newest first, a page at a time, with the total.

        --json prints the page's jobs as a list (the totals are the table's footer). With --where the
        matches come from the history database (which records every job from its creation)."""
        st = state(ctx)
        if job_type:
            from vq.jobtypes import get_job_type

            get_job_type(st.settings, job_type)
        if page < 1 or limit < 1:
            raise InvalidInput("--page and --limit must be at least 1")
        since_ms = None
        if since is not None:
            since_ms = int(time.time() * 1000) - parse_duration_ms(since, "--since", unit_required=True)
        if where:
            listing = job_search.page_matching(
                st.conn,
                st.settings,
                where,
                job_type=job_type,
                status=status,
                user=user,
                limit=limit,
                page=page,
                since_ms=since_ms,
            )
            why = listing.pop("note")
            if why:
                note(f"note: {why}")
        else:
            listing = job_lists.page_jobs(
                st.conn, job_type=job_type, status=status, user=user, limit=limit, page=page, since_ms=since_ms
            )
        # --json stays the bare list of jobs scripts have read since 0.1; the table has the totals.
        emit(listing["jobs"] if as_json else listing, as_json, render_jobs)

    @app.command("progress", epilog=example("vq progress 3f2a9c1e7d20 --follow"))
    def progress(
        ctx: typer.Context,
        job_id: str = typer.Argument(..., metavar="ID", help=JOB_ID),
        follow: bool = typer.Option(False, "--follow", "-f", help="Show a live bar until the job ends."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Show a job's progress; with --follow, live until it ends.

        The live bar (with elapsed time and an ETA) goes to the terminal, the final state to stdout;
        exit 1 if the job did not finish."""
        st = state(ctx)
        view = jobs.show(st.conn, job_id, st.settings)
        job_id = view["id"]  # a prefix resolved once
        if not follow:
            emit({"id": view["id"], "status": view["status"], **view["progress"]}, as_json, _progress_line)
            return
        if as_json:
            view = _follow_json(st.conn, job_id, st.settings)
        else:  # the live bar on the terminal (stderr), the final state on stdout: `> out` keeps just that
            view = _follow_bar(st.conn, job_id, st.settings)
            _progress_line({"status": view["status"], **view["progress"]})
        if view["status"] != "finished":
            raise typer.Exit(1)

    @app.command("result", epilog=example("vq result 3f2a9c1e7d20 --json"))
    def result(
        ctx: typer.Context, job_id: str = typer.Argument(..., metavar="ID", help=JOB_ID), as_json: bool = JSON_OPTION
    ) -> None:
        """Print a finished job's result (and the artifact files it wrote)."""
        st = state(ctx)
        res = jobs.result(st.conn, job_id, st.settings)
        if res["trimmed"] and not as_json:
            note(f"job {res['id']} was trimmed from Redis: its result comes from the history database")
        emit(res, as_json, lambda r: out.print_json(dumps_strict(r["result"], default=str)))

    @app.command("retry", epilog=example("vq retry --all --type image-generation --yes"))
    def retry(
        ctx: typer.Context,
        job_id: str | None = typer.Argument(None, metavar="ID", help=JOB_ID + " Or --all."),
        every: bool = typer.Option(False, "--all", help="Every failed job of --type and/or --user."),
        job_type: str | None = typer.Option(None, "--type", "-t", help="With --all: only this type."),
        user: str | None = typer.Option(None, "--user", "-u", help="With --all: only this user's."),
        yes: bool = YES_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Run a failed, stopped or canceled job again.

        With --all, every failed job of a type and/or user; it lists them and asks first unless --yes."""
        st = state(ctx)
        if _single(job_id, every, "retry"):
            view = jobs.retry(st.conn, job_id, st.settings)
            audit.record(st.conn, audit.cli_actor(), "operator", "retry", view["jobType"], view["id"])
            emit(view, as_json, lambda v: err.print(f"job {v['id']} requeued ({v['status']})"))
            return
        _check_type(st, job_type)
        chosen = bulk.failed(st.conn, job_type, user)
        _bulk(
            st,
            chosen,
            "retry",
            f"Retry {len(chosen)} failed job(s)",
            as_json,
            yes,
            lambda views: bulk.retry_all(st.conn, views),
        )

    @app.command("cancel", epilog=example("vq cancel 3f2a9c1e7d20 --now --reason 'wrong prompt'"))
    def cancel(
        ctx: typer.Context,
        job_id: str | None = typer.Argument(None, metavar="ID", help=JOB_ID + " Or --all --user U."),
        reason: str = typer.Option("canceled by operator", "--reason", help="Recorded with the job."),
        now: bool = typer.Option(
            False, "--now", help="Interrupt a running job within a second, on whatever host runs it."
        ),
        every: bool = typer.Option(False, "--all", help="Every waiting job of --user."),
        user: str | None = typer.Option(None, "--user", "-u", help="With --all: this user's jobs."),
        job_type: str | None = typer.Option(None, "--type", "-t", help="With --all: only this type."),
        yes: bool = YES_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Cancel a job that has not ended, or every waiting job of a user.

        A running job stops at its next progress report; with --now it is interrupted at once (its
        handler's on_cancel clean-up runs; a forked job's process ends, killed if it does not
        answer), its slots are freed, and it is not retried. A pipeline's parent (video-generation) takes its steps
        that have not ended with it. With --all --user U, every waiting job of that user; it lists them and asks first
        unless --yes."""
        st = state(ctx)
        if now and every:
            raise InvalidInput("--now: give one job ID (--all cancels waiting jobs, which have nothing to interrupt)")
        if _single(job_id, every, "cancel"):
            actor = audit.cli_actor()
            view = jobs.cancel(st.conn, job_id, reason, st.settings, now=now, actor=actor)
            audit.record(st.conn, actor, "operator", "cancel", view["jobType"], view["id"], reason=reason, now=now)
            emit(view, as_json, lambda v: err.print(_cancel_said(v, now)))
            return
        if not user:
            raise InvalidInput("--all: give --user U (cancel every waiting job of one user)")
        _check_type(st, job_type)
        chosen = bulk.waiting(st.conn, user, job_type)
        _bulk(
            st,
            chosen,
            "cancel",
            f"Cancel {len(chosen)} waiting job(s) of {user}",
            as_json,
            yes,
            lambda views: bulk.cancel_all(st.conn, views, reason),
        )

    @app.command("rm", epilog=example("vq rm --finished --older-than 7d --yes"))
    def remove(
        ctx: typer.Context,
        job_id: str | None = typer.Argument(None, metavar="ID", help=JOB_ID + " Or --finished."),
        finished: bool = typer.Option(False, "--finished", help="Every finished job older than --older-than."),
        older_than: str | None = typer.Option(None, "--older-than", help="With --finished: 7d, 12h, 30m."),
        job_type: str | None = typer.Option(None, "--type", "-t", help="With --finished: only this type."),
        user: str | None = typer.Option(None, "--user", "-u", help="With --finished: only this user's."),
        yes: bool = YES_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Remove a job that is not running, with its result and artifacts.

        With --finished --older-than 7d, every finished job that ended before then; it lists them
        and asks first unless --yes."""
        st = state(ctx)
        if _single(job_id, finished, "rm", flag="--finished"):
            view = jobs.remove(st.conn, job_id, artifacts.root(st.settings), st.settings)
            audit.record(st.conn, audit.cli_actor(), "operator", "remove", view["jobType"], view["id"])
            emit({"id": view["id"], "removed": True}, as_json, lambda v: err.print(f"job {v['id']} removed"))
            return
        if not older_than:
            raise InvalidInput("--finished: give --older-than (7d, 12h, 30m)")
        _check_type(st, job_type)
        cutoff = datetime.now(UTC) - timedelta(milliseconds=parse_duration_ms(older_than, "--older-than"))
        chosen = bulk.finished_before(st.conn, cutoff, job_type, user)
        _bulk(
            st,
            chosen,
            "remove",
            f"Remove {len(chosen)} finished job(s) that ended before {cutoff.isoformat(timespec='seconds')}",
            as_json,
            yes,
            lambda views: bulk.remove_all(st.conn, views, artifacts.root(st.settings)),
        )


def _single(job_id: str | None, every: bool, command: str, flag: str = "--all") -> TypeGuard[str]:
    """True (job_id is then a str) for the one-job form; refuses a mix of both forms and neither."""
    if job_id and every:
        raise InvalidInput(f"{command}: give either ID or {flag}, not both")
    if not job_id and not every:
        raise InvalidInput(f"{command}: give a job ID, or {flag} with filters")
    return bool(job_id)


def _check_type(st, job_type: str | None) -> None:
    if job_type:
        from vq.jobtypes import get_job_type

        get_job_type(st.settings, job_type)


PREVIEW = 10


def _bulk(st, chosen: list[dict], action: str, question: str, as_json: bool, yes: bool, run) -> None:
    """Show what a bulk action will touch, ask unless --yes, run it, audit each job, report."""
    if not chosen:
        emit(
            {"action": action, "matched": 0, "done": [], "skipped": []}, as_json, lambda _v: err.print("no job matches")
        )
        return
    confirm.refuse_unanswerable(yes, as_json)
    if not as_json or not yes:
        rows = [
            [
                v["id"],
                v["jobType"],
                v["userId"] or "-",
                status_text(v["status"]),
                (v["finishedAt"] or v["createdAt"] or "")[:19],
            ]
            for v in chosen[:PREVIEW]
        ]
        err.print(
            table(["id", "type", "user", "status", "ended / created"], rows, title=f"{len(chosen)} job(s) to {action}")
        )
        if len(chosen) > PREVIEW:
            err.print(f"… and {len(chosen) - PREVIEW} more")
    confirm.ask(f"{question}?", yes=yes, as_json=as_json)
    outcome = run(chosen)
    for job_id in outcome["done"]:
        view = next(v for v in chosen if v["id"] == job_id)
        audit.record(st.conn, audit.cli_actor(), "operator", action, view["jobType"], job_id, bulk=True)
    report = {"action": action, "matched": len(chosen), **outcome}
    emit(
        report,
        as_json,
        lambda r: err.print(
            f"{len(r['done'])} job(s): {action} done"
            + (
                f"; {len(r['skipped'])} skipped (they changed meanwhile: {r['skipped'][0]['reason']})"
                if r["skipped"]
                else ""
            )
        ),
    )


def _progress_line(v: dict) -> None:
    out.print(f"{status_text(v['status'])} {v['percent']:.0f}% {v.get('message') or ''}")


def _follow_bar(conn, job_id: str, settings) -> dict:
    """Poll until the job ends, drawing a bar with elapsed time and an ETA (from the rate of
    progress so far) on stderr when it is a terminal; nothing is drawn into a pipe or file."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.fields[kind]}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        TextColumn("{task.fields[msg]}"),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err.real(),
        disable=not err.is_terminal,
    ) as bar:
        view = jobs.show(conn, job_id, settings)
        task = bar.add_task("", total=100, kind=view["jobType"], status=view["status"], msg="")
        while True:
            view = jobs.show(conn, job_id, settings)
            p = view["progress"]
            bar.update(task, completed=p["percent"], status=status_text(view["status"]), msg=p.get("message") or "")
            if view["status"] in TERMINAL:
                break
            time.sleep(0.2)
    if view["status"] != "finished" and view.get("error"):
        err.print(f"[red]{view['error'].get('message')}[/]")
    return view


def _follow_json(conn, job_id: str, settings) -> dict:
    last = None
    while True:
        view = jobs.show(conn, job_id, settings)
        line = {"id": view["id"], "status": view["status"], **view["progress"]}
        if line != last:
            print(json.dumps(line), flush=True)
            last = line
        if view["status"] in TERMINAL:
            return view
        time.sleep(0.2)


def _cancel_said(view: dict, now: bool) -> str:
    if view["status"] == "canceled":
        return f"job {view['id']} canceled"
    if now:
        return f"job {view['id']}: interruption requested; still {view['status']} (vq show {view['id']} tells when it ends)"
    return f"job {view['id']}: cancellation requested"
