"""One DICOM instance through the core: parse once, refuse or de-identify, describe.

This is the single per-instance function that every shell calls: ``medpipe run`` (its
workers), ``medpipe deidentify``, the Lambda one-pass handler and the DICOM receiver.
It reads the input once, refuses what must be refused with a named :class:`Reason`,
validates the original metadata through an optional hook, de-identifies, and returns
the output key, the index row and the action report. It does no I/O other than reading
its input and writing the one output file it is given; where that file goes next (a
folder, a bucket, quarantine) is the shells' business, through :mod:`src.storage.store`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from src.atomic import open_output
from src.errors import (
    DeidentificationError,
    InvalidDICOMError,
    MetadataValidationError,
    PipelineError,
)
from src.ingestion.deidentifier import DeidentificationResult, Deidentifier
from src.ingestion.dicom_parser import is_image
from src.ingestion.engines.plan import Plan
from src.ingestion.metadata_extractor import MetadataExtractor
from src.instance.data_faults import raised_reading_values
from src.instance.header_facts import is_image_header, is_media_directory, layout_key
from src.instance.output_layout import original_identity, output_key
from src.instance.refusals import (
    NO_ROOM,
    InstanceRefusedError,
    OutputWriteError,
    Reason,
    parse_refusal,
)
from src.instance.validation_hook import ValidationHook, schema_validation, validation_reason

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from src.pixels.cleaner import PixelCleaner, PixelOutcome

logger = logging.getLogger(__name__)


@dataclass
class InstanceResult:
    """A de-identified instance, written to the caller's output path (no PHI here).

    Attributes
    ----------
    output_key : str
        Where it belongs in OUTPUT: ``<pseudonym>/<study>/<series>/<sop>.dcm``.
    output_path : str
        The local file holding the de-identified bytes.
    index : dict
        Its index row: de-identified metadata plus ``output`` and the burned-in risk.
    report : DeidentificationResult
        The action report.
    bytes_out : int
        Size of the output file.
    original : dict
        The original identifiers (:func:`original_identity`): PHI, kept only for a
        crosswalk the user asked for.
    """

    output_key: str
    output_path: str
    index: dict[str, Any]
    report: DeidentificationResult
    bytes_out: int = 0
    removed: int = field(default=0)
    #: The original identifiers (PHI: for a crosswalk the user asked for, never logged).
    original: dict[str, str] = field(default_factory=dict, repr=False)
    #: What Clean Pixel Data did (None when it did not run: option off, or no risk).
    pixels: PixelOutcome | None = None

    @property
    def burned_in_annotation_risk(self) -> bool:
        """The pixels may carry burned-in text: at risk, and not cleaned and verified."""
        if self.pixels is not None and self.pixels.verified:
            return False
        return self.report.burned_in_annotation_risk


class InstancePipeline:
    """Parse, check, de-identify and describe one instance.

    Parameters
    ----------
    deidentifier : Deidentifier
        Holds the profile and the key.
    validate : callable, optional
        Called with the original metadata before anything is changed; raising
        :class:`~src.errors.MetadataValidationError` (or any
        :class:`~src.errors.PipelineError`) refuses the instance. Defaults to
        :func:`schema_validation`; pass ``None`` to skip validation.
    extractor : MetadataExtractor, optional
    keep_identity : bool
        Return the original identifiers in :attr:`InstanceResult.original` (for a
        crosswalk; off by default, so that no PHI leaves the core unasked).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> import tempfile, os
    >>> pipe = InstancePipeline(Deidentifier(key=b"an example key 1234"))
    >>> out = os.path.join(tempfile.mkdtemp(), "out.dcm")
    >>> result = pipe.process(get_testdata_file("CT_small.dcm"), out)
    >>> result.index["modality"], result.output_key.count("/")
    ('CT', 3)
    """

    def __init__(
        self,
        deidentifier: Deidentifier,
        validate: ValidationHook | None = schema_validation,
        extractor: MetadataExtractor | None = None,
        *,
        keep_identity: bool = False,
    ) -> None:
        self.deidentifier = deidentifier
        self.keep_identity = keep_identity
        self.validate = validate
        self.extractor = extractor or MetadataExtractor()
        self._pixels: PixelCleaner | None = None
        if deidentifier.profile.clean_pixels:
            # Built now: a bad rules file or a missing OCR model stops the shell here,
            # instead of quarantining every image at risk. The model loads on first use.
            from src.pixels.cleaner import cleaner_for

            self._pixels = cleaner_for(deidentifier.profile)

    @property
    def pixel_cleaner(self) -> PixelCleaner | None:
        """The Clean Pixel Data step, when the profile asks for it."""
        return self._pixels

    def process(
        self,
        source: str | os.PathLike[str] | bytes | IO[bytes],
        output_path: str | os.PathLike[str],
        *,
        label: str = "<input>",
        patient_id: str | None = None,
        atomic: bool = True,
    ) -> InstanceResult:
        """De-identify one instance into ``output_path``.

        Parameters
        ----------
        source : path, bytes or seekable binary file
            The input, read once.
        output_path : path
            Where the de-identified file is written (atomically; nothing on refusal).
        label : str
            Names the input in error details: a keyed id, never a PHI value.
        patient_id : str, optional
            Overrides the keyed patient pseudonym.
        atomic : bool
            Write ``output_path`` through a temporary file and a rename (default); a
            caller whose ``output_path`` is in its own private staging area can skip it.

        Returns
        -------
        InstanceResult

        Raises
        ------
        InstanceRefusedError
            With its :class:`Reason`: the instance belongs in quarantine.
        OutputWriteError
            When ``output_path`` cannot be written for lack of room: nothing is wrong
            with the instance, so it is not refused (a receiver reports a failure).
        """
        stage = ["parse"]
        memo: dict[int, Any] = {}
        image = [False]

        identity: dict[str, str] = {}
        cleaner = self.pixel_cleaner
        header: dict[str, str] = {}  # what the region rules read (PHI in "phi" mode)
        pixels: PixelOutcome | None = None

        try:
            with self._plan(source, label, patient_id) as plan:
                raw = plan.header  # the byte engine's: no Dataset unless one is needed
                metadata = None
                if raw is not None:
                    metadata = self.extractor.extract_elements(raw, raw.meta_text(_TS) or None)
                if metadata is not None and raw is not None:
                    directory, image[0] = is_media_directory(raw), is_image_header(raw)
                else:
                    original = plan.original
                    assert original is not None  # asked for
                    directory, image[0] = is_media_directory(original), is_image(original)
                if directory:
                    raise InstanceRefusedError(
                        Reason.MEDIA_DIRECTORY,
                        "a DICOMDIR (Media Storage Directory Storage) indexes the files of a "
                        "medium and is no instance to de-identify: give the files it indexes",
                        "parse",
                    )
                stage[0] = "validate"
                if cleaner is not None:
                    header.update(cleaner.context(_original(plan)))
                if self.keep_identity:
                    identity.update(original_identity(_original(plan)))
                if self.validate is not None:
                    if metadata is None:
                        metadata = self.extractor.extract_metadata(_original(plan), memo=memo)
                    self.validate(metadata)
                stage[0] = "deidentify"
                # With Clean Pixel Data the output is held in memory: cleaned from there
                # and written once (never written, read back and written again).
                memory = io.BytesIO() if cleaner is not None else None
                target = memory if memory is not None else output_path
                report = plan.write(target, atomic=atomic, checksum=True)
            if image[0] and not report.has_pixel_data:
                raise InstanceRefusedError(
                    Reason.IMAGE_WITHOUT_PIXEL_DATA, "an image without pixel data", "parse"
                )
            ds = report.dataset
            if cleaner is not None and report.burned_in_annotation_risk and report.has_pixel_data:
                stage[0] = "clean-pixels"
                assert memory is not None
                pixels = cleaner.clean_bytes(memory.getbuffer(), output_path, header, atomic=atomic)
                if pixels.remaining:
                    raise InstanceRefusedError(
                        Reason.PIXEL_PHI_REMAINS,
                        f"text found again in {len(pixels.remaining)} box(es) after cleaning",
                        "clean-pixels",
                    )
                if pixels.dataset is not None:  # the header changed: describe what was written
                    ds = pixels.dataset
                    memo.clear()
            elif memory is not None:  # nothing to clean: the bytes as the engine wrote them
                with open_output(output_path, atomic, False) as out:
                    out.write(memory.getbuffer())
            index, key = None, None
            written = report.header
            if ds is None and written is not None:  # the byte engine's output values
                index = self.extractor.extract_elements(written, written.meta_text(_TS) or None)
                if index is not None:
                    key = layout_key(index, report.patient_pseudonym)
            if index is None or key is None:
                if ds is None:
                    assert report.describe_output is not None  # the byte engine's
                    ds = report.describe_output()
                key = output_key(ds, report.patient_pseudonym)
                index = self.extractor.extract_metadata(ds, memo=memo)
        except InstanceRefusedError:
            _remove(output_path)
            raise
        except InvalidDICOMError as exc:
            _remove(output_path)
            raise parse_refusal(exc) from exc
        except MetadataValidationError as exc:
            _remove(output_path)
            raise InstanceRefusedError(Reason.FAILED_VALIDATION, exc.message, "validate") from exc
        except DeidentificationError as exc:
            _remove(output_path)
            raise InstanceRefusedError(
                Reason.DEIDENTIFICATION_REFUSED, exc.message, "deidentify"
            ) from exc
        except PipelineError as exc:
            _remove(output_path)
            raise InstanceRefusedError(
                Reason.FAILED_VALIDATION, type(exc).__name__, stage[0]
            ) from exc
        except (OSError, ValueError) as exc:
            _remove(output_path)
            if isinstance(exc, OSError) and exc.errno in NO_ROOM:
                # Not the instance's fault: the caller must not quarantine it as unreadable.
                raise OutputWriteError(
                    f"cannot write the output ({errno.errorcode[exc.errno]})",
                    details={"input_id": label},
                ) from exc
            raise InstanceRefusedError(Reason.UNREADABLE, type(exc).__name__, stage[0]) from exc
        except Exception as exc:
            _remove(output_path)
            if raised_reading_values(exc):
                # pydicom choked on this file's bytes (an unknown VR, a value its VR cannot
                # hold): a fault of the data, not of ours.
                raise InstanceRefusedError(
                    Reason.MALFORMED,
                    f"a value cannot be decoded ({type(exc).__name__})",
                    stage[0],
                ) from exc
            logger.error(
                "Unexpected error; instance refused",
                extra={
                    "operation": "process_instance",
                    "status": "failed",
                    "details": {"input_id": label, "error": type(exc).__name__},
                },
            )
            raise InstanceRefusedError(Reason.INTERNAL_ERROR, type(exc).__name__, stage[0]) from exc
        result = InstanceResult(
            output_key=key,
            output_path=os.fspath(output_path),
            index=index,
            report=report,
            removed=len(report.removed_tags),
            original=identity,
            pixels=pixels,
        )
        index["output"] = key
        index["burned_in_annotation_risk"] = result.burned_in_annotation_risk
        if pixels is not None:
            index["clean_pixel_data"] = pixels.verified
            index["pixel_boxes"] = pixels.as_index()
        # For a data set's integrity manifest: hashed as written (cleaning rewrites it).
        digest = report.output_blake3 if pixels is None else pixels.output_blake3
        if digest is None:  # the pixels were examined and left as they were
            digest = report.output_blake3
        index["output_blake3"] = digest
        result.bytes_out = os.path.getsize(output_path)
        return result

    def _plan(
        self,
        source: str | os.PathLike[str] | bytes | IO[bytes],
        label: str,
        patient_id: str | None,
    ) -> Plan:
        """The engine's first phase on ``source``, with the original's header."""
        deid = self.deidentifier
        if isinstance(source, bytes | bytearray | memoryview):
            stream = io.BytesIO(bytes(source))
            return deid.plan_stream(stream, patient_id, source=label, describe="header")
        if isinstance(source, str | os.PathLike):
            return deid.plan_file(source, patient_id, describe="header")
        return deid.plan_stream(source, patient_id, source=label, describe="header")


#: File meta Transfer Syntax UID.
_TS = 0x00020010


def _original(plan: Plan) -> Dataset:
    original = plan.original
    assert original is not None  # the pipeline's plans are made with the original
    return original


def _remove(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


__all__ = [
    "NO_ROOM",
    "InstancePipeline",
    "InstanceRefusedError",
    "InstanceResult",
    "OutputWriteError",
    "Reason",
    "ValidationHook",
    "original_identity",
    "output_key",
    "schema_validation",
    "validation_reason",
]
