"""STOW-RS: send de-identified files to a DICOMweb origin, in batches, with retry.

``dicomweb-client`` does the HTTP; a batch that fails as a whole (a connection error, a
timeout, 408, 429 or 5xx) is retried here with back-off, within ``--retries``, and a
batch the origin rejects is sent again file by file so that one bad file does not hold
back the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from dicomweb_client import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset

from src.network.destinations import Destination
from src.network.outgoing import Outgoing
from src.network.scu import Association, Delivery

logger = logging.getLogger(__name__)

BATCH_FILES = 25
BATCH_BYTES = 32 * 1024 * 1024


def _batches(items: list[Outgoing]) -> Iterable[list[Outgoing]]:
    batch: list[Outgoing] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= BATCH_FILES or size + item.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


def _stored_uids(response: Dataset) -> tuple[set[str], set[str]]:
    """The SOP Instance UIDs the origin stored and those it failed (PS3.18 10.5.3)."""
    stored = {
        str(i.get("ReferencedSOPInstanceUID", ""))
        for i in response.get("ReferencedSOPSequence", [])
    }
    failed = {
        str(i.get("ReferencedSOPInstanceUID", "")) for i in response.get("FailedSOPSequence", [])
    }
    return stored, failed


class _PinnedCASession(requests.Session):
    """A session whose own ``verify`` wins: requests otherwise lets REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE from the environment replace it (requests issue #3829), which
    silently ignored ``--tls-ca``."""

    def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
        settings["verify"] = self.verify
        return settings


def client_for(dest: Destination, how: Association | None) -> DICOMwebClient:
    """A DICOMweb client that verifies the origin against ``--tls-ca`` (when given, else
    the system's CAs) and presents ``--tls-cert``/``--tls-key`` (when given)."""
    pinned = how is not None and bool(how.tls_ca_file)
    session = _PinnedCASession() if pinned else requests.Session()
    if how is not None and how.tls_ca_file:
        session.verify = how.tls_ca_file
    if how is not None and how.tls_cert_file:
        session.cert = (how.tls_cert_file, how.tls_key_file or how.tls_cert_file)
    client = DICOMwebClient(url=dest.url, session=session)
    # dicomweb-client retries every failed request itself, five times with back-off, on
    # exceptions too (an untrusted certificate cost 30 s under --retries 0); the retries
    # are ours (--retries, with back-off, 408/429/5xx and connection errors), once.
    client.set_http_retry_params(retry=False)
    return client


def held_instances(client: DICOMwebClient, studies: Iterable[str]) -> set[str]:
    """The SOP Instance UIDs the origin holds in ``studies`` (QIDO-RS, PS3.18 10.6).

    Raises
    ------
    requests.RequestException
        When the origin cannot be queried (the caller says so; nothing is forgotten).
    """
    held: set[str] = set()
    for study in sorted(set(studies)):
        try:
            found = client.search_for_instances(
                study_instance_uid=study, fields=["00080018"], get_remaining=True
            )
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                continue  # the origin holds nothing of that study
            raise
        for instance in found:
            values = instance.get("00080018", {}).get("Value") or []
            held.update(str(v) for v in values)
    return held


def store(
    items: list[Outgoing],
    dest: Destination,
    acknowledged: Callable[[Outgoing], None],
    *,
    retries: int = 4,
    backoff_seconds: float = 1.0,
    client: DICOMwebClient | None = None,
) -> Delivery:
    """STOW-RS ``items`` to ``dest``; ``acknowledged`` is called for each stored file."""
    client = client or client_for(dest, None)
    delivery = Delivery()
    for batch in _batches(items):
        if not _post(client, batch, acknowledged, delivery, retries, backoff_seconds):
            for item in batch:  # the batch as a whole was refused: one file at a time
                if not _post(client, [item], acknowledged, delivery, retries, backoff_seconds):
                    delivery.fail("origin refused the file")
    return delivery


def _post(
    client: DICOMwebClient,
    batch: list[Outgoing],
    acknowledged: Callable[[Outgoing], None],
    delivery: Delivery,
    retries: int,
    backoff_seconds: float,
) -> bool:
    """POST one batch; False when the origin refused it (a 4xx): try smaller."""
    for attempt in range(retries + 1):
        try:
            datasets = [dcmread(item.path) for item in batch]
            response = client.store_instances(datasets)
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if 400 <= code < 500 and code not in (408, 429):
                if len(batch) > 1:
                    return False
                delivery.fail(f"origin refused the file (HTTP {code})")
                return True
            reason = f"HTTP {code}"
        except (requests.ConnectionError, requests.Timeout) as exc:
            reason = type(exc).__name__
        else:
            stored, failed = _stored_uids(response)
            for item in batch:
                uid = item.sop_instance_uid
                if uid in failed or (stored and uid not in stored):
                    delivery.fail("origin listed the file as failed")
                else:
                    acknowledged(item)
                    delivery.sent += 1
                    delivery.bytes_sent += item.size
            return True
        logger.warning(
            "STOW-RS batch failed",
            extra={
                "operation": "send",
                "status": "retrying",
                "details": {"files": len(batch), "error": reason, "attempt": attempt + 1},
            },
        )
        if attempt < retries:
            time.sleep(backoff_seconds * 2**attempt)
    for _ in batch:
        delivery.fail("origin unreachable or kept failing after retries")
    return True


__all__ = ["BATCH_BYTES", "BATCH_FILES", "client_for", "held_instances", "store"]
