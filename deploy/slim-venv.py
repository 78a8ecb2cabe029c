"""Slim the serving virtual environment: leave out what the serving process never loads.

    python3 deploy/slim-venv.py /opt/venv            # the Dockerfile's build stage runs this

``pip install -r requirements-serve.txt`` brings everything tensorflow-cpu declares, but the service
imports far less (it loads a plain SavedModel, never Keras). What goes was measured, not guessed: the
service (gunicorn with ``service.worker.Worker``, requirements-serve.txt in a fresh venv) ran under
``strace -f -e trace=openat,open,execve,stat`` through every endpoint (JSON, the five image formats
raw, base64 and multipart, TF Serving, KServe v2 JSON and binary FP16/32/64, photos read with SciPy
under every condition of bench/photo_looks.py, numbers on /read, ``?explain=1``, sheets without a digit,
a 12-megapixel JPEG, /metrics, /openapi.json, the page), every 4xx path, a hot reload to a new version,
a broken version and a roll back, a load burst, ``ENABLE_BATCHING=1`` and a SIGTERM shutdown
(``python -m tests.container.measure_files`` repeats that measurement). Nothing below was opened, but
for two imports that TensorFlow tries and does without (h5py, scipy.sparse: their reasons say so). It
is pinned to the versions it was measured
with (``MEASURED_WITH``): with any other version this script stops, so that an upgrade is measured
again instead of trusted (docs/deployment.md, "Image size", tells how).

Three kinds of removal, each listed below with its reason:

1. distributions, uninstalled with pip (their files, entry points and metadata go together);
2. folders and files inside installed packages (C++ headers, tests, an unused extension module,
   SciPy but for scipy.ndimage and what it imports);
3. the symbol tables (``.symtab``, ``.strtab``), ``.comment`` and ``.debug_*`` sections of shared
   objects. These sections are not part of any loadable segment: the dynamic loader never maps
   them, and dlopen/dlsym use ``.dynsym``, which stays. Only the section header table at the file's
   end changes; every byte a process maps is unchanged (checked for each file, see
   :func:`strip_file`). Cost: a native crash's stack trace shows addresses instead of the names of
   TensorFlow's internal (non-exported) functions.

   Why not binutils (issue 22 asked; measured on bookworm's binutils 2.40): ``strip --strip-unneeded``
   over the venv's shared objects in the build stage gave an image whose workers could not import NumPy,
   "libscipy_openblas64_-32a4b2a6.so: ELF load command address/offset not page-aligned", and so does
   ``objcopy --strip-debug`` on that one file (reproduced outside the image: strip a copy of the venv's
   ``numpy.libs/libscipy_openblas64_-*.so``, then ``import numpy``). auditwheel grafts such libraries
   into wheels and rewrites them with patchelf (that file has 9 load segments where a library usually
   has 4), and BFD's re-laid-out copy of it no longer loads. Finding every patchelf-rewritten object to spare
   it (the grafted ``*.libs`` and the extensions whose RPATH auditwheel changed) would be a rule of its
   own; cutting the file after its last mapped byte, as below, never moves a byte any segment maps.

Standard library only (it runs in the build stage with the venv's own Python, then pip is gone).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# What the lists below were measured with: the pins in requirements-serve.txt whose code decides what
# is loaded (TensorFlow imports, or not, the distributions below; the paths are TensorFlow's, NumPy's and
# SciPy's). Another version of any: stop (measure again). The distributions uninstalled are
# tensorflow-cpu's unpinned dependencies: whichever version pip picks, the service never imports them.
MEASURED_WITH = {"tensorflow-cpu": "2.21.0", "numpy": "2.4.6", "scipy": "1.17.1"}

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

# SciPy subpackages the service never opens. It reads photos with scipy.ndimage, which imports
# scipy.special and scipy._lib (they stay, with the OpenBLAS of scipy.libs that scipy.special links);
# `import scipy` loads a subpackage only on first use (`scipy.<name>` or `import scipy.<name>`).
SCIPY_UNUSED = {
    "stats": "statistics", "optimize": "optimisation, root finding", "linalg": "linear algebra",
    "spatial": "k-d trees, distances, Qhull", "io": "MATLAB, NetCDF, WAV files", "signal": "signal processing",
    "interpolate": "interpolation", "integrate": "integration, ODEs", "fft": "FFTs", "fftpack": "legacy FFTs",
    "cluster": "clustering", "odr": "orthogonal distance regression", "datasets": "sample data downloads",
    "differentiate": "finite differences", "constants": "physical constants", "misc": "deprecated leftovers",
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
    "numpy/distutils": "build tooling (needs a compiler; loaded only on `numpy.distutils`)",
    # (numpy/f2py stays: `from scipy import ndimage` loads it, through the `from numpy import *` of SciPy's
    # vendored array_api_compat, and numpy's __all__ names f2py)
    **{f"scipy/{name}": f"scipy.{name} ({what}): scipy.ndimage, the service's one use of SciPy "
                        "(service/images), never imports it" for name, what in SCIPY_UNUSED.items()},
    "scipy/sparse": "TensorFlow's legacy tf.python.keras imports it inside `try: ... except ImportError` "
                    "(`issparse`, for Keras 2 training loops) and never needs it for a SavedModel",
    "scipy/special/cython_special.cpython-311-x86_64-linux-gnu.so": "special functions for Cython's "
                                                                    "`cimport`; scipy.special never loads it",
    "scipy.libs/libgfortran-8f1e9814.so.5.0.0": "needed (readelf -d) only by extensions of scipy.linalg, "
                                                "interpolate and odr; OpenBLAS links its own copy",
    "scipy.libs/libquadmath-828275a7.so.0.0.0": "needed only by that libgfortran",
}
# ... and, anywhere in site-packages: folders named `tests` (test suites of numpy, opt_einsum,
# TensorFlow's dtensor ...; `test` and `testing` stay, tf.test imports them), typing stubs (`*.pyi`,
# `py.typed` stays), static libraries (`*.a`).
REMOVE_DIR_NAMES = ("tests",)
REMOVE_SUFFIXES = (".pyi", ".a")

ELF_MAGIC = b"\x7fELF"
SHF_ALLOC = 0x2
SHF_INFO_LINK = 0x40
SHT_NOBITS = 8
SHN_LORESERVE = 0xFF00


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
ELF_HEADER = "<16sHHIQQQIHHHHHH"  # e_ident, type, machine, version, entry, phoff, shoff, flags, ehsize,
#                                   phentsize, phnum, shentsize, shnum, shstrndx
PROGRAM_HEADER = "<IIQQQQQQ"  # type, flags, offset, vaddr, paddr, filesz, memsz, align
SECTION_HEADER = "<IIQQQQIIQQ"  # name, type, flags, addr, offset, size, link, info, addralign, entsize


@dataclass
class ElfLayout:
    """The headers of a 64-bit little-endian ELF file, as ``struct`` unpacks them."""
    fields: list  # the ELF header's (ELF_HEADER)
    phdrs: list[tuple]  # the program headers (PROGRAM_HEADER)
    sections: list[list]  # the section headers (SECTION_HEADER)

    @property
    def shstrndx(self) -> int:
        return self.fields[13]

    def loaded_end(self) -> int:
        """The end of the program header table or of the last byte a program header covers."""
        phoff, phentsize, phnum = self.fields[5], self.fields[9], self.fields[10]
        return max([phoff + phnum * phentsize] + [p[2] + p[5] for p in self.phdrs])


def read_program_headers(f, fields: list) -> list[tuple]:
    f.seek(fields[5])
    return [struct.unpack(PROGRAM_HEADER, f.read(56)) for _ in range(fields[10])]


def read_layout(f) -> ElfLayout | None:
    """The headers of the open file ``f``; None unless it is a 64-bit little-endian ELF file whose
    section count and name-table index fit in the ELF header."""
    header = f.read(64)
    if len(header) < 64 or header[:4] != ELF_MAGIC or header[4] != 2 or header[5] != 1:
        return None  # not ELF, or not 64-bit little-endian: leave it
    fields = list(struct.unpack(ELF_HEADER, header))
    shoff = fields[6]
    phentsize, _, shentsize, shnum, shstrndx = fields[9:14]
    if shnum == 0 or shnum >= SHN_LORESERVE or shstrndx >= SHN_LORESERVE or shentsize != 64 \
            or phentsize != 56:
        return None
    phdrs = read_program_headers(f, fields)
    f.seek(shoff)
    sections = [list(struct.unpack(SECTION_HEADER, f.read(64))) for _ in range(shnum)]
    return ElfLayout(fields, phdrs, sections)


def sections_to_keep(layout: ElfLayout) -> list[int] | None:
    """The indexes of the sections to keep: the null section, the section names, every SHF_ALLOC
    section and any lying inside the loaded range. None when all would be kept, or when a kept
    section refers (sh_link, sh_info) to a dropped one."""
    loaded_end = layout.loaded_end()
    keep = []
    for index, (_, kind, flags, _, offset, size, *_rest) in enumerate(layout.sections):
        in_loaded_range = kind == SHT_NOBITS or offset + size <= loaded_end
        if index == 0 or index == layout.shstrndx or flags & SHF_ALLOC or in_loaded_range:
            keep.append(index)
    if len(keep) == len(layout.sections):
        return None
    for index in keep:
        _, kind, flags, _, _, _, link, info, _, _ = layout.sections[index]
        if link and link not in keep or flags & SHF_INFO_LINK and info not in keep:
            return None
    return keep


def section_table(layout: ElfLayout, keep: list[int], names_offset: int) -> bytes:
    """The new section header table: the kept sections renumbered, the names at ``names_offset``."""
    new_index = {old: new for new, old in enumerate(keep)}
    table = b""
    for index in keep:
        section = list(layout.sections[index])
        if index == layout.shstrndx:
            section[4] = names_offset
        if section[6]:
            section[6] = new_index[section[6]]
        if section[2] & SHF_INFO_LINK and section[7]:
            section[7] = new_index[section[7]]
        table += struct.pack(SECTION_HEADER, *section)
    return table


def cut_offset(layout: ElfLayout, keep: list[int]) -> int:
    """Where the file is cut: after the loaded range and every kept section with bytes in the file,
    the section names aside (they move there)."""
    return max([layout.loaded_end()] + [layout.sections[i][4] + layout.sections[i][5] for i in keep
                                        if i != layout.shstrndx and layout.sections[i][1] != SHT_NOBITS])


def strip_file(path: Path) -> int:
    """Drop the non-loaded sections at the end of a 64-bit little-endian ELF file, in place.

    Kept: every section with SHF_ALLOC (they are what the segments map), any section lying inside
    the loaded range, and the section-name table (moved up). Dropped: the other sections, all of
    which lie after the last byte any program header covers (``.symtab``, ``.strtab``,
    ``.comment``, ``.debug_*`` ...). The file is truncated there and a new section header table is
    written after the section names, so the bytes before that point (ELF header aside, whose
    section-table fields change) are never rewritten. Returns the bytes saved (0: left as is).
    """
    with open(path, "r+b") as f:
        layout = read_layout(f)
        keep = sections_to_keep(layout) if layout else None
        if keep is None:
            return 0
        size_before = os.fstat(f.fileno()).st_size
        names = layout.sections[layout.shstrndx]
        f.seek(names[4])
        name_table = f.read(names[5])
        cut = cut_offset(layout, keep)
        table = section_table(layout, keep, names_offset=cut)
        table_offset = (cut + len(name_table) + 7) // 8 * 8
        if table_offset + len(table) >= size_before:
            return 0
        f.truncate(cut)
        f.seek(cut)
        f.write(name_table + b"\0" * (table_offset - cut - len(name_table)) + table)
        write_elf_header(f, layout, table_offset, keep)
        return size_before - os.fstat(f.fileno()).st_size


def write_elf_header(f, layout: ElfLayout, table_offset: int, keep: list[int]) -> None:
    """Point the ELF header at the new section header table; then check that the program headers
    (and so every mapped byte before the cut) are as they were."""
    fields = list(layout.fields)
    fields[6], fields[12], fields[13] = table_offset, len(keep), keep.index(layout.shstrndx)
    f.seek(0)
    f.write(struct.pack(ELF_HEADER, *fields))
    f.flush()
    if read_program_headers(f, fields) != layout.phdrs:
        fail(f"{f.name}: program headers changed while stripping")


def shared_objects(root: Path):
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            if (name.endswith(".so") or ".so." in name) and path.is_file() and not path.is_symlink():
                yield path


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
    print(f"  symbol tables stripped from {len(stripped)} shared objects: "
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
    # 3. symbol tables
    stripped = {path: strip_file(path) for path in shared_objects(venv)}
    stripped = {path: saved for path, saved in stripped.items() if saved}
    report(site, before, group_by_package(sizes_by_entry(site)), removed, stripped)


if __name__ == "__main__":
    main()
