#!/usr/bin/env bash
# deploy/kubernetes.yaml run for real, with `podman kube play`, on an image built from this repository.
# tests/container/smoke.sh runs it with the image it built; by hand:
#
#     bash tests/container/kube.sh IMAGE EXPORT_BASE    # EXPORT_BASE: the exports/mnist/ baked into IMAGE
#
#  1. a copy of the manifest for this machine (tests/container/kube_check.py render prints each change:
#     the image built here, one replica, the HTTP and gRPC ports published on 127.0.0.1, unique names); the
#     manifest's kinds that podman does not implement are named (they stay schema-validated only,
#     .ci/checks.d/50-container.sh)
#  2. `podman kube play`; then the manifest's own startup and readiness probes, with its timings,
#     as a kubelet runs them (podman 4.3 maps neither): the pod must become Ready (readiness: a gRPC
#     health Check, tests/container/grpc_check.py)
#  3. real MNIST test digits through POST /predict, compared with the export run here; /metrics; gRPC
#     through its published port: health, reflection, TF Serving's Predict and the Open Inference
#     Protocol's ModelInfer, equal to the HTTP answers
#  4. identity, security and resources against the manifest: every process UID/GID 10001, read-only
#     root filesystem (and a writable /tmp emptyDir), no capabilities, no-new-privileges, seccomp,
#     the memory and CPU limits and the memory request in podman inspect and in the cgroup files,
#     env, restart policy; WEB_CONCURRENCY workers
#  5. termination as a kubelet does it, while a client sends requests: the preStop hook, then SIGTERM
#     with terminationGracePeriodSeconds (`podman pod stop --time`), exit status 0 and gunicorn's
#     orderly shutdown in the log, every accepted request answered; then `podman kube down`, and
#     nothing of the pod is left
#  The pod, its volume and temporary files are removed on exit, failure included. (podman keeps its
#  pause image, localhost/podman-pause, and its podman-default-kube-network as caches.)
#
# Environment: MNIST_DATA_DIR, PYTHON (with PyYAML, NumPy, TensorFlow), PODMAN_RUNTIME (default runc).
set -euo pipefail

[ $# = 2 ] || { echo "usage: bash tests/container/kube.sh IMAGE EXPORT_BASE" >&2; exit 2; }
IMAGE=$1
EXPORT_BASE=$2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mnist-kube.XXXXXX")
SAY_TAG="kube " FAIL_TAG=KUBE RUN_NAME="kube:" LEFTOVERS="pod, volume"
# ROOT (the working directory), PODMAN_RUNTIME, MNIST_DIR, say, fail, client, the exit trap ...
# shellcheck source=tests/container/lib.sh
source "$(dirname "$0")/lib.sh"
MANIFEST=deploy/kubernetes.yaml
PYTHON=${PYTHON:-python}
SUFFIX="kube-$$"
RENDERED="$WORK/kubernetes.yaml"

check() { "$PYTHON" -m tests.container.kube_check "$@"; }
fetch() { "$PYTHON" -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$1"; }

# `podman kube play` has no --runtime or --ulimit of its own: a containers.conf for this run gives
# both. runc (this machine's crun cannot set rlimits) and explicit limits: podman's defaults raise
# RLIMIT_NOFILE above what this machine allows. (Equal soft and hard values: podman 4.3 swaps them
# when it reads default_ulimits.)
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]
[engine]
runtime = "$PODMAN_RUNTIME"
EOF
pm() { CONTAINERS_CONF="$WORK/containers.conf" podman "$@" 2> >(without_podman_noise); }

remove_leftovers() { # STATUS (called on exit by lib.sh's cleanup)
    if [ "$1" != 0 ] && [ -n "${CTR:-}" ] && podman container exists "$CTR" 2>/dev/null; then
        show_last_log "$CTR"
    fi
    if [ -n "${POD:-}" ] && podman pod exists "$POD" 2>/dev/null; then
        pm kube down "$RENDERED" >/dev/null
        podman pod exists "$POD" 2>/dev/null && podman pod rm --force --time 0 "$POD" >/dev/null 2>&1
    fi
    for volume in ${VOLUMES:-}; do
        podman volume exists "$volume" 2>/dev/null && podman volume rm --force "$volume" >/dev/null 2>&1
    done
}

# ------------------------------------------------------------------------------------------ preflight
command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] ||
    fail "catatonit is not installed: podman builds its pod infra (pause) image with it (apt-get install catatonit)"
podman image exists "$IMAGE" || fail "no image $IMAGE in podman's store"
[ -f "$EXPORT_BASE/1/saved_model.pb" ] || fail "no export at $EXPORT_BASE/1 (the model baked into $IMAGE)"
"$PYTHON" -c "import yaml" 2>/dev/null || fail "$PYTHON cannot import yaml (PyYAML, requirements.txt)"

# ---------------------------------------------------------------------------------------------- render
say "render $MANIFEST for podman kube play"
PORT=$(client free-port)
GRPC_PORT=$(client free-port)
while [ "$GRPC_PORT" = "$PORT" ]; do GRPC_PORT=$(client free-port); done
check render "$MANIFEST" "$RENDERED" --image "$IMAGE" --host-port "$PORT" --grpc-host-port "$GRPC_PORT" --suffix "$SUFFIX"
POD=$(check field "$RENDERED" pod)
CTR=$(check field "$RENDERED" container)
VOLUMES=$(check field "$RENDERED" volumes)
UNSUPPORTED=$(check field "$RENDERED" unsupported)
echo "kinds in the manifest: $(check field "$RENDERED" kinds); not implemented by podman kube play" \
    "(skipped without a word, schema-validated only): ${UNSUPPORTED:-none}"

# ------------------------------------------------------------------------------------------- play
say "podman kube play (pod $POD)"
start=$SECONDS
pm kube play "$RENDERED" >"$WORK/play.log" || { cat "$WORK/play.log" >&2; fail "podman kube play failed"; }
sed 's/^/    /' "$WORK/play.log"
podman pod exists "$POD" || fail "podman kube play did not create the pod $POD"

say "the manifest's startup and readiness probes, as the kubelet runs them"
check probes "$RENDERED" "http://127.0.0.1:$PORT" "$CTR" --grpc-address "127.0.0.1:$GRPC_PORT"
READY_SECONDS=$((SECONDS - start))

# ---------------------------------------------------------------------------------------- serving
say "predictions: real MNIST test digits through the pod"
client predict "http://127.0.0.1:$PORT" --mnist-dir "$MNIST_DIR" --export "$EXPORT_BASE" --version 1 \
    --count 200 2> >(without_tf_noise)
metrics=$(fetch "http://127.0.0.1:$PORT/metrics")
grep -q '^mnist_predictions_total{' <<<"$metrics" || fail "/metrics has no mnist_predictions_total"
echo "/metrics: $(grep -c '^mnist_' <<<"$metrics") mnist_* samples"

say "gRPC through the pod's published port: health, reflection, TF Serving Predict, Open Inference ModelInfer"
"$PYTHON" -m tests.container.grpc_check calls "127.0.0.1:$GRPC_PORT" "http://127.0.0.1:$PORT" 2> >(without_tf_noise) ||
    fail "gRPC through the pod's port (above)"

# ------------------------------------------------------------------------- identity and resources
say "identity, security and resources against the manifest (podman inspect, /proc, cgroup files)"
check limits "$RENDERED" "$CTR"
workers=$(check field "$RENDERED" workers)
gunicorns=$(podman exec "$CTR" sh -c 'cat /proc/[0-9]*/comm' 2>/dev/null | grep -c '^gunicorn$' || true)
[ "$gunicorns" = $((workers + 1)) ] || fail "expected gunicorn's master + $workers workers (WEB_CONCURRENCY), found $gunicorns"
echo "gunicorn master + $workers workers (WEB_CONCURRENCY=$workers); memory in use: $(podman stats --no-stream --format '{{.MemUsage}}' "$CTR" 2>/dev/null || echo '?')"

# ------------------------------------------------------------------------------------- termination
GRACE=$(check field "$RENDERED" grace)
mapfile -t PRESTOP < <("$PYTHON" -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$(check field "$RENDERED" prestop)")
say "termination as the kubelet does it: preStop (${PRESTOP[*]}), then SIGTERM with a ${GRACE} s grace period"
echo "(podman kube down alone would not do: podman 4.3 stops a pod with no grace period, SIGKILL at once)"
start_load "http://127.0.0.1:$PORT"
start=$SECONDS
podman exec "$CTR" "${PRESTOP[@]}" || fail "the preStop hook (${PRESTOP[*]}) failed in the container"
prestop_seconds=$((SECONDS - start))
pm pod stop --time "$GRACE" "$POD" >/dev/null || fail "podman pod stop failed"
stop_seconds=$((SECONDS - start - prestop_seconds))
check_graceful_exit "$CTR" "the pod"
echo "preStop ${prestop_seconds} s, then exit status 0 ${stop_seconds} s after SIGTERM (Handling signal: term ... Shutting down: Master)"

say "podman kube down: the pod is removed"
pm kube down "$RENDERED" >/dev/null || fail "podman kube down failed"
podman pod exists "$POD" && fail "the pod $POD is still there after podman kube down"
podman container exists "$CTR" && fail "the container $CTR is still there after podman kube down"
for volume in $VOLUMES; do
    if podman volume exists "$volume"; then
        podman volume rm --force "$volume" >/dev/null
        echo "the emptyDir volume $volume outlived the pod: removed (podman kube down keeps volumes)"
    fi
done
echo "pod, containers and volumes gone"
echo "kube summary: Ready ${READY_SECONDS} s after podman kube play; graceful stop ${stop_seconds} s after SIGTERM"
