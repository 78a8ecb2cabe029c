"""Which files of a serving venv does the service open? The measurement behind deploy/slim-venv.py.

    python -m tests.container.measure_files VENV EXPORT_BASE     # from the repository root, needs strace

VENV: a fresh virtual environment with requirements-serve.txt (``python3.11 -m venv V && V/bin/pip
install -r requirements-serve.txt``), EXPORT_BASE: an export base with version 1 (``exports/mnist``).
Runs the service as the image does (gunicorn, service/gunicorn.conf.py, 2 workers) from VENV under
``strace -f -e trace=openat,open,execve``, twice: as shipped and with ENABLE_BATCHING=1 (both with
MAX_BODY_BYTES at 8 MiB, room for a 12-megapixel phone photo). Each run: ``smoke_client exercise`` (every
kind of request, image format, refusal, GET route and /metrics), ``photo_check photos`` and ``big-photo``
(photos read with SciPy: a digit under every condition of bench/photo_looks.py to /predict, numbers to /read,
?explain=1, sheets without a digit, a 12-megapixel JPEG), a load burst, a hot reload to version 2, a broken
version 3 and a roll back to 1, then SIGTERM. Then it
prints what was never opened in VENV's site-packages:

- distributions none of whose files was opened (candidates for slim-venv.py's UNINSTALL);
- the largest folders none of whose files was opened, and the largest such files (REMOVE);
- the totals: present, opened, never opened by kind.

127.0.0.1 only; each run is bounded (two minutes to start, the exercise takes seconds).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from bench.localhost import free_port
from bench.support import REPO

# a path passed to open/openat/execve; a call that failed says so on its line ("= -1 ENOENT"). A call
# interrupted by another process's line ("<unfinished ...>") counts as opened: when in doubt, keep.
OPENED = re.compile(r'^\d+\s+(?:openat|open|execve)\((?:AT_FDCWD, )?"([^"]+)"')
MB = 1e6


MAX_BODY_BYTES = str(8 * 1024 * 1024)  # the 12-megapixel photo of photo_check big-photo (4-6 MB)


def client(*args: str, module: str = "smoke_client") -> None:
    subprocess.run([sys.executable, "-m", f"tests.container.{module}", *args], check=True, cwd=REPO)


def run_service(venv: Path, export: Path, work: Path, name: str, extra_env: dict) -> Path:
    """One traced run of the service; returns the strace output file."""
    base = work / name / "exports"
    shutil.copytree(export / "1", base / "1")
    trace = work / name / "trace"
    port = free_port()
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": str(work), "PYTHONPATH": str(REPO),
           "TF_CPP_MIN_LOG_LEVEL": "2", "MODEL_DIR": str(base), "MODEL_POLL_SECONDS": "1",
           "MAX_BODY_BYTES": MAX_BODY_BYTES, **extra_env}
    log = open(work / name / "gunicorn.log", "w")
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=openat,open,execve", "-o", str(trace),
                               f"{venv}/bin/gunicorn", "-c", "service/gunicorn.conf.py", "--bind",
                               f"127.0.0.1:{port}", "service.app:create_app()"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        client("wait-ready", url, "240")
        mnist = os.environ.get("MNIST_DATA_DIR", str(REPO.parent / "shared/data/mnist"))
        client("exercise", url, "--mnist-dir", mnist)
        for command in ("photos", "big-photo"):
            client(command, url, "--mnist-dir", mnist, "--export", str(base), module="photo_check")
        client("load", url, "--out", str(work / name / "load.json"), "--seconds", "5")
        shutil.copytree(base / "1", base / ".tmp-2")
        os.rename(base / ".tmp-2", base / "2")
        client("wait-version", url, "2", "60")
        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
        time.sleep(3)  # every worker tries version 3 and skips it
        shutil.rmtree(base / "3")
        shutil.rmtree(base / "2")
        client("wait-version", url, "1", "60")
    finally:
        for master in psutil.Process(tracer.pid).children():  # gunicorn's master, so that its shutdown is traced too
            master.terminate()  # SIGTERM
        try:
            tracer.wait(60)
        except subprocess.TimeoutExpired:
            tracer.kill()
        log.close()
    return trace


def opened_files(traces: list[Path]) -> set[str]:
    found = set()
    for trace in traces:
        for line in trace.read_text(errors="replace").splitlines():
            match = OPENED.match(line)
            if match and "= -1 " not in line:
                found.add(os.path.realpath(match.group(1)))
    return found


def report(site: Path, opened: set[str]) -> dict:
    sizes: dict[str, int] = {}
    used: Counter = Counter()
    unopened_kinds: Counter = Counter()
    unopened_files: list[tuple[int, str]] = []
    for dirpath, _, filenames in os.walk(site):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            size = os.path.getsize(path)
            relative = os.path.relpath(path, site)
            is_opened = os.path.realpath(path) in opened
            parts = relative.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                sizes[folder] = sizes.get(folder, 0) + size
                used[folder] += is_opened
            if not is_opened:
                kind = ".pyc" if name.endswith(".pyc") else ".py" if name.endswith(".py") else \
                    "shared objects" if ".so" in name else "other"
                unopened_kinds[kind] += size
                unopened_files.append((size, relative))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(site) for f in fs
                if not os.path.islink(os.path.join(d, f)))
    never = [folder for folder in sizes if used[folder] == 0
             and ("/" not in folder or used[folder.rsplit("/", 1)[0]] > 0)]
    distributions = []
    for dist in importlib.metadata.distributions(path=[str(site)]):
        files = [f for f in (dist.files or []) if ".dist-info/" not in str(f) and not str(f).startswith("..")]
        if files and not any(os.path.realpath(site / str(f)) in opened for f in files):
            size = sum((site / str(f)).stat().st_size for f in files if (site / str(f)).is_file())
            distributions.append((size, f"{dist.metadata['Name']} {dist.version}"))
    return {"total": total, "opened": total - sum(unopened_kinds.values()), "unopened_kinds": unopened_kinds,
            "never": sorted(((sizes[f], f) for f in never), reverse=True),
            "files": sorted(unopened_files, reverse=True), "distributions": sorted(distributions, reverse=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("venv", type=Path)
    parser.add_argument("export_base", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if not shutil.which("strace"):
        sys.exit("measure_files: strace is not installed (apt-get install strace)")
    sites = sorted(args.venv.resolve().glob("lib/python3*/site-packages"))
    if len(sites) != 1:
        sys.exit(f"measure_files: no single site-packages in {args.venv}")
    site = sites[0]
    with tempfile.TemporaryDirectory(prefix="measure-files-") as work:
        traces = [run_service(args.venv.resolve(), args.export_base.resolve(), Path(work), "shipped", {}),
                  run_service(args.venv.resolve(), args.export_base.resolve(), Path(work), "batching",
                              {"ENABLE_BATCHING": "1"})]
        opened = opened_files(traces)
    result = report(site, opened)
    print(f"{site}: {result['total'] / MB:.0f} MB, opened {result['opened'] / MB:.0f} MB; never opened by kind: "
          + json.dumps({k: round(v / MB, 1) for k, v in result["unopened_kinds"].items()}))
    print("\ndistributions none of whose files was opened (MB):")
    for size, name in result["distributions"]:
        print(f"  {size / MB:8.1f}  {name}")
    print(f"\nlargest folders none of whose files was opened (MB, top {args.top}):")
    for size, folder in result["never"][:args.top]:
        print(f"  {size / MB:8.1f}  {folder}")
    print(f"\nlargest files never opened (MB, top {args.top}):")
    for size, name in result["files"][:args.top]:
        print(f"  {size / MB:8.1f}  {name}")


if __name__ == "__main__":
    main()
