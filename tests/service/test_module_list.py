"""service/__init__.py's docstring lists the service's modules: it names every one that exists, and none that
does not (the list had fallen 6 modules behind before this test)."""

from __future__ import annotations

import ast
import re

from bench.support import REPO

SERVICE = REPO / "service"


def service_modules() -> set[str]:
    """Each module, package and the draw page of service/, as the docstring names them."""
    names = {path.stem for path in SERVICE.glob("*.py") if path.name != "__init__.py"}
    names |= {f"{path.name}/" for path in SERVICE.iterdir() if (path / "__init__.py").exists()}
    return (names - {"gunicorn.conf"}) | {"gunicorn.conf.py", "static/index.html"}


def named_in_docstring() -> set[str]:
    docstring = ast.get_docstring(ast.parse((SERVICE / "__init__.py").read_text()))
    return set(re.findall(r"``([a-z_]+(?:/|\.conf\.py|/index\.html)?)``", docstring))  # not ``/read`` nor ``openapi.json``


def test_the_package_docstring_names_every_module():
    missing = service_modules() - named_in_docstring()
    assert not missing, f"service/__init__.py does not name {sorted(missing)}"


def test_the_package_docstring_names_no_module_that_is_gone():
    names = named_in_docstring() - {"model", "training"}  # "It never imports ``model``, ``training``"
    gone = {name for name in names if not ((SERVICE / name).exists() or (SERVICE / f"{name}.py").exists())}
    assert not gone, f"service/__init__.py names {sorted(gone)}, which service/ does not hold"
