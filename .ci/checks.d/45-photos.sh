#!/usr/bin/env bash
# Photos (issue 21), run by .ci/run after pytest (venv active, repository root, MNIST_DATA_DIR, and exports/mnist
# trained by the README's first command): tests/service/test_photos.py -m slow, the issue's goals at a fixed
# seed on the photo benchmark's own photos (bench/photo_sheets.py): every single-digit condition at >= 97 % of the
# clean accuracy, 4-digit sheets read exactly >= 90 %, sheets with no digit answered 422 >= 95 % (where this code
# does not reach a goal, the floor it reaches: NOT_REACHED in the test file).
# Rendering and reading a photo is one core's work: the tests run as two pytest processes, one per core, each
# taking every other test. Exits non-zero if a goal is missed or no test ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
TEST=tests/service/test_photos.py

started=$(date +%s)
mapfile -t ids < <("$PYTHON" -m pytest "$TEST" -m slow -p no:cacheprovider --collect-only -q | grep "::")
[ ${#ids[@]} -gt 0 ] || { echo "45-photos: FAILED: no photo test collected (is real MNIST there?)" >&2; exit 1; }
halves=("" "")
for i in "${!ids[@]}"; do halves[$((i % 2))]+="${ids[$i]}"$'\n'; done
logs=$(mktemp -d "${TMPDIR:-/tmp}/photos.XXXXXX")
pids=()
for half in 0 1; do
    mapfile -t chosen < <(printf '%s' "${halves[$half]}")
    "$PYTHON" -m pytest "${chosen[@]}" -m slow -p no:cacheprovider --timeout=1800 -q >"$logs/$half.log" 2>&1 &
    pids+=($!)
done
status=0
for half in 0 1; do
    wait "${pids[$half]}" || status=1
    cat "$logs/$half.log"
done
rm -rf "$logs"
if [ "$status" != 0 ]; then
    echo "45-photos: FAILED: the photo goals were not met or the tests failed (above)" >&2
    exit 1
fi
echo "== photo checks passed (${#ids[@]} tests) in $(($(date +%s) - started)) s"
