"""Read DICOM files and bytes with pydicom 3, refusing what is not DICOM with one error.

Every failure is an :class:`~src.errors.InvalidDICOMError` that names the source and the
reason and chains pydicom's own exception. Files without a preamble or file meta
information (pydicom's ``no_meta.dcm``) are read the way pydicom allows (``force=True``)
and flagged. :meth:`DICOMParser.read_header` and :meth:`DICOMParser.read_file` return a
typed :class:`ParsedDataset` (dataset, flags, byte spans, encoding); nothing is attached
to the pydicom ``Dataset``.
"""

from __future__ import annotations

import io
import mmap
import os
import warnings
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from src.errors import InvalidDICOMError
from src.ingestion.encoding.deflate import check_deflate_limit
from src.ingestion.encoding.structure import check_structure, encapsulates
from src.ingestion.parsing.headerless import (
    FLAG_NO_FILE_META,
    FLAG_NO_PREAMBLE,
    read_headerless,
)
from src.ingestion.parsing.quiet import pydicom_module, quiet_pydicom

if TYPE_CHECKING:  # pydicom is imported when a file is first parsed with it
    from pydicom.dataset import Dataset

#: Default ceiling on the inflated size of a Deflated Explicit VR Little Endian dataset.
DEFAULT_MAX_INFLATED_BYTES = 512 * 1024 * 1024

FLAG_DEFLATED = "deflated"


_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


def is_image(dataset: Dataset) -> bool:
    """Whether the dataset describes an image (so it must carry pixel data)."""
    if "Rows" in dataset and "Columns" in dataset:
        return True
    sop_class = dataset.get("SOPClassUID")
    name = getattr(sop_class, "name", "") if sop_class else ""
    return isinstance(name, str) and name.endswith("Image Storage")


@dataclass
class ParsedDataset:
    """What the parser read: the dataset and the facts the writer needs about its bytes.

    Attributes
    ----------
    dataset : pydicom.Dataset
        The dataset (for :meth:`DICOMParser.read_header`: everything before Pixel Data).
    flags : list of str
        What was unusual: ``no_preamble``, ``no_file_meta``, ``deflated``,
        ``leading_bytes_skipped``.
    spans : dict of int to (int, int)
        Byte range ``[first, last)`` of each top-level element, from the structure walk
        (empty for headerless and deflated input).
    transfer_syntax : str
        The Transfer Syntax UID the dataset is encoded in.
    """

    dataset: Dataset
    flags: list[str] = field(default_factory=list)
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)
    transfer_syntax: str = ""

    @property
    def read_whole(self) -> bool:
        """Headerless and deflated input is read whole rather than streamed."""
        return bool({FLAG_NO_PREAMBLE, FLAG_DEFLATED} & set(self.flags))


def _touch_all(dataset: Dataset) -> None:
    """Decode every element once so that malformed values fail here, not later."""
    for elem in dataset:
        if elem.VR == "SQ":
            for item in elem.value:
                _touch_all(item)
        else:
            _ = elem.value


class DICOMParser:
    """Parse DICOM Part 10 files (and headerless datasets) with pydicom.

    Parameters
    ----------
    max_inflated_bytes : int, optional
        Largest inflated size accepted for a Deflated transfer syntax (zip-bomb guard).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> ds = DICOMParser().parse_file(get_testdata_file("CT_small.dcm"))
    >>> ds.Modality
    'CT'
    """

    def __init__(self, max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES) -> None:
        self.max_inflated_bytes = max_inflated_bytes

    def parse_file(self, file_path: str | os.PathLike[str]) -> Dataset:
        """Parse a DICOM file from a path.

        Parameters
        ----------
        file_path : str or PathLike
            The file to read.

        Returns
        -------
        pydicom.Dataset
            The whole dataset, every element decoded once (:meth:`read_file` also
            returns the parser's flags).

        Raises
        ------
        InvalidDICOMError
            If the file is missing, empty, not DICOM, truncated or malformed.
        """
        return self.read_file(file_path).dataset

    def read_file(self, file_path: str | os.PathLike[str]) -> ParsedDataset:
        """As :meth:`parse_file`, returning the typed :class:`ParsedDataset`."""
        source = os.fspath(file_path)
        try:
            with open(source, "rb") as fp:
                return self._parse(fp, source, stop_before_pixels=False)
        except OSError as exc:
            raise InvalidDICOMError(source, f"cannot open file ({type(exc).__name__})") from exc

    def parse_bytes(self, dicom_bytes: bytes, source: str = "<bytes>") -> Dataset:
        """Parse DICOM from bytes, for example an S3 object's body.

        Parameters
        ----------
        dicom_bytes : bytes
            The encoded file.
        source : str, optional
            A label for error messages (an object key, never a PHI value).

        Returns
        -------
        pydicom.Dataset

        Raises
        ------
        InvalidDICOMError
            As :meth:`parse_file`.
        """
        return self._parse(io.BytesIO(dicom_bytes), source, stop_before_pixels=False).dataset

    def read_stream(self, fp: IO[bytes], source: str = "<stream>") -> ParsedDataset:
        """Read a whole dataset from a seekable binary file, as :meth:`read_file`."""
        return self._parse(fp, source, stop_before_pixels=False)

    def parse_header(self, fp: IO[bytes], source: str, *, decode: bool = True) -> Dataset:
        """Parse everything before the pixel data, leaving ``fp`` at the Pixel Data tag."""
        return self.read_header(fp, source, decode=decode).dataset

    def read_header(self, fp: IO[bytes], source: str, *, decode: bool = True) -> ParsedDataset:
        """Read everything before the pixel data, leaving ``fp`` at the Pixel Data tag.

        With ``decode=False`` the elements stay raw (undecoded) until used; the structure
        has still been checked byte by byte, so truncation is still refused.
        """
        return self._parse(fp, source, stop_before_pixels=True, decode=decode)

    def get_transfer_syntax(self, dataset: Dataset) -> str:
        """Return the dataset's Transfer Syntax UID.

        For a dataset without file meta information the UID follows from how it was
        encoded (Implicit VR Little Endian for ``no_meta.dcm``).

        Parameters
        ----------
        dataset : pydicom.Dataset

        Returns
        -------
        str
            The UID, for example ``"1.2.840.10008.1.2.1"``.
        """
        meta = getattr(dataset, "file_meta", None)
        if meta is not None and "TransferSyntaxUID" in meta:
            return str(meta.TransferSyntaxUID)
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = dataset.original_encoding
        if implicit is None:
            implicit, little = True, True
        if implicit:
            return str(ImplicitVRLittleEndian)
        return str(ExplicitVRLittleEndian if little else ExplicitVRBigEndian)

    # -- internals ---------------------------------------------------------------

    def _parse(
        self, fp: IO[bytes], source: str, *, stop_before_pixels: bool, decode: bool = True
    ) -> ParsedDataset:
        start = fp.tell()
        fp.seek(0, os.SEEK_END)
        size = fp.tell() - start
        fp.seek(start)
        if size == 0:
            raise InvalidDICOMError(source, "empty file")
        pydicom = pydicom_module()
        flags: list[str] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                has_preamble = self._has_preamble(fp)
                spans: dict[int, tuple[int, int]] = {}
                if has_preamble:
                    spans = self._precheck(fp, source)
                    dataset: Dataset = pydicom.dcmread(
                        fp,
                        stop_before_pixels=stop_before_pixels,
                    )
                else:
                    dataset = read_headerless(fp, source, stop_before_pixels, flags)
                if decode or not has_preamble:
                    _touch_all(dataset)
            except InvalidDICOMError:
                raise
            except Exception as exc:
                raise InvalidDICOMError(source, _reason(exc)) from exc
        for warning in caught:
            text = str(warning.message)
            if "end of file" in text.lower() or "unexpected end" in text.lower():
                # pydicom stops at a cut element with a warning; here that is an error.
                raise InvalidDICOMError(source, "truncated: unexpected end of file")
        if has_preamble and "TransferSyntaxUID" not in dataset.file_meta:
            flags.append(FLAG_NO_FILE_META)
        ts = self.get_transfer_syntax(dataset)
        if ts == pydicom.uid.DeflatedExplicitVRLittleEndian:
            flags.append(FLAG_DEFLATED)
        return ParsedDataset(dataset, flags, spans, ts)

    @staticmethod
    def _has_preamble(fp: IO[bytes]) -> bool:
        start = fp.tell()
        head = fp.read(132)
        fp.seek(start)
        return len(head) == 132 and head[128:132] == b"DICM"

    def _precheck(self, fp: IO[bytes], source: str) -> dict[int, tuple[int, int]]:
        """Read the file meta once; bound a deflated dataset's inflation, and refuse a file
        whose elements run past its end (pydicom reads those quietly)."""
        from pydicom.filereader import read_preamble
        from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

        start = fp.tell()
        try:
            read_preamble(fp, False)  # type: ignore[arg-type]
            meta = read_file_meta_info_from(fp)
            ts = meta.get("TransferSyntaxUID")
            uid = UID(str(ts)) if ts else ExplicitVRLittleEndian
            if uid == DeflatedExplicitVRLittleEndian:
                # Bounded here; the inflated dataset is then checked by pydicom itself.
                check_deflate_limit(fp, source, self.max_inflated_bytes)
                return {}
        finally:
            fp.seek(start)
        implicit = uid.is_implicit_VR if uid.is_transfer_syntax else False
        little = uid.is_little_endian if uid.is_transfer_syntax else True
        buffer = _buffer_of(fp)
        try:
            spans = check_structure(
                buffer, source, start=start + 132, implicit=implicit, little=little,
                has_meta=True, encapsulated=encapsulates(str(uid)),
            )  # fmt: skip
        finally:
            if isinstance(buffer, mmap.mmap):
                buffer.close()
        return spans


def _buffer_of(fp: IO[bytes]) -> bytes | mmap.mmap:
    if isinstance(fp, io.BytesIO):
        return fp.getbuffer().tobytes()
    try:
        return mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        start = fp.tell()
        fp.seek(0)
        data = fp.read()
        fp.seek(start)
        return data


def read_file_meta_info_from(fp: IO[bytes]) -> Dataset:
    """Read the group 0002 elements at ``fp`` (after the preamble) and leave ``fp`` after them."""
    from pydicom.filereader import _read_file_meta_info

    found: Dataset = _read_file_meta_info(fp)  # type: ignore[arg-type]
    return found


def _reason(exc: BaseException) -> str:
    """A short, PHI-free reason for a pydicom failure (its type, plus a known kind)."""
    from pydicom.errors import InvalidDicomError

    if isinstance(exc, EOFError):
        return "truncated: unexpected end of file"
    if isinstance(exc, InvalidDicomError):
        return "not DICOM: no DICM preamble and not a dataset"
    if isinstance(exc, RecursionError):
        return "sequence nesting too deep"
    if isinstance(exc, MemoryError):
        return "element length exceeds memory"
    return f"malformed ({type(exc).__name__})"


__all__ = [
    "DEFAULT_MAX_INFLATED_BYTES",
    "DICOMParser",
    "ParsedDataset",
    "check_deflate_limit",
    "quiet_pydicom",
    "read_file_meta_info_from",
]
