"""Medical Imaging Pipeline: DICOM ingestion, PS3.15 de-identification and delivery.

The importable package is ``src`` so that the documented paths work as written, for
example ``from src.storage.s3_handler import S3Handler``.
"""

__version__ = "0.1.0"
