"""Nothing outside ``providers/dataverse`` reaches into its private names (issue 9 §3).

An AST scan of every module of the project's packages, outside ``providers/dataverse`` itself: no
``from providers.dataverse.<m> import _name``, no import of a private module (``providers.dataverse._transport``),
and no ``<alias>._name`` (or ``<alias>.Class(...)._name``) on what was imported from there. (An attribute of an
instance held in a variable needs types to see; mypy and the review cover that.) The CLI's drift code uses the
client's public calls (``application_users()``, ``catalog_cache=``, ``read_only=True``) instead. import-linter's
contract ``cli-through-public-face`` forbids the private modules to the CLI; this scan covers names, in every
package.
The second test plants each kind of violation and proves the scan finds it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("adp_identity", "adp_identity_emulator", "adp_identity_sandbox", "adp_yaml", "providers", "infra", "bench")
FACE = "providers.dataverse"
INSIDE = ROOT / "providers" / "dataverse"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_of(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def violations(source: str, module: str, *, is_package: bool = False) -> Iterator[str]:
    """Every private name of ``providers.dataverse`` that ``source`` (the module ``module``) reaches."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> providers.dataverse module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == FACE or alias.name.startswith(FACE + "."):
                    if any(_private(part) for part in alias.name.split(".")):
                        yield f"line {node.lineno}: import {alias.name}"
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, module, is_package)
            if target != FACE and not target.startswith(FACE + "."):
                continue
            if any(_private(part) for part in target.split(".")):
                yield f"line {node.lineno}: from {target} import ..."
                continue
            for alias in node.names:
                if _private(alias.name):
                    yield f"line {node.lineno}: from {target} import {alias.name}"
                else:
                    aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain = node.value
            names: list[str] = []
            while isinstance(chain, ast.Attribute | ast.Call):
                if isinstance(chain, ast.Call):
                    chain = chain.func
                    continue
                names.insert(0, chain.attr)
                chain = chain.value
            if isinstance(chain, ast.Name) and chain.id in aliases and not any(_private(n) for n in names):
                yield f"line {node.lineno}: {'.'.join([chain.id, *names, node.attr])}"


def project_modules() -> Iterator[tuple[Path, str]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if INSIDE in path.parents:
                continue
            yield path, _module_of(path, ROOT)


def test_no_module_outside_providers_dataverse_imports_a_private_name_from_it() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {v}"
        for path, module in project_modules()
        for v in violations(path.read_text(encoding="utf-8"), module, is_package=path.name == "__init__.py")
    ]
    assert found == []
    assert sum(1 for _ in project_modules()) > 50  # the scan really walked the tree


def test_the_drift_code_uses_the_clients_public_calls() -> None:
    reading = (ROOT / "adp_identity" / "drift" / "reading.py").read_text(encoding="utf-8")
    assert "catalog_cache=CatalogCache()" in reading and "read_only=True" in reading
    assert "application_users()" in reading
    assert not (ROOT / "adp_identity" / "drift.py").exists()


@pytest.mark.parametrize(
    ("planted", "module"),
    [
        ("from providers.dataverse.client import _query\n", "adp_identity.drift.reading"),
        ("from providers.dataverse.client import USER_SELECT, _query as q\n", "adp_identity.cli"),
        ("import providers.dataverse._transport\n", "adp_identity.cli"),
        ("from providers.dataverse._transport import Call\n", "infra.program"),
        ("from providers.dataverse import _batch\n", "adp_identity_sandbox.demo"),
        ("from .dataverse.client import _query\n", "providers._dynamic"),
        ("from ..dataverse.client import _query\n", "providers.keyvault.provider"),
        ("from providers.dataverse import client\nclient._query('a')\n", "adp_identity.drift.reading"),
        ("import providers.dataverse.client as c\nc.DataverseClient('x')._transport\n", "bench.fleet"),
        ("from providers.dataverse.client import DataverseClient\nDataverseClient._fetch_catalog\n", "adp_identity.x"),
    ],
)
def test_the_scan_finds_a_planted_private_import(planted: str, module: str) -> None:
    assert list(violations(planted, module)), planted


def test_the_scan_lets_public_names_and_dunders_through() -> None:
    clean = (
        "from providers.dataverse.client import CatalogCache, DataverseClient\n"
        "from providers.dataverse import __all__ as names\n"
        "DataverseClient('https://x', read_only=True).application_users()\n"
    )
    assert list(violations(clean, "adp_identity.drift.reading")) == []
