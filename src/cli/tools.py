"""The other commands: inspect, validate, url, config, audit, key, lookup, samples, review."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from src.cli.app import (
    _build_config,
    _fail,
    _key,
    friendly_errors,
    header_profile_options,
    key_options,
    main,
    profile_options,
)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--show-phi",
    is_flag=True,
    help="Show the original metadata, PHI included. Without it, the metadata "
    "is that of the de-identified dataset.",
)
@header_profile_options
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

    from src.errors import InvalidDICOMError
    from src.ingestion.dicom_parser import DICOMParser
    from src.ingestion.metadata_extractor import MetadataExtractor
    from src.instance.pipeline import validation_reason
    from src.validation.schemas import DICOMMetadataModel

    try:
        dataset = DICOMParser().parse_file(file)
    except InvalidDICOMError as exc:  # the reason names tags and offsets, never values
        _fail(f"{file}: invalid: {exc.reason}", 1)
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
@click.option(
    "--region",
    "region_name",
    default="us-east-1",
    show_default=True,
    help="The bucket's AWS region.",
)
@friendly_errors
def url(
    s3_uri: str, expires: int, check_exists: bool, endpoint_url: str | None, region_name: str
) -> None:
    """Print a presigned download URL for s3://bucket/key."""
    from src.delivery.presigned_url_handler import PresignedUrlHandler
    from src.settings.locations import parse_location

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
    from src.ingestion.annex_e.profile import table_edition
    from src.ingestion.annex_e.pseudonyms import ENV_KEY, default_key_file

    cfg = _build_config(config_path, key_file, uid_root, flags)

    if os.environ.get(ENV_KEY):
        source = "environment variable " + ENV_KEY
    else:
        path = cfg.key_file or os.environ.get("MEDPIPE_KEY_FILE") or str(default_key_file())
        source = f"key file {path}"
        if not os.path.exists(path):
            # Said, not made: showing the configuration changes nothing.
            source += " (does not exist yet: the first run creates it, or `medpipe key create`)"
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
@header_profile_options
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

    The profile is the one OUTPUT's manifest.json records (flags given here override
    it). Hits are reported by the tag path of the value in the input and the file it
    was found in, never by the value itself.
    """
    from src.pipeline.audit import audit as run_audit
    from src.pipeline.audit import profile_of_output

    given = {name: flags.get(name) for name in flags}
    given["uid_root"] = uid_root
    cfg = _build_config(config_path, key_file, uid_root, flags)
    profile = profile_of_output(output, given) or cfg.profile
    report = run_audit(output, against, logs, profile=profile, key=_key(cfg).key)
    click.echo(
        f"audited {report.files_scanned} files ({report.bytes_scanned / 1e6:.1f} MB) "
        f"for {report.values} identifying values from {report.inputs} inputs: "
        f"{len(report.hits)} hit(s)"
    )
    from src.monitoring.logs import terminal_safe

    for hit in report.hits:
        at = f" at {hit.found_at}" if hit.found_at else ""
        click.echo(terminal_safe(f"HIT {hit.source} in {hit.found_in}{at}"))
    if not report.clean:
        sys.exit(1)


@main.group()
def key() -> None:
    """Manage the de-identification key."""


@key.command("create")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Create the key file that this config's [key] file names.",
)
@friendly_errors
def key_create(path: str | None, config_path: str | None) -> None:
    """Create a new random key at PATH (default: the configured key file, else
    ~/.config/medpipe/deid.key), mode 0600. An existing key is never replaced."""
    from src.ingestion.annex_e.pseudonyms import ENV_KEY_FILE, create_key_file, default_key_file
    from src.settings.config import load_config

    target = path or load_config(config_path).key_file or os.environ.get(ENV_KEY_FILE)
    material = create_key_file(target or default_key_file())
    click.echo(
        f"created {material.source.removeprefix('key file ')} (fingerprint "
        f"{material.fingerprint()}): back it up and keep it secret; the same key gives the "
        "same pseudonyms"
    )


@main.command()
@click.argument("value", metavar="VALUE")
@click.option(
    "--issuer", default=None, help="Issuer of Patient ID (0010,0021), if the files have one."
)
@click.option(
    "--uid", "is_uid", is_flag=True, help="VALUE is an original UID: print its replacement."
)
@key_options
@friendly_errors
def lookup(
    value: str,
    issuer: str | None,
    is_uid: bool,
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    **flags: Any,
) -> None:
    """Print the pseudonym of an original Patient ID (an MRN), from the key alone.

    With --uid, VALUE is an original Study, Series or SOP Instance UID and the output is
    the UID that replaced it. Use the same key, --uid-root and --config as the run.
    """
    from pydicom.dataset import Dataset

    from src.ingestion.annex_e.pseudonyms import Pseudonymizer
    from src.ingestion.annex_e.safety_net import patient_key

    config = _build_config(config_path, key_file, uid_root, flags)
    profile = config.profile
    pseudo = Pseudonymizer(_key(config).key, profile.uid_root, profile.max_date_shift_days)
    if is_uid:
        click.echo(value if profile.retain_uids else pseudo.uid(value))
        return
    ds = Dataset()
    ds.PatientID = value
    if issuer:
        ds.IssuerOfPatientID = issuer
    click.echo(pseudo.patient_id(patient_key(ds)))


@main.command()
@click.argument("output", type=click.Path(file_okay=False))
@click.option("--seed", default=20261128, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--patients",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Fake patients, one study each.",
)
@click.option(
    "--series",
    "series_per_study",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Series per study.",
)
@click.option(
    "--instances",
    "instances_per_series",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Instances (slices) per series.",
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


@main.command()
@click.argument("output", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--input",
    "input_root",
    type=click.Path(exists=True),
    default=None,
    help="The run's INPUT: show each cleaned image's original beside it (needs the run's key).",
)
@click.option(
    "--to",
    "target",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write the page (default OUTPUT/quarantine/review.html: it holds PHI).",
)
@click.option(
    "--key-file", type=click.Path(dir_okay=False), default=None, help="The run's key file."
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file with [profile], [key] and [run] tables (the run's).",
)
@friendly_errors
def review(
    output: str,
    input_root: str | None,
    target: str | None,
    key_file: str | None,
    config_path: str | None,
) -> None:
    """Write review.html: before/after thumbnails of every image Clean Pixel Data touched."""
    from src.pipeline.review import write_review

    config = _build_config(config_path, key_file, None, {})
    page, count = write_review(output, _key(config).key, input_root, target)
    click.echo(f"wrote {page}: {count} image(s) to review (it shows original pixels: PHI)")
