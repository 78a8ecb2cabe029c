"""deploy/slim-venv.py without building an image: its lists against the pins, the layout and what the service's
photo reading loads (tests/container/smoke.sh and measure_files.py check the image itself, with podman and strace).

The photo test reads photos in a fresh Python process, as a worker does, and lists every module file and
shared object that process loaded: none may lie where slim-venv.py removes something. It fails when the service
starts using a SciPy subpackage the image leaves out (or one that SciPy loads through NumPy: ``from numpy
import *`` in SciPy's vendored array_api_compat loads ``numpy.f2py``), before a container build would.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from bench.support import REPO

SITE = Path(sysconfig.get_paths()["purelib"])
# a fresh process: decode and read every photo given, then list what it loaded (module files, mapped files)
READER = """
import json, sys
from service import images
from service.errors import RequestError
for path in sys.argv[1:]:
    try:
        images.read(open(path, "rb").read())
    except RequestError:
        pass
loaded = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
loaded |= {line.split()[-1] for line in open("/proc/self/maps") if line.split()[-1].startswith("/")}
print(json.dumps(sorted(p for p in loaded if p)))
"""


@functools.cache
def slim_venv():
    """deploy/slim-venv.py as a module (its file name is no module name; dataclasses need it in sys.modules)."""
    spec = importlib.util.spec_from_file_location("slim_venv", REPO / "deploy" / "slim-venv.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def serve_pins() -> dict[str, str]:
    lines = (REPO / "requirements-serve.txt").read_text().splitlines()
    return dict(re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line).groups() for line in lines if "==" in line)


def removed_by(slim, path: Path) -> str | None:
    """The removal of slim-venv.py that ``path`` (in site-packages) falls under, or None."""
    relative = path.relative_to(SITE).as_posix()
    for removed in slim.REMOVE:
        if relative == removed or relative.startswith(removed + "/"):
            return removed
    folders = set(relative.split("/")[:-1]) & set(slim.REMOVE_DIR_NAMES)
    if folders or relative.endswith(slim.REMOVE_SUFFIXES):
        return f"a {'/'.join(folders) or Path(relative).suffix} file"
    return None


def test_measured_versions_are_the_pinned_ones():
    """A pin moved in requirements-serve.txt without measuring again would stop the image build: say it here."""
    pins = serve_pins()
    assert {name: pins.get(name) for name in slim_venv().MEASURED_WITH} == slim_venv().MEASURED_WITH


def test_every_removal_exists_in_this_environment():
    """The build stops on a removal that does not exist; this venv has the same pinned versions."""
    slim = slim_venv()
    installed = {name: importlib.metadata.version(name) for name in slim.MEASURED_WITH}
    if installed != slim.MEASURED_WITH:
        pytest.skip(f"this venv has {installed}, slim-venv.py measured {slim.MEASURED_WITH}: "
                    "pip install -r requirements.txt")
    missing = [path for path in slim.REMOVE if not (SITE / path).exists()]
    assert missing == []


def test_a_missing_removal_stops_the_script(tmp_path):
    slim = slim_venv()
    (tmp_path / "tensorflow" / "include").mkdir(parents=True)
    with pytest.raises(SystemExit, match="compiler/mlir/stablehlo does not exist: the package layout changed"):
        slim.remove_paths(tmp_path)


def test_reading_photos_loads_nothing_slim_venv_removes(tmp_path):
    """Every kind of photo through ``service.images.read`` in a fresh process: what it loads is all kept."""
    from bench.photo_sheets import CONDITIONS, NON_DIGIT_KINDS, render_digit, render_non_digit, render_number
    from training.data import load_digits_28

    (x, y), _ = load_digits_28()
    photos = [render_digit(x[i], condition, np.random.default_rng(i))
              for i, condition in enumerate(c for c in CONDITIONS if c != "photo_12mp")]
    photos += [render_number(x[:4], y[:4], np.random.default_rng(1))[0],
               render_number(x[4:7], y[4:7], np.random.default_rng(2), touching=True)[0]]
    photos += [render_non_digit(kind, np.random.default_rng(3)) for kind in NON_DIGIT_KINDS]
    paths = []
    for index, data in enumerate(photos):
        paths.append(tmp_path / f"photo-{index}")
        paths[-1].write_bytes(data)
    out = subprocess.run([sys.executable, "-c", READER, *map(str, paths)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = [Path(p) for p in json.loads(out.stdout)]
    slim = slim_venv()
    in_site = [p for p in loaded if p.is_relative_to(SITE)]
    assert any(p.is_relative_to(SITE / "scipy" / "ndimage") for p in in_site), "scipy.ndimage was not loaded"
    removed = {str(p.relative_to(SITE)): removed_by(slim, p) for p in in_site if removed_by(slim, p)}
    assert removed == {}
