"""``medpipe run`` and ``medpipe deidentify``: the pipeline over folders, S3 and single files."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from src.cli.app import _build_config, _fail, _key, friendly_errors, main, profile_options


@main.command()
@click.argument("input_uri", metavar="INPUT")
@click.argument("output_uri", metavar="OUTPUT")
@profile_options
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes (default: all cores).",
)
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint for s3:// paths.")
@click.option("--region", "region_name", default=None, help="AWS region (default us-east-1).")
@click.option(
    "--metrics",
    type=click.Choice(["none", "cloudwatch"]),
    default=None,
    help="Also publish the run's metrics to CloudWatch.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar (default: when stderr is a terminal).",
)
@click.option(
    "--state-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Resume journal location for s3:// OUTPUT.",
)
@click.option(
    "--crosswalk",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append source path, original IDs and UIDs and their pseudonyms to this CSV. "
    "It is PHI: written with mode 0600, and refused inside OUTPUT.",
)
@click.option(
    "--crosswalk-in-output",
    is_flag=True,
    default=None,
    help="Allow the crosswalk inside OUTPUT (then never share OUTPUT as a whole).",
)
@click.option(
    "--new-version",
    is_flag=True,
    default=False,
    help="If OUTPUT was written with another key or profile, write this run to the "
    "next version beside it (OUTPUT-v2, OUTPUT-v3, ...) instead of stopping.",
)
@friendly_errors
def run(
    input_uri: str,
    output_uri: str,
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    workers: int | None,
    endpoint_url: str | None,
    region_name: str | None,
    metrics: str | None,
    progress: bool | None,
    state_dir: str | None,
    crosswalk: str | None,
    crosswalk_in_output: bool | None,
    new_version: bool,
    **flags: Any,
) -> None:
    """De-identify every DICOM file under INPUT into OUTPUT.

    INPUT and OUTPUT are folders or s3://bucket/prefix. Files are found by content,
    recursively (local zip archives are opened). Re-running resumes and skips finished work.
    """
    from src.monitoring.logs import terminal_safe
    from src.pipeline.discovery import check_locations

    check_locations(input_uri, output_uri)  # bad locations fail before the engine loads
    from src.pipeline.runner import run as run_pipeline

    s3 = [
        name
        for name, uri in (("INPUT", input_uri), ("OUTPUT", output_uri))
        if uri.startswith("s3://")
    ]
    if s3:
        from src.aws import require_credentials

        require_credentials(" and ".join(s3))
    config = _build_config(
        config_path,
        key_file,
        uid_root,
        flags,
        workers=workers,
        endpoint_url=endpoint_url,
        region_name=region_name,
        metrics=metrics,
        progress=progress,
        state_dir=state_dir,
        crosswalk=crosswalk,
        crosswalk_in_output=crosswalk_in_output,
    )
    if crosswalk:
        from src.records.crosswalk import check_location

        local = None if output_uri.startswith("s3://") else output_uri
        check_location(crosswalk, local, bool(crosswalk_in_output))
    key = _key(config)
    if new_version:
        from src.records.provenance import choose_version
        from src.storage.store import open_store

        output_uri, version = choose_version(
            output_uri,
            lambda uri: open_store(uri, endpoint_url=endpoint_url, region_name=region_name),
            key.fingerprint(),
            config.profile.as_dict(),
        )
        check_locations(input_uri, output_uri)
        click.echo(f"medpipe: data-set version {version} is {output_uri}", err=True)
    click.echo(
        f"medpipe: de-identifying {input_uri} -> {output_uri} "
        f"({config.worker_count()} workers, key from {key.source})",
        err=True,
    )
    summary = run_pipeline(
        input_uri,
        output_uri,
        config,
        key,
        echo=lambda line: click.echo(terminal_safe(line), err=True),
    )
    for line in summary.lines():
        click.echo(line)
    if summary.quarantined:
        where = output_uri.rstrip("/") + "/quarantine/"
        click.echo(
            f"the refused inputs are in {where} (original data with PHI: do not share it); "
            "manifest.json gives each one's reason"
        )
    if not summary.balanced:
        _fail("the run does not balance: some inputs are unaccounted for", 1)


@main.command()
@click.argument("input_path", metavar="IN", type=click.Path(exists=True))
@click.argument("output_path", metavar="OUT")
@profile_options
@click.option("--patient-id", default=None, help="Pseudonym to write as Patient ID.")
@click.option(
    "--report",
    "report_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the action report (tags and actions, no values) as JSON.",
)
@friendly_errors
def deidentify(
    input_path: str,
    output_path: str,
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    patient_id: str | None,
    report_path: str | None,
    **flags: Any,
) -> None:
    """De-identify one file IN to OUT, or a folder IN into folder OUT."""
    from src.atomic import write_bytes_atomic
    from src.ingestion.deidentifier import Deidentifier

    config = _build_config(config_path, key_file, uid_root, flags)
    key = _key(config)
    if Path(input_path).is_dir():
        from src.pipeline.runner import run as run_pipeline

        summary = run_pipeline(input_path, output_path, config, key)
        for line in summary.lines():
            click.echo(line)
        if not summary.balanced:
            _fail("the run does not balance", 1)
        return
    from src.instance.pipeline import InstancePipeline, InstanceRefusedError

    pipeline = InstancePipeline(Deidentifier(profile=config.profile, key=key.key))
    into_folder = Path(output_path).is_dir() or output_path.endswith(("/", os.sep))
    target = output_path
    if into_folder:
        os.makedirs(output_path, exist_ok=True)
        fd, target = tempfile.mkstemp(prefix=".medpipe-tmp-", dir=output_path)
        os.close(fd)
    try:
        result = pipeline.process(input_path, target, patient_id=patient_id)
    except InstanceRefusedError as exc:
        if into_folder:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)
            _settle_one(output_path, input_path, key.key, refused=exc)
        _fail(f"{input_path}: refused: {exc.message}", 1)
        return
    written = output_path
    if into_folder:
        written = _settle_one(output_path, input_path, key.key, result=result, staged=target)
    if report_path:
        write_bytes_atomic(
            report_path, json.dumps(result.report.report(), indent=1).encode("utf-8")
        )
    click.echo(
        f"wrote {written}: {result.removed} elements removed or replaced"
        + (
            f"; Clean Pixel Data: {len(result.pixels.boxes)} box(es) masked and verified"
            if result.pixels is not None and result.pixels.verified
            else ""
        )
        + ("; pixels may carry burned-in text" if result.burned_in_annotation_risk else "")
    )


def _input_id(key: bytes, input_path: str) -> str:
    from src.settings.locations import input_id

    return input_id(key, os.path.abspath(input_path))


def _settle_one(
    folder: str,
    input_path: str,
    key: bytes,
    result: Any = None,
    staged: str = "",
    refused: Any = None,
) -> str:
    """Settle one file into OUT's layout (the same step as ``run``): commit it, or
    quarantine it with its reason; a taken SOP Instance UID is a refusal. Returns the
    written path; exits 1 on a refusal."""
    from src.instance.outcome import QUARANTINED, Outcome
    from src.records.settle import settle
    from src.storage.store import open_store

    outcome = Outcome(_input_id(key, input_path), "", QUARANTINED)
    if refused is not None:
        outcome.refuse(refused.reason, refused.detail, refused.stage)
    else:
        outcome.processed_as(result)
    try:
        settle(outcome, open_store(folder), staged=staged, original=input_path, source=input_path)
    finally:
        if staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
    if outcome.status == QUARANTINED:
        _fail(f"{input_path}: refused: {outcome.reason}: {outcome.detail}", 1)
    return os.path.join(folder, outcome.output)
