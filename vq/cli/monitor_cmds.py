"""Monitoring commands: history, stats, health, perf, metrics."""

from __future__ import annotations

import sys
import time

import typer

from vq import health as health_service
from vq import prometheus
from vq import stats as stats_service
from vq.cli.helptext import choices_metavar, example, one_of
from vq.cli.output import emit, err, escape, out, print_json, status_text, table
from vq.cli.state import JSON_OPTION, state
from vq.connection import try_connect
from vq.errors import InvalidInput
from vq.history import queries as history_service
from vq.history import search
from vq.model import Status

STATUSES = tuple(s.value for s in Status)
FORMATS = ("csv", "json")

HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "error": "bold red"}


def _when(value: str | None) -> str:
    """An ISO UTC time as a table cell; the column's header says UTC (`_utc`)."""
    return value.replace("T", " ")[:23] if value else ""


def _utc(header: str) -> str:
    return f"{header} (UTC)"


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def _health_text(status: str) -> str:
    return f"[{HEALTH_STYLE[status]}]{status}[/]"


def _render_timeline(view: dict) -> None:
    job = view["job"]
    out.print(
        f"[bold]{job['id']}[/] {job['job_type']} user {job['user_id']}  now {status_text(job['status'])}"
        f"  attempts {job['attempts'] or 0}"
    )
    out.print(
        table(
            [_utc("at"), "event", "from", "to", "worker", "attempt", "reason"],
            [
                [
                    _when(r["at"]),
                    r["event"],
                    r["from_status"] or "",
                    status_text(r["to_status"]),
                    r["worker"],
                    r["attempt"],
                    r["reason"],
                ]
                for r in view["transitions"]
            ],
        )
    )


def _render_jobs(rows: list[dict]) -> None:
    if not rows:
        err.print("no jobs match")
        return
    out.print(
        table(
            ["id", "type", "user", "status", _utc("created"), "wait", "run", "attempts", "error"],
            [
                [
                    r["id"],
                    r["job_type"],
                    r["user_id"],
                    status_text(r["status"]),
                    _when(r["created_at"]),
                    _ms(r["wait_ms"]),
                    _ms(r["run_ms"]),
                    r["attempts"],
                    r["error_message"],
                ]
                for r in rows
            ],
        )
    )


def _render_stats(view: dict) -> None:
    out.print(
        table(
            [
                "type",
                "created",
                "finished",
                "failed",
                "retried",
                "canceled",
                "cached",
                "queued",
                "limited",
                "running",
                "scheduled",
            ],
            [
                [
                    r["jobType"],
                    r["totals"]["created"],
                    r["totals"]["finished"],
                    f"[red]{r['totals']['failed']}[/]" if r["totals"]["failed"] else 0,
                    r["totals"]["retried"],
                    r["totals"]["canceled"],
                    r["totals"]["cached"],
                    r["now"]["queued"],
                    r["now"]["limited"],
                    r["now"]["running"],
                    r["now"]["scheduled"],
                ]
                for r in view["byType"]
            ],
            title="by type (all time, and now)",
        )
    )
    out.print(
        table(
            ["priority", "created", "waiting"],
            [[p, v["created"], v["waiting"]] for p, v in view["priorities"].items()],
            title="priorities",
        )
    )
    if view["users"]:
        out.print(
            table(
                ["user", "created", "finished", "failed", "canceled", "running/limit"],
                [
                    [
                        u["userId"],
                        u["created"],
                        u["finished"],
                        u["failed"],
                        u["canceled"],
                        f"{u['running']}/{u['limit']}",
                    ]
                    for u in view["users"]
                ],
                title=f"users (the {len(view['users'])} most active)",
            )
        )
    for trend, header, width, title in (("hourly", "hour", 16, "last 24 hours"), ("daily", "day", 10, "last 14 days")):
        busy = [b for b in view["trends"][trend] if b["created"] or b["finished"] or b["failed"]]
        if busy:
            out.print(
                table(
                    [_utc(header), "created", "finished", "failed"],
                    [[_when(b["from"])[:width], b["created"], b["finished"], b["failed"]] for b in busy],
                    title=title,
                )
            )


def _render_health(view: dict) -> None:
    out.print(f"overall {_health_text(view['status'])}  (checked {_when(view['checkedAt'])} UTC)")
    if view["status"] == "error":
        for reason in view["reasons"]:
            out.print(f"  [red]{reason}[/]")
        return
    redis_info = view["redis"]
    memory = (
        f"{redis_info['memoryRatio']:.0%} of maxmemory"
        if redis_info["memoryRatio"] is not None
        else f"{redis_info['usedMemory'] // 1024} KiB used, no maxmemory"
    )
    out.print(
        f"Redis {_health_text(redis_info['status'])} {memory}; workers alive "
        f"{view['workers']['alive']}/{view['workers']['total']}"
        + (f"; [red]breakers open: {', '.join(view['breakers'])}[/]" if view["breakers"] else "")
    )
    for loop in view.get("crashLoops", []):
        out.print(f"[red]{escape(loop['reason'])}[/]")
    for problem in view.get("problems", []):
        out.print(f"[yellow]{escape(problem['reason'])}[/]")
    out.print(
        table(
            ["type", "status", "failure rate", "backlog", "oldest wait", "stalled", "workers", "why"],
            [
                [
                    r["jobType"],
                    _health_text(r["status"]),
                    f"{r['failureRate']:.0%}",
                    r["backlog"],
                    _ms(r["backlogAgeMs"]) if r["backlog"] else "",
                    r["stalled"] or "",
                    r["workers"],
                    "; ".join(r["reasons"]),
                ]
                for r in view["queues"]
            ],
        )
    )


def _missed(misses: dict) -> str:
    """Deadline misses: expired unstarted + finished late, with the tiers they fell in."""
    total = misses["expired"] + misses["late"]
    if not total:
        return "0"
    tiers = ", ".join(f"{tier} {m['expired'] + m['late']}" for tier, m in misses["byTier"].items())
    return f"{total} ({misses['expired']} expired, {misses['late']} late; {tiers})"


def _render_perf(view: dict) -> None:
    out.print(f"window {view['from'][:19]} .. {view['to'][:19]} UTC")
    out.print(
        table(
            [
                "type",
                "done/min",
                "errors",
                "run avg",
                "p50",
                "p95",
                "p99",
                "wait avg",
                "p50",
                "p95",
                "p99",
                "utilization",
                "missed",
            ],
            [
                [
                    r["jobType"],
                    r["throughputPerMin"],
                    f"{r['errorRate']:.1%}",
                    _ms(r["avgRunMs"]),
                    _ms(r["p50RunMs"]),
                    _ms(r["p95RunMs"]),
                    _ms(r["p99RunMs"]),
                    _ms(r["avgWaitMs"]),
                    _ms(r["p50WaitMs"]),
                    _ms(r["p95WaitMs"]),
                    _ms(r["p99WaitMs"]),
                    f"{r['utilization']:.0%}",
                    _missed(r["deadlineMisses"]),
                ]
                for r in view["types"]
            ],
        )
    )


def _fresh_history(st):
    """The history database once caught up; why it may miss the latest events, on stderr.
    Redis is only for the catch-up: unreachable, it is skipped after a second, not exit 3."""
    probe, why = try_connect(st.settings)
    if probe is not None:
        probe.close()
    db, note = history_service.fresh(st.conn if probe else None, st.settings, unreachable=why)
    if note:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    return db


def _reindex(st, as_json: bool) -> None:
    """`vq history reindex`: a line of progress a second at most on stderr, then the counts."""
    from vq.history import reindex as reindex_service  # the submission code it uses: only for reindex

    said = [0.0]

    def progress(counts: dict) -> None:
        if not as_json and time.monotonic() - said[0] >= 1.0:  # a line a second at most
            said[0] = time.monotonic()
            err.print(
                f"reindex: {counts['looked']:,} jobs looked at, {counts['written']:,} data copies written",
                highlight=False,
            )

    report = reindex_service.run(st.conn, st.settings, progress)
    if report["note"]:
        err.print(f"[yellow]note:[/] {escape(report['note'])}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(report)
        return
    out.print(
        f"{report['written']:,} of {report['looked']:,} jobs in Redis had their data copy written "
        f"({report['unchanged']:,} already right, {report['notInHistory']:,} not in the history yet); "
        f"indexed fields: {', '.join(report['indexedFields'])}",
        highlight=False,
        soft_wrap=True,
    )


def _no_audit_records(db, action: str | None) -> str:
    """What an empty audit listing says; an --action no record has (a typo: `cancelled`)
    is named with the actions there are, instead of an answer that looks like no activity."""
    if action is None:
        return "no audit records"
    known = history_service.audit_actions(db)
    if action in known:
        return "no audit records"
    return f"no audit records: no record has action {action!r} (recorded: {', '.join(known) or 'none yet'})"


def register(app: typer.Typer) -> None:
    @app.command("history", epilog=example("vq history --user alice --since 7d --status failed"))
    def history(
        ctx: typer.Context,
        job: str | None = typer.Argument(
            None,
            metavar="JOB|export|reindex",
            help="A job id (or prefix) for its timeline, `export` for every matching job, or `reindex` to "
            "copy the data fields history.indexedFields lists now for every job Redis still holds.",
        ),
        user: str | None = typer.Option(None, "--user", "-u", help="Only this user's jobs."),
        since: str | None = typer.Option(None, "--since", help="Created within (7d, 12h) or since an ISO time."),
        job_type: str | None = typer.Option(None, "--type", "-t", help="Only this job type."),
        status: str | None = typer.Option(
            None,
            "--status",
            metavar="STATUS",
            callback=one_of("--status", STATUSES),
            help="Only jobs now in this status: " + ", ".join(STATUSES) + ".",
        ),
        where: list[str] = typer.Option(
            [],
            "--where",
            "-w",
            metavar="FIELD OP VALUE",
            help="Only jobs matching (repeat: all must): status=failed, data.projectId=p1 (a field of "
            "history.indexedFields), createdAt>2026-01-01; OP one of = != > >= < <= ~ (starts with).",
        ),
        limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="Rows to list."),
        fmt: str = typer.Option(
            "csv",
            "--format",
            metavar=choices_metavar(FORMATS),
            callback=one_of("--format", FORMATS),
            help="With export: CSV with a header, or JSON lines.",
        ),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """A job's timeline, or past jobs by user, type and status, from the history database.

        vq history JOB: every status change with time, worker, attempt and reason. vq history --user U:
        jobs newest first. vq history export --format csv|json: every matching job, oldest first.
        vq history reindex: jobs submitted before a field was listed become searchable by it."""
        st = state(ctx)
        indexed = st.settings.history.indexedFields
        if where:
            search.clauses(where, indexed)  # a bad term: one line, before waiting for the archiver
            if job and job != "export":
                raise InvalidInput(f"--where lists jobs: not with {'reindex' if job == 'reindex' else 'a job id'}")
        if job == "reindex":
            _reindex(st, as_json)
            return
        db = _fresh_history(st)
        match = history_service.JobFilter(
            user=user, since=since, job_type=job_type, status=status, where=where, indexed=indexed
        )
        if job == "export":
            for chunk in history_service.export(db, fmt, match):
                sys.stdout.write(chunk)
            return
        if job:
            emit(history_service.timeline(db, job), as_json, _render_timeline)
            return
        rows = history_service.jobs(db, match, limit=limit)
        emit(rows, as_json, _render_jobs)

    @app.command("audit", epilog=example("vq audit --action cancel --since 12h"))
    def audit_command(
        ctx: typer.Context,
        actor: str | None = typer.Option(None, "--actor", help="Only this acting user (cli:LOGIN for the CLI)."),
        action: str | None = typer.Option(
            None, "--action", help="create, remove, cancel, retry, pause, resume, clear, recurring-add..."
        ),
        since: str | None = typer.Option(None, "--since", help="Within (7d, 12h) or since an ISO time."),
        limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="Rows to list, newest first."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Who changed what: every write through the HTTP API or the CLI, with the acting user."""
        st = state(ctx)
        db = _fresh_history(st)
        rows = history_service.audit_rows(db, actor=actor, action=action, since=since, limit=limit)
        emit(
            rows,
            as_json,
            lambda r: (
                out.print(
                    table(
                        ["at", "actor", "role", "action", "type", "target", "detail"],
                        [
                            [
                                _when(x["at"]),
                                x["actor"],
                                x["role"],
                                x["action"],
                                x["job_type"],
                                x["target"],
                                " ".join(f"{k}={v}" for k, v in x["detail"].items()),
                            ]
                            for x in r
                        ],
                    )
                )
                if r
                else err.print(_no_audit_records(db, action))
            ),
        )

    @app.command("stats", epilog=example("vq stats --type video-generation"))
    def stats(
        ctx: typer.Context,
        job_type: str | None = typer.Option(None, "--type", "-t", help="Only this job type."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Totals by type and status, per-user figures, priorities, hourly and daily trends."""
        st = state(ctx)
        emit(stats_service.stats(st.conn, st.settings, job_type), as_json, _render_stats)

    @app.command("health", epilog=example("vq health --json || echo 'vq is not healthy'"))
    def health(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Healthy, degraded, unhealthy or error, per queue and overall, with the reasons.

        Exit code 0, 1, 2 or 3 respectively, as monitoring plugins use."""
        st = state(ctx)
        report = health_service.check(st.conn, st.settings)
        emit(report, as_json, _render_health)
        raise typer.Exit(health_service.EXIT_CODES[report["status"]])

    @app.command("perf", epilog=example("vq perf --window 24h --type image-generation"))
    def perf(
        ctx: typer.Context,
        window: str = typer.Option("1h", "--window", "-w", help="How far back: 15m, 1h, 7d."),
        job_type: str | None = typer.Option(None, "--type", "-t", help="Only this job type."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Run and wait times, utilization, error rate and throughput, per type.

        Processing and wait times as avg, p50, p95 and p99; throughput per minute; over the window."""
        st = state(ctx)
        window_ms = stats_service.perf_window_ms(window, "--window")
        emit(stats_service.perf(st.conn, st.settings, window_ms, job_type), as_json, _render_perf)

    @app.command("metrics", epilog=example("vq metrics | grep ^vq_jobs"))
    def metrics_command(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """The Prometheus text exposition, as the daemon serves it at /metrics.

        --json: the same metric families and samples as JSON."""
        st = state(ctx)
        if as_json:
            print_json(prometheus.families(st.conn, st.settings))
        else:
            sys.stdout.write(prometheus.exposition(st.conn, st.settings).decode())
