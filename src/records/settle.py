"""The settle step: where one instance's outcome becomes durable, the same way in every
shell (``medpipe run``, ``medpipe receive``, the Lambda pass, ``medpipe deidentify``).

A processed instance is committed once (:func:`src.storage.store.commit_instance`); a
SOP Instance UID another input already wrote turns it into a
``duplicate-sop-instance`` refusal; a refusal is quarantined with the original bytes and
its reason. What the shell does when a store fails (stop, retry, tell the sender to
keep the instance) stays the shell's: settle raises the store's error unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from src.instance.outcome import PROCESSED, Outcome
from src.instance.refusals import Reason
from src.storage.store import DuplicateInstanceError, QuarantineRecord, Store, commit_instance

#: The original for quarantine: a path, bytes, None (reason only), or a callable opening
#: it only when needed, giving ``(path, bytes or None, detail)`` (the local runner's check
#: that the file is still the one discovered, which may add to the detail).
Original = str | bytes | None | Callable[[], AbstractContextManager[tuple[str | bytes | None, str]]]

#: The detail of a refusal for a SOP Instance UID already written by another input.
ALREADY_WRITTEN = "another input already wrote this SOP Instance UID"


def settle(
    outcome: Outcome,
    sink: Store,
    *,
    staged: str,
    original: Original,
    source: str,
    claimed: bool = False,
    quarantine: Store | None = None,
) -> Outcome:
    """Commit ``outcome``'s output, or quarantine its input; returns ``outcome``.

    Parameters
    ----------
    outcome : Outcome
        ``processed`` (with ``output``, the key) or ``quarantined`` (with its reason).
    sink : Store
        Where de-identified instances go.
    staged : str
        The local file holding the de-identified bytes (processed outcomes).
    original : str, bytes, None or callable
        The input's bytes for quarantine (None: the reason alone is kept), or a callable
        that opens them only when a refusal needs them (see :data:`Original`).
    source : str
        The input's name for the quarantine record (a path, key or peer: PHI, written
        only there).
    claimed : bool
        The caller's journal says this input already owns ``outcome.output``.
    quarantine : Store, optional
        Where refusals go (default: ``sink``, whose ``quarantine/`` prefix holds them).

    Raises
    ------
    OSError, StorageError
        A store could not be written; nothing about the instance was decided.
    """
    if outcome.status == PROCESSED:
        try:
            commit_instance(sink, outcome.output, staged, outcome.input_id, claimed=claimed)
        except DuplicateInstanceError:
            outcome.refuse(Reason.DUPLICATE_SOP_INSTANCE, ALREADY_WRITTEN, "write")
        else:
            return outcome
    opened = original() if callable(original) else nullcontext((original, outcome.detail))
    with opened as (data, detail):
        record = QuarantineRecord(outcome.input_id, outcome.reason, detail, outcome.stage, source)
        (quarantine or sink).quarantine(record, data)
    return outcome


__all__ = ["ALREADY_WRITTEN", "Original", "settle"]
