"""How `vq --help` reads (issue 22): the commands grouped in five panels, one example per
command, choices listed, flags without a type, and usage lines as man pages write them.

build_app() calls `polish(app)` and uses `GroupedCommands` for the root; tests/test_cli_help.py
walks the whole tree and checks every rule below. Imported only with typer (build_app and the command modules).
"""

from __future__ import annotations

import inspect

import typer

from vq.errors import InvalidInput

# The root help's panels, in this order; every top-level command is in exactly one.
PANELS = ("Jobs", "Queues", "Schedules", "Monitoring", "Admin")
PANEL_OF: dict[str, str] = {
    **{
        name: "Jobs"
        for name in (
            "submit",
            "show",
            "jobs",
            "progress",
            "logs",
            "result",
            "retry",
            "cancel",
            "rm",
            "artifacts",
            "batch",
        )
    },
    **{name: "Queues" for name in ("queues", "pause", "resume", "clear", "types", "limits", "dlq", "workers")},
    "recurring": "Schedules",
    **{
        name: "Monitoring"
        for name in ("history", "audit", "stats", "health", "perf", "metrics", "providers", "costs", "tui")
    },
    **{name: "Admin" for name in ("daemon", "token", "redis", "doctor", "completion", "config")},
}

EXAMPLE = "Example: "


def example(command_line: str) -> str:
    """A command's epilog: one example, printed under its options. Kept free of `[`, which
    rich would read as markup."""
    assert "[" not in command_line, command_line
    return EXAMPLE + command_line


def choices_metavar(choices) -> str:
    return "<" + "|".join(choices) + ">"


def one_of(flag: str, choices, *, fold_case: bool = False):
    """An option callback refusing a value outside `choices` with the CLI's one line and exit 2
    (`--role: 'root' is not one of user, operator, admin, metrics`), before anything connects to Redis."""

    def check(ctx: typer.Context, value: str | None):
        if value is None or ctx.resilient_parsing:  # resilient: shell completion, never an error
            return value
        if (value.upper() if fold_case else value) not in choices:
            raise InvalidInput(f"{flag}: {value!r} is not one of {', '.join(choices)}")
        return value

    return check


def unwrap(text: str | None) -> str | None:
    """Join a docstring's source line breaks within each paragraph: rich keeps single newlines,
    which otherwise break lines mid-sentence in the command list and in narrow terminals."""
    if not text:
        return text
    return "\n\n".join(
        " ".join(line.strip() for line in paragraph.splitlines()) for paragraph in inspect.cleandoc(text).split("\n\n")
    )


def polish(app) -> None:
    """Put each top-level command in its panel and unwrap every command's help text."""
    for info in app.registered_commands:
        info.rich_help_panel = PANEL_OF.get(info.name or "", info.rich_help_panel)
        _unwrap_command(info)
    for info in app.registered_groups:
        info.rich_help_panel = PANEL_OF.get(info.name or "", info.rich_help_panel)
        sub = info.typer_instance
        sub.info.help = unwrap(sub.info.help)
        if sub.registered_callback is not None and sub.registered_callback.help:
            sub.registered_callback.help = unwrap(sub.registered_callback.help)
        for command in sub.registered_commands:
            _unwrap_command(command)


def _unwrap_command(info) -> None:
    info.help = unwrap(info.help or inspect.getdoc(info.callback))


def grouped_commands():
    """The root group's class: commands listed panel by panel, in PANELS' order."""
    from typer.core import TyperGroup

    class GroupedCommands(TyperGroup):
        def list_commands(self, ctx):
            names = super().list_commands(ctx)
            rank = {panel: i for i, panel in enumerate(PANELS)}
            return sorted(names, key=lambda name: rank.get(PANEL_OF.get(name, ""), len(PANELS)))

    return GroupedCommands


_PATCHED = False


def fix_typer_rendering() -> None:
    """Two corrections to how typer renders help, applied once:
    - a flag takes no value, so it shows no type (typer prints `<bool>` beside --yes, --help...);
    - the usage line names arguments as man pages do: `ID` when required, `[ID]` when not
      (typer writes `{ID}`, and `[[ID]]` for a bracketed metavar)."""
    global _PATCHED
    if _PATCHED:
        return
    _PATCHED = True
    from typer.core import TyperArgument, TyperOption

    display_type_rich = getattr(TyperOption, "display_type_rich", None)
    if display_type_rich is not None:

        def flag_without_type(self, ctx):
            if getattr(self, "is_flag", False) or getattr(self, "count", False):
                return self.metavar or None
            return display_type_rich(self, ctx)

        # patching typer's method on purpose (this function's point); mypy forbids assigning to methods
        TyperOption.display_type_rich = flag_without_type  # type: ignore[method-assign]

    if hasattr(TyperArgument, "_usage_display_name"):

        def usage_name(self):
            name = self.display_name_raw
            name = name if self.required else f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        # as above: a deliberate patch of typer's rendering
        TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
