"""What became of one input, in the words every record uses (journal, manifest, index,
workflow state): it was ``processed``, ``quarantined`` with a reason, or ``skipped``
because the same input had been accounted for before. :class:`Outcome` is the one record
of it: the local runner, the receiver and the Lambda pass all fill it in, and
:func:`src.records.settle.settle` makes it durable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROCESSED = "processed"
QUARANTINED = "quarantined"
SKIPPED = "skipped"


@dataclass
class Outcome:
    """What happened to one input (holds no PHI: ids, pseudonymous paths, reasons)."""

    input_id: str
    fingerprint: str
    status: str
    reason: str = ""
    detail: str = ""
    stage: str = ""
    output: str = ""
    staged: str = ""
    original: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    removed: int = 0
    burned_in_annotation_risk: bool = False
    index: dict[str, Any] = field(default_factory=dict)
    #: Original identifiers for the crosswalk (PHI; never journalled or logged).
    identity: dict[str, str] = field(default_factory=dict, repr=False)
    #: Set (to the errno name) when the output or staging disk had no room: the run
    #: stops without recording this input, which is done again on resume.
    no_room: str = ""

    def processed_as(self, result: Any) -> None:
        """Record a pipeline result (:class:`src.instance.pipeline.InstanceResult`)."""
        self.status, self.stage = PROCESSED, "write"
        self.output, self.index = result.output_key, result.index
        self.removed, self.bytes_out = result.removed, result.bytes_out
        self.burned_in_annotation_risk = result.burned_in_annotation_risk
        self.identity = result.original

    def as_state(self) -> dict[str, Any]:
        """The outcome as workflow state (the Step Functions result of one object)."""
        out: dict[str, Any] = {"object_id": self.input_id, "status": self.status}
        if self.reason:
            out["reason"], out["stage"] = self.reason, self.stage
        return out

    def refuse(self, reason: str, detail: str, stage: str) -> None:
        self.status = QUARANTINED
        self.reason, self.detail, self.stage = str(reason), detail, stage
        self.index = {}

    def journal_entry(self) -> dict[str, Any]:
        """The durable record of this outcome (no staging paths)."""
        return {
            "input_id": self.input_id,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "stage": self.stage,
            "output": self.output,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "removed": self.removed,
            "burned_in_annotation_risk": self.burned_in_annotation_risk,
            "index": self.index,
        }


__all__ = ["PROCESSED", "QUARANTINED", "SKIPPED", "Outcome"]
