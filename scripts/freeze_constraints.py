"""Write constraints.txt: the exact version of every package vq and its test, docs and codegen extras need,
transitive included, as installed now (run it after the whole suite passed with them).

`pip freeze` would also list whatever else the machine has; this walks vq's own metadata
(`pip install -e '.[test,docs]'` first) so the file holds vq's dependency closure only. pip
itself is left out: sqlite-utils lists it, and a constraint must not fight the installer."""

from __future__ import annotations

import importlib.metadata as metadata
import re
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = {"pip", "setuptools", "wheel"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(
    root: str = "vq", extras: frozenset[str] = frozenset({"test", "docs", "codegen", "lint", "otel"})
) -> dict[str, str]:
    """Each distribution reachable from `root[extras]` under this interpreter, with its version."""
    environment = default_environment()
    versions: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    todo = [(root, set(extras))]
    while todo:
        name, wanted = todo.pop()
        dist = metadata.distribution(name)
        key = _normal(dist.metadata["Name"])
        if key in extras_seen and wanted <= extras_seen[key]:
            continue
        extras_seen.setdefault(key, set()).update(wanted)
        versions[key] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker and not any(marker.evaluate({**environment, "extra": e}) for e in wanted | {""}):
                continue
            todo.append((requirement.name, set(requirement.extras)))
    versions.pop(_normal(root), None)
    return {k: v for k, v in sorted(versions.items()) if k not in LEFT_OUT}


def main() -> None:
    lines = [f"{name}=={version}" for name, version in closure().items()]
    header = (
        "# The versions the whole suite passed with (scripts/freeze_constraints.py writes this file).\n"
        "# pip install -c constraints.txt .        an operator's install of the tested set\n"
    )
    (ROOT / "constraints.txt").write_text(header + "\n".join(lines) + "\n")
    print(f"constraints.txt: {len(lines)} packages")


if __name__ == "__main__":
    main()
