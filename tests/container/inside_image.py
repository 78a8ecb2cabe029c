"""Run inside the built image by smoke.sh (`podman run -i --entrypoint python IMAGE - < inside_image.py`):
what must not be in a runtime image, and what must be."""

import importlib.metadata as md
import importlib.util
import os
import shutil
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

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"image content: {len(dists)} distributions in the venv, tensorflow-cpu {md.version('tensorflow-cpu')}, "
      f"Python {sys.version.split()[0]}, no compiler, no tests, no training code, code and model read-only")
