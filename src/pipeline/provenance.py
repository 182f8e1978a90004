"""What an OUTPUT was written with: the key's fingerprint and the profile.

Pseudonyms, UIDs and date offsets follow the key and the profile. A second run into the
same OUTPUT with another key or profile would mix two pseudonym spaces (six folders for
three patients), so it stops with one line instead. The record holds no secret: the
fingerprint is a one-way label of the key.
"""

from __future__ import annotations

import json
from typing import Any

from src.errors import ConfigurationError, ObjectNotFoundError
from src.storage.store import Store

PROVENANCE_KEY = ".medpipe/provenance.json"


def check_provenance(store: Store, key_fingerprint: str, profile: dict[str, Any]) -> None:
    """Record the key and profile in a new OUTPUT; refuse an OUTPUT written with others.

    Raises
    ------
    ConfigurationError
        Naming what differs (the fingerprints, or the profile settings), never the key.
    """
    wanted = {"key_fingerprint": key_fingerprint, "profile": profile}
    try:
        with store.open(PROVENANCE_KEY) as fh:
            recorded = json.loads(fh.read())
    except (FileNotFoundError, ObjectNotFoundError):
        store.put(PROVENANCE_KEY, json.dumps(wanted, indent=1, sort_keys=True).encode())
        return
    if recorded.get("key_fingerprint") != key_fingerprint:
        raise ConfigurationError(
            f"OUTPUT was written with another key (fingerprint "
            f"{recorded.get('key_fingerprint')}, this run's is {key_fingerprint}); "
            "use the same key, or a new OUTPUT"
        )
    before = recorded.get("profile", {})
    changed = sorted(k for k in set(before) | set(profile) if before.get(k) != profile.get(k))
    if changed:
        raise ConfigurationError(
            f"OUTPUT was written with another profile ({', '.join(changed)} differ); "
            "use the same settings, or a new OUTPUT"
        )


__all__ = ["PROVENANCE_KEY", "check_provenance"]
