"""`vq providers`: each AI provider's breaker, limits in use and performance;
`vq costs`: what the providers cost, per user, project or provider."""

from __future__ import annotations

import typer

from vq import costs
from vq.cli.helptext import choices_metavar, example, one_of
from vq.cli.output import emit, out, table
from vq.cli.state import JSON_OPTION, state
from vq.durations import parse_duration_ms
from vq.errors import InvalidInput
from vq.providers import stats as provider_stats

STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}


def _pct(value) -> str:
    return "" if value is None else f"{value:.1%}"


def _limit(used, limit) -> str:
    return f"{used}/{limit}" if limit else (f"{used}" if used else "")


def _render(rows: list[dict]) -> None:
    if not rows:
        out.print("[dim]no providers configured or seen[/]")
        return
    minutes = rows[0]["windowMs"] // 60_000
    out.print(
        table(
            [
                "provider",
                "kind",
                "breaker",
                "failures",
                "next probe",
                "requests/window",
                "in flight",
                f"calls ({minutes}m)",
                "errors",
                "available",
                "p50 ms",
                "p95 ms",
            ],
            [
                [
                    r["provider"],
                    r["kind"],
                    f"[{STATE_STYLE[r['state']]}]{r['state']}[/]",
                    f"{r['failures']}/{r['threshold']}",
                    r["nextProbe"] or "",
                    _limit(r["limits"]["requestsInWindow"], r["limits"]["requestLimit"]) if r["limits"] else "",
                    _limit(r["limits"]["inFlight"], r["limits"]["concurrentLimit"]) if r["limits"] else "",
                    r["calls"],
                    _pct(r["errorRate"]),
                    _pct(r["availability"]),
                    r["p50Ms"],
                    r["p95Ms"],
                ]
                for r in rows
            ],
        )
    )


def _render_costs(view: dict) -> None:
    by = view["by"]
    columns = [by, f"amount ({view['currency']})"] + (["calls"] if by == "provider" else [])
    rows = [[i[by], i["amount"]] + ([i["calls"]] if by == "provider" else []) for i in view["items"]]
    rows.append(["[bold]total[/]", f"[bold]{view['total']}[/]"] + ([""] if by == "provider" else []))
    out.print(table(columns, rows, title=f"costs by {by}, {view['since']} to {view['until']} (UTC days)"))


def register(app: typer.Typer) -> None:
    @app.command("providers", epilog=example("vq providers --window 1h"))
    def providers(
        ctx: typer.Context,
        window: str = typer.Option("15m", "--window", "-w", help="Performance over this long: 15m, 1h, 1d."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Each AI provider: its circuit breaker, limits in use, errors and latency.

        The breaker is closed, open (with the next probe) or half-open; rate and concurrency limits in
        use; calls, error rate, availability and latency p50/p95 over the window."""
        st = state(ctx)
        window_ms = parse_duration_ms(window, "--window")
        if not 60_000 <= window_ms <= 2 * 86_400_000:
            raise InvalidInput("--window: between 1m and 2d (per-minute figures are kept two days)")
        emit(provider_stats.overview(st.conn, st.settings, window_ms), as_json, _render)

    @app.command("costs", epilog=example("vq costs --by project --since 7d"))
    def costs_command(
        ctx: typer.Context,
        by: str = typer.Option(
            "user",
            "--by",
            "-b",
            metavar=choices_metavar(costs.BY),
            callback=one_of("--by", costs.BY),
            help="What to sum the costs by.",
        ),
        since: str = typer.Option("30d", "--since", help="First UTC day: YYYY-MM-DD, today, or back from today (7d)."),
        until: str = typer.Option("today", "--until", help="Last UTC day, the same forms."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """What the AI providers cost, per user, project or provider.

        Summed exactly over whole UTC days, in costs.currency."""
        st = state(ctx)
        emit(costs.query(st.conn, st.settings, by, since, until), as_json, _render_costs)
