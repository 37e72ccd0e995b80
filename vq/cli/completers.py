"""What shell completion offers for a parameter's value: one table, applied to the whole command tree.

The option declarations in the command modules stay as they are: `attach` walks the click
commands that typer built and gives each parameter named in the table a completer, and
`describe` turns the same tree (with the table applied) into the plain data that
vq/cli/completion_cache.py answers a TAB from without importing typer or any command.

Sources: static lists (statuses, priorities, tiers, log formats, shells and a few more
fixed choices) are taken from the code that checks them; dynamic ones come from the config
(job types: the built-ins and the config's `job_types`, plug-ins included) and from Redis
(recurring ids and names, recent job ids), through complete_values.source_values.

This module imports nothing heavy at import time: the fast path reads only its tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typer._click.core import Context, Parameter
    from typer._click.shell_completion import CompletionItem

# parameter name (the Python name in the command function) -> value source, for every command
BY_NAME: dict[str, str] = {
    "job_type": "job-types",  # vq submit TYPE, --type/-t everywhere, pause/resume/clear TYPE
    "status": "statuses",  # vq jobs --status, vq history --status
    "priority": "priorities",  # --priority
    "subscription": "tiers",  # --subscription/-s
    "tier": "tiers",  # vq token create --tier
    "log_format": "log-formats",  # vq daemon --log-format
    "log_level": "log-levels",  # vq daemon --log-level
    "shell": "shells",  # vq completion SHELL
    "ref": "recurring",  # vq recurring show/run/pause/resume/rm ID|NAME
    "job_id": "job-ids",  # vq show/progress/result/retry/cancel/rm/artifacts ID, vq dlq retry ID
    "depends_on": "job-ids",  # vq submit --depends-on
    "role": "roles",  # vq token create --role
    "by": "cost-groups",  # vq costs --by
    "theme": "themes",  # vq tui --theme
    "catch_up": "catch-up",  # vq recurring add --catch-up
    "queues": "job-type-lists",  # vq daemon --queues T1,T2 (the type after the last comma)
}

# (command path, parameter name) -> source, where the name alone would say something else
# (None: no completion).
BY_COMMAND: dict[tuple[str, str], str | None] = {
    ("history", "job"): "history-job",  # a job id, or `export`
    ("history", "fmt"): "export-formats",
    (
        "batch list",
        "status",
    ): "batch-states",  # open, closed, complete: not a job's statuses  # vq history export --format csv|json
    ("limits set", "kind"): "limit-kinds",
    ("limits reset", "kind"): "limit-kinds",
    ("limits set", "name"): "limit-names",  # a job type after `type`, a tier after `tier`, a group after `group`
    ("limits reset", "name"): "limit-names",
}

# Sources whose values come from the config or Redis (complete_values.dynamic_values).
DYNAMIC = frozenset({"job-types", "job-type-lists", "job-ids", "recurring", "history-job", "limit-names"})


def static_sources() -> dict[str, list[str]]:
    """The fixed lists, from the code that validates them (imports vq.model and vq.config)."""
    from vq.batch_views import STATES
    from vq.cli.completion_cmd import SHELLS
    from vq.config import PRIORITIES, TIERS
    from vq.jobtypes import BUILTIN_TYPES
    from vq.keys import LIMIT_KINDS
    from vq.model import Status

    return {
        "builtin-types": list(BUILTIN_TYPES),  # not a source: the job types before the config's
        "statuses": [s.value for s in Status],
        "priorities": list(PRIORITIES),
        "tiers": list(TIERS),
        "log-formats": ["text", "json"],
        "log-levels": ["DEBUG", "INFO", "WARNING", "ERROR"],
        "shells": list(SHELLS),
        "roles": ["user", "operator", "admin"],
        "cost-groups": ["user", "project", "provider"],
        "themes": ["dark", "light"],
        "catch-up": ["none", "one", "all"],
        "export-formats": ["csv", "json"],
        "limit-kinds": list(LIMIT_KINDS),
        "batch-states": list(STATES),
    }


def source_for(path: str, name: str) -> str | None:
    """The value source of parameter `name` of the command `path` ("recurring add"), if any."""
    if (path, name) in BY_COMMAND:
        return BY_COMMAND[(path, name)]
    return BY_NAME.get(name)


def _walk(command, ctx, path: list[str]):
    """(command, its context, its path) for every command under `command`, depth first."""
    yield command, ctx, path
    for name, sub in getattr(command, "commands", {}).items():
        sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        yield from _walk(sub, sub_ctx, [*path, name])


def _root_context(root):
    return root.make_context("vq", [], resilient_parsing=True)


class SourceCompleter:
    """A parameter's shell_complete answering from one table source; `vq_source` tells
    describe() which source it is, so the fast path can answer the same without typer."""

    def __init__(self, source: str, statics: dict[str, list[str]]) -> None:
        self.vq_source = source
        self.statics = statics

    def __call__(self, ctx: Context, param: Parameter, incomplete: str) -> list[CompletionItem]:
        from typer._click.shell_completion import CompletionItem

        from vq.cli.complete_values import source_values

        config = ctx.find_root().params.get("config")
        values = source_values(self.vq_source, self.statics, config, ctx.params, incomplete)
        return [CompletionItem(v) for v in values]


def attach(root) -> None:
    """Give every parameter the table names a completer (the full typer app's TABs)."""
    statics = static_sources()
    for command, _ctx, path in _walk(root, _root_context(root), []):
        for param in command.params:
            source = source_for(" ".join(path), param.name)
            if source and param._custom_shell_complete is None:
                param._custom_shell_complete = SourceCompleter(source, statics)


def _helps(text: str | None) -> list | None:
    """[raw, as zsh shows it, as fish shows it] of a help text, rendered as typer renders it
    (rich markup removed) at unlimited width; the fast path uses them when they fit the
    terminal, else takes the slow path."""
    if not text:
        return None
    import re

    from typer import rich_utils
    from typer._completion_classes import _sanitize_help_text

    def escape(s: str) -> str:  # typer's ZshComplete.format_completion
        return s.replace('"', '""').replace("'", "''").replace("$", "\\$").replace("`", "\\`").replace(":", r"\\:")

    wide, rich_utils.MAX_WIDTH = rich_utils.MAX_WIDTH, 1_000_000
    try:
        return [text, _sanitize_help_text(escape(text)), _sanitize_help_text(re.sub(r"\s", " ", text))]
    finally:
        rich_utils.MAX_WIDTH = wide


def describe(root) -> dict:
    """The command tree as plain data: what completion_cache needs to answer as click would."""
    from typer.core import TyperArgument, TyperGroup, TyperOption

    def node(command, ctx, path):
        params = []
        for param in command.get_params(ctx):
            desc = getattr(param, "type_descriptor", None)
            custom = param._custom_shell_complete
            params.append(
                {
                    "name": param.name,
                    "kind": "option"
                    if isinstance(param, TyperOption)
                    else "argument"
                    if isinstance(param, TyperArgument)
                    else "other",
                    "opts": list(param.opts),
                    "secondary": list(param.secondary_opts),
                    "flag": bool(getattr(param, "is_flag", False) or getattr(param, "count", False)),
                    "count": bool(getattr(param, "count", False)),
                    "nargs": param.nargs,
                    "multiple": bool(param.multiple),
                    "hidden": bool(getattr(param, "hidden", False)),
                    "help": _helps(getattr(param, "help", None)),
                    "source": getattr(custom, "vq_source", None),
                    "custom": custom is not None and not hasattr(custom, "vq_source"),
                    "choices": [choice_as_str(c) for c in desc.choices]
                    if desc is not None and desc.is_choice and desc.choices is not None
                    else None,
                    "case_sensitive": bool(getattr(desc, "case_sensitive", True)),
                    "file": bool(desc is not None and desc.is_file),
                }
            )
        out = {
            "group": isinstance(command, TyperGroup),
            "interspersed": ctx.allow_interspersed_args,
            "ignore_unknown": ctx.ignore_unknown_options,
            "params": params,
        }
        if out["group"]:
            out["commands"] = []
            out["children"] = {}
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                out["commands"].append([name, bool(sub.hidden), _helps(sub.get_short_help_str())])
                sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
                out["children"][name] = node(sub, sub_ctx, [*path, name])
        return out

    from typer._param_types import choice_as_str

    return {"root": node(root, _root_context(root), []), "static": static_sources()}
