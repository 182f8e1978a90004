"""The ``medpipe`` command line: a thin layer over the pipeline, the core and the handlers.

Every command has ``--help``. Bad input prints one line, ``medpipe: error: ...``, and
exits non-zero (2 for bad input or configuration, 1 when a run does not balance or a
check finds problems, 130 when interrupted). No traceback is shown for bad input.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from src.errors import PipelineError
from src.monitoring.logs import configure_logging

F = TypeVar("F", bound=Callable[..., Any])

PROFILE_FLAGS = (
    ("retain_safe_private", "Keep the private attributes of PS3.15 Table E.3.10-1."),
    ("retain_uids", "Keep original UIDs (Retain UIDs Option)."),
    ("retain_device_identity", "Keep device identity (station, serial numbers)."),
    ("retain_institution_identity", "Keep institution name and address."),
    ("retain_patient_characteristics", "Keep sex, age, size, weight and similar."),
    ("retain_longitudinal_full_dates", "Keep dates unchanged (turns Modified Dates off)."),
    ("retain_longitudinal_modified_dates", "Shift every date by a keyed per-patient offset."),
    ("clean_descriptors", "Keep descriptions with identifiers scrubbed out."),
    ("clean_structured_content", "Keep SR content with identifiers scrubbed out."),
    ("clean_graphics", "Keep curves and overlays (flagged for review)."),
)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"medpipe: error: {message}", err=True)
    sys.exit(code)


def _safe_message(exc: BaseException) -> str:
    """The exception's text, unless it was raised inside a library that quotes data values
    (pydicom does, for odd values); then only its type."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    origin = tb.tb_frame.f_code.co_filename if tb is not None else ""
    if "pydicom" in origin or not str(exc):
        return f"{type(exc).__name__} while reading the data"
    return str(exc)


def friendly_errors(func: F) -> F:
    """Turn expected errors into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            _fail(exc.message, 2 if exc.status_code in (400, 404) else 1)
        except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            _fail(_safe_message(exc))
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        return None

    return wrapper  # type: ignore[return-value]


def profile_options(func: F) -> F:
    """Add the ten PS3.15 option flags, ``--uid-root``, ``--config`` and ``--key-file``."""
    for name, text in reversed(PROFILE_FLAGS):
        flag = name.replace("_", "-")
        func = click.option(f"--{flag}/--no-{flag}", name, default=None, help=text)(func)
    func = click.option(
        "--uid-root", default=None, help="Root of replacement UIDs (default 2.25)."
    )(func)
    func = click.option(
        "--key-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="De-identification key file (MEDPIPE_DEID_KEY overrides; "
        "default ~/.config/medpipe/deid.key, created once).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML file with [profile], [key] and [run] tables.",
    )(func)
    return func


def _build_config(
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    flags: dict[str, Any],
    **run: Any,
) -> Any:
    from src.pipeline.config import load_config, with_overrides

    config = load_config(config_path)
    profile = {name: flags.pop(name, None) for name, _ in PROFILE_FLAGS}
    profile["uid_root"] = uid_root
    return with_overrides(config, profile, key_file=key_file, **run)


def _key(config: Any) -> Any:
    from src.ingestion.pseudonyms import resolve_key

    return resolve_key(None, config.key_file)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medical-imaging-pipeline", prog_name="medpipe")
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Threshold of the JSON log lines written to stderr.",
)
def main(log_level: str) -> None:
    """De-identify DICOM (PS3.15 Annex E) on one machine or with AWS.

    Start with `medpipe samples ./samples` and `medpipe run ./samples ./output`.
    """
    from src.ingestion.dicom_parser import quiet_pydicom

    configure_logging(log_level.upper())
    quiet_pydicom()


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
    **flags: Any,
) -> None:
    """De-identify every DICOM file under INPUT into OUTPUT.

    INPUT and OUTPUT are folders or s3://bucket/prefix. Files are found by content,
    recursively (zip archives are opened). Re-running resumes and skips finished work.
    """
    from src.pipeline.runner import check_locations
    from src.pipeline.runner import run as run_pipeline

    check_locations(input_uri, output_uri)
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
    )
    key = _key(config)
    click.echo(
        f"medpipe: de-identifying {input_uri} -> {output_uri} "
        f"({config.worker_count()} workers, key from {key.source})",
        err=True,
    )
    summary = run_pipeline(
        input_uri, output_uri, config, key, echo=lambda line: click.echo(line, err=True)
    )
    for line in summary.lines():
        click.echo(line)
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
    from src.ingestion.instance import InstancePipeline, InstanceRefusedError

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
            _quarantine_one(output_path, input_path, exc, key.key)
        _fail(f"{input_path}: refused: {exc.message}", 1)
        return
    written = output_path
    if into_folder:
        written = _commit_one(output_path, input_path, result, key.key, target)
    if report_path:
        write_bytes_atomic(
            report_path, json.dumps(result.report.report(), indent=1).encode("utf-8")
        )
    click.echo(
        f"wrote {written}: {result.removed} elements removed or replaced"
        + ("; pixels may carry burned-in text" if result.burned_in_annotation_risk else "")
    )


def _input_id(key: bytes, input_path: str) -> str:
    from src.pipeline.sources import input_id

    return input_id(key, os.path.abspath(input_path))


def _quarantine_one(folder: str, input_path: str, exc: Any, key: bytes) -> None:
    from src.storage.store import QuarantineRecord, open_store

    iid = _input_id(key, input_path)
    record = QuarantineRecord(iid, exc.reason.value, exc.detail, exc.stage, input_path)
    open_store(folder).quarantine(record, input_path)


def _commit_one(folder: str, input_path: str, result: Any, key: bytes, staged: str) -> str:
    """Put one de-identified file into OUT's layout; a taken SOP Instance UID is refused."""
    from src.storage.store import DuplicateInstanceError, commit_instance, open_store

    store = open_store(folder)
    iid = _input_id(key, input_path)
    try:
        commit_instance(store, result.output_key, staged, iid, claimed=False)
    except DuplicateInstanceError:
        from src.ingestion.instance import InstanceRefusedError, Reason

        refused = InstanceRefusedError(
            Reason.DUPLICATE_SOP_INSTANCE, "OUT already holds this SOP Instance UID", "write"
        )
        _quarantine_one(folder, input_path, refused, key)
        _fail(f"{input_path}: refused: {refused.message}", 1)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
    return os.path.join(folder, result.output_key)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--show-phi",
    is_flag=True,
    help="Show the original metadata, PHI included. Without it, the metadata "
    "is that of the de-identified dataset.",
)
@profile_options
@friendly_errors
def inspect(
    file: str,
    show_phi: bool,
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    **flags: Any,
) -> None:
    """Print FILE's metadata as JSON (de-identified unless --show-phi)."""
    from src.ingestion.dicom_parser import DICOMParser
    from src.ingestion.metadata_extractor import MetadataExtractor

    parsed = DICOMParser().read_file(file)
    dataset, parse_flags = parsed.dataset, parsed.flags
    if not show_phi:
        from src.ingestion.deidentifier import Deidentifier

        config = _build_config(config_path, key_file, uid_root, flags)
        Deidentifier(profile=config.profile, key=_key(config).key).deidentify(dataset)
    metadata = MetadataExtractor().extract_metadata(dataset)
    metadata["flags"] = parse_flags
    metadata["phi_shown"] = show_phi
    click.echo(json.dumps(metadata, indent=1, ensure_ascii=False, default=str))


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@friendly_errors
def validate(file: str) -> None:
    """Check that FILE parses and its metadata passes the schemas (exit 1 if not)."""
    from pydantic import ValidationError

    from src.ingestion.dicom_parser import DICOMParser
    from src.ingestion.instance import validation_reason
    from src.ingestion.metadata_extractor import MetadataExtractor
    from src.validation.schemas import DICOMMetadataModel

    dataset = DICOMParser().parse_file(file)
    try:
        DICOMMetadataModel(**MetadataExtractor().extract_metadata(dataset))
    except ValidationError as exc:
        _fail(f"{file}: {validation_reason(exc)}", 1)
    click.echo(f"{file}: valid")


@main.command()
@click.argument("s3_uri", metavar="S3_URI")
@click.option(
    "--expires",
    "expires",
    type=int,
    default=3600,
    show_default=True,
    help="Lifetime in seconds (1 to 604800).",
)
@click.option(
    "--check-exists/--no-check-exists",
    default=True,
    show_default=True,
    help="Refuse a URL for an object that does not exist.",
)
@click.option("--endpoint-url", default=None, help="S3-compatible endpoint.")
@click.option("--region", "region_name", default="us-east-1", show_default=True)
@friendly_errors
def url(
    s3_uri: str, expires: int, check_exists: bool, endpoint_url: str | None, region_name: str
) -> None:
    """Print a presigned download URL for s3://bucket/key."""
    from src.delivery.presigned_url_handler import PresignedUrlHandler
    from src.pipeline.sources import parse_location

    loc = parse_location(s3_uri)
    if not loc.is_s3 or not loc.prefix:
        _fail("expected s3://bucket/key")
    handler = PresignedUrlHandler(loc.bucket, region_name, endpoint_url=endpoint_url)
    info = handler.generate_secure_download_url(loc.prefix, expires, validate_exists=check_exists)
    if info is None:
        _fail(f"{s3_uri} does not exist", 2)
        return
    click.echo(info["url"])


@main.group()
def config() -> None:
    """Show the effective configuration."""


@config.command("show")
@profile_options
@friendly_errors
def config_show(
    config_path: str | None, key_file: str | None, uid_root: str | None, **flags: Any
) -> None:
    """Print the effective profile and key source as JSON (never the key)."""
    from src.ingestion.profile import table_edition
    from src.ingestion.pseudonyms import ENV_KEY, default_key_file

    cfg = _build_config(config_path, key_file, uid_root, flags)
    import os

    source = (
        "environment variable " + ENV_KEY
        if os.environ.get(ENV_KEY)
        else f"key file {cfg.key_file or os.environ.get('MEDPIPE_KEY_FILE') or default_key_file()}"
    )
    click.echo(
        json.dumps(
            {
                "standard": f"DICOM PS3.15 Annex E, tables of edition {table_edition()}",
                "profile": cfg.profile.as_dict(),
                "enabled_options": [o.value for o in cfg.profile.enabled_options()],
                "method": cfg.profile.method_description(),
                "key_source": source,
                "workers": cfg.worker_count(),
            },
            indent=1,
        )
    )


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--against",
    "against",
    required=True,
    type=click.Path(exists=True),
    help="The original inputs whose identifying values are searched for.",
)
@click.option(
    "--log",
    "logs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="A log file to search too (repeatable).",
)
@profile_options
@friendly_errors
def audit(
    output: str,
    against: str,
    logs: tuple[str, ...],
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    **flags: Any,
) -> None:
    """Search OUTPUT (and logs) for PHI values of the inputs; exit 1 on any hit.

    Hits are reported by the tag path of the value in the input and the file it was
    found in, never by the value itself.
    """
    from src.pipeline.audit import audit as run_audit

    cfg = _build_config(config_path, key_file, uid_root, flags)
    report = run_audit(output, against, logs, profile=cfg.profile, key=_key(cfg).key)
    click.echo(
        f"audited {report.files_scanned} files ({report.bytes_scanned / 1e6:.1f} MB) "
        f"for {report.values} identifying values from {report.inputs} inputs: "
        f"{len(report.hits)} hit(s)"
    )
    for hit in report.hits:
        click.echo(f"HIT {hit.source} in {hit.found_in}")
    if not report.clean:
        sys.exit(1)


@main.command()
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--seed", default=20261128, show_default=True, help="Same seed, same bytes.")
@click.option("--patients", default=3, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--series", "series_per_study", default=2, show_default=True, type=click.IntRange(min=1)
)
@click.option(
    "--instances", "instances_per_series", default=4, show_default=True, type=click.IntRange(min=1)
)
@click.option(
    "--size",
    default=128,
    show_default=True,
    type=click.IntRange(min=8),
    help="Rows and columns of each image.",
)
@friendly_errors
def samples(
    output: str,
    seed: int,
    patients: int,
    series_per_study: int,
    instances_per_series: int,
    size: int,
) -> None:
    """Write sample studies with realistic fake PHI into OUTPUT."""
    from src.synthetic import write_corpus

    corpus = write_corpus(
        output,
        seed=seed,
        patients=patients,
        series_per_study=series_per_study,
        instances_per_series=instances_per_series,
        rows=size,
        columns=size,
    )
    click.echo(f"wrote {len(corpus.files)} sample files for {patients} fake patients to {output}")


if __name__ == "__main__":  # pragma: no cover
    main()
