#!/usr/bin/env bash
# The whole test suite: builds kandle (release) into a local venv, runs the Rust tests, then pytest.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${KANDLE_VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q ".[test]"
cargo test --release --quiet
"$VENV/bin/python" -m pytest -q "$@"
