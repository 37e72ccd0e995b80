#!/usr/bin/env bash
# Install vq with its test dependencies and run the whole suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e '.[test]'
python3 -m pytest -q "$@"
