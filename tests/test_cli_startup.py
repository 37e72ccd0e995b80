"""Start-up structure of the CLI (issue 22): what `vq --version` / `vq <cmd>` import, and that the
light command table in vq/cli/app.py names every real command (timing is in scripts/bench/cli.py)."""

import os
import subprocess
import sys

from vq.cli import app as app_module

HEAVY = ("rq", "pydantic", "fastapi", "textual", "sqlite_utils", "typer", "redis")


def _imported(*args: str) -> set[str]:
    code = (
        "import sys; sys.argv = ['vq', *sys.argv[1:]]\n"
        "from vq.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('\\n'.join(sys.modules), file=sys.stderr)"
    )
    env = {**os.environ, "VQ_CONFIG": os.devnull}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)
    return set(done.stderr.split())


def test_version_imports_nothing_heavy():
    loaded = _imported("--version")
    assert not {name for name in loaded if name.split(".")[0] in HEAVY}


def test_loading_the_config_imports_no_pydantic(tmp_path):
    """Every command that touches Redis loads the config: its models are msgspec Structs,
    since building pydantic's cost about 0.1 s of each start-up."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "queue:\n  defaultJobOptions:\n    attempts: 5\n    removeOnComplete: {age: 1000}\n"
        "providers:\n  p:\n    url: http://x\ntemplates:\n  t:\n    jobType: test-echo\n"
    )
    code = (
        "import sys\nfrom vq.config import load_settings\n"
        "s = load_settings(sys.argv[1])\n"
        "print(s.queue.defaultJobOptions.attempts, s.providers['p'].url, sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('pydantic', 'pydantic_core')))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["5", "http://x", "[]"], done


def test_a_named_command_imports_only_its_own_module():
    loaded = _imported("completion", "--help")
    cli_modules = {name.split(".")[2] for name in loaded if name.startswith("vq.cli.") and name.count(".") == 2}
    assert "completion_cmd" in cli_modules
    assert not cli_modules & {"tui_cmd", "daemon_cmd", "job_cmds", "monitor_cmds", "submit_cmd"}


def test_the_command_table_names_every_real_command():
    full = app_module.build_app(app_module.MODULES)
    real = {}
    for command in full.registered_commands:
        real[command.name or command.callback.__name__] = command.callback.__module__.rsplit(".", 1)[1]
    for group in full.registered_groups:
        real[group.name] = next(iter(app_module.COMMANDS.get(group.name, "?").split()))
        alone = app_module.build_app([app_module.COMMANDS[group.name]])
        assert group.name in {g.name for g in alone.registered_groups}
    assert real == app_module.COMMANDS
    assert sorted(set(app_module.COMMANDS.values())) == sorted(app_module.MODULES)


def test_root_help_is_replayed_from_the_cache_without_typer(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "100"}
    code = (
        "import sys; sys.argv = ['vq', '--help']\nfrom vq.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('typer' in sys.modules, file=sys.stderr)"
    )
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "submit" in first.stdout and "queues" in first.stdout
    assert second.stdout == first.stdout
    assert first.stderr.strip() == "True" and second.stderr.strip() == "False"
    wider = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**env, "COLUMNS": "140"}
    )
    assert wider.stderr.strip() == "True"  # another width renders afresh


def test_hot_commands_import_neither_pydantic_nor_rich_they_do_not_need(vq):
    """typer 0.29 would convert every option through pydantic (~0.1 s); vq's plain options are
    converted by vq/cli/plain_params.py, and `vq submit` prints its id without loading rich."""
    code = (
        "import sys; sys.argv = ['vq', *sys.argv[1:]]\n"
        "from vq.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'rich'})) or '-', "
        "file=sys.stderr)"
    )
    env = vq.env

    def loaded(*args: str) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=60)
        return done.stdout, done.stderr.strip().splitlines()[-1]

    job_out, job_mods = loaded("submit", "test-echo", "--user", "u", "--data", '{"x": 1}', "--priority", "high")
    assert len(job_out.strip()) == 32 and job_mods == "-"
    assert loaded("show", job_out.strip(), "--json")[1] == "-"
    table, mods = loaded("queues")
    assert "test-echo" in table and mods == "rich"


def test_plain_options_are_converted_with_clear_messages():
    from typer.testing import CliRunner

    runner = CliRunner()
    app = app_module.build_app(["monitor_cmds", "job_cmds"])
    for args, message in (
        (["history", "--limit", "abc"], "'abc' is not a valid integer."),
        (["history", "--limit", "0"], "0 is not in the range 1<=x<=10000."),
        (["jobs", "-n", "1.5"], "'1.5' is not a valid integer."),
    ):
        done = runner.invoke(app, args, env={"VQ_CONFIG": os.devnull, "COLUMNS": "200"})
        assert done.exit_code == 2, (args, done.output)
        assert message in done.output, (args, done.output)


def test_plain_conversion_matches_what_typer_would_give():
    from vq.cli.plain_params import convert

    assert convert(int, "42") == 42 and convert(int, 7) == 7 and convert(float, "2.5") == 2.5
    assert convert(bool, "yes") is True and convert(bool, "0") is False and convert(bool, True) is True
    assert convert(list, ("a", "b")) == ["a", "b"] and convert(str, "x") == "x"
    assert convert(int, "5", 1, 10) == 5
