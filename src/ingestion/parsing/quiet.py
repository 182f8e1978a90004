"""Keep pydicom's own warnings (which quote element values) out of every log, without
importing pydicom before it is needed.

pydicom reports odd values through ``warnings`` and its ``pydicom`` logger, with the
value in the text. The CLI, the workers and the Lambda handlers call
:func:`quiet_pydicom` once at start-up; the part that is pydicom's configuration is
applied then if pydicom is loaded, else when the parser first reads a file with pydicom
(:func:`pydicom_module`, which every path that decodes with pydicom goes through). A
``medpipe`` command that never reads a header with pydicom never pays for importing it
(0.3 s with numpy).
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

_REQUESTED = [False]
_APPLIED = [False]


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
    _APPLIED[0] = True


def pydicom_module() -> Any:
    """``pydicom``, imported now if it was not, quietened if that was asked for (also
    when something else imported it first)."""
    import pydicom

    if _REQUESTED[0] and not _APPLIED[0]:
        apply_if_requested()
    return pydicom


__all__ = ["apply_if_requested", "pydicom_module", "quiet_pydicom"]
