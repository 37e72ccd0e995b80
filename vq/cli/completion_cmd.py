"""`vq completion bash|zsh|fish`: print the shell completion script (Typer's), for packaging
or `eval`, whatever shell runs the command."""

from __future__ import annotations

import typer

from vq.cli.helptext import example
from vq.errors import InvalidInput

SHELLS = ("bash", "zsh", "fish")


def register(app: typer.Typer) -> None:
    @app.command("completion", epilog=example("vq completion bash > /etc/bash_completion.d/vq"))
    def completion(shell: str = typer.Argument(..., metavar="SHELL", help="The shell: bash, zsh or fish.")) -> None:
        """Print the completion script for bash, zsh or fish (install: see the README)."""
        from typer._completion_shared import get_completion_script

        if shell not in SHELLS:
            raise InvalidInput(f"SHELL: {shell!r} is not one of {', '.join(SHELLS)}")
        print(get_completion_script(prog_name="vq", complete_var="_VQ_COMPLETE", shell=shell))
