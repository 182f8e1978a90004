"""The arrows point inward: the core imports no shell, no store and no boto3, and no module
grows past about 400 lines (the house style)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
CORE = ("ingestion", "validation")
SHELL_PACKAGES = ("src.storage", "src.orchestration", "src.pipeline", "src.cli", "src.delivery")
FORBIDDEN_IN_CORE = ("boto3", "botocore", "aws_lambda_powertools", "click", *SHELL_PACKAGES)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_imports_no_shell_no_store_and_no_aws():
    checked = 0
    for package in CORE:
        for path in (SRC / package).rglob("*.py"):
            checked += 1
            bad = {m for m in _imports(path) if m.startswith(FORBIDDEN_IN_CORE)}
            assert not bad, (path.name, bad)
    assert checked >= 10


def test_the_aws_shell_does_not_reach_into_the_local_shell():
    for package in ("orchestration", "storage", "delivery", "monitoring"):
        for path in (SRC / package).rglob("*.py"):
            bad = {m for m in _imports(path) if m.startswith(("src.pipeline", "src.cli"))}
            assert not bad, (path.name, bad)


def test_no_module_is_far_over_400_lines():
    sizes = {
        p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")
    }
    assert max(sizes.values()) <= 430, {k: v for k, v in sizes.items() if v > 430}


def test_importing_the_core_changes_no_pydicom_setting():
    import subprocess
    import sys

    probe = (
        "import pydicom.config as c\n"
        "before = {k: getattr(c, k) for k in dir(c) if k.islower() and not k.startswith('_')"
        " and isinstance(getattr(c, k), (bool, int, str))}\n"
        "import src.ingestion.instance, src.ingestion.deidentifier\n"
        "after = {k: getattr(c, k) for k in before}\n"
        "print(sorted(k for k in before if before[k] != after[k]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
