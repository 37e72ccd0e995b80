"""`vq token create`: mint a JWT for the HTTP API with the daemon's signing secret."""

from __future__ import annotations

import typer

from vq.cli.helptext import choices_metavar, example, one_of
from vq.cli.output import print_json
from vq.cli.state import JSON_OPTION, state
from vq.config import TIERS
from vq.durations import parse_duration_ms

ROLES = (
    "user",
    "operator",
    "admin",
    "metrics",
)  # vq.tokens.ROLES, without importing PyJWT to build the command (tests/test_cli_help.py)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Tokens for the HTTP API.",
        no_args_is_help=True,
        epilog=example("vq token create --user alice --role operator --ttl 30d"),
    )
    app.add_typer(group, name="token")

    @group.command("create", epilog=example("TOKEN=$(vq token create --user alice --tier pro --ttl 1h)"))
    def create(
        ctx: typer.Context,
        user: str | None = typer.Option(
            None, "--user", "-u", help="The token's subject (userId); required but for --role metrics (then: metrics)."
        ),
        role: str = typer.Option(
            "user",
            "--role",
            metavar=choices_metavar(ROLES),
            callback=one_of("--role", ROLES),
            help="What the token may do: its own jobs, operate the queues, everything, or only GET /metrics.",
        ),
        tier: str | None = typer.Option(
            None,
            "--tier",
            metavar=choices_metavar(TIERS),
            callback=one_of("--tier", TIERS),
            help="The subscription tier its jobs run at.",
        ),
        project: list[str] = typer.Option(
            [], "--project", "-p", metavar="<str>", help="Limit to this project (repeatable)."
        ),
        ttl: str = typer.Option("1h", "--ttl", help="Lifetime, with a unit (s, m, h, d): 15m, 1h, 30d."),
        as_json: bool = JSON_OPTION,
    ) -> None:
        """Print a signed token (HS256, the secret of config/env or the data directory)."""
        from vq.tokens import TokenRequest, subject_of
        from vq.tokens import create as mint

        st = state(ctx)
        user = subject_of(role, user)
        request = TokenRequest(
            user_id=user,
            role=role,
            tier=tier,
            projects=list(project) or None,
            ttl_seconds=parse_duration_ms(ttl, "--ttl", unit_required=True) // 1000,
        )
        token = mint(st.settings, request)
        if as_json:
            print_json(
                {
                    "token": token,
                    "userId": user,
                    "role": role,
                    "tier": tier,
                    "projects": request.projects,
                    "ttlSeconds": request.ttl_seconds,
                }
            )
        else:
            print(token)
