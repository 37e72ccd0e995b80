"""Shell completion through click's real protocol (_VQ_COMPLETE, COMP_WORDS, COMP_CWORD), run as
the installed `vq` script (importing this checkout via PYTHONPATH) the way a shell's completion function runs `vq`."""

import os
import shutil
import subprocess


def _complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "_VQ_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword),
           "VQ_CONFIG": os.devnull}
    done = subprocess.run([shutil.which("vq")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_top_level_command_names_complete_although_commands_load_lazily():
    assert _complete("vq que", 1) == ["queues"]
    assert {"submit", "show", "recurring", "completion"} <= set(_complete("vq ", 1))


def test_sub_commands_of_a_group_complete():
    assert {"add", "list", "pause", "resume"} <= set(_complete("vq recurring ", 2))
