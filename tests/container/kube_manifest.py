"""deploy/kubernetes.yaml read as Kubernetes reads it (the Deployment, its one container, quantities), and
podman called with a clear failure: what tests/container/kube_check.py and kube_limits.py share."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

# The kinds `podman kube play` creates something for (podman 4.3 to 5.x); any other kind in a
# manifest is skipped without a word.
PODMAN_KINDS = ("Pod", "Deployment", "DaemonSet", "Job", "PersistentVolumeClaim", "ConfigMap", "Secret")
QUANTITY = re.compile(r"^([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
         "Ti": 2**40}


def fail(message: str) -> None:
    print(f"kube_check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def documents(manifest: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc]


def deployment(docs: list[dict]) -> dict:
    found = [doc for doc in docs if doc.get("kind") == "Deployment"]
    if len(found) != 1:
        fail(f"expected one Deployment in the manifest, found {len(found)}")
    return found[0]


def the_container(docs: list[dict]) -> dict:
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        fail(f"expected one container in the Deployment, found {len(containers)}")
    return containers[0]


def quantity(value) -> float:
    """A Kubernetes quantity ("1536Mi", "500m", "2", 1) as a number."""
    match = QUANTITY.match(str(value))
    if not match:
        fail(f"cannot read the quantity {value!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def podman(*args: str) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"podman {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout
