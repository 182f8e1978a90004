"""Which failures inside the readers are the data's fault, not ours.

An exception raised by pydicom's own decoding of an input's bytes (an unknown VR, a value
its VR cannot hold) says the file is malformed: it is quarantined as ``malformed``, like
what the structural check (:mod:`src.ingestion.encoding.structure`) refuses up front. Anything
else stays ``internal-error``: a defect to fix.
"""

from __future__ import annotations

import os
import struct

_PYDICOM = os.sep + "pydicom" + os.sep
_DECODING_ERRORS = (NotImplementedError, struct.error, UnicodeError, OverflowError, IndexError)


def raised_reading_values(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside pydicom's own reading of the input's values.

    Only the innermost frame decides: an error of ours that merely passes through pydicom
    is still ``internal-error``.
    """
    if not isinstance(exc, _DECODING_ERRORS):
        return False
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return _PYDICOM in tb.tb_frame.f_code.co_filename


__all__ = ["raised_reading_values"]
