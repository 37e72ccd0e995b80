#!/usr/bin/env bash
# Install vq with its test dependencies and run the whole suite (the README's test command).
# -c constraints.txt: the exact versions the suite passed with (scripts/freeze_constraints.py),
# so a new release of Textual, FastAPI or schemathesis cannot change a snapshot or a check unseen.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -c constraints.txt -e '.[test]'
# The OpenAPI client generator (tests/test_api_client.py) asks for typer<0.28, which vq's
# tested typer is not; it runs on it, so it goes in without its own pins (pyproject `codegen`).
python3 -m pip install -q -c constraints.txt --no-deps openapi-python-client ruamel.yaml
python3 -m pytest -q "$@"
