"""`vq --help` and every command's help read well (issue 22): flags show no `<bool>`, usage lines
no `[[ID]]` or `{ID}`, every option and argument says what it is for, choices are listed, the
root help groups the commands in five panels, and each command shows one example."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from vq.cli import app as app_module
from vq.cli.app import app
from vq.cli.helptext import EXAMPLE, PANEL_OF, PANELS

# One xdist process runs the whole module (--dist loadgroup): the help of every command,
# rendered once (`helps`), is read by seven tests.
pytestmark = pytest.mark.xdist_group("cli-help")

ROOT = typer.main.get_command(app)


def _walk(command, path=()):
    """(path, command) for the root, every group and every command under them."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


TREE = list(_walk(ROOT))
LEAVES = [(path, command) for path, command in TREE if not hasattr(command, "commands")]


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="vq", env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0, (path, result.output)
    return result.output


@pytest.fixture(scope="module")
def helps() -> dict[tuple, str]:
    return {path: _help(*path) for path, _command in TREE}


def test_flags_show_no_type_and_usage_lines_no_double_brackets(helps):
    for path, text in helps.items():
        assert "<bool>" not in text and "BOOLEAN" not in text and "list[" not in text, (path, text)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "[[" not in usage and "{" not in usage, (path, usage)
    assert "Usage: vq retry [OPTIONS] [ID]" in helps[("retry",)]
    assert "Usage: vq show [OPTIONS] ID" in helps[("show",)]
    assert "Usage: vq history [OPTIONS] [JOB|export|reindex]" in helps[("history",)]


def test_logs_json_help_says_it_prints_json_lines_not_a_table(helps):
    """`vq logs` prints log lines, never a table: its --json help said "instead of a table"."""
    text = " ".join(re.sub(r"[│|]", " ", helps[("logs",)]).split())
    assert "one JSON object per log line" in text and "table" not in text, text


def test_every_option_and_argument_has_help_text():
    missing = []
    for path, command in TREE:
        for param in command.params:
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"vq {' '.join(path)} {param.opts[0] if param.opts else param.name}")
    assert not missing, f"no help text: {missing}"


def test_choices_are_listed_in_help(helps):
    expected = {
        ("submit",): ["--priority", "<high|normal|low>", "--subscription", "<free|basic|pro|enterprise>"],
        ("recurring", "add"): ["<high|normal|low>", "<free|basic|pro|enterprise>", "<none|one|all>"],
        ("token", "create"): ["--role", "<user|operator|admin|metrics>", "<free|basic|pro|enterprise>"],
        ("costs",): ["--by", "<user|project|provider>"],
        ("history",): ["<csv|json>", "queued, limited, started"],
        ("jobs",): ["queued, limited, started"],
        ("daemon",): ["<DEBUG|INFO|WARNING|ERROR>", "<text|json>"],
        ("tui",): ["<dark|light>"],
        ("limits", "set"): ["type|tier|user"],
        ("completion",): ["bash, zsh or fish"],
    }
    for path, needles in expected.items():
        flat = " ".join(helps[path].replace("│", " ").split())
        for needle in needles:
            assert needle in flat, (path, needle)


def test_the_choices_are_the_ones_the_code_accepts():
    from vq.cli.token_cmd import ROLES as CLI_ROLES
    from vq.tokens import ROLES

    assert CLI_ROLES == ROLES


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ("submit", "test-noop", "--user", "u", "--priority", "urgent"),
            "--priority: 'urgent' is not one of high, normal, low",
        ),
        (
            ("submit", "test-noop", "--user", "u", "--subscription", "gold"),
            "--subscription: 'gold' is not one of free, basic, pro, enterprise",
        ),
        (("costs", "--by", "day"), "--by: 'day' is not one of user, project, provider"),
        (
            ("token", "create", "--user", "u", "--role", "root"),
            "--role: 'root' is not one of user, operator, admin, metrics",
        ),
        (("jobs", "--status", "done"), "--status: 'done' is not one of queued,"),
    ],
)
def test_a_value_outside_the_choices_is_one_line_and_exit_2_without_redis(tmp_path, args, line):
    """Refused while parsing, so even with Redis down (port 1) the answer is the bad value, exit 2."""
    config = tmp_path / "down.yaml"
    config.write_text("redis:\n  host: 127.0.0.1\n  port: 1\n")
    env = {**os.environ, "VQ_CONFIG": str(config)}
    proc = subprocess.run([sys.executable, "-m", "vq", *args], capture_output=True, text=True, env=env, timeout=60)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and line in lines[0], proc.stderr


def test_root_help_groups_commands_in_five_panels(helps):
    text = helps[()]
    titles = re.findall(r"^╭─ (\w+) ─", text, re.M)
    assert titles == ["Options", *PANELS], titles
    assert set(PANEL_OF) == set(app_module.COMMANDS), "every command in exactly one panel"
    for name, command in ROOT.commands.items():
        assert command.rich_help_panel == PANEL_OF[name], name
    # each panel's box lists exactly its commands
    boxes = re.split(r"^╭─ ", text, flags=re.M)[1:]
    for box in boxes:
        title = box.split(" ", 1)[0]
        if title in PANELS:
            listed = re.findall(r"^│ (\S+)\s", box, re.M)
            assert sorted(listed) == sorted(n for n, p in PANEL_OF.items() if p == title), title


def test_every_command_and_group_shows_one_example(helps):
    for path, command in TREE:
        epilog = command.epilog or ""
        assert epilog.startswith(EXAMPLE) and epilog.count(EXAMPLE) == 1, path
        shown = epilog[len(EXAMPLE) :]
        assert shown.split()[0] in ("vq", "TOKEN=$(vq", "id=$(vq"), (path, shown)
        flat = " ".join(helps[path].split())
        assert f"{EXAMPLE}{' '.join(shown.split())}" in flat, (path, helps[path])
        if path:  # the example runs the command it illustrates
            assert " ".join(path) in shown, (path, shown)


def test_examples_use_real_options():
    """Each example's options exist on the command it illustrates."""
    for path, command in LEAVES:
        shown = command.epilog[len(EXAMPLE) :]
        known = {opt for param in command.params for opt in getattr(param, "opts", [])}
        known |= {"--config", "-c", "--help", "-h"}
        words = shown.split("|")[0].split("&&")[0].split()
        used = [w for w in words if re.fullmatch(r"--?[a-z][a-z-]*", w)]
        assert set(used) <= known, (path, set(used) - known)


def test_help_text_first_lines_fit_the_command_list(helps):
    """The root list shows each command's first paragraph: one line of at most 90 characters."""
    for name, command in ROOT.commands.items():
        first = (command.help or "").split("\n\n")[0]
        assert "\n" not in first and len(first) <= 90, (name, first)


def test_every_where_option_says_that_tilde_is_a_prefix():
    """`~` reads as "contains" or a regex to a newcomer; every --where says it is a prefix."""
    wheres = [
        (path, param.help)
        for path, command in LEAVES
        for param in command.params
        if "--where" in getattr(param, "opts", ())
    ]
    assert {path for path, _help_text in wheres} >= {("jobs",), ("history",)}
    for path, text in wheres:
        assert "~ (starts with)" in (text or ""), (path, text)
