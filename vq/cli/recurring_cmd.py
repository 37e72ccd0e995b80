"""`vq recurring`: cron definitions that spawn a job per tick."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import typer

from vq import audit
from vq.cli.helptext import choices_metavar, example, one_of
from vq.cli.output import emit, err, out, print_json, status_text, table
from vq.cli.state import JSON_OPTION, PRIORITY_OPTION, SUBSCRIPTION_OPTION, state
from vq.cli.submit_cmd import parse_data
from vq.durations import parse_duration_ms
from vq.errors import InvalidInput
from vq.recurring import definitions as recurring
from vq.recurring import firing
from vq.recurring.definitions import CATCH_UP

CRON_HELP = "Cron expression: minute hour day-of-month month day-of-week, e.g. '0 0 * * *' (a sixth field is seconds)."


def _when(value: str | None, tz: str | None = None) -> str:
    """An ISO UTC time as a person reads it: in the definition's zone, with the zone named."""
    if not value:
        return "-"
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if tz:
        moment = moment.astimezone(ZoneInfo(tz))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _render_list(rows: list[dict]) -> None:
    if not rows:
        err.print("no recurring jobs")
        return
    out.print(
        table(
            ["id", "name", "type", "cron", "tz", "user", "next runs", "runs", "failed", "state"],
            [
                [
                    r["id"],
                    r["name"],
                    r["jobType"],
                    r["cronExpression"],
                    r["tz"],
                    r["userId"],
                    "\n".join(_when(t, r["tz"]) for t in r["nextRuns"]) or "-",
                    r["stats"]["runs"],
                    r["stats"]["failed"] or "",
                    "[yellow]paused[/]" if r["paused"] else "[green]active[/]",
                ]
                for r in rows
            ],
        )
    )


def _render_one(row: dict) -> None:
    out.print(
        f"[bold]{row['id']}[/]"
        + (f" ({row['name']})" if row["name"] else "")
        + f"  {row['jobType']}  [cyan]{row['cronExpression']}[/] {row['tz']}  "
        + ("[yellow]paused[/]" if row["paused"] else "[green]active[/]")
    )
    out.print(f"user {row['userId']}  catch-up {row['catchUp']}  options {row['options'] or '{}'}")
    stats = row["stats"]
    out.print(
        f"runs {stats['runs']}  succeeded {stats['succeeded']}  failed {stats['failed']}  "
        f"canceled {stats['canceled']}  missed {stats['missed']}"
    )
    if row.get("lastError"):
        out.print(f"[red]last error:[/] {row['lastError']}")
    out.print("next: " + (", ".join(_when(t, row["tz"]) for t in row["nextRuns"]) or "- (paused)"))
    runs = row.get("runs") or []
    if runs:
        out.print(
            table(
                ["tick", "job", "status"],
                [[_when(r["tickAt"], row["tz"]), r["jobId"], status_text(r["status"])] for r in runs],
                title="last runs",
            )
        )


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Recurring jobs: a job of TYPE at every tick of a cron expression.",
        epilog=example(
            "vq recurring add world-building --cron '0 3 * * *' --tz Europe/Paris --user alice --name nightly"
        ),
        no_args_is_help=True,
    )
    app.add_typer(group, name="recurring")

    @group.command(
        "add",
        epilog=example(
            "vq recurring add content-analysis --cron '*/15 * * * *' --user alice --data @report.json --name digest"
        ),
    )
    def add(
        ctx: typer.Context,
        job_type: str = typer.Argument(..., metavar="TYPE", help="Job type (see `vq types`)."),
        cron: str = typer.Option(..., "--cron", help=CRON_HELP),
        tz: str = typer.Option("UTC", "--tz", help="IANA time zone the cron expression is read in."),
        data: str | None = typer.Option(None, "--data", "-d", help="Job data: JSON, @file, or - for stdin."),
        user: str | None = typer.Option(None, "--user", "-u", help="userId (or put userId in the data)."),
        project: str | None = typer.Option(None, "--project", "-p", help="projectId."),
        name: str | None = typer.Option(None, "--name", help="A unique name to refer to it by."),
        priority: str | None = PRIORITY_OPTION,
        subscription: str | None = SUBSCRIPTION_OPTION,
        skip_cache: bool = typer.Option(False, "--skip-cache", help="Each run ignores cached results."),
        unique_key: str | None = typer.Option(
            None, "--unique-key", help="A run is not made while the last run with this key waits or runs."
        ),
        unique_for: str | None = typer.Option(
            None, "--unique-for", help="With --unique-key: at most one run per key per window (10m)."
        ),
        catch_up: str | None = typer.Option(
            None,
            "--catch-up",
            metavar=choices_metavar(CATCH_UP),
            callback=one_of("--catch-up", CATCH_UP),
            help="Ticks missed while no daemon ran: run none, one or all (default recurring.catchUp).",
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Add a recurring job; prints its id."""
        st = state(ctx)
        definition = recurring.add(
            st.conn,
            st.settings,
            job_type=job_type,
            cron=cron,
            tz=tz,
            data=parse_data(data),
            user_id=user,
            project_id=project,
            name=name,
            priority=priority,
            subscription=subscription,
            options=_options(skip_cache, unique_key, unique_for),
            catch_up=catch_up,
            privileged=True,
        )
        audit.record(st.conn, audit.cli_actor(), "operator", "recurring-add", job_type, definition.id, cron=cron)
        if as_json:
            print_json(recurring.describe(st.conn, definition))
        else:
            print(definition.id)

    def _options(skip_cache: bool, unique_key: str | None, unique_for: str | None) -> dict:
        """The definition's options from the flags (the names of the JSON body's `options`)."""
        if unique_for is not None and unique_key is None:
            raise InvalidInput("--unique-for: only with --unique-key")
        given = {
            "skipCache": skip_cache or None,
            "uniqueKey": unique_key,
            "uniqueFor": parse_duration_ms(unique_for, "--unique-for") if unique_for is not None else None,
        }
        return {name: value for name, value in given.items() if value is not None}

    @group.command("list", epilog=example("vq recurring list --json"))
    def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Every recurring job with its next three fire times (in its time zone)."""
        st = state(ctx)
        emit([recurring.describe(st.conn, d) for d in recurring.list_all(st.conn)], as_json, _render_list)

    @group.command("show", epilog=example("vq recurring show nightly --runs 20"))
    def show(
        ctx: typer.Context,
        ref: str = typer.Argument(..., metavar="ID|NAME", help="Its id or name."),
        runs: int = typer.Option(10, "--runs", min=0, help="How many of the latest runs to list."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """A recurring job: its latest runs and their outcomes, run and failure counts."""
        st = state(ctx)
        emit(recurring.describe(st.conn, recurring.get(st.conn, ref), runs=runs), as_json, _render_one)

    @group.command("run", epilog=example("vq recurring run nightly"))
    def run(
        ctx: typer.Context,
        ref: str = typer.Argument(..., metavar="ID|NAME", help="Its id or name."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Run it now: submit one job as a tick would; prints the job id.

        The schedule's next run is unchanged."""
        from vq import jobs

        st = state(ctx)
        definition = recurring.get(st.conn, ref)
        job_id = firing.run_now(st.conn, st.settings, definition.id)
        audit.record(
            st.conn, audit.cli_actor(), "operator", "recurring-run", definition.jobType, definition.id, jobId=job_id
        )
        if as_json:
            print_json(jobs.show(st.conn, job_id, st.settings, explain=False))
        else:
            print(job_id)

    def _change(name: str, action, verb: str, help_text: str) -> None:
        @group.command(name, help=help_text, epilog=example(f"vq recurring {name} nightly"))
        def command(
            ctx: typer.Context,
            ref: str = typer.Argument(..., metavar="ID|NAME", help="Its id or name."),
            as_json: bool = JSON_OPTION,
        ) -> None:
            st = state(ctx)
            definition = action(st.conn, ref)
            audit.record(st.conn, audit.cli_actor(), "operator", f"recurring-{name}", definition.jobType, definition.id)
            emit(
                recurring.describe(st.conn, definition), as_json, lambda r: err.print(f"recurring job {r['id']} {verb}")
            )

    _change("pause", recurring.pause, "paused", "Stop spawning jobs (running ones are not touched).")
    _change("resume", recurring.resume, "resumed", "Spawn again from the next tick (paused ticks are not caught up).")
    _change("rm", recurring.remove, "removed", "Delete the definition (jobs it already spawned stay).")
