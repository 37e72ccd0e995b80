"""A shell TAB answered in a few tens of milliseconds: no typer, no command module, no redis-py.

Typer's completion scripts (`vq completion bash|zsh|fish`) run `vq` with `_VQ_COMPLETE` set
(complete_bash, complete_zsh, complete_fish). `answer()` replies from cached data exactly as
typer's click would (the same resolution of the command line, the same output per shell);
when it cannot (no cache for this vq, another instruction or shell, a parameter it does not
know, a help text wider than the terminal) it returns False and main() takes the slow path:
the full typer app, with vq/cli/completers.py's completers attached, which writes the cache.

The pieces, each in its own module (standard library only, as this one):
- vq/cli/complete_files.py: the cache files and the tree's key;
- vq/cli/complete_config.py: a config's job types and Redis address, without validating it;
- vq/cli/complete_redis.py: recent job ids and recurring ids from Redis over a plain socket;
- vq/cli/complete_values.py: a parameter's value source turned into values;
- vq/cli/complete_click.py: click's resolution of the command line on the cached tree;
- here: the shells' side (typer's BashComplete, ZshComplete and FishComplete) and `answer()`.

Caches, in $XDG_CACHE_HOME/vq (else ~/.cache/vq; the directory mode 0700, the files 0600):
- complete-tree-<key>.json: the command tree (commands, options, which value source each
  parameter has, the static value lists), keyed by vq's version and the size and mtime of
  the CLI's modules (and of those the static lists come from) and typer's; the 4 newest kept.
- complete-config.json: per config file (path, size, mtime and the REDIS_* / VQ_DATA_DIR
  environment): its job types and how to reach its Redis (a password included, hence 0600).
- complete-redis.json: recurring ids and names and the 50 newest job ids, kept TTL seconds;
  read from Redis over a plain socket with a short timeout. Redis unreachable: no values
  from it (for TTL seconds), the static ones still complete. The CLI's own commands that
  add or remove jobs or recurring jobs drop it, so the next TAB sees their change.
"""

from __future__ import annotations

import os
import sys

from vq.cli.complete_click import Fallback, completions
from vq.cli.complete_files import forget_redis_values, read_json, save_tree, tree_path
from vq.cli.complete_values import source_values

COMPLETE_VAR = "_VQ_COMPLETE"
__all__ = ["COMPLETE_VAR", "answer", "forget_redis_values", "save_tree", "source_values"]


# --- the shells' side: typer's BashComplete, ZshComplete and FishComplete ----------


def _split(text: str) -> list[str]:
    """click's split_arg_string."""
    import shlex

    lex = shlex.shlex(text, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out = []
    try:
        for token in lex:
            out.append(token)
    except ValueError:
        out.append(lex.token)
    return out


def _terminal_width() -> int:
    """The narrowest width rich could wrap typer's help texts at (they are used only when
    they fit it; else the slow path renders them)."""
    fixed = os.environ.get("TERMINAL_WIDTH")
    if fixed:
        return int(fixed)
    widths = [80]
    for fd in (0, 1, 2):
        try:
            widths.append(os.get_terminal_size(fd).columns or 80)
        except (OSError, ValueError):
            pass
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():
        widths.append(int(columns) or 80)
    return min(widths)


def _help_text(help: list, which: int, width: int) -> str:
    text = help[which]
    if not text.isascii() or any(len(line) > width for line in text.split("\n")):
        raise Fallback()
    return text


def _zsh_escape(s: str) -> str:
    """typer's escaping of a zsh completion value."""
    return s.replace('"', '""').replace("'", "''").replace("$", "\\$").replace("`", "\\`").replace(":", r"\\:")


def answer() -> int | None:
    """The TAB's reply from the caches: the exit code, or None to take the slow path."""
    try:
        instruction = os.environ.get(COMPLETE_VAR, "")
        action, _, shell = instruction.partition("_")
        if action != "complete" or shell not in ("bash", "zsh", "fish"):
            return None
        tree = read_json(tree_path())
        if not isinstance(tree, dict) or "root" not in tree:
            return None
        if shell == "bash":
            if "COMP_WORDS" not in os.environ or "COMP_CWORD" not in os.environ:
                return None
            words = _split(os.environ["COMP_WORDS"])
            cword = int(os.environ["COMP_CWORD"])
            args = words[1:cword]
            incomplete = words[cword] if cword < len(words) else ""
        else:
            line = os.environ.get("_TYPER_COMPLETE_ARGS", "")
            words = _split(line)
            args = words[1:]
            incomplete = ""
            if args and not line.endswith(" "):
                incomplete, args = args[-1], args[:-1]
        items = completions(tree, args, incomplete)
        width = _terminal_width()
        if shell == "bash":
            out = "\n".join(value for value, _ in items)
        elif shell == "zsh":
            lines = [
                f'"{_zsh_escape(value)}":"{_help_text(help, 1, width)}"' if help else f'"{_zsh_escape(value)}"'
                for value, help in items
            ]
            out = "_arguments '*: :((" + "\n".join(lines) + "))'" if lines else "_files"
        else:
            action = os.environ.get("_TYPER_COMPLETE_FISH_ACTION", "")
            if action == "is-args":  # fish asks only whether there is anything: no help text to fit
                return 0 if items else 1
            lines = [f"{value}\t{_help_text(help, 2, width)}" if help else value for value, help in items]
            out = "\n".join(lines) if action == "get-args" and lines else ""
    except Fallback:
        return None
    except Exception:  # noqa: BLE001 -- whatever the cache held: the slow path answers
        return None
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    return 0
