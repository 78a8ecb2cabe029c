#!/usr/bin/env bash
# Container smoke test: build the image from this repository with a freshly trained small export, run
# it, and check it the way an operator would. Run by .ci/checks.d/50-container.sh; by hand:
#
#     bash tests/container/smoke.sh          # needs podman (+ runc), debootstrap, MNIST_DATA_DIR
#
#  1. a build context without a model export fails within seconds with a clear message
#  2. training: `python training/train.py` (a small MNIST model, ~10 s) into the context's exports/mnist/
#  3. `podman build` (no Docker engine needed), timed; image checks: size (at most 1,100 MB, the sizes
#     by package from deploy/slim-venv.py's build step), non-root USER, HEALTHCHECK, no compiler, no
#     tests or training code, tensorflow-cpu only, what slim-venv.py leaves out is out
#  4. two containers at once on 127.0.0.1:
#       A  the baked-in model; read-only root filesystem, all capabilities dropped (as in Kubernetes)
#       B  PORT=9000, GRPC_PORT=9500, WEB_CONCURRENCY=1, MODEL_POLL_SECONDS=1, MAX_BODY_BYTES=8 MiB and
#          a volume at /models with version 7 under MODEL_DIR
#     A's HEALTHCHECK must pass and both /readyz answer 200; real MNIST test digits through
#     POST /predict must match the export run outside the container and be mostly right; every kind
#     of request, image format, refusal, GET route and /metrics answers as it should (the slim image
#     still has every module they load); photos (tests/container/photo_check.py): a digit under every
#     condition of bench/photo_looks.py to A's /predict, a number to /read, ?explain=1, a blank sheet's
#     422, a 12-megapixel phone JPEG to B, each answer equal to the service's run outside the container
#     (SciPy as pip installs it), and the CPU a photo costs A (printed, not asserted); gRPC through
#     each published port (health, reflection, TF
#     Serving's Predict and the Open Inference Protocol's ModelInfer equal to the HTTP answers,
#     tests/container/grpc_check.py); B reloads version 8 when it appears on the volume and rolls
#     back to 7 when it goes; every process runs as UID 10001; B serves with one worker
#  5. slow clients against A, as shipped (tests/slow_clients.py): 200 connections that never finish
#     their headers, 200 that dribble a body, 1,000 idle keep-alive ones, each held while /healthz and
#     /predict keep a p99 under 100 ms, then closed by the server after its deadline
#  6. SIGTERM to A while a client sends requests: every accepted request is answered, exit status 0;
#     `podman stop` of B: exit status 0
#  7. deploy/kubernetes.yaml run with `podman kube play` (tests/container/kube.sh)
#  Containers, the built images and temporary files are removed on exit, failure included; the local
#  base image (localhost/debian-py311:bookworm) is kept as a cache for the next run.
#
# Environment: MNIST_DATA_DIR (default ../shared/data/mnist), SMOKE_BASE_IMAGE (default a local
# debootstrap'ed Debian bookworm with Python 3.11, made by base-image.sh when missing; python:3.11-slim
# where a registry is reachable), PODMAN_RUNTIME (default runc: this machine's crun cannot set rlimits),
# SMOKE_TRAIN_ARGS (default: 6,000 MNIST images, 2 epochs), PYTHON (default: the venv's python).
set -euo pipefail

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mnist-container-smoke.XXXXXX")
SAY_TAG="" FAIL_TAG=SMOKE RUN_NAME="container smoke test" LEFTOVERS="containers, images"
# ROOT (the working directory), PODMAN_RUNTIME, MNIST_DIR, say, fail, client, the exit trap ...
# shellcheck source=tests/container/lib.sh
source "$(dirname "$0")/lib.sh"
HERE="$ROOT/tests/container"
BASE_IMAGE=${SMOKE_BASE_IMAGE:-localhost/debian-py311:bookworm}
if [ -z "${PYTHON:-}" ]; then
    if [ -n "${VIRTUAL_ENV:-}" ]; then PYTHON=python; else PYTHON="$ROOT/.venv/bin/python"; fi
fi
read -r -a TRAIN_ARGS <<<"${SMOKE_TRAIN_ARGS:---dataset mnist --limit-train 6000 --epochs 2}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
GRACEFUL_TIMEOUT=30 # service/gunicorn.conf.py
KEEPALIVE_SECONDS=5 # service/config.py's defaults, which the containers run with
BODY_TIMEOUT_SECONDS=10
MAX_IMAGE_MB=1100 # issues 23 and 21: the image may grow by what gRPC and SciPy cost, up to 1,100 MB in all
BIG_BODY_BYTES=8388608 # B's MAX_BODY_BYTES: room for a 12-megapixel phone JPEG (4-6 MB)

ID="smoke-$$"
IMAGE="localhost/mnist-digits:$ID"
CTR_A="mnist-$ID-a"
CTR_B="mnist-$ID-b"

# podman with the runtime chosen, minus its noise on a machine without systemd (the test runs the
# HEALTHCHECK itself with `podman healthcheck run`)
pm() { podman --runtime "$PODMAN_RUNTIME" "$@" 2> >(without_podman_noise); }

remove_leftovers() { # STATUS (called on exit by lib.sh's cleanup)
    for ctr in "$CTR_A" "$CTR_B"; do
        if [ "$1" != 0 ] && podman container exists "$ctr"; then show_last_log "$ctr"; fi
    done
    for ctr in "$CTR_A" "$CTR_B"; do
        podman container exists "$ctr" && podman rm --force --time 0 "$ctr" >/dev/null 2>&1
    done
    for image in "$IMAGE" "$IMAGE-assets"; do
        podman image exists "$image" && podman rmi --force "$image" >/dev/null 2>&1
    done
}

# ------------------------------------------------------------------------------------------ preflight
command -v podman >/dev/null || fail "podman is not installed (apt-get install podman buildah runc debootstrap)"
command -v "$PODMAN_RUNTIME" >/dev/null || fail "the OCI runtime '$PODMAN_RUNTIME' is not installed"
[ -f "$MNIST_DIR/t10k-images-idx3-ubyte.gz" ] ||
    fail "no MNIST test set in $MNIST_DIR: set MNIST_DATA_DIR to the folder with the IDX .gz files"
MNIST_DIR=$(cd "$MNIST_DIR" && pwd)
"$PYTHON" -c "import numpy, tensorflow" 2>/dev/null ||
    fail "$PYTHON cannot import numpy and tensorflow (pip install -r requirements.txt)"
echo "podman $(podman version --format '{{.Client.Version}}'), runtime $PODMAN_RUNTIME, base $BASE_IMAGE, work dir $WORK"

BUILD_OPTS=(--format docker --layers=false --build-arg "BASE_IMAGE=$BASE_IMAGE")
# `--format docker`: the OCI image format has no HEALTHCHECK. --layers=false: no intermediate images
# are left behind. The host's CA bundle lets pip inside the build through a TLS-intercepting proxy.
if [ -f "$CA_BUNDLE" ]; then
    BUILD_OPTS+=(-v "$CA_BUNDLE:/etc/ssl/host-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/host-ca.crt)
fi
RUN_OPTS=(--ulimit nofile=1024:20000 --ulimit nproc=1024:1024)

# ------------------------------------------------------------------------------------------ base image
say "base image"
if [ "$BASE_IMAGE" = localhost/debian-py311:bookworm ]; then
    bash "$HERE/base-image.sh" "$BASE_IMAGE"
elif ! podman image exists "$BASE_IMAGE"; then
    echo "$BASE_IMAGE is not in the local store: the build will pull it"
fi

# ---------------------------------------------------------------------------------- the build context
say "build context: the repository's files (tracked and untracked, not ignored) without exports/"
CTX="$WORK/context"
mkdir -p "$CTX"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' file; do
        if [ -e "$ROOT/$file" ]; then printf '%s\0' "$file"; fi # (deleted but still tracked: skip)
    done |
    tar -C "$ROOT" --null -T - -cf - | tar -C "$CTX" -xf -
rm -rf "$CTX/exports"
[ -f "$CTX/Dockerfile" ] || fail "no Dockerfile in the build context"

say "a build without a model export must fail early, with a clear message"
start=$SECONDS
if pm build "${BUILD_OPTS[@]}" -t "$IMAGE" "$CTX" >"$WORK/no-export.log" 2>&1; then
    fail "the build succeeded without a model export"
fi
elapsed=$((SECONDS - start))
grep -q "no model export in exports/mnist/" "$WORK/no-export.log" ||
    { tail -20 "$WORK/no-export.log" >&2; fail "the build failed without the expected message"; }
grep -q "Collecting tensorflow" "$WORK/no-export.log" &&
    fail "the build without an export ran pip before failing (not early)"
echo "failed as expected after ${elapsed} s:"
grep -A3 "^ERROR: no model export" "$WORK/no-export.log" | sed 's/^/    /'
pm build "${BUILD_OPTS[@]}" --target assets --build-arg REQUIRE_MODEL=0 -t "$IMAGE-assets" "$CTX" \
    >"$WORK/no-export-allowed.log" 2>&1 ||
    { tail -20 "$WORK/no-export-allowed.log" >&2; fail "REQUIRE_MODEL=0 did not allow a build without an export"; }
grep -q "building a model-less image" "$WORK/no-export-allowed.log" ||
    fail "REQUIRE_MODEL=0: no warning about the model-less image"
podman rmi --force "$IMAGE-assets" >/dev/null
echo "with --build-arg REQUIRE_MODEL=0 the (model-less) build goes on, with a warning"

# ------------------------------------------------------------------------------------------- training
say "train a small model: python training/train.py ${TRAIN_ARGS[*]}"
start=$SECONDS
MNIST_DATA_DIR="$MNIST_DIR" "$PYTHON" training/train.py "${TRAIN_ARGS[@]}" \
    --export-dir "$CTX/exports/mnist" --run-dir "$WORK/run" >"$WORK/train.log" 2>&1 ||
    { tail -30 "$WORK/train.log" >&2; fail "training failed"; }
grep -E "^(Test accuracy|SavedModel)" "$WORK/train.log" | sed 's/^/    /'
[ -f "$CTX/exports/mnist/1/saved_model.pb" ] || fail "training wrote no export at exports/mnist/1/"
TRAIN_SECONDS=$((SECONDS - start))

# ---------------------------------------------------------------------------------------------- build
say "podman build -t $IMAGE (the Dockerfile's default target)"
start=$SECONDS
pm build "${BUILD_OPTS[@]}" -t "$IMAGE" "$CTX" >"$WORK/build.log" 2>&1 ||
    { grep -v -E '^(Copying|Writing|Storing)' "$WORK/build.log" | tail -40 >&2; fail "podman build failed"; }
BUILD_SECONDS=$((SECONDS - start))
SIZE=$(podman image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$((SIZE / 1000000))
echo "built in ${BUILD_SECONDS} s; image size ${SIZE_MB} MB (at most $MAX_IMAGE_MB)"
# deploy/slim-venv.py's table of sizes by package, before and after (the build stage prints it)
sed -n '/^slim-venv: /,/^--> /p' "$WORK/build.log" | grep -v '^--> ' | sed 's/^/    /'

say "image checks"
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = "10001:10001" ] || fail "USER is not 10001:10001"
podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" | grep -q /healthz ||
    fail "no HEALTHCHECK against /healthz in the image (built with --format docker?)"
podman image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE" | grep -q '8000/tcp' || fail "no EXPOSE 8000"
podman image inspect --format '{{json .Config.ExposedPorts}}' "$IMAGE" | grep -q '8500/tcp' || fail "no EXPOSE 8500 (gRPC)"
[ "$(podman image inspect --format '{{.Config.StopSignal}}' "$IMAGE")" = SIGTERM ] || fail "STOPSIGNAL is not SIGTERM"
[ "$SIZE_MB" -le "$MAX_IMAGE_MB" ] ||
    fail "the image is ${SIZE_MB} MB, more than $MAX_IMAGE_MB MB: something that does not belong is in it (deploy/slim-venv.py)"
pm run --rm -i "${RUN_OPTS[@]}" --entrypoint python "$IMAGE" - <"$HERE/inside_image.py" ||
    fail "image content check"
echo "USER 10001:10001, HEALTHCHECK on /healthz, EXPOSE 8000 8500, STOPSIGNAL SIGTERM, no compiler, no tests"

# -------------------------------------------------------------------------------------------- run
say "run A (baked-in model, read-only root fs, no capabilities) and B (PORT, WEB_CONCURRENCY, volume)"
PORTS=()
while [ ${#PORTS[@]} -lt 4 ]; do # HTTP and gRPC of A and B, all different
    port=$(client free-port)
    [[ " ${PORTS[*]} " == *" $port "* ]] || PORTS+=("$port")
done
PORT_A=${PORTS[0]} GRPC_A=${PORTS[1]} PORT_B=${PORTS[2]} GRPC_B=${PORTS[3]}
# B: an export base on a volume, under another name, with version 7, read-only
mkdir -p "$WORK/volume/custom"
cp -R "$CTX/exports/mnist/1" "$WORK/volume/custom/7"
chmod -R a+rX "$WORK/volume"
start=$SECONDS
pm run -d --name "$CTR_A" "${RUN_OPTS[@]}" --read-only --cap-drop ALL --security-opt no-new-privileges \
    -p "127.0.0.1:$PORT_A:8000" -p "127.0.0.1:$GRPC_A:8500" "$IMAGE" >/dev/null
pm run -d --name "$CTR_B" "${RUN_OPTS[@]}" -e PORT=9000 -e GRPC_PORT=9500 -e WEB_CONCURRENCY=1 \
    -e MODEL_DIR=/models/custom -e MODEL_POLL_SECONDS=1 -e MAX_BODY_BYTES=$BIG_BODY_BYTES \
    -v "$WORK/volume:/models:ro" -p "127.0.0.1:$PORT_B:9000" -p "127.0.0.1:$GRPC_B:9500" "$IMAGE" >/dev/null

say "wait for A's HEALTHCHECK to pass (podman healthcheck run) and both /readyz to answer 200"
healthy=""
for _ in $(seq 1 120); do
    [ "$(podman inspect --format '{{.State.Running}}' "$CTR_A")" = true ] || fail "container A exited"
    if pm healthcheck run "$CTR_A" >/dev/null 2>&1; then
        healthy=yes
        break
    fi
    sleep 1
done
[ -n "$healthy" ] || fail "A's HEALTHCHECK did not pass within 120 s"
status=$(podman inspect --format '{{.State.Health.Status}}' "$CTR_A")
[ "$status" = healthy ] || fail "A's health status is '$status', expected 'healthy'"
echo "A is healthy after $((SECONDS - start)) s"
client wait-ready "http://127.0.0.1:$PORT_A" 120
client wait-ready "http://127.0.0.1:$PORT_B" 120
echo "both ready $((SECONDS - start)) s after start"

say "predictions: real MNIST test digits"
client predict "http://127.0.0.1:$PORT_A" --mnist-dir "$MNIST_DIR" --export "$CTX/exports/mnist" --version 1 \
    2> >(without_tf_noise)
client predict "http://127.0.0.1:$PORT_B" --mnist-dir "$MNIST_DIR" --export "$WORK/volume/custom" --version 7 \
    --count 100 2> >(without_tf_noise)
echo "B serves version 7 from the volume at /models/custom (MODEL_DIR), on PORT 9000"

say "gRPC through the published ports: A on 8500, B on GRPC_PORT=9500"
"$PYTHON" -m tests.container.grpc_check calls "127.0.0.1:$GRPC_A" "http://127.0.0.1:$PORT_A" 2> >(without_tf_noise) ||
    fail "gRPC on A (above)"
"$PYTHON" -m tests.container.grpc_check calls "127.0.0.1:$GRPC_B" "http://127.0.0.1:$PORT_B" 2> >(without_tf_noise) ||
    fail "gRPC on B (above)"

say "every kind of request against A (the slim image must still load what each path needs)"
start=$SECONDS
client exercise "http://127.0.0.1:$PORT_A" --mnist-dir "$MNIST_DIR"
EXERCISE_SECONDS=$((SECONDS - start))

say "photos read with SciPy: A's /predict and /read, a 12-megapixel JPEG to B (MAX_BODY_BYTES=$BIG_BODY_BYTES)"
start=$SECONDS
photos() { "$PYTHON" -m tests.container.photo_check "$@" --mnist-dir "$MNIST_DIR" 2> >(without_tf_noise); }
photos photos "http://127.0.0.1:$PORT_A" --export "$CTX/exports/mnist" || fail "photos on A (above)"
photos big-photo "http://127.0.0.1:$PORT_B" --export "$WORK/volume/custom" || fail "the 12-megapixel photo on B (above)"
PHOTO_SECONDS=$((SECONDS - start))
# what a photo costs the server (its process tree, seen from the host), beside 784 numbers: for the record
photos cpu "http://127.0.0.1:$PORT_A" "$(podman inspect --format '{{.State.Pid}}' "$CTR_A")" \
    --export "$CTX/exports/mnist" | tee "$WORK/photo-cpu.txt" || fail "measuring the CPU of photos on A (above)"

say "hot reload on B: version 8 appears on the volume, then goes (roll back to 7)"
cp -R "$CTX/exports/mnist/1" "$WORK/volume/custom/.tmp-8"
chmod -R a+rX "$WORK/volume/custom/.tmp-8"
mv "$WORK/volume/custom/.tmp-8" "$WORK/volume/custom/8" # published whole, as training/export.py does
client wait-version "http://127.0.0.1:$PORT_B" 8 30
rm -rf "$WORK/volume/custom/8"
client wait-version "http://127.0.0.1:$PORT_B" 7 30

say "processes: all non-root; B has WEB_CONCURRENCY=1 worker"
procs() {
    podman exec "$1" /bin/sh -c 'for f in /proc/[0-9]*/status; do
        [ -r "$f" ] && awk "/^Name:/ {n=\$2} /^Uid:/ {print n, \$2, \$3, \$4, \$5}" "$f"; done' 2>/dev/null
}
procs "$CTR_A" >"$WORK/procs-a"
procs "$CTR_B" >"$WORK/procs-b"
sed 's/^/    A: /' "$WORK/procs-a"
awk '$2 != 10001 || $3 != 10001 || $4 != 10001 || $5 != 10001 {bad = 1} END {exit bad}' "$WORK/procs-a" "$WORK/procs-b" ||
    fail "a process in a container runs with a UID other than 10001"
[ "$(podman exec "$CTR_A" cat /proc/1/comm)" = gunicorn ] || fail "PID 1 in A is not gunicorn"
[ "$(grep -c '^gunicorn ' "$WORK/procs-a")" = 3 ] || fail "A: expected gunicorn master + 2 workers"
[ "$(grep -c '^gunicorn ' "$WORK/procs-b")" = 2 ] || fail "B: expected gunicorn master + 1 worker (WEB_CONCURRENCY=1)"
echo "every process runs as UID 10001; PID 1 is gunicorn; A has 2 workers, B has 1"
MEM_A=$(podman stats --no-stream --format '{{.MemUsage}}' "$CTR_A" 2>/dev/null | cut -d/ -f1 | tr -d ' ')
echo "memory in use by A (2 workers): ${MEM_A:-unknown}"

# ------------------------------------------------------------------------------------- slow clients
say "slow clients against A as shipped (KEEPALIVE_SECONDS=$KEEPALIVE_SECONDS, BODY_TIMEOUT_SECONDS=$BODY_TIMEOUT_SECONDS)"
start=$SECONDS
client slow-clients "http://127.0.0.1:$PORT_A" --keepalive "$KEEPALIVE_SECONDS" --body-timeout "$BODY_TIMEOUT_SECONDS"
SLOW_SECONDS=$((SECONDS - start))

# --------------------------------------------------------------------------------- graceful shutdown
say "SIGTERM to A while a client sends requests"
start_load "http://127.0.0.1:$PORT_A"
sleep 1
start=$SECONDS
pm kill --signal TERM "$CTR_A" >/dev/null
timeout $((GRACEFUL_TIMEOUT + 15)) podman wait "$CTR_A" >/dev/null || fail "A did not exit after SIGTERM"
stop_seconds=$((SECONDS - start))
check_graceful_exit "$CTR_A" A
echo "A exited with status 0 ${stop_seconds} s after SIGTERM (gunicorn: Handling signal: term ... Shutting down: Master)"

say "podman stop B (STOPSIGNAL, then a ${GRACEFUL_TIMEOUT}+10 s grace period)"
pm stop --time $((GRACEFUL_TIMEOUT + 10)) "$CTR_B" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$CTR_B")
[ "$code" = 0 ] || fail "B exited with status $code after podman stop, expected 0"
echo "B exited with status 0"

# ------------------------------------------------------------------------------------------ Kubernetes
say "deploy/kubernetes.yaml with podman kube play (tests/container/kube.sh)"
start=$SECONDS
PYTHON="$PYTHON" MNIST_DATA_DIR="$MNIST_DIR" bash "$HERE/kube.sh" "$IMAGE" "$CTX/exports/mnist" ||
    fail "the Kubernetes run failed (above)"
KUBE_SECONDS=$((SECONDS - start))

say "summary"
echo "training ${TRAIN_SECONDS} s; podman build ${BUILD_SECONDS} s; image ${SIZE_MB} MB; memory (A, 2 workers) ${MEM_A:-?}"
echo "every kind of request ${EXERCISE_SECONDS} s; photos ${PHOTO_SECONDS} s; slow clients ${SLOW_SECONDS} s; podman kube play ${KUBE_SECONDS} s"
sed -n 's/^ *photo of a digit -> \/predict */CPU per photo (A, its process tree): /p' "$WORK/photo-cpu.txt"
