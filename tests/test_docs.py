"""The man page and README stay true to the CLI."""

from __future__ import annotations

from pathlib import Path

from vq.cli.app import app

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    """Top-level commands and, for groups, "group sub" (e.g. "recurring add")."""
    names = [c.name for c in app.registered_commands]
    for group in app.registered_groups:
        names += [f"{group.name} {c.name}" for c in group.typer_instance.registered_commands]
    return names


def test_every_command_is_in_the_man_page_and_readme():
    man = (ROOT / "man" / "vq.1").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in _commands():
        assert f".B {name}" in man or f"\\fB{name}\\fR" in man, f"{name} missing from man/vq.1"
        assert f"vq {name}" in readme, f"{name} missing from README.md"


def test_config_example_is_valid_and_complete():
    import yaml

    from vq.config import settings_from

    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    settings_from(example, "config.example.yaml")
    for block in ("redis", "queue", "concurrency", "priority", "limits", "daemon", "job_types"):
        assert block in example, block


def test_every_option_is_in_the_man_page():
    import click
    import typer.main

    man = (ROOT / "man" / "vq.1").read_text().replace("\\-", "-")
    missing = []

    def walk(group, prefix):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])
                continue
            for param in command.params:
                longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
                if isinstance(param, click.Option) and longs and not any(o in man for o in longs):
                    missing.append(f"vq {' '.join([*prefix, name])} {longs[0]}")

    walk(typer.main.get_command(app), [])
    assert not missing, f"options missing from man/vq.1: {missing}"


def test_shell_completion_scripts_and_a_real_completion():
    import os
    import subprocess
    import sys

    markers = {"bash": "complete -o", "zsh": "#compdef vq", "fish": "complete --command vq"}
    for shell, marker in markers.items():
        proc = subprocess.run([sys.executable, "-m", "vq", "completion", shell], capture_output=True, text=True)
        assert proc.returncode == 0 and marker in proc.stdout and "_VQ_COMPLETE" in proc.stdout, shell
    bad = subprocess.run([sys.executable, "-m", "vq", "completion", "tcsh"], capture_output=True, text=True)
    assert bad.returncode == 2 and "SHELL: 'tcsh' is not one of bash, zsh, fish" in bad.stderr
    env = dict(os.environ, _VQ_COMPLETE="complete_bash", COMP_WORDS="vq recurring pa", COMP_CWORD="2")
    done = subprocess.run([sys.executable, "-c", "from vq.cli.app import app; app(prog_name='vq')"], env=env,
                          capture_output=True, text=True)
    assert done.stdout.split() == ["pause"], done


def test_one_version_everywhere():
    """`vq --version` (vq.__version__, which pyproject reads), the man page's header and the
    newest CHANGELOG entry name the same version."""
    import re

    from vq import __version__

    assert f'"vq {__version__}"' in (ROOT / "man" / "vq.1").read_text().splitlines()[0]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.findall(r"^## \[?(\d+\.\d+\.\d+)", changelog, re.M)[0] == __version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_constraints_pin_every_dependency():
    """constraints.txt (what scripts/test.sh and operators install with) pins each of vq's
    dependencies and test dependencies to one version, so none can move unseen."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
              for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line}
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()
        assert name in pinned, f"{name} is not pinned in constraints.txt (scripts/freeze_constraints.py)"
    assert "hiredis" in pinned and "starlette" in pinned  # extras and transitive ones too
