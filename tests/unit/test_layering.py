"""The arrows point inward: every package has a layer, imports only layers below it, and
so no two packages import each other; the core imports no shell, no store and no boto3;
no module grows past about 400 lines (the house style). docs/architecture.md draws it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
CORE = ("ingestion", "validation", "instance", "settings", "pixels")
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


#: Every package's layer (lower numbers are further in). A package may import only
#: packages of a lower layer. In ``ingestion`` each sub-package and each API.md module is
#: its own node: the parser stands below the engines, the Deidentifier above them.
LAYERS = {
    "errors": 0,
    "atomic": 0,
    "processes": 0,
    "synthetic": 0,
    "aws": 1,
    "ingestion.encoding": 1,
    "storage": 2,
    "monitoring": 2,
    "ingestion.parsing": 2,
    "ingestion.dicom_parser": 3,
    "ingestion.annex_e": 3,
    "ingestion.engines": 4,
    "ingestion.deidentifier": 5,
    "ingestion.metadata_extractor": 5,
    "validation": 5,
    "settings": 5,
    "pixels": 6,
    "instance": 7,
    "records": 8,
    "pipeline": 9,
    "network": 9,
    "orchestration": 9,
    "delivery": 9,
    "cli": 10,
}


def _node(parts: tuple[str, ...]) -> str:
    if parts[0] == "ingestion" and len(parts) > 1:
        return f"ingestion.{parts[1]}"
    return parts[0]


def _package_edges() -> dict[tuple[str, str], str]:
    """(importer, imported) package pairs, each with one module that makes it."""
    edges: dict[tuple[str, str], str] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) == 1:
            continue
        here = _node(parts)
        for module in _imports(path):
            if not module.startswith("src."):
                continue
            there = _node(tuple(module.split(".")[1:]))
            if there != here:
                edges.setdefault((here, there), path.relative_to(SRC).as_posix())
    return edges


def test_every_package_has_a_layer():
    nodes = {_node(p.relative_to(SRC).with_suffix("").parts) for p in SRC.rglob("*.py")}
    nodes.discard("__init__")
    assert nodes - {"ingestion.__init__"} <= set(LAYERS), sorted(nodes - set(LAYERS))


def test_every_import_points_to_a_lower_layer_so_no_package_imports_its_importer():
    upward = {
        f"{a} -> {b} ({where})"
        for (a, b), where in _package_edges().items()
        if LAYERS.get(b, 99) >= LAYERS.get(a, -1)
    }
    assert not upward, sorted(upward)
    assert ("instance", "pixels") in _package_edges()  # the test sees the arrows it checks


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for a, b in _package_edges():
        graph.setdefault(a, set()).add(b)
    seen: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in graph.get(node, ()):
            assert seen.get(nxt) != 1, " -> ".join([*trail, node, nxt])
            if nxt not in seen:
                visit(nxt, [*trail, node])
        seen[node] = 2

    for node in list(graph):
        if node not in seen:
            visit(node, [])


def test_no_module_is_left_flat_in_ingestion_beside_the_api_modules():
    flat = {p.stem for p in (SRC / "ingestion").glob("*.py")}
    assert flat <= {"__init__", "deidentifier", "dicom_parser", "metadata_extractor"}, flat


def test_the_core_imports_no_shell_no_store_and_no_aws():
    checked = 0
    for package in CORE:
        for path in (SRC / package).rglob("*.py"):
            checked += 1
            bad = {m for m in _imports(path) if m.startswith(FORBIDDEN_IN_CORE)}
            assert not bad, (path.name, bad)
    assert checked >= 10


def test_the_aws_shell_does_not_reach_into_the_local_shell():
    for package in ("orchestration", "storage", "delivery", "monitoring", "network", "records"):
        for path in (SRC / package).rglob("*.py"):
            bad = {m for m in _imports(path) if m.startswith(("src.pipeline", "src.cli"))}
            assert not bad, (path.name, bad)


def test_no_module_is_far_over_400_lines():
    sizes = {
        p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")
    }
    assert max(sizes.values()) <= 400, {k: v for k, v in sizes.items() if v > 400}


def test_importing_the_core_changes_no_pydicom_setting():
    import subprocess
    import sys

    probe = (
        "import pydicom.config as c\n"
        "before = {k: getattr(c, k) for k in dir(c) if k.islower() and not k.startswith('_')"
        " and isinstance(getattr(c, k), (bool, int, str))}\n"
        "import src.instance.pipeline, src.ingestion.deidentifier\n"
        "after = {k: getattr(c, k) for k in before}\n"
        "print(sorted(k for k in before if before[k] != after[k]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
