"""What an OUTPUT was written with: the key's fingerprint and the profile.

Pseudonyms, UIDs and date offsets follow the key and the profile. A second run into the
same OUTPUT with another key or profile would mix two pseudonym spaces (six folders for
three patients), so it stops with one line instead. The record holds no secret: the
fingerprint is a one-way label of the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from src.errors import ConfigurationError, ObjectNotFoundError
from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.storage.store import Store

PROVENANCE_KEY = ".medpipe/provenance.json"


def _recorded(store: Store) -> dict[str, Any] | None:
    try:
        with store.open(PROVENANCE_KEY) as fh:
            recorded: dict[str, Any] = json.loads(fh.read())
    except (FileNotFoundError, ObjectNotFoundError):
        return None
    return recorded


def provenance_conflict(store: Store, key_fingerprint: str, profile: dict[str, Any]) -> str | None:
    """Why OUTPUT cannot take this key and profile, or None when it can (or is new)."""
    recorded = _recorded(store)
    if recorded is None:
        return None
    if recorded.get("key_fingerprint") != key_fingerprint:
        return (
            f"OUTPUT was written with another key (fingerprint "
            f"{recorded.get('key_fingerprint')}, this run's is {key_fingerprint})"
        )
    before = recorded.get("profile", {})
    # A setting added since OUTPUT was written counts as its default there.
    defaults = ConfidentialityProfile().as_dict()
    changed = sorted(
        k
        for k in set(before) | set(profile)
        if before.get(k, defaults.get(k)) != profile.get(k, defaults.get(k))
    )
    if changed:
        return f"OUTPUT was written with another profile ({', '.join(changed)} differ)"
    return None


def check_provenance(store: Store, key_fingerprint: str, profile: dict[str, Any]) -> None:
    """Record the key and profile in a new OUTPUT; refuse an OUTPUT written with others.

    Raises
    ------
    ConfigurationError
        Naming what differs (the fingerprints, or the profile settings), never the key.
    """
    conflict = provenance_conflict(store, key_fingerprint, profile)
    if conflict:
        raise ConfigurationError(
            f"{conflict}; use the same settings or a new OUTPUT "
            "(run --new-version writes one beside it)"
        )
    if _recorded(store) is None:
        wanted = {"key_fingerprint": key_fingerprint, "profile": profile}
        store.put(PROVENANCE_KEY, json.dumps(wanted, indent=1, sort_keys=True).encode())


def version_location(output_uri: str, version: int) -> str:
    """OUTPUT's name for data-set version ``version`` (``out`` -> ``out-v2``)."""
    if version == 1:
        return output_uri
    base = output_uri.rstrip("/")
    if base.startswith("s3://") and "/" not in base[5:]:
        return f"{base}/v{version}"
    return f"{base}-v{version}"


def choose_version(
    output_uri: str,
    open_output: Callable[[str], Store],
    key_fingerprint: str,
    profile: dict[str, Any],
) -> tuple[str, int]:
    """The first version of OUTPUT that this key and profile may write into.

    Version 1 is OUTPUT itself, version N is ``OUTPUT-vN``. A version written with the
    same key and profile is reused, so that ``--new-version`` re-runs are idempotent.
    """
    version = 1
    while True:
        candidate = version_location(output_uri, version)
        if provenance_conflict(open_output(candidate), key_fingerprint, profile) is None:
            return candidate, version
        version += 1


__all__ = [
    "PROVENANCE_KEY",
    "check_provenance",
    "choose_version",
    "provenance_conflict",
    "version_location",
]
