"""`vq providers`: each AI provider's circuit breaker: state, recent failures, next probe."""

from __future__ import annotations

import typer

from vq import breaker
from vq.cli.output import emit, out, table
from vq.cli.state import JSON_OPTION, state

STATE_STYLE = {"closed": "green", "half_open": "yellow", "open": "red"}


def _render(rows: list[dict]) -> None:
    if not rows:
        out.print("[dim]no providers configured or seen[/]")
        return
    out.print(table(["provider", "kind", "breaker", "failures", "next probe"], [
        [r["provider"], r["kind"], f"[{STATE_STYLE[r['state']]}]{r['state']}[/]", f"{r['failures']}/{r['threshold']}",
         r["nextProbe"] or ""] for r in rows]))


def register(app: typer.Typer) -> None:
    @app.command("providers")
    def providers(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
        """Each provider's circuit breaker: closed, open (with the next probe) or half-open."""
        st = state(ctx)
        emit(breaker.states(st.conn, st.settings), as_json, _render)
