#!/usr/bin/env bash
# Install vq with its test dependencies and run the whole suite (the README's test command).
# -c constraints.txt: the exact versions the suite passed with (scripts/freeze_constraints.py),
# so a new release of Textual, FastAPI or schemathesis cannot change a snapshot or a check unseen.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -c constraints.txt -e '.[test]'
python3 -m pytest -q "$@"
