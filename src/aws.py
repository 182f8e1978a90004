"""Shared construction of boto3 clients and translation of AWS errors.

Clients honour an injected client or session, ``endpoint_url`` (and boto3's own
``AWS_ENDPOINT_URL`` variables), and retry with botocore's ``standard`` mode by default
(``adaptive`` through ``MEDPIPE_AWS_RETRY_MODE``). :func:`translate_client_error` maps a
``ClientError`` to the project's exceptions, keeping the AWS error code.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from src.errors import (
    AccessDeniedError,
    ObjectNotFoundError,
    StorageError,
    ThrottlingError,
)

NOT_FOUND_CODES = frozenset(
    {
        "404",
        "NoSuchKey",
        "NoSuchBucket",
        "NotFound",
        "NoSuchUpload",
        "ResourceNotFoundException",
        "StateMachineDoesNotExist",
        "ExecutionDoesNotExist",
        "ParameterNotFound",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "AccessDeniedException",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "UnauthorizedOperation",
        "ExpiredToken",
    }
)
THROTTLING_CODES = frozenset(
    {
        "503",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestThrottled",
        "ProvisionedThroughputExceededException",
    }
)


def retry_config(max_attempts: int | None = None) -> Config:
    """botocore retry configuration: ``standard`` mode (or ``MEDPIPE_AWS_RETRY_MODE``)."""
    mode = os.environ.get("MEDPIPE_AWS_RETRY_MODE", "standard")
    attempts = max_attempts or int(os.environ.get("MEDPIPE_AWS_MAX_ATTEMPTS", "8"))
    retries: Any = {"mode": mode, "max_attempts": attempts}
    return Config(retries=retries, connect_timeout=10, read_timeout=60)


def make_client(
    service: str,
    *,
    region_name: str,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    session: boto3.session.Session | None = None,
    config: Config | None = None,
) -> Any:
    """Return ``client`` if given, else a new client from ``session`` or a fresh session.

    An explicit argument beats the environment, which beats defaults: boto3 itself reads
    ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` when ``endpoint_url`` is None.
    """
    if client is not None:
        return client
    sess = session or boto3.session.Session(
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        region_name=region_name,
    )
    return sess.client(  # type: ignore[call-overload]
        service,
        region_name=region_name,
        endpoint_url=endpoint_url,
        config=config or retry_config(),
    )


def require_credentials(what: str) -> None:
    """Fail before any work when no AWS credentials can be found for ``what``.

    Raises
    ------
    ConfigurationError
        Naming where credentials are looked for (never their values).
    """
    from src.errors import ConfigurationError

    if boto3.Session().get_credentials() is None:
        raise ConfigurationError(
            f"{what} is on S3 but no AWS credentials were found (set AWS_PROFILE, "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role applies)"
        )


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ``ClientError`` (or its HTTP status as text)."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code") or "")
    if not code:
        code = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code


def translate_client_error(exc: Exception, operation: str, target: str) -> StorageError:
    """Map a botocore error to a project exception (404, 403, 503 or 500).

    Parameters
    ----------
    exc : Exception
        A ``ClientError`` or ``BotoCoreError``.
    operation : str
        What was attempted, for example ``"upload_file"``.
    target : str
        What it was attempted on (bucket/key); keys hold pseudonyms, never PHI.
    """
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = f"{operation} failed for {target}: {code}"
        if code in NOT_FOUND_CODES or status == 404:
            return ObjectNotFoundError(message, aws_error_code=code)
        if code in ACCESS_DENIED_CODES or status == 403:
            return AccessDeniedError(message, aws_error_code=code)
        if code in THROTTLING_CODES or status in (429, 503):
            return ThrottlingError(message, aws_error_code=code)
        return StorageError(message, aws_error_code=code)
    if isinstance(exc, EndpointConnectionError | BotoConnectionError | ReadTimeoutError):
        return ThrottlingError(
            f"{operation} failed for {target}: service unreachable ({type(exc).__name__})",
            aws_error_code=type(exc).__name__,
        )
    if isinstance(exc, BotoCoreError):
        return StorageError(
            f"{operation} failed for {target}: {type(exc).__name__}",
            aws_error_code=type(exc).__name__,
        )
    return StorageError(f"{operation} failed for {target}: {type(exc).__name__}")
