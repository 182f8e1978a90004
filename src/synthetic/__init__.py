"""Seeded generator of fake DICOM studies with realistic fake PHI.

The README's first command, the tests and the benchmarks all use it. The same seed
gives byte-identical files. PHI is planted where de-identifiers tend to miss it: nested
sequences, private tags (including a private sequence holding public attributes), SR
content, overlays and curves, free-text comments and file-meta fields.

Every value is invented; none belongs to a real person.

Examples
--------
>>> import tempfile
>>> corpus = write_corpus(tempfile.mkdtemp(), seed=1, patients=1, series_per_study=1,
...                       instances_per_series=1, include_sr=False, include_us=False)
>>> len(corpus.files)
1
"""

from src.synthetic.people import Corpus, FakePatient, make_patient
from src.synthetic.studies import write_corpus

__all__ = ["Corpus", "FakePatient", "make_patient", "write_corpus"]
