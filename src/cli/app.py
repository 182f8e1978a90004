"""The ``medpipe`` command line: a thin layer over the pipeline, the core and the handlers.

Every command has ``--help``. Bad input prints one line, ``medpipe: error: ...``, and
exits non-zero (2 for bad input or configuration, 1 when a run does not balance or a
check finds problems, 130 when interrupted). No traceback is shown for bad input.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from src.errors import KeyConfigurationError, PipelineError
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
    (
        "keep_image_references",
        "Keep Referenced and Source Image Sequences (X/Z/U*) with their UIDs replaced "
        "(default on; off: removed or emptied by IOD Type).",
    ),
    (
        "clean_pixels",
        "Clean Pixel Data: find burned-in text in images at risk, mask it, verify "
        "(an image with text still found after cleaning is quarantined: pixel-phi-remains).",
    ),
)


def _fail(message: str, code: int = 2) -> None:
    from src.monitoring.logs import terminal_safe

    click.echo(terminal_safe(f"medpipe: error: {message}"), err=True)
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
            # Bad input, options or key (a missing or short key is the user's to fix, as
            # a bad option is; a Lambda answers it with 500): 2. Anything else: 1.
            bad = exc.status_code in (400, 404) or isinstance(exc, KeyConfigurationError)
            _fail(exc.message, 2 if bad else 1)
        except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            _fail(_safe_message(exc))
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        return None

    return wrapper  # type: ignore[return-value]


def key_options(func: F) -> F:
    """Add ``--config``, ``--key-file`` and ``--uid-root``: what a pseudonym depends on."""
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


def _option_flags(func: F, names: Sequence[tuple[str, str]]) -> F:
    for name, text in reversed(names):
        flag = name.replace("_", "-")
        func = click.option(f"--{flag}/--no-{flag}", name, default=None, help=text)(func)
    return func


def header_profile_options(func: F) -> F:
    """:func:`key_options` and the PS3.15 option flags of the header (no pixel options),
    for commands that de-identify or audit headers only."""
    header = [(n, t) for n, t in PROFILE_FLAGS if n != "clean_pixels"]
    return key_options(_option_flags(func, header))


def profile_options(func: F) -> F:
    """Add the PS3.15 option flags, the pixel options and :func:`key_options`."""
    func = _option_flags(func, PROFILE_FLAGS)
    func = click.option(
        "--pixel-verify",
        type=click.Choice(["detector", "tesseract"]),
        default=None,
        help="With --clean-pixels: who looks again after cleaning: the detector (the "
        "default), or also Tesseract (apt install tesseract-ocr) reading every whole frame "
        "at every orientation; text it reads quarantines the image.",
    )(func)
    func = click.option(
        "--pixel-text",
        type=click.Choice(["all", "phi"]),
        default=None,
        help="With --clean-pixels: mask every text box found (all, the default) or only "
        "text that reads as this patient's identifiers or a PHI pattern (phi).",
    )(func)
    func = click.option(
        "--pixel-regions",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="With --clean-pixels: a region rules file (TOML; see docs/pixels.md) added "
        "to the shipped starter set.",
    )(func)
    return key_options(func)


def _build_config(
    config_path: str | None,
    key_file: str | None,
    uid_root: str | None,
    flags: dict[str, Any],
    **run: Any,
) -> Any:
    from src.settings.config import load_config, with_overrides

    config = load_config(config_path)
    profile = {name: flags.pop(name, None) for name, _ in PROFILE_FLAGS}
    profile["uid_root"] = uid_root
    for name in ("pixel_regions", "pixel_text", "pixel_verify"):
        profile[name] = flags.pop(name, None)
    if profile["pixel_regions"]:
        profile["pixel_regions"] = os.path.abspath(profile["pixel_regions"])
    return with_overrides(config, profile, key_file=key_file, **run)


def _key(config: Any) -> Any:
    from src.ingestion.annex_e.pseudonyms import resolve_key

    return resolve_key(None, config.key_file)


class OneLineErrors(click.Group):
    """click's group, but a usage error is one ``medpipe: error:`` line (exit 2), not
    click's four-line usage block."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "medpipe"
            click.echo(f"medpipe: error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"medpipe: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("medpipe: error: interrupted", err=True)
            sys.exit(130)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medical-imaging-pipeline", prog_name="medpipe")
@click.option(
    "--log-level",
    default=None,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Threshold of the log lines written to stderr (default WARNING; INFO with -v).",
)
@click.option(
    "-v", "--verbose", is_flag=True, help="One line per quarantined input (and other news)."
)
@click.option(
    "--log-format",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "json", "human"]),
    help="json: the documented JSON lines; human: short lines; auto: human on a "
    "terminal, json otherwise.",
)
def main(log_level: str | None, verbose: bool, log_format: str) -> None:
    """De-identify DICOM (PS3.15 Annex E) on one machine, as a DICOM node, or with AWS.

    Start with `medpipe samples ./samples` and `medpipe run ./samples ./output`.
    """
    from src.ingestion.parsing.quiet import quiet_pydicom

    level = (log_level or ("INFO" if verbose else "WARNING")).upper()
    if log_format == "auto":
        log_format = "human" if sys.stderr.isatty() else "json"
    configure_logging(level, fmt=log_format)
    quiet_pydicom()
