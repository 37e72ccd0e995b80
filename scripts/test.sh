#!/usr/bin/env bash
# Install vq with its test and docs dependencies, build the documentation site and run the
# whole suite (the README's test command).
# -c constraints.txt: the exact versions the suite passed with (scripts/freeze_constraints.py),
# so a new release of Textual, FastAPI or schemathesis cannot change a snapshot or a check unseen.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -c constraints.txt -e '.[test,docs,lint,otel]'
# The OpenAPI client generator (tests/test_api_client.py) asks for typer<0.28, which vq's
# tested typer is not; it runs on it, so it goes in without its own pins (pyproject `codegen`).
python3 -m pip install -q -c constraints.txt --no-deps openapi-python-client ruamel.yaml
# Lint and layout first: a finding fails CI in seconds instead of after the suite.
python3 -m ruff check --quiet
python3 -m ruff format --check --quiet
python3 -m mypy  # the whole package ([tool.mypy] in pyproject.toml)
# The documentation site: --strict fails on a broken link, anchor or include. Built into a
# temporary folder, so no site/ lands in the checkout.
site_dir="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict --quiet --site-dir "$site_dir"
rm -rf "$site_dir"
# Six tests at a time (pytest-xdist): most of a test's time is spent waiting on daemons,
# workers, Redis, grace periods and leases, so six fit on two cores (2026-12-06, 688 tests on
# an idle 2-core machine: 323 s with six, 360 s with four). VQ_TEST_PROCESSES=0: one by one.
# A test that fails runs once more (pytest-rerunfailures) and CI fails only if it fails again;
# each such test is listed under "rerun test summary info" (-rR), a flake to look into, not
# to ignore: several were real races (docs/tests.md "Flaky tests").
python3 -m pytest -q -n "${VQ_TEST_PROCESSES:-6}" --reruns 1 --reruns-delay 1 -rR "$@"
# RQ's newest release against vq's contract with RQ's internals (vq/rq_seam): reported, not
# fatal, since installs keep the pinned RQ; a failure here means an RQ upgrade needs work
# in vq/rq_seam first (docs/architecture.md "Checking an RQ upgrade").
if [ $# -eq 0 ]; then
  bash scripts/rq_contract_newest.sh || echo "WARNING: RQ's newest release breaks vq's contract tests (see above); keep the pin"
fi
