"""S3 storage: upload, download, list, delete and inspect objects.

Large files go through boto3's transfer manager (multipart above ``multipart_threshold``).
Uploads send no encryption header unless asked, so the bucket's default encryption applies
(SSE-KMS with the stack's key in the template, whose bucket policies deny any other
header); ``sse="AES256"`` or ``sse="aws:kms"`` with a key id ask for one explicitly.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from src.aws import make_client, translate_client_error
from src.errors import ObjectNotFoundError

logger = logging.getLogger(__name__)

DEFAULT_TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=8 * 1024 * 1024,
    multipart_chunksize=8 * 1024 * 1024,
    max_concurrency=4,
)


class S3Handler:
    """Handle S3 operations for one bucket.

    Parameters
    ----------
    bucket_name : str
        The bucket.
    region_name : str
        AWS region (default ``"us-east-1"``).
    aws_access_key_id, aws_secret_access_key : str, optional
        Explicit credentials; otherwise boto3's chain.
    endpoint_url : str, optional
        An S3-compatible endpoint (MinIO, moto); ``AWS_ENDPOINT_URL`` also works.
    s3_client : botocore client, optional
        Inject a ready client (tests, custom retry settings).
    session : boto3.session.Session, optional
        Build the client from this session.
    sse : {None, "AES256", "aws:kms"}
        Server-side encryption header for uploads. ``None`` (the default) sends none, so
        the bucket's default encryption applies; a header the bucket's policy does not
        allow is refused there, not silently downgraded here.
    kms_key_id : str, optional
        The KMS key for ``sse="aws:kms"``.
    transfer_config : TransferConfig, optional
        Multipart thresholds and concurrency.

    Examples
    --------
    >>> handler = S3Handler(bucket_name="my-bucket")  # doctest: +SKIP
    >>> handler.upload_file("/path/to/file.dcm", "patient123/study456/image.dcm")  # doctest: +SKIP
    {'bucket': 'my-bucket', 'key': 'patient123/study456/image.dcm', 'etag': '...'}
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
        sse: str | None = None,
        kms_key_id: str | None = None,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        if sse not in (None, "AES256", "aws:kms"):
            raise ValueError("sse must be 'AES256', 'aws:kms' or None")
        if kms_key_id and sse != "aws:kms":
            raise ValueError("kms_key_id needs sse='aws:kms'")
        self.bucket_name = bucket_name
        self.region_name = region_name
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.transfer_config = transfer_config or DEFAULT_TRANSFER_CONFIG
        self.s3_client = make_client(
            "s3",
            region_name=region_name,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            endpoint_url=endpoint_url,
            client=s3_client,
            session=session,
        )

    def _target(self, key: str) -> str:
        return f"s3://{self.bucket_name}/{key}"

    def _extra_args(
        self, metadata: dict[str, str] | None, content_type: str | None
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if content_type:
            extra["ContentType"] = content_type
        if metadata:
            extra["Metadata"] = {str(k): str(v) for k, v in metadata.items()}
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
            if self.kms_key_id:
                extra["SSEKMSKeyId"] = self.kms_key_id
        return extra

    def upload_file(
        self,
        file_path: str,
        object_key: str,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/dicom",
    ) -> dict[str, str]:
        """Upload a file (multipart when large).

        Parameters
        ----------
        file_path : str
            Local file.
        object_key : str
            Destination key; spaces and unicode are fine.
        metadata : dict, optional
            User metadata (``x-amz-meta-*``); never put PHI here.
        content_type : str
            MIME type (default ``application/dicom``).

        Returns
        -------
        dict
            ``{"bucket", "key", "etag"}``.

        Raises
        ------
        FileNotFoundError
            If ``file_path`` does not exist.
        StorageError
            Or a subclass (not found, access denied, throttled) on AWS errors.
        """
        if not os.path.isfile(file_path):
            raise FileNotFoundError(f"no such file to upload: {file_path}")
        try:
            self.s3_client.upload_file(
                file_path,
                self.bucket_name,
                object_key,
                ExtraArgs=self._extra_args(metadata, content_type),
                Config=self.transfer_config,
            )
            head = self.s3_client.head_object(Bucket=self.bucket_name, Key=object_key)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "upload_file", self._target(object_key)) from exc
        etag = str(head.get("ETag", "")).strip('"')
        logger.info(
            "File uploaded",
            extra={
                "operation": "upload_file",
                "status": "completed",
                "details": {"bucket": self.bucket_name, "size": head.get("ContentLength")},
            },
        )
        return {"bucket": self.bucket_name, "key": object_key, "etag": etag}

    def upload_bytes(
        self,
        data: bytes,
        object_key: str,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> dict[str, str]:
        """Put a small object from memory; returns ``{"bucket", "key", "etag"}``."""
        try:
            response = self.s3_client.put_object(
                Bucket=self.bucket_name,
                Key=object_key,
                Body=data,
                **self._extra_args(metadata, content_type),
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "upload_bytes", self._target(object_key)) from exc
        return {
            "bucket": self.bucket_name,
            "key": object_key,
            "etag": str(response.get("ETag", "")).strip('"'),
        }

    def download_file(self, object_key: str, file_path: str) -> dict[str, str]:
        """Download an object to a local file (multipart-aware, written atomically).

        Returns
        -------
        dict
            ``{"bucket", "key", "file_path", "size"}`` (size as text, as documented).

        Raises
        ------
        ObjectNotFoundError
            If the object does not exist.
        """
        directory = os.path.dirname(os.path.abspath(file_path))
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".medpipe-tmp-dl-{os.getpid()}-{abs(hash(object_key))}")
        try:
            self.s3_client.download_file(
                self.bucket_name, object_key, tmp, Config=self.transfer_config
            )
            os.replace(tmp, file_path)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "download_file", self._target(object_key)) from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return {
            "bucket": self.bucket_name,
            "key": object_key,
            "file_path": file_path,
            "size": str(os.path.getsize(file_path)),
        }

    def download_bytes(self, object_key: str) -> bytes:
        """Return an object's body (for small objects)."""
        try:
            response = self.s3_client.get_object(Bucket=self.bucket_name, Key=object_key)
            body: bytes = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "download_bytes", self._target(object_key)) from exc
        return body

    def list_objects(self, prefix: str = "", max_keys: int = 1000) -> list[dict[str, Any]]:
        """List objects under ``prefix``, paging past 1,000 keys, up to ``max_keys`` in all.

        Returns
        -------
        list of dict
            ``{"Key", "Size", "LastModified", "ETag"}`` per object, in key order.
        """
        if max_keys < 0:
            raise ValueError("max_keys must not be negative")
        out: list[dict[str, Any]] = []
        paginator = self.s3_client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(
                Bucket=self.bucket_name,
                Prefix=prefix,
                PaginationConfig={"PageSize": min(1000, max(1, max_keys))},
            ):
                for obj in page.get("Contents", []):
                    if len(out) >= max_keys:
                        return out
                    out.append(
                        {
                            "Key": obj["Key"],
                            "Size": obj["Size"],
                            "LastModified": obj.get("LastModified"),
                            "ETag": str(obj.get("ETag", "")).strip('"'),
                        }
                    )
                if len(out) >= max_keys:
                    break
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "list_objects", self._target(prefix)) from exc
        return out

    def delete_object(self, object_key: str) -> bool:
        """Delete an object; True when S3 accepted the delete (also for a missing key)."""
        try:
            self.s3_client.delete_object(Bucket=self.bucket_name, Key=object_key)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "delete_object", self._target(object_key)) from exc
        return True

    def object_exists(self, object_key: str) -> bool:
        """Whether the object exists."""
        try:
            self.get_object_metadata(object_key)
        except ObjectNotFoundError:
            return False
        return True

    def get_object_metadata(self, object_key: str) -> dict[str, Any]:
        """HEAD an object.

        Returns
        -------
        dict
            ``ContentLength``, ``ContentType``, ``ETag``, ``LastModified``, ``Metadata``,
            ``ServerSideEncryption`` (and ``SSEKMSKeyId`` when set).

        Raises
        ------
        ObjectNotFoundError
            If the object does not exist.
        """
        try:
            head = self.s3_client.head_object(Bucket=self.bucket_name, Key=object_key)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(
                exc, "get_object_metadata", self._target(object_key)
            ) from exc
        out = {
            "ContentLength": head.get("ContentLength"),
            "ContentType": head.get("ContentType"),
            "ETag": str(head.get("ETag", "")).strip('"'),
            "LastModified": head.get("LastModified"),
            "Metadata": head.get("Metadata", {}),
            "ServerSideEncryption": head.get("ServerSideEncryption"),
        }
        if head.get("SSEKMSKeyId"):
            out["SSEKMSKeyId"] = head["SSEKMSKeyId"]
        return out
