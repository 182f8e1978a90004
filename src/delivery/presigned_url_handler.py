"""Time-limited download and upload links (S3 presigned URLs, SigV4).

SigV4 presigned URLs live between 1 second and 7 days; anything outside is refused here
rather than by S3 at download time. ``Content-Disposition`` is built from a sanitised
file name, so a hostile object key cannot inject headers or quotes.

moto (used in the tests) does not verify signatures or expiry, so those are checked by
the URL's query parameters in unit tests; see ``docs/aws.md``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from src.aws import make_client, retry_config, translate_client_error
from src.errors import AccessDeniedError, ObjectNotFoundError

MIN_EXPIRY_SECONDS = 1
MAX_EXPIRY_SECONDS = 7 * 24 * 3600
DICOM_CONTENT_TYPE = "application/dicom"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_expiry(expiration_seconds: int) -> int:
    """Return ``expiration_seconds`` if SigV4 allows it (1 s to 7 days); else ``ValueError``."""
    if isinstance(expiration_seconds, bool) or not isinstance(expiration_seconds, int):
        raise ValueError("expiration_seconds must be an integer number of seconds")
    if not MIN_EXPIRY_SECONDS <= expiration_seconds <= MAX_EXPIRY_SECONDS:
        raise ValueError(
            f"expiration_seconds must be between {MIN_EXPIRY_SECONDS} and "
            f"{MAX_EXPIRY_SECONDS} (7 days, the SigV4 limit); got {expiration_seconds}"
        )
    return expiration_seconds


def safe_filename(object_key: str) -> str:
    """The last path component of a key, reduced to characters safe in a header."""
    name = object_key.rsplit("/", 1)[-1] or "download"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE_FILENAME.sub("_", ascii_name).strip(" .") or "download"
    return cleaned[:150]


def content_disposition(object_key: str) -> str:
    """``attachment`` with an ASCII fallback name and an RFC 5987 UTF-8 name."""
    name = object_key.rsplit("/", 1)[-1] or "download"
    name = _CONTROL.sub("", name)
    return (
        f'attachment; filename="{safe_filename(object_key)}"; '
        f"filename*=UTF-8''{quote(name, safe='')}"
    )


def _check_header_value(value: str | None, what: str) -> None:
    if value is not None and _CONTROL.search(value):
        raise ValueError(f"{what} must not contain control characters (CR, LF ...)")


PHI_BUCKET_VARIABLES = ("MEDPIPE_RAW_BUCKET", "MEDPIPE_QUARANTINE_BUCKET")


def phi_buckets_from_env() -> frozenset[str]:
    """Buckets that hold PHI: ``MEDPIPE_RAW_BUCKET``, ``MEDPIPE_QUARANTINE_BUCKET`` and the
    comma-separated ``MEDPIPE_PHI_BUCKETS``."""
    names = {os.environ.get(v, "") for v in PHI_BUCKET_VARIABLES}
    names.update(os.environ.get("MEDPIPE_PHI_BUCKETS", "").split(","))
    return frozenset(n.strip() for n in names if n.strip())


class PresignedUrlHandler:
    """Generate presigned URLs for one bucket.

    Parameters
    ----------
    bucket_name : str
    region_name : str
    aws_access_key_id, aws_secret_access_key : str, optional
    endpoint_url : str, optional
    s3_client : botocore client, optional
        Injected client.
    session : boto3.session.Session, optional

    Examples
    --------
    >>> handler = PresignedUrlHandler(bucket_name="processed-bucket")  # doctest: +SKIP
    >>> handler.generate_download_url("patient/study/image.dcm")["expires_in"]  # doctest: +SKIP
    3600
    """

    def __init__(
        self,
        bucket_name: str,
        region_name: str = "us-east-1",
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        *,
        endpoint_url: str | None = None,
        s3_client: Any = None,
        session: boto3.session.Session | None = None,
        phi_buckets: frozenset[str] | None = None,
    ) -> None:
        self.bucket_name = bucket_name
        self.phi_buckets = phi_buckets if phi_buckets is not None else phi_buckets_from_env()
        self.region_name = region_name
        config = retry_config().merge(Config(signature_version="s3v4"))
        self.s3_client = make_client(
            "s3",
            region_name=region_name,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            endpoint_url=endpoint_url,
            client=s3_client,
            session=session,
            config=config,
        )

    def _presign(self, method: str, params: dict[str, Any], expiration_seconds: int) -> str:
        if self.bucket_name in self.phi_buckets:
            # The bucket policy denies query-string auth there too; refusing here says why.
            raise AccessDeniedError(
                f"presigned URLs are refused for bucket {self.bucket_name}: it holds PHI "
                "(raw or quarantine); share from the processed bucket",
                aws_error_code="PhiBucket",
            )
        try:
            url: str = self.s3_client.generate_presigned_url(
                method, Params=params, ExpiresIn=expiration_seconds
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, method, self.bucket_name) from exc
        return url

    def generate_download_url(
        self,
        object_key: str,
        expiration_seconds: int = 3600,
        response_content_type: str | None = None,
        response_content_disposition: str | None = None,
    ) -> dict[str, Any]:
        """Presigned GET URL.

        Parameters
        ----------
        object_key : str
        expiration_seconds : int
            1 to 604800 (7 days).
        response_content_type : str, optional
            Overrides the response's Content-Type.
        response_content_disposition : str, optional
            Overrides Content-Disposition; control characters are refused.

        Returns
        -------
        dict
            ``{"url", "expires_in", "bucket", "key", "method"}``; ``expires_in`` is an int.
        """
        check_expiry(expiration_seconds)
        _check_header_value(response_content_type, "response_content_type")
        _check_header_value(response_content_disposition, "response_content_disposition")
        params: dict[str, Any] = {"Bucket": self.bucket_name, "Key": object_key}
        if response_content_type:
            params["ResponseContentType"] = response_content_type
        if response_content_disposition:
            params["ResponseContentDisposition"] = response_content_disposition
        url = self._presign("get_object", params, expiration_seconds)
        return {
            "url": url,
            "expires_in": expiration_seconds,
            "bucket": self.bucket_name,
            "key": object_key,
            "method": "GET",
        }

    def generate_upload_url(
        self,
        object_key: str,
        expiration_seconds: int = 3600,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Presigned PUT URL; the uploader must send the same Content-Type and metadata.

        Returns
        -------
        dict
            ``{"url", "expires_in", "bucket", "key", "method", "headers"}`` where
            ``headers`` lists what the PUT must carry.
        """
        check_expiry(expiration_seconds)
        _check_header_value(content_type, "content_type")
        params: dict[str, Any] = {"Bucket": self.bucket_name, "Key": object_key}
        headers: dict[str, str] = {}
        if content_type:
            params["ContentType"] = content_type
            headers["Content-Type"] = content_type
        if metadata:
            for k, v in metadata.items():
                _check_header_value(f"{k}{v}", "metadata")
            params["Metadata"] = dict(metadata)
            headers.update({f"x-amz-meta-{k}": v for k, v in metadata.items()})
        url = self._presign("put_object", params, expiration_seconds)
        return {
            "url": url,
            "expires_in": expiration_seconds,
            "bucket": self.bucket_name,
            "key": object_key,
            "method": "PUT",
            "headers": headers,
        }

    def generate_batch_download_urls(
        self, object_keys: list[str], expiration_seconds: int = 3600
    ) -> dict[str, dict[str, Any]]:
        """Presigned GET URLs for many keys: ``{key: url_info}`` in the given order."""
        check_expiry(expiration_seconds)
        return {key: self.generate_download_url(key, expiration_seconds) for key in object_keys}

    def validate_object_exists(self, object_key: str) -> bool:
        """Whether the object exists (HEAD); other errors raise."""
        try:
            self.s3_client.head_object(Bucket=self.bucket_name, Key=object_key)
        except (ClientError, BotoCoreError) as exc:
            err = translate_client_error(exc, "head_object", self.bucket_name)
            if isinstance(err, ObjectNotFoundError):
                return False
            raise err from exc
        return True

    def generate_secure_download_url(
        self,
        object_key: str,
        expiration_seconds: int = 3600,
        validate_exists: bool = True,
    ) -> dict[str, Any] | None:
        """A download URL with DICOM headers, or None when the object does not exist.

        Sets ``Content-Type: application/dicom`` and an attachment disposition with a
        sanitised file name.
        """
        check_expiry(expiration_seconds)
        if validate_exists and not self.validate_object_exists(object_key):
            return None
        return self.generate_download_url(
            object_key,
            expiration_seconds,
            response_content_type=DICOM_CONTENT_TYPE,
            response_content_disposition=content_disposition(object_key),
        )
