"""The end-of-run account: inputs = processed + quarantined + skipped, and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSummary:
    """The end-of-run account. ``balanced`` is ``inputs == processed + quarantined + skipped``."""

    inputs: int = 0
    processed: int = 0
    quarantined: int = 0
    skipped: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    elapsed_seconds: float = 0.0
    workers: int = 1
    burned_in_annotation_risk: int = 0
    #: Images Clean Pixel Data examined and verified, and the boxes it filled in them.
    pixels_cleaned: int = 0
    pixel_boxes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: Folders inside INPUT that hold a medpipe OUTPUT, not read (counted, never named:
    #: a folder name can be PHI).
    outputs_skipped: int = 0

    @property
    def balanced(self) -> bool:
        return self.inputs == self.processed + self.quarantined + self.skipped

    @property
    def files_per_second(self) -> float:
        done = self.processed + self.quarantined
        return done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes_in / 1e6 / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """The run's metrics, as sent to CloudWatch and written to the manifest."""
        return {
            "FilesProcessed": self.processed,
            "FilesQuarantined": self.quarantined,
            "FilesSkipped": self.skipped,
            "BytesProcessed": self.bytes_in,
            "BytesWritten": self.bytes_out,
            "ElapsedSeconds": round(self.elapsed_seconds, 3),
            "FilesPerSecond": round(self.files_per_second, 2),
            "BurnedInAnnotationRisk": self.burned_in_annotation_risk,
            "PixelsCleaned": self.pixels_cleaned,
            "PixelBoxesMasked": self.pixel_boxes,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "processed": self.processed,
            "quarantined": self.quarantined,
            "skipped": self.skipped,
            "balanced": self.balanced,
            "workers": self.workers,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "files_per_second": round(self.files_per_second, 2),
            "megabytes_per_second": round(self.megabytes_per_second, 2),
            "quarantine_reasons": dict(sorted(self.reasons.items())),
            "output_folders_skipped": self.outputs_skipped,
            "metrics": self.metrics(),
        }

    def count_pixels(self, index: dict[str, Any]) -> None:
        """Add one processed instance's Clean Pixel Data outcome (from its index row)."""
        if index.get("clean_pixel_data"):
            self.pixels_cleaned += 1
            self.pixel_boxes += len(index.get("pixel_boxes") or [])

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        check = "balanced" if self.balanced else "NOT BALANCED"
        out = [
            f"inputs = processed + quarantined + skipped: {self.inputs} = {self.processed} + "
            f"{self.quarantined} + {self.skipped} ({check})",
            f"read {self.bytes_in / 1e6:.1f} MB, wrote {self.bytes_out / 1e6:.1f} MB in "
            f"{self.elapsed_seconds:.2f} s with {self.workers} worker(s): "
            f"{self.files_per_second:.1f} files/s, {self.megabytes_per_second:.1f} MB/s",
        ]
        if self.pixels_cleaned:
            out.append(
                f"Clean Pixel Data: {self.pixels_cleaned} image(s) searched and verified, "
                f"{self.pixel_boxes} text box(es) masked (index.jsonl: pixel_boxes; "
                "`medpipe review OUTPUT` shows them)"
            )
        if self.burned_in_annotation_risk:
            out.append(
                f"{self.burned_in_annotation_risk} file(s) may carry burned-in text in "
                "their pixels: written with Patient Identity Removed = NO, and "
                "`medpipe send` refuses them (see index.jsonl: burned_in_annotation_risk; "
                "--clean-pixels cleans what it can decode)"
            )
        if self.outputs_skipped:
            out.append(
                f"skipped {self.outputs_skipped} folder(s) inside INPUT that hold a medpipe "
                "OUTPUT (a .medpipe/ folder): de-identified files are not read again"
            )
        for reason, count in sorted(self.reasons.items()):
            out.append(f"quarantined {count}: {reason}")
        return out


__all__ = ["RunSummary"]
