"""Slim the serving virtual environment: leave out what the serving process never loads.

    python3 deploy/slim-venv.py /opt/venv            # the Dockerfile's build stage runs this

``pip install -r requirements-serve.txt`` brings everything tensorflow-cpu declares, but the service
imports far less (it loads a plain SavedModel, never Keras). What goes was measured, not guessed: the
service (gunicorn with ``service.worker.Worker``, requirements-serve.txt in a fresh venv) ran under
``strace -f -e trace=openat,open,execve,stat`` through every endpoint (JSON, the five image formats
raw, base64 and multipart, TF Serving, KServe v2 JSON and binary FP16/32/64, /metrics, /openapi.json,
the page), every 4xx path, a hot reload to a new version, a broken version and a roll back, a load
burst, ``ENABLE_BATCHING=1`` and a SIGTERM shutdown (``python -m tests.container.measure_files``
repeats that measurement). Nothing below was opened. It is pinned to the versions it was measured
with (``MEASURED_WITH``): with any other version this script stops, so that an upgrade is measured
again instead of trusted (docs/deployment.md, "Image size", tells how).

Three kinds of removal, each listed below with its reason:

1. distributions, uninstalled with pip (their files, entry points and metadata go together);
2. folders and files inside installed packages (C++ headers, tests, an unused extension module);
3. the symbol tables (``.symtab``, ``.strtab``) and debug sections of shared objects, with binutils'
   ``strip --strip-unneeded`` (the build stage installs binutils; the runtime image has none). The
   dynamic loader never maps these sections, and dlopen/dlsym use ``.dynsym``, which stays. Cost: a
   native crash's stack trace shows addresses instead of the names of TensorFlow's internal
   (non-exported) functions. (This used to be a rewrite of the ELF section tables in Python; the
   standard tool does the job, and the sizes it leaves are in the build log's table.)

Standard library only (it runs in the build stage with the venv's own Python, then pip is gone), plus
binutils' ``strip``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

# What the lists below were measured with: the pins in requirements-serve.txt whose code decides what
# is loaded (TensorFlow imports, or not, the distributions below; the paths are TensorFlow's and
# NumPy's). Another version of either: stop (measure again). The distributions uninstalled are
# tensorflow-cpu's unpinned dependencies: whichever version pip picks, the service never imports them.
MEASURED_WITH = {"tensorflow-cpu": "2.21.0", "numpy": "2.4.6"}

# 1. Distributions the serving process never imports (none of their files was opened).
UNINSTALL = {
    "keras": "tensorflow-cpu declares it; the service loads plain SavedModels and its workers refuse "
             "`import keras` anyway (service/lean.py)",
    "rich": "Keras' own dependency (console output)",
    "pygments": "rich's dependency (syntax highlighting)",
    "markdown-it-py": "rich's dependency",
    "mdurl": "markdown-it-py's dependency",
    "namex": "Keras' own dependency (API export)",
    "optree": "Keras' own dependency (tree utilities)",
    "h5py": "Keras' HDF5 weight files; TensorFlow's legacy tf.python.keras imports it inside "
            "`try: ... except ImportError` and never needs it for a SavedModel",
    "libclang": "only TensorFlow's build-time code generators use it",
    "pip": "an installer: nothing is installed at run time",
    "setuptools": "an installer (tensorflow-cpu declares it; nothing imports setuptools or "
                  "pkg_resources at run time)",
    "wheel": "an installer (astunparse declares it)",
}

# 2. Paths inside site-packages (each must exist: a missing one means the layout changed).
REMOVE = {
    "tensorflow/include": "C++ headers, only for compiling custom ops",
    "tensorflow/compiler/mlir/stablehlo": "StableHLO Python bindings (jax2tf tooling); nothing "
                                          "imports them",
    "tensorflow/compiler/tf2xla/ops/_xla_ops.so": "an op library no Python code loads (gen_xla_ops.py "
                                                  "calls ops registered in libtensorflow_cc)",
    "tensorflow/python/framework/lib_native_proto_caster.so": "no module loads it and no shared "
                                                              "object needs it (readelf -d)",
    "numpy/_core/include": "C headers, only for compiling against NumPy",
    "numpy/f2py": "a Fortran wrapper generator (needs a compiler; loaded only on `numpy.f2py`)",
    "numpy/distutils": "build tooling (needs a compiler; loaded only on `numpy.distutils`)",
}
# ... and, anywhere in site-packages: folders named `tests` (test suites of numpy, opt_einsum,
# TensorFlow's dtensor ...; `test` and `testing` stay, tf.test imports them), typing stubs (`*.pyi`,
# `py.typed` stays), static libraries (`*.a`).
REMOVE_DIR_NAMES = ("tests",)
REMOVE_SUFFIXES = (".pyi", ".a")

ELF_MAGIC = b"\x7fELF"


def fail(message: str) -> None:
    sys.exit(f"slim-venv: {message}")


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        fail(f"expected one lib/python3*/site-packages in {venv}, found {found}")
    return found[0]


def check_versions(python: Path) -> None:
    script = ("import importlib.metadata as m, json, sys; "
              "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([str(python), "-c", script, *MEASURED_WITH], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"a measured distribution is not installed:\n{out.stderr.strip().splitlines()[-1]}")
    import json

    found = json.loads(out.stdout)
    changed = {name: (MEASURED_WITH[name], version) for name, version in found.items()
               if version != MEASURED_WITH[name]}
    if changed:
        fail("the removals were measured with other versions "
             + ", ".join(f"{n} {old} (now {new})" for n, (old, new) in changed.items())
             + ": measure again (docs/deployment.md, 'Image size') and update MEASURED_WITH")


def sizes_by_entry(root: Path) -> dict[str, int]:
    """Bytes under each top-level entry of ``root`` (files counted once, symlinks not followed)."""
    totals: dict[str, int] = {}
    for entry in root.iterdir():
        total = 0
        if entry.is_dir() and not entry.is_symlink():
            for dirpath, _, filenames in os.walk(entry):
                total += sum(os.lstat(os.path.join(dirpath, name)).st_size for name in filenames)
        else:
            total = os.lstat(entry).st_size
        totals[entry.name] = total
    return totals


def group_by_package(totals: dict[str, int]) -> dict[str, int]:
    """Top-level entries as `du` shows them, a package's bundled libraries (`numpy.libs`) counted
    with it and every `*.dist-info` folder in one line."""
    grouped: dict[str, int] = {}
    for name, size in totals.items():
        key = "(*.dist-info)" if name.endswith(".dist-info") else name.removesuffix(".libs")
        grouped[key] = grouped.get(key, 0) + size
    return grouped


# ------------------------------------------------------------------------------------ ELF symbols
def shared_objects(root: Path):
    """The ELF shared objects under ``root`` (files named ``*.so`` or ``*.so.N``, not symlinks)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if (name.endswith(".so") or ".so." in name) and path.is_file() and not path.is_symlink():
                with open(path, "rb") as f:
                    if f.read(4) == ELF_MAGIC:
                        yield path


def strip_symbols(paths: list[Path]) -> dict[Path, int]:
    """3. ``strip --strip-unneeded`` on ``paths``; the bytes saved per file."""
    tool = shutil.which("strip")
    if tool is None:
        fail("binutils' strip is not installed (the Dockerfile's build stage installs binutils)")
    before = {path: path.stat().st_size for path in paths}
    for start in range(0, len(paths), 100):
        subprocess.run([tool, "--strip-unneeded", *map(str, paths[start:start + 100])], check=True)
    return {path: size - path.stat().st_size for path, size in before.items()}


# ------------------------------------------------------------------------------------------ main
def uninstall(python: Path, site: Path) -> None:
    """1. The distributions of ``UNINSTALL`` (pip last of all: it uninstalls the others, then itself)."""
    installed = {dist.metadata["Name"].lower().replace("_", "-")
                 for dist in importlib.metadata.distributions(path=[str(site)])}
    missing = sorted(set(UNINSTALL) - installed)
    if missing:
        fail(f"not installed, so not measured as installed: {missing}")
    others = [name for name in UNINSTALL if name != "pip"]
    subprocess.run([str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "--disable-pip-version-check",
                    *others, "pip"], check=True)


def remove_paths(site: Path) -> int:
    """2. The paths of ``REMOVE``, every ``tests`` folder and the files with a suffix of
    ``REMOVE_SUFFIXES``. Returns how many tests folders went."""
    for relative in REMOVE:
        path = site / relative
        if not path.exists():
            fail(f"{path} does not exist: the package layout changed, measure again")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    removed = 0
    for dirpath, dirnames, filenames in os.walk(site):
        for name in [d for d in dirnames if d in REMOVE_DIR_NAMES]:
            shutil.rmtree(os.path.join(dirpath, name))
            dirnames.remove(name)
            removed += 1
        for name in filenames:
            if name.endswith(REMOVE_SUFFIXES):
                os.unlink(os.path.join(dirpath, name))
    return removed


def report(site: Path, before: dict[str, int], after: dict[str, int], removed: int,
           stripped: dict[Path, int]) -> None:
    """What went, and the sizes by package before and after (smoke.sh shows this table)."""
    mb = 1e6
    print(f"slim-venv: {site}: {sum(before.values()) / mb:.0f} MB -> {sum(after.values()) / mb:.0f} MB")
    print(f"  uninstalled: {', '.join(UNINSTALL)}")
    print(f"  removed: {', '.join(REMOVE)}, {removed} tests folders, *.pyi, *.a")
    print(f"  strip --strip-unneeded: {len(stripped)} shared objects, "
          f"{sum(stripped.values()) / mb:.0f} MB")
    print(f"  {'MB before':>9} {'MB after':>9}  package (site-packages, by top-level entry)")
    for name in sorted(before, key=lambda n: -before[n]):
        if before[name] >= 0.5 * mb or after.get(name, 0) >= 0.5 * mb:
            now = after.get(name)
            print(f"  {before[name] / mb:9.1f} {'-' if now is None else f'{now / mb:.1f}':>9}  {name}")


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: python3 deploy/slim-venv.py VENV")
    venv = Path(sys.argv[1])
    python = venv / "bin" / "python"
    site = site_packages(venv)
    check_versions(python)
    before = group_by_package(sizes_by_entry(site))
    uninstall(python, site)
    removed = remove_paths(site)
    stripped = {path: saved for path, saved in strip_symbols(list(shared_objects(venv))).items() if saved}
    report(site, before, group_by_package(sizes_by_entry(site)), removed, stripped)


if __name__ == "__main__":
    main()
