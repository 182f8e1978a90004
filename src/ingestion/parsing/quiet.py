"""Keep pydicom's own warnings (which quote element values) out of every log, without
importing pydicom before it is needed.

pydicom reports odd values through ``warnings`` and its ``pydicom`` logger, with the
value in the text. The CLI, the workers and the Lambda handlers call
:func:`quiet_pydicom` once at start-up; the part that is pydicom's configuration is
applied then if pydicom is loaded, else when :mod:`src.ingestion.dicom_parser` (which
every path that decodes with pydicom imports) is first imported. A ``medpipe`` command
that never reads a header with pydicom never pays for importing it (0.3 s with numpy).
"""

from __future__ import annotations

import logging
import sys
import warnings

_REQUESTED = [False]


def quiet_pydicom() -> None:
    """Silence pydicom's value-quoting warnings and value checks (see the module doc)."""
    _REQUESTED[0] = True
    pydicom_logger = logging.getLogger("pydicom")
    pydicom_logger.propagate = False
    pydicom_logger.setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
    if "pydicom.config" in sys.modules:
        apply_if_requested()


def apply_if_requested() -> None:
    """Turn pydicom's value checks off if :func:`quiet_pydicom` was called.

    Value checks on read and assignment only produce those warnings: our own values are
    valid by construction, and kept values are copied as they arrived.
    """
    if not _REQUESTED[0]:
        return
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE


__all__ = ["apply_if_requested", "quiet_pydicom"]
