"""`vq limits`: concurrency limits in force and how full each type and user is; change
them at runtime (every host, at once, no restart)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from vq import audit, limits
from vq.cli.helptext import example
from vq.cli.output import emit, err, out, table
from vq.cli.state import JSON_OPTION, state
from vq.errors import InvalidInput
from vq.keys import GROUP_KINDS, LIMIT_KINDS, RATE_KINDS, WEIGHT_KINDS

if TYPE_CHECKING:
    from redis import Redis

KIND_HELP = (
    "What the limit applies to: a job type, a subscription tier, one user or a limit group's key "
    "(group-rate: the key's rate of starts); "
    "or the weight of a tier's or a user's turns (tier-weight, user-weight: starts per turn while users wait)."
)
NAME_HELP = "A job type, a tier, a userId or a group's name."
SET_ARGS_HELP = (
    "LIMIT: concurrent jobs allowed (at least 1), or starts per turn for a weight (1 to 1000). "
    "For a group: its KEY, a value of its key field (`default`: every key without its own), then LIMIT; "
    "for group-rate, then RATE: starts/window (10/1m)."
)
limits_app = typer.Typer(
    help="Concurrency limits: show them (vq limits), change them at runtime (set, reset).",
    invoke_without_command=True,
    no_args_is_help=False,
    epilog=example("vq limits set user alice 5"),
)


def _render(view: dict) -> None:
    def cell(running: int, limit: int) -> str:
        colour = "red" if running >= limit else "yellow" if running >= 0.8 * limit else "green"
        return f"[{colour}]{running}/{limit}[/]"

    out.print(
        table(
            ["type", "running/limit", "waiting"],
            [[t["jobType"], cell(t["running"], t["limit"]), t["waiting"]] for t in view["types"]],
            title="job types",
        )
    )
    if view["users"]:
        out.print(
            table(
                ["user", "tier", "running/limit", "waiting", "weight"],
                [
                    [u["userId"], u["tier"] or "", cell(u["running"], u["limit"]), u["waiting"], u["weight"]]
                    for u in view["users"]
                ],
                title="active users",
            )
        )
    rows = [
        [
            g["group"],
            row["key"],
            cell(row["running"], row["limit"]) if row["limit"] else f"{row['running']}/-",
            row["waiting"],
            _starts_cell(row),
        ]
        for g in view.get("groups", [])
        for row in g["keys"]
    ]
    if view.get("groups"):
        defaults = ", ".join(
            f"{g['group']} {g['default'] or '-'}" + (f" ({g['defaultRate']})" if g["defaultRate"] else "")
            for g in view["groups"]
        )
        if rows:
            out.print(table(["group", "key", "running/limit", "waiting", "starts/rate"], rows, title="limit groups"))
        out.print(f"[dim]limit groups' default per key (rate): {defaults}[/]")
    if view.get("resources"):
        out.print(
            table(
                ["resource", "in use/has", "workers"],
                [[r["resource"], f"{r['inUse']:g}/{r['capacity']:g}", r["workers"]] for r in view["resources"]],
                title="resources (live workers)",
            )
        )
    tiers = ", ".join(f"{k} {v}" for k, v in view["tiers"].items())
    out.print(f"[dim]per-user limits by tier: {tiers}[/]")
    if any(weight > 1 for weight in view["tierWeights"].values()):
        weights = ", ".join(f"{k} {v}" for k, v in view["tierWeights"].items())
        out.print(f"[dim]starts per turn by tier: {weights}[/]")


def _starts_cell(row: dict) -> str:
    """Starts in the current window over the rate (`7/10/1m`), or - without a rate."""
    if not row["rate"]:
        return "-"
    starts, per = row["rate"].split("/", 1)
    colour = "red" if row["starts"] >= int(starts) else "green"
    return f"[{colour}]{row['starts']}[/]/{starts}/{per}"


@limits_app.callback()
def show_limits(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Per type, per active user and per limit-group key: running / limit / waiting (and a
    group's starts in its rate's window)."""
    if ctx.invoked_subcommand is not None:
        return
    st = state(ctx)
    emit(limits.overview(st.conn, st.settings), as_json, _render)


def _parse_limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"LIMIT: expected a whole number of at least 1, got {value!r}") from None
    return number


@limits_app.command(
    "set", context_settings={"ignore_unknown_options": True}, epilog=example("vq limits set tier-weight enterprise 8")
)
def set_command(
    ctx: typer.Context,
    kind: str = typer.Argument(..., metavar="|".join(LIMIT_KINDS), help=KIND_HELP),
    name: str = typer.Argument(..., metavar="NAME", help=NAME_HELP),
    key_or_limit: str = typer.Argument(..., metavar="KEY|LIMIT", help=SET_ARGS_HELP),
    group_limit: str | None = typer.Argument(None, metavar="LIMIT", help="A group's limit or rate, after its KEY."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set a limit at runtime; it wins over the config file on every host until reset."""
    st = state(ctx)
    last = "RATE" if kind in RATE_KINDS else "LIMIT"
    key, value = _key_and(kind, [a for a in (key_or_limit, group_limit) if a is not None], "set", last)
    wanted = value if kind in RATE_KINDS else _parse_limit(value)
    result = limits.set_limit(st.conn, st.settings, kind, name, wanted, key)
    _audit(st.conn, "limits-set", kind, name, key, wanted)
    emit(result, as_json, lambda r: err.print(f"{_what(r)}: {_noun(r)} {r['limit']}"))


@limits_app.command("reset", epilog=example("vq limits reset group model sdxl"))
def reset_command(
    ctx: typer.Context,
    kind: str = typer.Argument(..., metavar="|".join(LIMIT_KINDS), help=KIND_HELP),
    name: str = typer.Argument(..., metavar="NAME", help=NAME_HELP),
    key: str | None = typer.Argument(None, metavar="KEY", help="A group's key value (group and group-rate only)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Drop a runtime limit: the config file's value applies again."""
    st = state(ctx)
    key, _ = _key_and(kind, [*([key] if key is not None else []), ""], "reset", "")
    result = limits.set_limit(st.conn, st.settings, kind, name, None, key)
    _audit(st.conn, "limits-reset", kind, name, key, None)
    emit(result, as_json, lambda r: err.print(f"{_what(r)}: back to the configured {_noun(r)}"))


def _audit(conn: Redis, action: str, kind: str, name: str, key: str | None, value: int | str | None) -> None:
    """A limit change is an operator's action like a cancel: audited as the dashboard's is
    (`vq audit --action limits-set`), the target `-` and the change in the detail."""
    audit.record(
        conn, audit.cli_actor(), "operator", action, name, "-", kind=kind, value=value, **({"key": key} if key else {})
    )


def _key_and(kind: str, args: list[str], command: str, last: str) -> tuple[str | None, str]:
    """(the group's key or None, the last argument): a group takes its KEY before it."""
    per_key = kind in GROUP_KINDS
    if len(args) != (2 if per_key else 1):
        usage = " ".join(w for w in ("vq limits", command, kind, "NAME", "KEY" if per_key else "", last) if w)
        raise InvalidInput(f"expected: {usage}")
    return (args[0], args[1]) if per_key else (None, args[0])


def _noun(result: dict) -> str:
    return "weight" if result["kind"] in WEIGHT_KINDS else "rate" if result["kind"] in RATE_KINDS else "limit"


def _what(result: dict) -> str:
    key = f" {result['key']}" if "key" in result else ""
    return f"{result['kind']} {result['name']}{key}"


def register(app: typer.Typer) -> None:
    app.add_typer(limits_app, name="limits")
