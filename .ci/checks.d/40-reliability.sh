#!/usr/bin/env bash
# Reliability suite (issue 8), run by .ci/run after pytest (venv active, repository root, MNIST_DATA_DIR):
#   API fuzzing (schemathesis from /openapi.json + our Hypothesis strategies, >= 1,000 requests), a
#   60-second soak of mixed traffic against gunicorn on 127.0.0.1 (memory, descriptors, zero failed
#   valid requests) and injected faults (a worker SIGKILLed under load, a corrupt newer version, the
#   model missing or corrupt at start, an interrupted download, a training run killed and resumed).
# About 4 minutes on 2 cores; all traffic stays on 127.0.0.1 and every loop is bounded. The suite
# rewrites docs/reliability.md with its figures. Exits non-zero if any test fails or none ran.
# RELIABILITY_SOAK_SECONDS (default 60) shortens the soak for a quick local run.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
    echo "40-reliability: FAILED: $*" >&2
    exit 1
}
PYTHON=${PYTHON:-python}

# Pinned in requirements.txt (so .ci/run has installed them); installed from the same pins when this
# script runs on its own.
if ! "$PYTHON" -c "import schemathesis, hypothesis" 2>/dev/null; then
    mapfile -t pins < <(grep -E '^(schemathesis|hypothesis)==' requirements.txt)
    [ ${#pins[@]} = 2 ] || fail "requirements.txt must pin schemathesis and hypothesis"
    echo "installing ${pins[*]}"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "${pins[@]}" ||
        fail "could not install ${pins[*]}"
fi

started=$(date +%s)
# --timeout bounds each test (pytest-timeout); the soak, the longest, takes about 75 s.
"$PYTHON" -m pytest tests/reliability -m reliability -p no:cacheprovider --timeout=600 ||
    fail "the reliability suite failed (above); its figures are in docs/reliability.md"
echo "== reliability checks passed in $(($(date +%s) - started)) s; figures in docs/reliability.md"
