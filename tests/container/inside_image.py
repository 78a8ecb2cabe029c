"""Run inside the built image by smoke.sh (`podman run -i --entrypoint python IMAGE - < inside_image.py`):
what must not be in a runtime image, and what must be."""

import importlib.metadata as md
import importlib.util
import os
import shutil
import struct
import sys

problems = []
for tool in ("gcc", "cc", "c++", "g++", "clang", "make", "ld", "as"):
    if shutil.which(tool):
        problems.append(f"a compiler toolchain is in the image: {shutil.which(tool)}")
for path in ("/app/tests", "/app/model", "/app/training", "/app/.git", "/app/exports", "/root/.cache/pip",
             "/tmp/requirements-serve.txt", "/context", "/usr/local/bin/check-export"):
    if os.path.exists(path):
        problems.append(f"does not belong in the runtime image: {path}")
for top in ("/app", "/models"):
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            if name in (".git", "__pycache__", ".pytest_cache") or name.endswith(".pyc") or name.startswith(".tmp-"):
                problems.append(f"does not belong in the runtime image: {os.path.join(dirpath, name)}")
if not os.path.isfile("/models/mnist/1/saved_model.pb"):
    problems.append("no baked-in model at /models/mnist/1/saved_model.pb")
if os.access("/app/service/app.py", os.W_OK) or os.access("/models/mnist/1/saved_model.pb", os.W_OK):
    problems.append("the service's code or model is writable by the service's user")

dists = {dist.metadata["Name"].lower().replace("_", "-") for dist in md.distributions()}
if "tensorflow-cpu" not in dists or "tensorflow" in dists:
    problems.append("expected tensorflow-cpu and not the (CUDA) tensorflow distribution")
extra = [m for m in ("sklearn", "matplotlib", "pytest", "tensorboard", "model", "training")
         if importlib.util.find_spec(m)]
if extra:
    problems.append(f"training or test packages in the runtime image: {extra}")

# deploy/slim-venv.py: what the serving process never loads is gone, and the symbol tables too
slimmed = [m for m in ("keras", "h5py", "pip", "setuptools", "pkg_resources", "pygments", "rich", "optree")
           if importlib.util.find_spec(m)]
if slimmed:
    problems.append(f"left out by deploy/slim-venv.py, yet in the image: {slimmed}")
# ... and what serves gRPC is in (service/grpc_api)
missing = [m for m in ("grpc", "grpc_health", "grpc_reflection", "service.grpc_api.generated.tensorflow_serving.apis")
           if importlib.util.find_spec(m) is None]
if missing:
    problems.append(f"gRPC's packages are missing from the image: {missing}")
# ... and of SciPy only scipy.ndimage and what it imports (service/images reads photos with it)
try:
    importlib.import_module("scipy.ndimage")
except ImportError as error:
    problems.append(f"scipy.ndimage does not import (service/images reads photos with it): {error!r}")
scipy_left = [m for m in ("scipy.stats", "scipy.optimize", "scipy.linalg", "scipy.sparse", "scipy.signal", "scipy.io")
              if importlib.util.find_spec(m)]
if scipy_left:
    problems.append(f"left out by deploy/slim-venv.py, yet in the image: {scipy_left}")
tensorflow_dir = os.path.dirname(importlib.util.find_spec("tensorflow").origin)
for leftover in ("include", "compiler/mlir/stablehlo"):
    if os.path.exists(os.path.join(tensorflow_dir, leftover)):
        problems.append(f"left out by deploy/slim-venv.py, yet in the image: tensorflow/{leftover}")


def section_names(path):
    """The section names of a 64-bit little-endian ELF file."""
    with open(path, "rb") as f:
        header = f.read(64)
        shoff, = struct.unpack_from("<Q", header, 40)
        shnum, shstrndx = struct.unpack_from("<HH", header, 60)
        f.seek(shoff)
        sections = [struct.unpack("<IIQQQQIIQQ", f.read(64)) for _ in range(shnum)]
        f.seek(sections[shstrndx][4])
        names = f.read(sections[shstrndx][5])
    return {names[s[0]:names.index(b"\0", s[0])].decode() for s in sections}


library = os.path.join(tensorflow_dir, "libtensorflow_cc.so.2")
if {".symtab", ".strtab"} & section_names(library):
    problems.append(f"{library} still has its symbol table (deploy/slim-venv.py strips it)")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"image content: {len(dists)} distributions in the venv, tensorflow-cpu {md.version('tensorflow-cpu')}, "
      f"Python {sys.version.split()[0]}, no compiler, no tests, no training code, code and model read-only; "
      "slimmed (no Keras, h5py, pip; TensorFlow without headers and symbol tables; of SciPy scipy.ndimage and "
      "what it imports); gRPC's packages in")
