"""What :mod:`src.ingestion.dicom_parser` reads beyond the Part 10 header: datasets
without a preamble, sniffed before pydicom is run over them."""
