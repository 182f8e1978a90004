"""``medpipe explain``: the action for one attribute under a profile, and why."""

from __future__ import annotations

from typing import Any

import click

from src.cli.app import _build_config, friendly_errors, main, profile_options


@main.command()
@click.argument("attribute")
@click.option(
    "--sop-class",
    "sop_class_uid",
    default=None,
    help="SOP Class UID whose IOD Types resolve combined codes (X/Z/D ...).",
)
@click.option("--vr", default=None, help="The VR it arrives with (default: the dictionary's).")
@profile_options
@friendly_errors
def explain(
    attribute: str,
    sop_class_uid: str | None,
    vr: str | None,
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    **flags: Any,
) -> None:
    """Print what happens to ATTRIBUTE (a keyword or a tag such as 0010,0010) and why.

    The action is shown at the top level, inside sequences and inside SR content, from
    the compiled rules the de-identifier uses: the Table E.1-1 row and the profile's
    options, the IOD Type for combined codes, the masks and the safety net.
    """
    from src.ingestion.annex_e.explain import explain as explain_attribute

    cfg = _build_config(config_path, key_file, uid_root, flags)
    click.echo(
        explain_attribute(attribute, cfg.profile, sop_class_uid=sop_class_uid, vr=vr).render()
    )
