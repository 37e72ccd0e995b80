#!/usr/bin/env bash
# RQ's newest release against vq's contract with RQ's internals (vq/rq_seam): installs it
# into a throwaway venv beside this checkout and runs tests/test_rq_contract.py there only.
# Passes: the pin in pyproject.toml (rq>=X.Y,<X.Y+1) may move on to that release (then run
# the worker tests). Fails: the test names what RQ changed; vq/rq_seam is where to adapt.
#
#   scripts/rq_contract_newest.sh                 # the newest RQ on the index
#   RQ_SPEC='rq==2.12.0' scripts/rq_contract_newest.sh   # any other release
#
# The venv sees the system's site-packages (vq's other dependencies, as scripts/test.sh
# installs them); whatever of them is missing is installed at the tested versions.
set -euo pipefail
cd "$(dirname "$0")/.."
RQ_SPEC="${RQ_SPEC:-rq}"
# The newest release already installed: the suite's own run of the contract tests covered it,
# so the throwaway venv (about 10 s) is skipped.
if [ "$RQ_SPEC" = rq ]; then
  newest="$(python3 -m pip index versions rq 2>/dev/null | sed -n 's/^rq (\(.*\))$/\1/p')"
  installed="$(python3 -c 'import rq; print(rq.__version__)' 2>/dev/null || true)"
  if [ -n "$newest" ] && [ "$newest" = "$installed" ]; then
    echo "RQ $newest, the newest release, is the one installed: tests/test_rq_contract.py ran against it in the suite"
    exit 0
  fi
fi
venv="$(mktemp -d "${TMPDIR:-/tmp}/vq-rq-newest.XXXXXX")"
made_egg_info=1; [ -e vq.egg-info ] && made_egg_info=0
trap 'rm -rf "$venv"; [ "$made_egg_info" = 1 ] && rm -rf vq.egg-info; true' EXIT  # pip -e writes vq.egg-info here
python3 -m venv --system-site-packages "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check --no-deps -e .
# vq's dependencies other than RQ, and the tests' runner, at the versions the suite passed with
grep -v '^rq==' constraints.txt > "$venv/constraints.txt"
"$py" - > "$venv/requirements.txt" <<'EOF'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0] != "rq"))
print("pytest>=8,<9\npytest-timeout>=2.3")
EOF
"$py" -m pip install -q --disable-pip-version-check -c "$venv/constraints.txt" -r "$venv/requirements.txt"
# the newest RQ (or RQ_SPEC) and what it needs, whatever the pin in pyproject.toml says
"$py" -m pip install -q --disable-pip-version-check --upgrade "$RQ_SPEC"
version="$("$py" -c 'import rq; print(rq.__version__)')"
echo "RQ $version: tests/test_rq_contract.py"
PYTHONPATH="$PWD" "$py" -m pytest -q -p no:cacheprovider tests/test_rq_contract.py "$@"
