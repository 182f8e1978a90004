"""Validation of an instance's original metadata, before anything is changed.

The per-instance pipeline (:mod:`src.instance.pipeline`) calls a hook with the
metadata as extracted; raising vetoes the instance. The default hook checks the
documented schema. Errors name the failing fields, never their values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from src.errors import MetadataValidationError

if TYPE_CHECKING:  # pydantic loads with the first instance validated
    from pydantic import ValidationError

#: A validation hook: called with the original metadata (as extracted); raises to veto.
ValidationHook = Callable[[dict[str, Any]], None]


def validation_reason(exc: ValidationError) -> str:
    """Name the failing fields of a pydantic error, without the offending values."""
    fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
    return "fields " + ", ".join(fields[:8])


def schema_validation(metadata: dict[str, Any]) -> None:
    """The default hook: the metadata must pass :class:`DICOMMetadataModel`.

    Raises
    ------
    MetadataValidationError
        Naming the failing fields.
    """
    from pydantic import ValidationError

    from src.validation.schemas import DICOMMetadataModel

    try:
        DICOMMetadataModel(**metadata)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
        raise MetadataValidationError(validation_reason(exc), details={"fields": fields}) from None


__all__ = ["ValidationHook", "schema_validation", "validation_reason"]
