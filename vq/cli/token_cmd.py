"""`vq token create`: mint a JWT for the HTTP API with the daemon's signing secret."""

from __future__ import annotations

from typing import Optional

import typer

from vq.cli.output import print_json
from vq.cli.state import JSON_OPTION, state
from vq.durations import parse_duration_ms


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Tokens for the HTTP API.", no_args_is_help=True)
    app.add_typer(group, name="token")

    @group.command("create")
    def create(
        ctx: typer.Context,
        user: str = typer.Option(..., "--user", "-u", help="The token's subject (userId)."),
        role: str = typer.Option("user", "--role", help="user, operator or admin."),
        tier: Optional[str] = typer.Option(None, "--tier", help="free, basic, pro or enterprise."),
        project: list[str] = typer.Option([], "--project", "-p", help="Limit to this project (repeatable)."),
        ttl: str = typer.Option("1h", "--ttl", help="Lifetime, with a unit (s, m, h, d): 15m, 1h, 30d."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Print a signed token (HS256, the secret of config/env or the data directory)."""
        from vq.api.auth import TokenRequest, create as mint

        st = state(ctx)
        request = TokenRequest(user_id=user, role=role, tier=tier, projects=list(project) or None,
                               ttl_seconds=parse_duration_ms(ttl, "--ttl", unit_required=True) // 1000)
        token = mint(st.settings, request)
        if as_json:
            print_json({"token": token, "userId": user, "role": role, "tier": tier,
                        "projects": request.projects, "ttlSeconds": request.ttl_seconds})
        else:
            print(token)
