"""Shell completion through typer's real protocol (_VQ_COMPLETE=complete_bash|zsh|fish, with
COMP_WORDS/COMP_CWORD or _TYPER_COMPLETE_ARGS), run as the installed `vq` script (importing this
checkout via PYTHONPATH) the way the scripts of `vq completion SHELL` run it, against the `vq`
fixture's real Redis. Names and values (job types, statuses, priorities, tiers, log formats,
shells, recurring ids and names, recent job ids); the cached fast path answers exactly as typer
does; Redis unreachable still completes what is static. TAB times: scripts/bench/cli.py."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STATUSES = ["queued", "limited", "started", "finished", "failed", "deferred", "scheduled", "canceled", "stopped"]


def _env(base: dict, cache: Path, **extra) -> dict:
    env = {
        k: v
        for k, v in base.items()
        if k not in ("COMP_WORDS", "COMP_CWORD", "_TYPER_COMPLETE_ARGS", "_TYPER_COMPLETE_FISH_ACTION", "_VQ_COMPLETE")
    }
    env.update(PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(cache), **extra)
    return env


def _run(env: dict, shell: str, line: str, action: str | None = None) -> subprocess.CompletedProcess:
    env = {**env, "_VQ_COMPLETE": f"complete_{shell}"}
    if shell == "bash":  # what typer's bash function passes: the words so far, the index of the current one
        words = line.split(" ")
        env.update(COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
    else:
        env["_TYPER_COMPLETE_ARGS"] = line
        if action:
            env["_TYPER_COMPLETE_FISH_ACTION"] = action
    return subprocess.run([shutil.which("vq")], capture_output=True, text=True, env=env, timeout=60)


def _bash(env: dict, line: str) -> list[str]:
    done = _run(env, "bash", line)
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout.split()


@pytest.fixture
def names_env(tmp_path):
    return _env(os.environ, tmp_path / "cache", VQ_CONFIG=os.devnull)


@pytest.fixture
def tab(vq, tmp_path):
    """The `vq` fixture's config and Redis, with a cache directory of the test's own (its
    commands use it too: those that add jobs drop the cached values)."""
    vq.env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return _env(vq.env, tmp_path / "cache")


def test_top_level_command_names_complete_although_commands_load_lazily(names_env):
    assert _bash(names_env, "vq que") == ["queues"]
    assert {"submit", "show", "recurring", "completion"} <= set(_bash(names_env, "vq "))
    assert _bash(names_env, "vq que") == ["queues"]  # the second time from the cache


def test_sub_commands_of_a_group_complete(names_env):
    assert {"add", "list", "pause", "resume", "run"} <= set(_bash(names_env, "vq recurring "))


def test_option_names_complete_and_one_given_is_not_offered_again(names_env):
    offered = _bash(names_env, "vq submit --")
    assert {"--priority", "--subscription", "--data", "--wait", "--help"} <= set(offered)
    assert "--priority" not in _bash(names_env, "vq submit --priority high --")


def test_static_values_complete(tab):
    assert _bash(tab, "vq jobs --status ") == STATUSES
    assert _bash(tab, "vq jobs --status f") == ["finished", "failed"]
    assert _bash(tab, "vq history --status ") == STATUSES
    assert _bash(tab, "vq batch list --status ") == ["open", "closed", "complete"]  # a batch's states, not a job's
    assert _bash(tab, "vq submit --priority ") == ["high", "normal", "low"]
    assert _bash(tab, "vq submit --priority=n") == ["normal"]
    assert _bash(tab, "vq submit -s ") == ["free", "basic", "pro", "enterprise"]
    assert _bash(tab, "vq token create --tier p") == ["pro"]
    assert _bash(tab, "vq daemon --log-format ") == ["text", "json"]
    assert _bash(tab, "vq completion ") == ["bash", "zsh", "fish"]
    assert _bash(tab, "vq limits set ") == ["type", "tier", "user", "group", "group-rate", "tier-weight", "user-weight"]
    assert _bash(tab, "vq limits set tier ") == ["free", "basic", "pro", "enterprise"]
    assert _bash(tab, "vq limits set tier-weight ") == ["free", "basic", "pro", "enterprise"]


def test_job_types_complete_with_the_configs_plug_in_types(tab):
    types = _bash(tab, "vq submit ")
    assert types[:2] == ["video-generation", "script-generation"]  # the built-ins first
    assert {"test-echo", "test-sleep", "content-analysis"} <= set(types)  # test-echo: tests.plugins:echo
    assert _bash(tab, "vq submit test-e") == ["test-echo"]
    assert _bash(tab, "vq jobs --type test-s") == ["test-sleep"]
    assert _bash(tab, "vq pause test-no") == ["test-noop"]
    assert "test-echo" in _bash(tab, "vq limits set type ")
    assert _bash(tab, "vq daemon -q test-echo,test-n") == ["test-echo,test-noop"]  # a list's last item


def test_limit_group_names_complete_after_group(vq, tab):
    vq.configure(concurrency={"groups": {"model": {"key": "data.model", "limit": 2}}})
    assert _bash(tab, "vq limits set group ") == ["model"]
    assert _bash(tab, "vq limits reset group m") == ["model"]


def test_recurring_ids_and_names_complete(vq, tab):
    assert _bash(tab, "vq recurring run ") == []
    added = vq.run(
        "recurring", "add", "test-echo", "--cron", "*/5 * * * *", "--name", "nightly-digest", "--user", "u1", "--json"
    )
    assert added.returncode == 0, added.stderr
    rid = json.loads(added.stdout)["id"]
    assert _bash(tab, "vq recurring run ") == [rid, "nightly-digest"]  # `recurring add` dropped the cached list
    assert _bash(tab, "vq recurring rm nig") == ["nightly-digest"]
    assert _bash(tab, f"vq recurring show {rid[:4]}") == [rid]


def test_a_job_submitted_just_before_completes_for_show(vq, tab):
    first = vq.submit("test-echo", {}, "--user", "u1")
    assert _bash(tab, "vq show ") == [first]
    second = vq.submit("test-noop", {}, "--user", "u2")  # `vq submit` drops the cached ids
    assert _bash(tab, "vq show ") == [second, first]  # newest first
    assert _bash(tab, f"vq result {second[:6]}") == [second]
    assert second in _bash(tab, "vq submit test-echo --depends-on ")
    assert _bash(tab, "vq history ")[:2] == ["export", second]


def test_zsh_and_fish_formats(tab):
    zsh = _run(tab, "zsh", "vq recurring ")
    assert zsh.returncode == 0
    assert zsh.stdout.startswith("_arguments '*: :((\"add\":\"Add a recurring job; prints its id.\"\n")
    assert zsh.stdout.endswith("))'\n")
    assert _run(tab, "zsh", "vq submit --priority h").stdout == "_arguments '*: :((\"high\"))'\n"
    assert _run(tab, "zsh", "vq submit --priority x").stdout == "_files\n"  # nothing: the shell offers files
    fish = _run(tab, "fish", "vq recurring ", "get-args")
    assert fish.returncode == 0
    assert "add\tAdd a recurring job; prints its id.\n" in fish.stdout
    assert _run(tab, "fish", "vq jobs --status f", "get-args").stdout == "finished\nfailed\n"
    assert _run(tab, "fish", "vq jobs --status ", "is-args").returncode == 0  # values: no file names
    assert _run(tab, "fish", "vq show --json ", "is-args").returncode == 1  # none: files


def test_cached_answers_are_typers_own(vq, tab, tmp_path):
    """The fast path (cached tables, no typer) and typer's own completion, with the completers
    attached, give the same bytes and exit code for each shell, in one process."""
    vq.submit("test-echo", {}, "--user", "u1")
    vq.run("recurring", "add", "test-echo", "--cron", "*/5 * * * *", "--name", "digest", "--user", "u1")
    lines = [
        "vq ",
        "vq s",
        "vq -",
        "vq --c",
        "vq --config x ",
        "vq -c x s",
        "vq --config=",
        "vq submit ",
        "vq submit t",
        "vq submit -",
        "vq submit --priority ",
        "vq submit --priority=h",
        "vq submit --json --",
        "vq submit test-echo -w -",
        "vq submit --depends-on x --depends-on ",
        "vq show ",
        "vq show x ",
        "vq show x --json -",
        "vq show --bogus ",
        "vq show -- ",
        "vq show -- -",
        "vq recurring ",
        "vq recurring run ",
        "vq recurring run d",
        "vq nosuch ",
        "vq jobs --status ",
        "vq jobs -tt",
        "vq jobs -n 5 --",
        "vq history ",
        "vq history --format ",
        "vq limits set type ",
        "vq limits set user ",
        "vq daemon --log-level ",
        "vq completion z",
        "vq token create --role ",
        "vq costs -b ",
        "vq tui --theme ",
        "vq recurring add --catch-up ",
        "vq dlq retry ",
        "vq artifacts get x ",
        "vq --version ",
        "vq -h -",
        "vq submit =",
        "vq daemon -q video-generation,s",
    ]
    script = textwrap.dedent("""
        import io, json, os, sys
        import typer
        from vq.cli.app import build_app, MODULES
        from vq.cli import completers, completion_cache

        command = typer.main.get_command(build_app(MODULES))
        completers.attach(command)
        completion_cache.save_tree(completers.describe(command))

        def run(answer):
            out, real = io.StringIO(), sys.stdout
            sys.stdout = out
            try:
                code = answer()
            except SystemExit as exc:
                code = exc.code
            finally:
                sys.stdout = real
            return [code, out.getvalue()]

        found = []
        for shell, line, action in json.loads(sys.argv[1]):
            for name in ("COMP_WORDS", "COMP_CWORD", "_TYPER_COMPLETE_ARGS", "_TYPER_COMPLETE_FISH_ACTION"):
                os.environ.pop(name, None)
            os.environ["_VQ_COMPLETE"] = "complete_" + shell
            if shell == "bash":
                os.environ.update(COMP_WORDS=line, COMP_CWORD=str(len(line.split(" ")) - 1))
            else:
                os.environ["_TYPER_COMPLETE_ARGS"] = line
                if action:
                    os.environ["_TYPER_COMPLETE_FISH_ACTION"] = action
            fast = run(completion_cache.answer)
            slow = run(lambda: command.main(args=[], prog_name="vq", complete_var="_VQ_COMPLETE"))
            found.append([shell, line, action, fast, slow])
        print(json.dumps(found))
    """)
    cases = [
        [shell, line, action]
        for line in lines
        for shell, action in (("bash", None), ("zsh", None), ("fish", "get-args"), ("fish", "is-args"))
    ]
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases)],
        capture_output=True,
        text=True,
        env={**tab, "COLUMNS": "200"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r for r in results if r[3][0] is not None and r[3] != r[4]] == []  # None: left to typer

    # Every one of these from the cache, but for zsh/fish answers with a help text wider than
    # the narrowest terminal (80): rich would wrap it, so the cache leaves those to typer.
    def too_wide(r):
        texts = re.findall(r'":"([^"]*)"', r[4][1]) + [line.split("\t", 1)[-1] for line in r[4][1].splitlines()]
        return r[0] != "bash" and any(len(t) > 80 for t in texts)

    unanswered = [r for r in results if r[3][0] is None and not too_wide(r)]
    assert unanswered == []
    assert len([r for r in results if r[3][0] is not None]) >= len(results) * 3 // 4
    assert any("digest" in r[3][1] for r in results) and any("test-echo" in r[3][1] for r in results)


def test_a_warm_tab_imports_no_typer_and_no_command(tab):
    code = (
        "import sys; sys.argv = ['vq']\nfrom vq.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'redis', 'rich', "
        "'pydantic') or m.startswith('vq.cli.') and m.endswith(('_cmd', '_cmds'))), file=sys.stderr)"
    )
    env = {**tab, "_VQ_COMPLETE": "complete_bash", "COMP_WORDS": "vq show ", "COMP_CWORD": "2"}
    cold = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "typer" in cold.stderr  # the first TAB builds the app and writes the cache
    assert warm.stderr.strip() == "[]" and warm.stdout == cold.stdout
    started = time.perf_counter()
    assert _bash(tab, "vq jobs --status q") == ["queued"]
    assert time.perf_counter() - started < 1.0  # a sanity bound; the 0.2 s figure is scripts/bench/cli.py's


def test_with_redis_unreachable_static_values_still_complete_quickly(vq, tmp_path):
    config = tmp_path / "down.yaml"
    config.write_text("redis:\n  url: redis://127.0.0.1:1/0\n")
    env = _env(vq.env, tmp_path / "cache", VQ_CONFIG=str(config))
    for _ in range(2):  # cold (the slow path), then from the cache
        started = time.perf_counter()
        shown = _run(env, "bash", "vq show ")
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, "\n", "")
        assert time.perf_counter() - started < 5
    assert _bash(env, "vq recurring run ") == []
    assert _bash(env, "vq jobs --status c") == ["canceled"]
    assert "video-generation" in _bash(env, "vq submit ")


def test_cache_files_are_private_and_a_broken_one_is_rebuilt(tab, tmp_path):
    assert _bash(tab, "vq show ") == []
    folder = tmp_path / "cache" / "vq"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.glob("complete-*.json"))
    assert {f.name.split("-")[1].split(".")[0] for f in files} == {"tree", "config", "redis"}
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    for path in files:
        path.write_text("{not json")
    assert _bash(tab, "vq submit --priority ") == ["high", "normal", "low"]
    assert "test-echo" in _bash(tab, "vq submit ")
    assert json.loads(next(folder.glob("complete-tree-*.json")).read_text())["root"]["group"] is True


def test_bash_completes_through_the_script_vq_completion_prints(vq, tab):
    """bash itself: the function `vq completion bash` defines, called as bash calls it on a TAB."""
    job_id = vq.submit("test-echo", {}, "--user", "u1")
    script = vq.run("completion", "bash")
    assert script.returncode == 0, script.stderr

    def complete(*words: str) -> list[str]:
        array = " ".join(f"'{w}'" for w in words)
        probe = (
            f'{script.stdout}\nCOMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _vq_completion vq; '
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True, env=tab, timeout=60
        )
        assert done.returncode == 0 and not done.stderr, done.stderr
        return [line for line in done.stdout.split("\n") if line]

    assert complete("vq", "show", "") == [job_id]
    assert complete("vq", "jobs", "--status", "s") == ["started", "scheduled", "stopped"]
    assert complete("vq", "submit", "test-n") == ["test-noop"]
    assert complete("vq", "recu") == ["recurring"]


CONFIGS = {  # redis block, data_dir, environment: the Redis each names, and the config's job types
    "url": ({"url": "redis://u%40x:p%3Aw@example.org:6380/4"}, None, {}),
    "url-query": ({"url": "redis://example.org?db=5&password=sekret"}, None, {}),
    "tls": ({"url": "rediss://example.org:6390/1"}, None, {}),
    "unix-url": ({"url": "unix:///run/redis/redis.sock?db=2"}, None, {}),
    "socket": ({"socket": "/run/r.sock", "password": "pw", "db": 3}, None, {}),
    "host": ({"host": "db.internal", "port": 6390, "password": "pw"}, None, {}),
    "sentinel": ({"sentinel": {"hosts": ["s1:26379"]}}, None, {}),
    "embedded": ({}, "~/vqdata", {}),
    "embedded-xdg": ({}, None, {"XDG_DATA_HOME": "/srv/share"}),
    "env-url": ({"host": "ignored"}, None, {"REDIS_URL": "redis://envhost:7000/6"}),
    "env-host": ({"url": "redis://ignored/1", "db": 2}, None, {"REDIS_HOST": "h2", "REDIS_PASSWORD": "p2"}),
    "env-port": ({"socket": "/x.sock"}, None, {"REDIS_PORT": "7001", "REDIS_DB": "8"}),
    "env-data": ({}, "/a", {"VQ_DATA_DIR": "/b"}),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_light_config_reader_agrees_with_vq_config(name, tmp_path):
    """What a TAB reads from the config without pydantic is what `vq` itself reads."""
    block, data_dir, env = CONFIGS[name]
    config = tmp_path / "config.yaml"
    settings = {
        "redis": block,
        "job_types": {"test-echo": {"handler": "tests.plugins:echo"}, "image-generation": {"timeout": 1000}},
        "concurrency": {
            "groups": {"model": {"key": "data.model", "limit": 2}, "proj": {"key": "projectId", "limit": 3}}
        },
    }
    if data_dir:
        settings["data_dir"] = data_dir
    config.write_text(json.dumps(settings))  # JSON is YAML
    code = (
        "import json\nfrom vq.cli import completers, complete_config as c\n"
        "builtins = completers.static_sources()['builtin-types']\n"
        f"print(json.dumps([c.read_config({str(config)!r}, builtins), c.read_config_validated({str(config)!r})]))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "VQ_", "XDG_DATA"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **env},
    )
    assert done.returncode == 0, done.stderr
    light, validated = json.loads(done.stdout)
    assert light == validated
    assert light["job_types"][-1] == "test-echo" and light["job_types"].count("image-generation") == 1
