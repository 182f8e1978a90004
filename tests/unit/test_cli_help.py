"""Every command's --help: each option explained, and only options that apply listed."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from src.cli import main


def _commands(
    cmd: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS = dict(_commands(main))


def _options(cmd: click.Command) -> list[click.Option]:
    return [p for p in cmd.params if isinstance(p, click.Option) and p.name != "help"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_text(name: str) -> None:
    missing = [o.opts[0] for o in _options(COMMANDS[name]) if not o.help]
    assert not missing, f"medpipe {name}: {missing}"


@pytest.mark.parametrize("name", ["lookup", "audit", "inspect"])
def test_header_and_key_commands_list_no_pixel_options(name: str) -> None:
    flags = {flag for o in _options(COMMANDS[name]) for flag in o.opts}
    assert not {f for f in flags if "pixel" in f}, flags
    assert {"--config", "--key-file", "--uid-root"} <= flags


def test_lookup_lists_only_what_a_pseudonym_depends_on() -> None:
    flags = {flag for o in _options(COMMANDS["lookup"]) for flag in o.opts}
    assert flags == {"--issuer", "--uid", "--config", "--key-file", "--uid-root"}
