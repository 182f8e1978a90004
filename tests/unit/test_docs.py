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


_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_in_the_docs_resolves():
    checked = 0
    for doc in _DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            assert path.exists(), f"{doc.name} links to {target}"
            assert ROOT in path.parents, f"{doc.name} links outside the clone: {target}"
            checked += 1
    assert checked > 0


def test_the_api_document_ships_in_docs():
    shipped = ROOT / "docs" / "API.md"
    assert "S3Handler" in shipped.read_text(encoding="utf-8")
    promised = ROOT.parent / "shared" / "API.md"
    if promised.exists():  # beside the workspace, not in a clone
        assert shipped.read_text(encoding="utf-8") == promised.read_text(encoding="utf-8")


# Flags in the README that belong to other tools' commands shown there.
_OTHER_TOOLS = {
    "--help",
    "--guided",
    "--lint",
    "--strict",
    "--input",
    "--name",
    "--state-machine-arn",
}


def _all_options() -> set[str]:
    import click

    found: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            found.update(param.opts + param.secondary_opts)
        if isinstance(command, click.Group):
            for sub in command.commands.values():
                walk(sub)

    walk(main)
    return found


def test_every_option_the_readme_names_exists():
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", README))
    assert named - _OTHER_TOOLS - _all_options() == set()


def test_every_command_has_help_and_bad_input_exits_2(tmp_path):
    from click.testing import CliRunner

    runner = CliRunner()
    for name, command in main.commands.items():
        subs = getattr(command, "commands", {})
        for args in [[name], *[[name, sub] for sub in subs]]:
            result = runner.invoke(main, [*args, "--help"])
            assert result.exit_code == 0 and "Usage:" in result.output, args
    bad = [
        ["run", str(tmp_path / "absent"), str(tmp_path / "out")],
        ["run", "--no-such-flag"],
        ["deidentify", str(tmp_path / "absent.dcm"), str(tmp_path / "o.dcm")],
    ]
    for args in bad:
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("medpipe: error:"), result.output
