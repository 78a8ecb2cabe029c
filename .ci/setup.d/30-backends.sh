# Sourced by .ci/run (venv active): the optional Keras backends, PyTorch and JAX, from requirements-backends.txt
# (exact pins; torch==2.13.0 is a CPU build: never install torch unpinned, that pulls a CUDA build of ~3 GB).
# About 80 s on a cold venv. The backend tests (tests/backends) fail rather than skip in CI when these are
# missing, and .ci/checks.d/30-backends.sh runs the slow ones.
if ! python -c "import torch, jax" 2>/dev/null; then
    if ! python -m pip install --quiet --disable-pip-version-check -r requirements-backends.txt; then
        echo "30-backends.sh: could not install requirements-backends.txt (torch, jax, jaxlib)" >&2
        return 1
    fi
fi
python - <<'PY' || return 1
import importlib.metadata as m
import sys
pins = dict(line.split("==") for line in open("requirements-backends.txt").read().split("\n")
            if line and not line.startswith("#"))
wrong = {name: (pin, m.version(name)) for name, pin in pins.items() if m.version(name).split("+")[0] != pin}
if wrong:
    sys.exit(f"30-backends.sh: installed versions differ from requirements-backends.txt: {wrong}")
print("backends: " + ", ".join(f"{name} {m.version(name)}" for name in pins))
PY
