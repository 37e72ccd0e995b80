"""`vq artifacts ls|get|prune`: the files jobs wrote, and their clean-up."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import typer

from vq import artifacts, jobs
from vq.cli import confirm
from vq.cli.helptext import example
from vq.cli.output import emit, err, out, table
from vq.cli.state import JSON_OPTION, YES_OPTION, state
from vq.errors import InvalidInput


def _render_listing(listing: dict) -> None:
    if not listing["artifacts"]:
        err.print(f"job {listing['id']} has no artifacts")
        return
    out.print(
        table(
            ["name", "bytes", "path"],
            [[f["name"], f"{f['bytes']:,}", f["path"]] for f in listing["artifacts"]],
            title=f"artifacts of {listing['id']}",
        )
    )


def _render_prune(report: dict) -> None:
    verb = "would remove" if report["dryRun"] else "removed"
    if report["removed"]:
        out.print(
            table(["job", "bytes", "why"], [[r["id"], f"{r['bytes']:,}", r["reason"]] for r in report["removed"]])
        )
    out.print(
        f"{verb} the files of {len(report['removed'])} job(s) ({report['freedBytes']:,} bytes); "
        f"{report['kept']} kept, under {report['root']}"
    )


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The files jobs wrote: list, fetch, clean up.",
        no_args_is_help=True,
        epilog=example("vq artifacts get 3f2a9c1e7d20 image.png -o ~/Downloads"),
    )
    job_help = "A job id, or a unique prefix of at least 8 characters."

    @group.command("ls", epilog=example("vq artifacts ls 3f2a9c1e7d20"))
    def ls(
        ctx: typer.Context, job_id: str = typer.Argument(..., metavar="ID", help=job_help), as_json: bool = JSON_OPTION
    ) -> None:
        """List the files a job wrote (its artifacts folder), with sizes and paths."""
        st = state(ctx)
        view = jobs.show(st.conn, job_id, st.settings, explain=False)
        emit({"id": view["id"], "artifacts": artifacts.listing(st.settings, view["id"])}, as_json, _render_listing)

    @group.command("get", epilog=example("vq artifacts get 3f2a9c1e7d20 video.mp4 -o out.mp4"))
    def get(
        ctx: typer.Context,
        job_id: str = typer.Argument(..., metavar="ID", help=job_help),
        name: str = typer.Argument(..., metavar="NAME", help="The file's name in the job's folder (from ls)."),
        output: str | None = typer.Option(
            None, "--output", "-o", help="Write it here (a file or folder); default: stdout."
        ),
    ) -> None:
        """Copy one of a job's files to stdout or to --output."""
        st = state(ctx)
        view = jobs.show(st.conn, job_id, st.settings, explain=False)
        source = artifacts.file(st.settings, view["id"], name)
        if output is None:
            if sys.stdout.isatty():
                raise InvalidInput("--output: give a path (a file's bytes would go to the terminal)")
            with source.open("rb") as src:
                shutil.copyfileobj(src, sys.stdout.buffer)
            return
        target = Path(output).expanduser()
        if target.is_dir():
            target = target / source.name
        if not target.parent.is_dir():
            raise InvalidInput(f"--output: no such folder {str(target.parent)!r}")
        shutil.copyfile(source, target)
        err.print(f"wrote {target} ({target.stat().st_size:,} bytes)")

    @group.command("prune", epilog=example("vq artifacts prune --dry-run"))
    def prune(
        ctx: typer.Context,
        dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would go."),
        yes: bool = YES_OPTION,
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Remove, on this host, the files the daemon's clean-up would; asks first unless --yes.

        The files of failed and canceled jobs, of finished jobs past their type's retention, and of
        jobs that no longer exist (the daemon does this every artifacts.sweepInterval)."""
        st = state(ctx)
        if not dry_run and not yes:
            confirm.refuse_unanswerable(yes, as_json)
            preview = artifacts.prune(st.conn, st.settings, dry_run=True)
            if not preview["removed"]:
                emit(preview, as_json, _render_prune)
                return
            err.print(f"{len(preview['removed'])} job folder(s) to remove ({preview['freedBytes']:,} bytes)")
            confirm.ask("remove them?", yes=yes, as_json=as_json, declined="nothing removed")
        emit(artifacts.prune(st.conn, st.settings, dry_run=dry_run), as_json, _render_prune)

    app.add_typer(group, name="artifacts")
