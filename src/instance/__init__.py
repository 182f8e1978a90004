"""One instance through the pipeline: read, validate, de-identify, clean the pixels, or
refuse with a named reason. It stands above ``ingestion`` and ``pixels``; every shell
(``run``, ``receive``, the Lambda pass) calls it."""
