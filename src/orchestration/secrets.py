"""The de-identification key for Lambda: Secrets Manager or SSM, cached per container.

Uses Powertools' parameters utility, which caches for ``max_age`` seconds, so a warm
container fetches the key once every five minutes rather than once per file.
"""

from __future__ import annotations

import os

from src.errors import KeyConfigurationError, ThrottlingError
from src.ingestion.annex_e.pseudonyms import MIN_KEY_LENGTH

CACHE_SECONDS = 300


def get_deidentification_key() -> bytes:
    """Fetch the key named by ``MEDPIPE_KEY_SECRET_ID`` or ``MEDPIPE_KEY_PARAMETER``.

    Falls back to ``MEDPIPE_DEID_KEY`` (for local runs of the handlers).

    Raises
    ------
    KeyConfigurationError
        If no source is configured or the key is too short.
    ThrottlingError
        If the service could not be reached or refused (retried by the caller).
    """
    secret_id = os.environ.get("MEDPIPE_KEY_SECRET_ID")
    parameter = os.environ.get("MEDPIPE_KEY_PARAMETER")
    if secret_id or parameter:
        from aws_lambda_powertools.utilities import parameters
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        source = "Secrets Manager" if secret_id else "SSM Parameter Store"
        try:
            if secret_id:
                value = parameters.get_secret(secret_id, max_age=CACHE_SECONDS)
            else:
                value = parameters.get_parameter(
                    str(parameter), decrypt=True, max_age=CACHE_SECONDS
                )
        except GetParameterError as exc:
            # A fault of the service or the role, never of the file: retried, not quarantined.
            raise ThrottlingError(
                f"the de-identification key could not be read from {source}",
                aws_error_code="KeyUnavailable",
            ) from exc
    elif os.environ.get("MEDPIPE_DEID_KEY"):
        value = os.environ["MEDPIPE_DEID_KEY"]
        source = "environment"
    else:
        raise KeyConfigurationError(
            "set MEDPIPE_KEY_SECRET_ID or MEDPIPE_KEY_PARAMETER to the de-identification key"
        )
    key = value if isinstance(value, bytes) else str(value).strip().encode("utf-8")
    if len(key) < MIN_KEY_LENGTH:
        raise KeyConfigurationError(f"the key from {source} is shorter than {MIN_KEY_LENGTH} bytes")
    return key
