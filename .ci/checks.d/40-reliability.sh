#!/usr/bin/env bash
# Reliability suite (issue 8), run by .ci/run after pytest (venv active, repository root, MNIST_DATA_DIR):
#   API fuzzing (schemathesis from /openapi.json + our Hypothesis strategies, >= 1,000 requests), a
#   60-second soak of mixed traffic against gunicorn on 127.0.0.1 (memory, descriptors, zero failed
#   valid requests) and injected faults (a worker SIGKILLed under load, a corrupt newer version, the
#   model missing or corrupt at start, an interrupted or killed download). A training run killed and
#   resumed is tested in the default suite (tests/training/test_train.py).
# About 4 minutes on 2 cores; all traffic stays on 127.0.0.1 and every loop is bounded. Exits non-zero
# if any test fails or none ran. RELIABILITY_SOAK_SECONDS (default 60) shortens the soak for a quick
# local run.
# The report: a test run never touches the checkout. Here it goes to a temporary file outside it
# (RELIABILITY_REPORT, unless the caller set it), printed at the end, so that CI's log has the figures
# and the report's code runs. To regenerate docs/reliability.md, see the README's "Tests" section.
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

if [ -z "${RELIABILITY_REPORT:-}" ]; then
    RELIABILITY_REPORT=$(mktemp "${TMPDIR:-/tmp}/reliability-report.XXXXXX.md")
fi
export RELIABILITY_REPORT

started=$(date +%s)
# --timeout bounds each test (pytest-timeout); the soak, the longest, takes about 75 s.
status=0
"$PYTHON" -m pytest tests/reliability -m reliability -p no:cacheprovider --timeout=600 || status=$?
if [ -s "$RELIABILITY_REPORT" ]; then
    echo "== the reliability report ($RELIABILITY_REPORT):"
    cat "$RELIABILITY_REPORT"
fi
[ "$status" = 0 ] || fail "the reliability suite failed (above; exit status $status)"
echo "== reliability checks passed in $(($(date +%s) - started)) s"
