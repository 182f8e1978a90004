"""The S3 store: a bucket and prefix with the :class:`~src.storage.store.Store` shape.

Writes are single PUTs (multipart above 64 MiB) that never HEAD afterwards, so a writer
needs ``s3:PutObject`` alone. ``if_absent`` sends ``If-None-Match: *``: S3 refuses the
write with 412 when the key exists, and the store then reads the owner recorded in the
existing object's ``x-amz-meta-medpipe-owner`` (which needs ``s3:GetObject``). A fault
while reading the owner (throttling, a 5xx, a timeout, access denied) is raised, never
read as a duplicate, and a 409 ``ConditionalRequestConflict`` is a :class:`ConflictError`
to retry, not an existing object. Encryption is the
bucket's default (SSE-KMS with a Bucket Key in the template) unless a KMS key is given.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from src.aws import make_client, translate_client_error
from src.errors import ConfigurationError, ConflictError, ObjectNotFoundError
from src.storage.store import ObjectExistsError, QuarantineRecord, StoredObject, write_quarantine

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
_OWNER = "medpipe-owner"


class S3Store:
    """``s3://bucket/prefix`` as a store.

    Parameters
    ----------
    bucket, prefix : str
    region_name : str
    endpoint_url : str, optional
    s3_client : botocore client, optional
        Injected client (tests, custom retries); otherwise one from the default session.
    kms_key_id : str, optional
        Send SSE-KMS with this key on every write; by default the bucket's encryption.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        s3_client: Any = None,
        kms_key_id: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.kms_key_id = kms_key_id
        self.client = make_client(
            "s3",
            region_name=region_name or os.environ.get("AWS_REGION") or "us-east-1",
            endpoint_url=endpoint_url,
            client=s3_client,
        )

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> S3Store:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ConfigurationError("an S3 location needs a bucket: s3://bucket/prefix")
        allowed = {"region_name", "endpoint_url", "s3_client", "kms_key_id"}
        return cls(
            parsed.netloc,
            parsed.path.lstrip("/"),
            **{k: v for k, v in options.items() if k in allowed},
        )

    def object_key(self, key: str) -> str:
        """The S3 key of ``key`` under this store's prefix."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        full = self.object_key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue
                    rel = key[len(self.prefix) + 1 :] if self.prefix else key
                    etag = str(obj.get("ETag", "")).strip('"')
                    yield StoredObject(rel, int(obj["Size"]), f"{obj['Size']}:{etag}")
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "list", self.uri) from exc

    def open(self, key: str) -> IO[bytes]:
        """Download into a spooled temporary file (memory up to 64 MiB, then disk).

        One GET, streamed (no HEAD first, unlike the transfer manager).
        """
        spool = tempfile.SpooledTemporaryFile(max_size=MULTIPART_THRESHOLD)  # noqa: SIM115
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
            for chunk in body.iter_chunks(1 << 20):
                spool.write(chunk)
        except (ClientError, BotoCoreError) as exc:
            spool.close()
            raise translate_client_error(exc, "open", self.uri) from exc
        spool.seek(0)
        return spool

    def fetch(self, key: str, path: str) -> None:
        """One streamed GET straight into ``path`` (no spooling, no HEAD)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
            with open(path, "wb") as out:
                for chunk in body.iter_chunks(1 << 20):
                    out.write(chunk)
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "fetch", self.uri) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise translate_client_error(exc, "exists", self.uri) from exc
        return True

    def owner(self, key: str) -> str | None:
        """The input id recorded with ``key`` (``None`` when the object records none).

        Raises
        ------
        ConflictError
            When the object that refused a write is gone by the time it is read (a
            concurrent delete): a retry writes it.
        StorageError
            When the owner cannot be read (throttled, a service fault, access denied): the
            caller retries or fails, and never takes the write for a duplicate.
        """
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except (ClientError, BotoCoreError) as exc:
            error = translate_client_error(exc, "owner", self.uri)
            if isinstance(error, ObjectNotFoundError):
                raise ConflictError(
                    f"owner of an object in {self.uri} changed during the write",
                    aws_error_code="OwnerChanged",
                ) from None
            raise error from exc
        meta: dict[str, str] = head.get("Metadata", {})
        return meta.get(_OWNER)

    def put(
        self,
        key: str,
        source: str | bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
        owner: str = "",
        consume: bool = False,
    ) -> None:
        extra: dict[str, Any] = {"ContentType": content_type}
        if owner:
            extra["Metadata"] = {_OWNER: owner}
        if self.kms_key_id:
            extra["ServerSideEncryption"] = "aws:kms"
            extra["SSEKMSKeyId"] = self.kms_key_id
            extra["BucketKeyEnabled"] = True
        target = self.object_key(key)
        try:
            if isinstance(source, bytes | bytearray | memoryview):
                self._put_once(target, bytes(source), extra, if_absent)
            elif os.path.getsize(source) < MULTIPART_THRESHOLD:
                with open(source, "rb") as body:
                    self._put_once(target, body, extra, if_absent)
            else:
                self._put_multipart(target, source, extra, if_absent)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("PreconditionFailed", "412"):
                raise ObjectExistsError(key, self.owner(key)) from None
            if code in ("ConditionalRequestConflict", "409"):
                # Another conditional write to the key is in flight: not an answer yet.
                raise ConflictError(
                    f"put to {self.uri} conflicted with a concurrent write", aws_error_code=code
                ) from None
            raise translate_client_error(exc, "put", self.uri) from exc
        except BotoCoreError as exc:
            raise translate_client_error(exc, "put", self.uri) from exc

    def quarantine(self, record: QuarantineRecord, original: str | bytes | None) -> None:
        write_quarantine(self, record, original)

    def copy_in(self, source_bucket: str, source_key: str, key: str) -> None:
        """Server-side copy of an object into this store (the original bytes, unchanged)."""
        extra: dict[str, Any] = {}
        if self.kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self.object_key(key),
                CopySource={"Bucket": source_bucket, "Key": source_key},
                **extra,
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate_client_error(exc, "copy", self.uri) from exc

    def _put_once(self, target: str, body: Any, extra: dict[str, Any], if_absent: bool) -> None:
        condition = {"IfNoneMatch": "*"} if if_absent else {}
        self.client.put_object(Bucket=self.bucket, Key=target, Body=body, **extra, **condition)

    def _put_multipart(
        self, target: str, path: str, extra: dict[str, Any], if_absent: bool
    ) -> None:
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=target, **extra)
        upload_id = upload["UploadId"]
        parts = []
        try:
            with open(path, "rb") as fh:
                number = 1
                while chunk := fh.read(PART_SIZE):
                    part = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=target,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                    parts.append({"ETag": part["ETag"], "PartNumber": number})
                    number += 1
            condition = {"IfNoneMatch": "*"} if if_absent else {}
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id
                )
            raise


__all__ = ["S3Store"]
