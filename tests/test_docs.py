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

    from vq.config import Settings

    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    Settings.model_validate(example)
    for block in ("redis", "queue", "concurrency", "priority", "limits", "daemon", "job_types"):
        assert block in example, block
