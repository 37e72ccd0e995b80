"""The man page and the documentation's Commands page (docs/commands.md) stay true to the CLI;
the README stays short and points into the documentation site."""

from __future__ import annotations

import re
from pathlib import Path

from vq.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
COMMANDS_PAGE = ROOT / "docs" / "commands.md"  # the command reference, grouped as `vq --help` groups it


def _commands() -> list[str]:
    """Top-level commands and, for groups, "group sub" (e.g. "recurring add")."""
    names = [c.name for c in app.registered_commands]
    for group in app.registered_groups:
        names += [f"{group.name} {c.name}" for c in group.typer_instance.registered_commands]
    return names


def test_every_command_is_in_the_man_page_and_the_commands_page():
    man = (ROOT / "man" / "vq.1").read_text()
    page = COMMANDS_PAGE.read_text()
    for name in _commands():
        assert f".B {name}" in man or f"\\fB{name}\\fR" in man, f"{name} missing from man/vq.1"
        assert f"vq {name}" in page, f"{name} missing from docs/commands.md"


def test_config_example_is_valid_and_complete():
    import yaml

    from vq.config import settings_from

    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    settings_from(example, "config.example.yaml")
    for block in ("redis", "queue", "concurrency", "priority", "limits", "daemon", "job_types"):
        assert block in example, block


def _tree():
    """(path, command) for every group and command of the CLI, the root excluded."""
    import typer.main

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():  # typer's groups are no click.Group
            yield (*path, name), sub
            yield from walk(sub, (*path, name))

    return list(walk(typer.main.get_command(app), ()))


def _plain(troff: str) -> str:
    r"""Man page source as text: fonts dropped, \- and \e as typed."""
    return re.sub(r"\\f[BIRP]", "", troff).replace("\\-", "-").replace("\\e", "\\").replace("\\(en", "-")


def _man_entries() -> list[tuple[str, tuple[str, ...], str]]:
    """(panel, command path, text) for every entry of the man page's COMMANDS section."""
    man = (ROOT / "man" / "vq.1").read_text()
    section = man[man.index(".SH COMMANDS\n") : man.index("\n.SH ", man.index(".SH COMMANDS\n") + 1)]
    groups = {path[0] for path, command in _tree() if hasattr(command, "commands")}
    entries, panel = [], None
    for chunk in re.split(r"^(?=\.SS |\.TP\n)", section, flags=re.M):
        if chunk.startswith(".SS "):
            panel = chunk.split("\n")[0][4:].strip()
        elif chunk.startswith(".TP\n"):
            words = _plain(chunk.split("\n")[1]).split()[1:]
            path = tuple(words[:2]) if words[0] in groups and len(words) > 1 and words[1].isalpha() else (words[0],)
            entries.append((panel, path, _plain(chunk)))
    return entries


GLOBAL = {"--config", "--help", "--version", "--json"}


def test_man_page_lists_every_command_under_its_help_panel():
    from vq.cli.helptext import PANEL_OF

    tree = dict(_tree())
    entries = _man_entries()
    for panel, path, _text in entries:
        assert path in tree, f"man/vq.1 documents `vq {' '.join(path)}`, which does not exist"
        assert panel == PANEL_OF[path[0]], f"`vq {' '.join(path)}` is under {panel}, --help says {PANEL_OF[path[0]]}"
    documented = {path for _panel, path, _text in entries}
    for path, command in tree.items():
        if not hasattr(command, "commands") or command.callback is not None and path == ("limits",):
            assert path in documented, f"`vq {' '.join(path)}` has no entry in man/vq.1"


def test_man_page_and_help_name_the_same_options_and_choices():
    """Each entry names only options its command has; each option of a command is in one of its
    entries, with its choices (`<high|normal|low>` in --help is high|normal|low there)."""
    tree = dict(_tree())
    texts: dict[tuple, str] = {}
    for _panel, path, text in _man_entries():
        texts[path] = texts.get(path, "") + text
        known = {o for p in tree[path].params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text.split("\n")[1]))  # the entry's synopsis
        assert named <= known | GLOBAL, f"man/vq.1 `vq {' '.join(path)}`: no such option {named - known - GLOBAL}"
    missing = []
    for path, command in tree.items():
        for param in command.params:
            longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
            if not longs or longs[0] in GLOBAL or param.param_type_name != "option":
                continue
            text = texts.get(path, "")
            if longs[0] not in text:
                missing.append(f"vq {' '.join(path)} {longs[0]}")
            metavar = param.metavar or ""
            if metavar.startswith("<") and "|" in metavar:
                if metavar[1:-1] not in text:
                    missing.append(f"vq {' '.join(path)} {longs[0]} {metavar[1:-1]}")
    assert not missing, f"options missing from their command's entry in man/vq.1: {missing}"


def test_the_commands_without_json_are_the_ones_the_docs_name():
    without = {
        " ".join(path)
        for path, command in _tree()
        if not hasattr(command, "commands") and not any("--json" in getattr(p, "opts", []) for p in command.params)
    }
    assert without == {"daemon", "tui", "completion", "artifacts get", "config example"}
    man = _plain((ROOT / "man" / "vq.1").read_text())
    page = COMMANDS_PAGE.read_text()
    intro = page[page.index("# Commands\n") : page.index("\n## ")]  # the page's opening, before the first group
    for name in without:
        assert name in man.split(".SH GLOBAL OPTIONS")[0] and f"`{name}`" in intro, name


def test_the_commands_page_lists_the_choices_help_lists():
    page = COMMANDS_PAGE.read_text()
    cells = [line.split(" | ")[0] for line in page.splitlines() if line.startswith("| `vq ")]
    missing = []
    for path, command in _tree():
        mine = " ".join(c for c in cells if re.search(rf"`vq {' '.join(path)}( |`)", c))
        for param in command.params:
            metavar = getattr(param, "metavar", None) or ""
            if metavar.startswith("<") and "|" in metavar and metavar[1:-1].replace("|", "\\|") not in mine:
                missing.append(f"vq {' '.join(path)} {param.opts[0]} {metavar}")
    assert not missing, f"docs/commands.md's command rows lack these choices: {missing}"


def test_help_examples_are_in_the_man_page_and_the_commands_page():
    from vq.cli.helptext import EXAMPLE, PANEL_OF

    man = (ROOT / "man" / "vq.1").read_text()
    examples = _plain(man[man.index(".SH EXAMPLES\n") : man.index(".SH SEE ALSO\n")])
    page = COMMANDS_PAGE.read_text()
    for path, command in _tree():
        example = command.epilog[len(EXAMPLE) :]
        panel = examples[examples.index(f".SS {PANEL_OF[path[0]]}\n") :]
        assert example in panel.split(".EE")[0], f"man/vq.1 EXAMPLES ({PANEL_OF[path[0]]}) lacks: {example}"
        assert example in page, f"docs/commands.md lacks the example of vq {' '.join(path)}: {example}"


def test_the_commands_page_groups_the_commands_as_help_does():
    from vq.cli.helptext import PANEL_OF, PANELS

    reference = COMMANDS_PAGE.read_text()
    for panel in PANELS:
        start = reference.index(f"\n## {panel}\n")
        block = reference[start : reference.find("\n## ", start + 1)]
        first_cells = [line.split(" | ")[0] for line in block.splitlines() if line.startswith("| `vq ")]
        rows = {name for cell in first_cells for name in re.findall(r"`vq ([a-z]+)", cell)}
        assert rows == {name for name, p in PANEL_OF.items() if p == panel}, (panel, rows)


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
    done = subprocess.run(
        [sys.executable, "-c", "from vq.cli.app import app; app(prog_name='vq')"],
        env=env,
        capture_output=True,
        text=True,
    )
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
    pinned = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    extras = project["optional-dependencies"]
    for requirement in [*project["dependencies"], *extras["test"], *extras["docs"]]:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()
        assert name in pinned, f"{name} is not pinned in constraints.txt (scripts/freeze_constraints.py)"
    assert "hiredis" in pinned and "starlette" in pinned  # extras and transitive ones too


def _nav_pages(nav) -> list[str]:
    """The Markdown files mkdocs.yml's nav names, nested sections included."""
    pages = []
    for item in nav:
        for value in item.values() if isinstance(item, dict) else [item]:
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_readme_is_short_and_points_into_the_documentation_site():
    """The README keeps what CI and a new operator need (the two commands, the first session,
    at most 200 lines); everything else is on the site, whose nav names every page once."""
    import yaml

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200, "README.md is over 200 lines: move the detail into docs/"
    assert "\nbash scripts/test.sh " in readme, "the README's test command (.ci/run runs it) is gone"
    linked = set(re.findall(r"\]\(docs/([a-z-]+\.md)\)", readme))
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    on_disk = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert sorted(pages) == sorted(on_disk), "mkdocs.yml's nav and docs/*.md differ"
    assert linked == on_disk, f"README.md links no page for {on_disk - linked}, or a missing one: {linked - on_disk}"
    images = re.findall(r"!\[([^\]]*)\]\((docs/[\w.-]+)\)", readme)
    assert any(image == "docs/web-dashboard-small.png" for _alt, image in images), "no screenshot of the web dashboard"
    for alt, image in images:
        assert alt, f"{image}: an image needs its alt text"
        start = (ROOT / image).read_bytes()[:200]
        assert start.startswith(b"\x89PNG\r\n\x1a\n") or b"<svg" in start, f"{image} is missing or not a PNG or SVG"
    # The site's first session is the README's own block, included (pymdownx.snippets), not a copy.
    assert '--8<-- "README.md:first-session"' in (ROOT / "docs" / "index.md").read_text()
    assert "--8<-- [start:first-session]" in readme and "--8<-- [end:first-session]" in readme


def test_the_architecture_diagram_names_at_most_six_modules_that_exist():
    """docs/architecture.md draws one job's path from submit to its history row; when a module
    is split or renamed, this names the box to update."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    section = page.split("## The path of one job\n", 1)[1]
    diagram = section.split("```text\n", 1)[1].split("\n```", 1)[0]
    modules = set(re.findall(r"vq/[a-z_/]+\.py", diagram))
    assert 0 < len(modules) <= 6, modules
    for module in modules:
        assert (ROOT / module).exists() or (ROOT / module[:-3]).is_dir(), f"{module} is drawn but does not exist"


def test_every_token_create_the_docs_write_out_names_its_required_user():
    """`vq token create --role metrics` as written in the README sent a newcomer to
    "Missing option '--user'": a written-out command must run as it stands. Only a metrics
    token may leave --user out (tests/test_prometheus.py)."""
    written = []
    for path in [ROOT / "README.md", ROOT / "man" / "vq.1", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text().replace("\\-", "-")
        for match in re.finditer(r"vq token create((?: +--?[\w-]+(?: +[\w.$()/-]+)?)+)", text):
            written.append(match.group(0))
            named = re.search(r"(--user|-u) ", match.group(1) + " ") or "--role metrics" in match.group(1)
            assert named, f"{path.name}: {match.group(0)!r} has no --user"
    assert len(written) >= 3, written


def test_the_batch_docs_give_the_exit_codes_batch_create_gives():
    """`vq batch create` with a line of an unknown type exits 4 (tests/test_batches.py), not
    the 2 of a bad line the docs said: each page that gives the code says both."""
    for name in ("man/vq.1", "docs/commands.md", "docs/job-types.md"):
        text = " ".join((ROOT / name).read_text().replace("\\fB", "").replace("\\fR", "").replace("\\", "").split())
        said = re.search(r"one bad line submits nothing[^.]*", text)
        assert said and "exit 2" in said.group(0), (name, said and said.group(0))
        assert "exit 4 when it names an unknown job type" in said.group(0), (name, said.group(0))
