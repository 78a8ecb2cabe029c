# Sourced by .ci/run (venv active, repository root): the real gRPC clients that tests/service/test_grpc_clients.py
# runs against the service, where `pip install -r requirements.txt` cannot put them (issue 23):
#   - tritonclient[grpc] (protobuf < 7) in a virtual environment of its own, from
#     tests/service/requirements-grpc-clients.txt: .cache/grpc-clients/venv
#   - tensorflow-serving-api, whose wheel declares the full `tensorflow` (a second TensorFlow beside
#     tensorflow-cpu): its files only, without dependencies, in .cache/grpc-clients/tensorflow-serving-api;
#     the test puts that folder on PYTHONPATH of a process of this venv (tensorflow-cpu provides the
#     tensorflow.core protos it imports)
# Also runnable on its own: `bash .ci/setup.d/40-grpc-clients.sh` (about 30 s).
GRPC_CLIENTS=.cache/grpc-clients
if [ ! -x "$GRPC_CLIENTS/venv/bin/python" ]; then
    python3.11 -m venv "$GRPC_CLIENTS/venv" || { echo "40-grpc-clients.sh: cannot create $GRPC_CLIENTS/venv" >&2; return 1 2>/dev/null || exit 1; }
fi
"$GRPC_CLIENTS/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/service/requirements-grpc-clients.txt ||
    { echo "40-grpc-clients.sh: could not install tests/service/requirements-grpc-clients.txt" >&2; return 1 2>/dev/null || exit 1; }
if [ ! -f "$GRPC_CLIENTS/tensorflow-serving-api/tensorflow_serving/apis/predict_pb2.py" ]; then
    python -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$GRPC_CLIENTS/tensorflow-serving-api" tensorflow-serving-api==2.21.0 ||
        { echo "40-grpc-clients.sh: could not install tensorflow-serving-api==2.21.0 --no-deps" >&2; return 1 2>/dev/null || exit 1; }
fi
echo "grpc clients: $("$GRPC_CLIENTS/venv/bin/python" -c 'import tritonclient, importlib.metadata as m; print("tritonclient", m.version("tritonclient"))'), tensorflow-serving-api 2.21.0 (--no-deps)"
