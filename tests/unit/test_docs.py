"""The README stays true: every command is documented, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from src.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_cli_command_is_in_the_readme():
    for name in main.commands:
        assert f"medpipe {name}" in README, name


def test_the_readme_opens_with_the_two_commands():
    first_block = README.split("```")[1]
    assert re.search(r"^make run\b", first_block.strip().splitlines()[1], re.M)
    assert "make test" in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "make run" not in ci


def test_makefile_has_the_documented_targets():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test", "lint", "typecheck", "unit", "bench", "fuzz"):
        assert re.search(rf"^{target}:", makefile, re.M), target


def test_make_targets_point_at_files_that_exist():
    makefile = (ROOT / "Makefile").read_text()
    paths = re.findall(r"(tests/\S+\.py|scripts/\S+\.sh)", makefile)
    paths += [m.replace(".", "/") + ".py" for m in re.findall(r"-m (benchmarks\.\w+)", makefile)]
    assert paths
    for path in paths:
        assert (ROOT / path).exists(), path
