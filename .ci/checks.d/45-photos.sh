#!/usr/bin/env bash
# Photos (issue 21), run by .ci/run after pytest (venv active, repository root, MNIST_DATA_DIR, and exports/mnist
# trained by the README's first command): tests/service/test_photos.py -m slow, the issue's goals at a fixed
# seed on the photo benchmark's own photos (bench/photo_sheets.py): every single-digit condition at >= 97 % of the
# clean accuracy, 4-digit sheets read exactly >= 90 %, sheets with no digit answered 422 >= 95 % (where this code
# does not reach a goal, the floor it reaches: NOT_REACHED in the test file).
# Rendering and reading a photo is one core's work: pytest-xdist runs the tests in two processes, one per core,
# each taking the next test as it finishes one (rows differ in cost by up to 3x, so fixed halves were uneven).
# Exits non-zero if a goal is missed or no test ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}

started=$(date +%s)
log=$(mktemp "${TMPDIR:-/tmp}/photos.XXXXXX")
trap 'rm -f "$log"' EXIT
status=0
"$PYTHON" -m pytest tests/service/test_photos.py -m slow -p no:cacheprovider --timeout=1800 -q \
    -n 2 --dist load -rs 2>&1 | tee "$log" || status=$?
if [ "$status" = 5 ]; then
    echo "45-photos: FAILED: no photo test collected (is real MNIST there?)" >&2
    exit 1
elif [ "$status" != 0 ]; then
    echo "45-photos: FAILED: the photo goals were not met or the tests failed (above)" >&2
    exit 1
elif grep -q "skipped" "$log"; then
    echo "45-photos: FAILED: photo tests skipped (above: no trained model or no MNIST?)" >&2
    exit 1
fi
echo "== photo checks passed in $(($(date +%s) - started)) s"
