"""Clean Pixel Data (PS3.15 E.3.1): find burned-in text in pixels, mask it, verify.

:mod:`~src.pixels.detector` finds text with the PP-OCR detector, :mod:`~src.pixels.regions`
holds the region rules, :mod:`~src.pixels.frames` decodes, masks and re-encodes Pixel
Data, and :mod:`~src.pixels.cleaner` applies them to one de-identified instance.
"""
