#!/usr/bin/env bash
# The main job: install kandle with its notebook extras into a virtual environment and run the
# tutorial's chapter-1 (simple NN), chapter-2 (simple CNN) and chapter-3 (ResNet50) notebooks headless on
# the full CIFAR-100.
#
# Usage: bash scripts/tutorial.sh [extra notebooks/run.py arguments, e.g. --timeout 36000]
#
# Needs Python 3.10+ and a Rust toolchain (cargo): kandle is built from this checkout. Writes into
# out/tutorial/ (or $KANDLE_TUTORIAL_OUT): the executed notebooks and their HTML, figures/*.png, the
# history pickles (simplenn_history.txt, scnn_history.txt, resnet_history.txt), summary.json and RESULTS.md.
# Environment: PYTHON (interpreter to create the venv with), KANDLE_TUTORIAL_VENV (default
# .venv-tutorial, reused when present), KANDLE_TUTORIAL_SKIP_INSTALL=1 (use that venv as it is, e.g.
# a development one), KANDLE_TUTORIAL_OUT, and the notebooks' size knob
# (KANDLE_TUTORIAL_SAMPLES, _TEST_SAMPLES, _EPOCHS, _EXTRA_EPOCHS; unset = the full article).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${KANDLE_TUTORIAL_VENV:-.venv-tutorial}
OUT=${KANDLE_TUTORIAL_OUT:-out/tutorial}

# A Python 3.10+ to build the venv with.
if [ -n "${PYTHON:-}" ]; then
    candidates=("$PYTHON")
else
    candidates=(python3 python3.13 python3.12 python3.11 python3.10 python)
fi
PY=""
for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        PY=$c
        break
    fi
done
if [ -z "$PY" ]; then
    echo "tutorial.sh: needs Python 3.10 or newer (set PYTHON=/path/to/python3.x)" >&2
    exit 1
fi
if [ -z "${KANDLE_TUTORIAL_SKIP_INSTALL:-}" ] && ! command -v cargo >/dev/null 2>&1; then
    echo "tutorial.sh: needs a Rust toolchain to build kandle (cargo not found; see https://rustup.rs)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
if [ -n "${KANDLE_TUTORIAL_SKIP_INSTALL:-}" ]; then
    echo "== KANDLE_TUTORIAL_SKIP_INSTALL set: using $VENV as it is"
else
    echo "== installing kandle[notebook] into $VENV (release build of the Rust core)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q ".[notebook]"
fi

# CIFAR-100: use the shared copy as kandle's download cache when this checkout has one beside it;
# otherwise cifar100.load_data() downloads the archive (about 170 MB) into ~/.kandle/datasets.
SHARED=../shared/datasets/cifar-100-python.tar.gz
if [ -f "$SHARED" ]; then
    CACHE="${KANDLE_HOME:-$HOME/.kandle}/datasets"
    mkdir -p "$CACHE"
    if [ ! -e "$CACHE/cifar-100-python.tar.gz" ]; then
        ln -s "$(cd "$(dirname "$SHARED")" && pwd)/cifar-100-python.tar.gz" "$CACHE/cifar-100-python.tar.gz"
        echo "== linked $SHARED into $CACHE"
    fi
else
    echo "== no $SHARED: cifar100.load_data() will use ~/.kandle or ~/.keras caches, or download"
fi

for v in KANDLE_TUTORIAL_SAMPLES KANDLE_TUTORIAL_TEST_SAMPLES KANDLE_TUTORIAL_EPOCHS KANDLE_TUTORIAL_EXTRA_EPOCHS; do
    if [ -n "${!v:-}" ]; then echo "== size knob: $v=${!v} (not the full article)"; fi
done

echo "== running notebooks/01_simple_nn.ipynb, 02_simple_cnn.ipynb and 03_resnet.ipynb into $OUT"
export KANDLE_TUTORIAL_COMMAND="bash scripts/tutorial.sh${*:+ $*}"
exec "$VENV/bin/python" notebooks/run.py --out "$OUT" "$@"
