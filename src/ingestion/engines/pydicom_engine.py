"""The pydicom path: de-identification of a ``Dataset``, and the reference for the bytes.

Files the byte-level engine (:mod:`src.ingestion.engines.byte_engine`) does not handle come here
(Explicit VR Big Endian, Deflated, headerless data, directory records, overlays in the
pixels' high bits, an earlier de-identification history, anything malformed), and so do
datasets handed over in memory. The header is read with pixel data deferred; kept
elements and pixel data are copied as bytes (:mod:`src.ingestion.engines.part10`). The
differential test holds the byte-level engine to this one, element by element.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from pydicom.dataset import Dataset

from src.atomic import new_digest
from src.errors import DeidentificationError
from src.ingestion.annex_e.action_report import JPEG_METADATA_REMOVED, DeidentificationResult
from src.ingestion.annex_e.burned_in import burned_in_risk
from src.ingestion.annex_e.element_rules import _Mode
from src.ingestion.annex_e.embedded_overlays import embedded_overlay_bits, sample_mask
from src.ingestion.annex_e.iod_types import types_for_sop_class
from src.ingestion.annex_e.markers import _encode_element, mark, rebuild_file_meta
from src.ingestion.annex_e.profile import Action, CompiledRules, ConfidentialityProfile
from src.ingestion.annex_e.pseudonyms import Pseudonymizer
from src.ingestion.annex_e.safety_net import (
    _Identifiers,
    _patient_key,
    _value,
    dataset_names,
)
from src.ingestion.dicom_parser import DICOMParser
from src.ingestion.encoding.jpeg_segments import JPEG_SYNTAXES, VIDEO_SYNTAXES, strip_encapsulated
from src.ingestion.engines.part10 import (
    _PIXEL_TAGS,
    _encoding,
    _pixel_span,
    _raw_spans,
    _read_tail,
    save_streamed,
    save_whole,
)
from src.ingestion.engines.plan import Plan
from src.ingestion.engines.walk import DatasetWalker, _Context


def _encoding_of(dataset: Dataset) -> str:
    """The first Python codec of the dataset's Specific Character Set."""
    codecs = dataset._character_set
    first = codecs[0] if isinstance(codecs, list) and codecs else codecs
    return str(first or "latin-1")


class PydicomEngine:
    """Applies one profile's compiled rules to pydicom datasets and files.

    Parameters
    ----------
    rules, profile : CompiledRules, ConfidentialityProfile
    pseudo : Pseudonymizer
    preserve : frozenset of int
    parser : DICOMParser
    fsync : bool
    """

    def __init__(
        self,
        rules: CompiledRules,
        profile: ConfidentialityProfile,
        pseudo: Pseudonymizer,
        preserve: frozenset[int],
        parser: DICOMParser,
        fsync: bool,
    ) -> None:
        self._rules = rules
        self.profile = profile
        self._pseudo = pseudo
        self.preserve_tags = preserve
        self._parser = parser
        self.fsync = fsync
        self._walker = DatasetWalker(pseudo)
        self._marker_cache: dict[tuple[int, bool, bool, str], bytes] = {}

    def deidentify(
        self,
        dataset: Dataset,
        patient_id: str | None = None,
        *,
        flags: Iterable[str] = (),
        at_risk: bool = False,
    ) -> DeidentificationResult:
        """De-identify ``dataset`` in place and return it with the action report.

        ``at_risk``: the pixels are at risk whatever the header says (metadata left in a
        compressed stream).

        ``flags`` are the parser's (:class:`~src.ingestion.dicom_parser.ParsedDataset`),
        carried into the result.
        """
        original_key = _patient_key(dataset)
        pseudonym = patient_id if patient_id is not None else self._pseudo.patient_id(original_key)
        offset = None
        if self.profile.retain_longitudinal_modified_dates:
            offset = self._pseudo.date_offset(original_key)
        identifiers = _Identifiers(dataset)
        if self.profile.cleans_text:
            identifiers.add(dataset_names(dataset))
        ctx = _Context(
            rules=self._rules,
            profile=self.profile,
            pseudo=self._pseudo,
            preserve=self.preserve_tags,
            offset=offset,
            pseudonym=pseudonym,
            identifiers=identifiers,
            iod=types_for_sop_class(_value(dataset, 0x00080016)),
            encoding=_encoding_of(dataset),
        )
        burned_in = (
            at_risk
            or burned_in_risk(dataset)
            or self._parser.get_transfer_syntax(dataset) in VIDEO_SYNTAXES
        )
        embedded = embedded_overlay_bits(dataset)
        try:
            self._walker.walk(dataset, ctx, "", 0, _Mode.NORMAL)
        except RecursionError as exc:
            raise DeidentificationError("sequence nesting too deep to de-identify") from exc
        except DeidentificationError:
            raise
        except Exception as exc:
            # pydicom's messages quote the offending value; report only the error's type.
            raise DeidentificationError(
                f"an element could not be decoded or replaced ({type(exc).__name__})"
            ) from exc
        for keyword in ("PatientName", "PatientID"):  # Type 2: the pseudonym where absent
            if keyword not in dataset:
                setattr(dataset, keyword, pseudonym[:64])
        pixel_mask = self._embedded_overlays(dataset, embedded, ctx)
        rebuild_file_meta(dataset, self.profile.retain_uids, self._pseudo)
        history = mark(dataset, self.profile, pixels_at_risk=burned_in)
        return DeidentificationResult(
            dataset=dataset,
            actions=ctx.actions,
            patient_pseudonym=pseudonym,
            burned_in_annotation_risk=burned_in,
            graphics_review_required=ctx.graphics_kept,
            unchanged_sequences=ctx.unchanged_sequences,
            flags=list(flags),
            history_kept=history,
            pixel_mask=pixel_mask,
        )

    def plan(
        self,
        fp: IO[bytes],
        size: int,
        patient_id: str | None,
        *,
        source: str,
    ) -> Plan:
        """Read the file ``fp`` (``size`` bytes): the first phase (nothing written).

        The plan's ``original`` is the parsed header, which :meth:`Plan.write`
        de-identifies in place.
        """
        parsed = self._parser.read_header(fp, source, decode=False)
        if parsed.read_whole:
            # Headerless and deflated data are read whole (the parser bounds inflation).
            fp.seek(0)
            whole = self._parser.read_stream(fp, source)
            dataset = whole.dataset

            def write_whole(
                output_path: Any, atomic: bool, checksum: bool
            ) -> DeidentificationResult:
                has_pixels = bool(set(dataset.keys()) & _PIXEL_TAGS)
                result = self.deidentify(dataset, patient_id, flags=whole.flags)
                result.has_pixel_data = has_pixels
                digest = new_digest() if checksum else None
                save_whole(
                    dataset,
                    output_path,
                    atomic,
                    self.fsync,
                    self._parser.get_transfer_syntax(dataset),
                    result.pixel_mask,
                    digest,
                )
                result.output_blake3 = digest.hexdigest() if digest is not None else None
                return result

            return Plan(dataset, "pydicom", write_whole)
        header = parsed.dataset
        pixel_start = fp.tell()
        implicit, little = _encoding(header)
        spans = _raw_spans(header, parsed.spans, implicit, little)
        span = None
        if pixel_start < size:
            span = _pixel_span(fp, pixel_start, size, little, source)
            if span.value_end < size:
                tail = _read_tail(fp, span.value_end, size, implicit, little, source)
                for elem in tail:
                    header.add(elem)

        def write(output_path: Any, atomic: bool, checksum: bool) -> DeidentificationResult:
            syntax = self._parser.get_transfer_syntax(header)
            stripped, kept_in_place = _stripped_stream(header, syntax, fp, span)
            result = self.deidentify(header, patient_id, flags=parsed.flags, at_risk=kept_in_place)
            if stripped is not None:
                result.actions.append(JPEG_METADATA_REMOVED)
            result.has_pixel_data = span is not None
            digest = new_digest() if checksum else None
            save_streamed(
                header,
                output_path,
                fp,
                span,
                implicit,
                little,
                spans,
                result.unchanged_sequences,
                atomic,
                self.fsync,
                self._marker_bytes if not result.history_kept else _encode_element,
                result.pixel_mask,
                digest,
                stripped,
            )
            result.output_blake3 = digest.hexdigest() if digest is not None else None
            return result

        return Plan(header, "pydicom", write)

    def _embedded_overlays(
        self, ds: Dataset, embedded: dict[int, int], ctx: _Context
    ) -> int | None:
        """Overlays in the pixels' high bits: zeroed (and their groups removed) when the
        profile removes overlays; kept and flagged for review under Clean Graphics."""
        if not embedded:
            return None
        if self._rules.overlay_data != Action.REMOVE:
            ctx.graphics_kept = True
            return None
        for group in embedded:
            for tag in [int(e.tag) for e in ds if e.tag >> 16 == group]:
                del ds[tag]
            self._walker._record(
                ctx, f"({group:04X},xxxx)", group << 16, "OW", Action.REMOVE, "overlay"
            )
        return sample_mask(embedded)

    def _marker_bytes(self, ds: Dataset, tag: int, implicit: bool, little: bool) -> bytes:
        """The encoded de-identification markers: the same for every file of a profile
        (unless the file carried an earlier history: then :func:`_encode_element`).
        Patient Identity Removed is YES or NO by the pixels' risk, so it is keyed too."""
        value = str(ds[tag].value) if tag == _PATIENT_IDENTITY_REMOVED else ""
        key = (tag, implicit, little, value)
        cached = self._marker_cache.get(key)
        if cached is None:
            cached = self._marker_cache[key] = _encode_element(ds, tag, implicit, little)
        return cached


_PATIENT_IDENTITY_REMOVED = 0x00120062


def _stripped_stream(
    header: Dataset, syntax: str, fp: IO[bytes], span: Any
) -> tuple[bytes | None, bool]:
    """The byte engine's :func:`~src.ingestion.engines.byte_engine._pixel_stream` on a
    streamed pixel data span: the value without JPEG metadata (None: unchanged), and
    whether it had to stay in place (an Extended Offset Table)."""
    if span is None or not span.undefined_length:
        return None, False
    if syntax not in JPEG_SYNTAXES:
        return None, False
    fp.seek(span.value_start)
    stripped = strip_encapsulated(fp.read(span.value_end - span.value_start))
    if stripped is not None and 0x7FE00001 in header:
        return None, True
    return stripped, False


__all__ = ["PydicomEngine"]
