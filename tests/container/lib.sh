# What tests/container/smoke.sh and tests/container/kube.sh share, sourced by each (after
# `set -euo pipefail`): the repository root as the working directory, the settings both read, their
# helpers, the background client around a SIGTERM, and the exit trap that removes what a run made.
#
# Before sourcing, a script sets
#   WORK       its temporary folder (removed on exit)
#   SAY_TAG    what its progress lines start with after "== " ("" or "kube ")
#   FAIL_TAG   what its failure lines start with ("SMOKE" or "KUBE")
#   RUN_NAME   how its last line names it ("container smoke test", "kube:")
#   LEFTOVERS  what it cleans up, for that line ("containers, images")
# and defines remove_leftovers STATUS: what it made goes (showing its containers' last log lines
# first when STATUS is not 0).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PODMAN_RUNTIME=${PODMAN_RUNTIME:-runc}
MNIST_DIR=${MNIST_DATA_DIR:-$ROOT/../shared/data/mnist}
LOAD_PID=""
T0=$SECONDS

say() { printf '\n== %s[%3d s] %s\n' "$SAY_TAG" "$((SECONDS - T0))" "$*"; }
fail() {
    echo "$FAIL_TAG FAILED: $*" >&2
    exit 1
}
client() { "$PYTHON" -m tests.container.smoke_client "$@"; } # from $ROOT (bench/localhost.py)
# stdin to stderr without TensorFlow's start-up lines (a container's log, the reference predictions)
without_tf_noise() { grep -v -e absl -e oneDNN >&2; }
# stdin to stderr without podman's noise on a machine without systemd (healthcheck timers cannot be
# installed; the scripts run the checks themselves)
without_podman_noise() { grep -v -e 'unable to get systemd connection' -e 'Removing timer for container' >&2 || true; }

show_last_log() { # CONTAINER
    echo "---- last log lines of $1" >&2
    podman logs --tail 40 "$1" 2>&1 | without_tf_noise
}

# ------------------------------------------------------------------------- requests during SIGTERM
# A client sending predictions to URL in the background, one after another (smoke_client.py load),
# until the server stops answering; started before a container is stopped.
start_load() { # URL
    client load "$1" --out "$WORK/load.json" --seconds 60 &
    LOAD_PID=$!
    for _ in $(seq 1 100); do
        [ -s "$WORK/load.json" ] && break
        sleep 0.1
    done
}

# After SIGTERM to CONTAINER (WHO in messages): the load client finished, gunicorn's orderly shutdown
# in the log, exit status 0, and every request the server accepted answered completely.
check_graceful_exit() { # CONTAINER WHO
    local code
    wait "$LOAD_PID" || true
    LOAD_PID=""
    code=$(podman inspect --format '{{.State.ExitCode}}' "$1")
    podman logs "$1" >"$WORK/$1.log" 2>&1
    grep -q "Handling signal: term" "$WORK/$1.log" || fail "$2's log does not show gunicorn handling SIGTERM"
    grep -q "Shutting down: Master" "$WORK/$1.log" || fail "$2's log does not show gunicorn's orderly shutdown"
    [ "$code" = 0 ] || fail "$2 exited with status $code after SIGTERM, expected 0"
    client check-load "$WORK/load.json"
}

# ----------------------------------------------------------------------------------------- on exit
# the script's own stdout and stderr, for cleanup: a signal trap runs with the redirections of the
# command it interrupted (often >/dev/null)
exec 3>&1 4>&2
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    set +e
    exec 1>&3 2>&4
    [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
    remove_leftovers "$status"
    rm -rf "$WORK"
    if [ "$status" = 0 ]; then
        echo "== $RUN_NAME passed in $((SECONDS - T0)) s (cleaned up: $LEFTOVERS, $WORK)"
    else
        echo "== $RUN_NAME FAILED (status $status) after $((SECONDS - T0)) s; cleaned up" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
