#!/usr/bin/env bash
# Distributed training (issue 16), run by .ci/run after pytest (venv active, repository root, MNIST_DATA_DIR):
# the slow tests of tests/distributed, which the default `python -m pytest` leaves out (-m 'not slow'):
#   - equivalence: MirroredStrategy (2 logical CPU devices) and MultiWorkerMirroredStrategy (2 and 3
#     worker processes on 127.0.0.1) against one process, every optimizer, 8 steps each;
#   - end to end: 2 workers train real MNIST (a 6,000-image slice), the chief alone exports a servable
#     SavedModel as accurate as one process; a worker killed mid-epoch stops the others within
#     --comm-timeout, and a restart resumes the run; workers with different arguments refuse to train.
# About 3 minutes on 2 cores. Every worker is a subprocess with a time limit and --timeout bounds each
# test, so a hang fails CI instead of blocking it. Exits non-zero if a test fails or none ran.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}

started=$(date +%s)
status=0
"$PYTHON" -m pytest tests/distributed -m slow -p no:cacheprovider --timeout=900 || status=$?
if [ "$status" != 0 ]; then
    echo "35-distributed: FAILED: the distributed training tests failed (above; exit status $status)" >&2
    exit 1
fi
echo "== distributed training checks passed in $(($(date +%s) - started)) s"
