#!/usr/bin/env bash
# The Keras backend tests (issue 15), run by .ci/run after pytest (venv active, repository root, MNIST_DATA_DIR,
# PyTorch and JAX installed by .ci/setup.d/30-backends.sh): tests/backends -m slow, the tests that measure the
# Keras mirror on torch and JAX in child processes (optimizers, gradients, training steps, a plain PyTorch
# loop, export through TensorFlow, 3 epochs to 97 %) and run training/train.py --backend end to end (same
# seed same weights, verified export, resume). The default pytest run already did the quick ones.
# The two backends run side by side, one pytest each (every child process uses one thread: 2 cores); about
# 2 minutes. Exits non-zero if any test fails or none ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
export CI=${CI:-true}  # a missing backend package fails the tests instead of skipping them

started=$(date +%s)
logs=$(mktemp -d "${TMPDIR:-/tmp}/backends-ci.XXXXXX")
pids=()
for backend in torch jax; do
    "$PYTHON" -m pytest tests/backends -m slow -k "$backend" -p no:cacheprovider --timeout=900 --durations=10 \
        >"$logs/$backend.log" 2>&1 &
    pids+=($!)
done
status=0
for i in 0 1; do
    backend=$([ "$i" = 0 ] && echo torch || echo jax)
    code=0
    wait "${pids[$i]}" || code=$?
    echo "== tests/backends -m slow -k $backend (exit status $code):"
    cat "$logs/$backend.log"
    [ "$code" = 0 ] || status=1
done
rm -rf "$logs"
if [ "$status" != 0 ]; then
    echo "30-backends: FAILED: the backend tests failed (above)" >&2
    exit 1
fi
echo "== backend checks passed in $(($(date +%s) - started)) s"
