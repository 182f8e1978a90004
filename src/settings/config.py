"""Run configuration: profile options, key source, workers; from flags and a TOML file.

Precedence: command-line flags, then the TOML file (``--config``), then defaults.

Example ``medpipe.toml``::

    [profile]
    retain_safe_private = true
    clean_descriptors = true
    uid_root = "2.25"

    [key]
    file = "/secure/medpipe/deid.key"

    [run]
    workers = 4
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from src.errors import ConfigurationError
from src.ingestion.annex_e.profile import ConfidentialityProfile


@dataclass(frozen=True)
class RunConfig:
    """Everything ``medpipe run`` needs besides INPUT and OUTPUT.

    Attributes
    ----------
    profile : ConfidentialityProfile
    key_file : str or None
        Key file; ``MEDPIPE_DEID_KEY`` beats it, as documented in ``pseudonyms``.
    workers : int
        Worker processes; 0 means all cores.
    endpoint_url : str or None
        S3-compatible endpoint for ``s3://`` INPUT or OUTPUT.
    region_name : str
    metrics : str
        ``"none"`` or ``"cloudwatch"``; metrics always go into the manifest too.
    progress : bool or None
        Force the progress bar on or off; None decides by whether stderr is a terminal.
    max_inflated_bytes : int
        Deflate zip-bomb ceiling.
    max_zip_member_bytes : int
        Largest member read out of a zip archive.
    max_zip_bytes : int
        Largest sum of the member sizes one zip archive declares; a larger archive is
        refused whole (``unsafe-archive``) before any member is read.
    max_zip_ratio : int
        Largest expansion of one zip archive (its members over its own size, once they
        pass 64 MiB).
    max_quarantine_copy_bytes : int
        A refused input larger than this is quarantined by its reason only (the
        original stays where it came from).
    state_dir : str or None
        Where the resume journal lives for ``s3://`` OUTPUT.
    crosswalk : str or None
        Append original identifiers and their pseudonyms to this CSV (PHI; mode 0600).
    crosswalk_in_output : bool
        Allow the crosswalk inside OUTPUT.
    """

    profile: ConfidentialityProfile = field(default_factory=ConfidentialityProfile)
    key_file: str | None = None
    workers: int = 0
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    metrics: str = "none"
    progress: bool | None = None
    max_inflated_bytes: int = 512 * 1024 * 1024
    max_zip_member_bytes: int = 4 * 1024 * 1024 * 1024
    max_zip_bytes: int = 64 * 1024 * 1024 * 1024
    max_zip_ratio: int = 100
    max_quarantine_copy_bytes: int = 256 * 1024 * 1024
    state_dir: str | None = None
    crosswalk: str | None = None
    crosswalk_in_output: bool = False

    def worker_count(self) -> int:
        """The number of worker processes to start."""
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)


def load_config(path: str | os.PathLike[str] | None) -> RunConfig:
    """Read a TOML config file into a :class:`RunConfig` (defaults when ``path`` is None).

    Raises
    ------
    ConfigurationError
        If the file is missing, not TOML, or names unknown settings.
    """
    if path is None:
        return RunConfig()
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"config file {file} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"config file {file} is not valid TOML: {exc}") from exc
    return config_from_mapping(data, str(file))


def config_from_mapping(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from parsed TOML tables ``profile``, ``key`` and ``run``."""
    unknown = sorted(set(data) - {"profile", "key", "run"})
    if unknown:
        raise ConfigurationError(f"{source}: unknown sections {', '.join(unknown)}")
    try:
        profile = ConfidentialityProfile.from_mapping(data.get("profile", {}))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{source}: [profile] {exc}") from exc
    key = dict(data.get("key", {}))
    run = dict(data.get("run", {}))
    extra = sorted(set(key) - {"file"}) + sorted(
        set(run)
        - {
            "workers",
            "endpoint_url",
            "region_name",
            "metrics",
            "max_inflated_bytes",
            "max_zip_member_bytes",
            "max_zip_bytes",
            "max_zip_ratio",
            "max_quarantine_copy_bytes",
            "state_dir",
            "crosswalk",
            "crosswalk_in_output",
        }
    )
    if extra:
        raise ConfigurationError(f"{source}: unknown settings {', '.join(extra)}")
    try:
        return RunConfig(profile=profile, key_file=key.get("file"), **run)
    except TypeError as exc:
        raise ConfigurationError(f"{source}: {exc}") from exc


def with_overrides(
    config: RunConfig, profile_overrides: dict[str, Any], **run_overrides: Any
) -> RunConfig:
    """Apply command-line overrides (``None`` values mean "not given")."""
    prof = {k: v for k, v in profile_overrides.items() if v is not None}
    profile = config.profile
    if prof:
        merged = {**profile.as_dict(), **prof}
        merged["attribute_types"] = dict(profile.attribute_types)
        if prof.get("retain_longitudinal_full_dates"):
            merged["retain_longitudinal_modified_dates"] = False
        try:
            profile = ConfidentialityProfile.from_mapping(merged)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    run = {k: v for k, v in run_overrides.items() if v is not None}
    return replace(config, profile=profile, **run)
