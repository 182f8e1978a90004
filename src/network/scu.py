"""C-STORE SCU: send de-identified files to a DICOM node, resuming after a drop.

Files are sent as their bytes are (pynetdicom's chunked send) on a presentation context
of their own SOP Class and Transfer Syntax. Where the peer accepted only another
uncompressed syntax, the file is re-encoded into it; a compressed file whose syntax the
peer refused is reported as failed (it is never decompressed or recompressed here).
An association that drops is re-opened and only the files not yet acknowledged are
sent again.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.uid import UID
from pynetdicom import AE, _config
from pynetdicom.presentation import build_context

from src.network.destinations import Destination
from src.network.outgoing import Outgoing

logger = logging.getLogger(__name__)

#: PS3.8: at most 128 presentation contexts in one association (odd ids 1 to 255).
MAX_CONTEXTS = 126
_UNCOMPRESSED = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
}
_EXPLICIT_LE = "1.2.840.10008.1.2.1"


@dataclass
class Delivery:
    """What happened to the files handed to a sender (counts and reasons, no values)."""

    sent: int = 0
    failed: int = 0
    bytes_sent: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


@dataclass(frozen=True)
class Association:
    """How to associate: our AE title, TLS, timeouts and the retry budget."""

    calling_ae: str = "MEDPIPE"
    tls: ssl.SSLContext | None = None
    retries: int = 5
    backoff_seconds: float = 1.0
    timeout_seconds: float = 30.0
    max_pdu: int = 0
    #: The PEM files behind ``tls`` (CA, certificate, key), for HTTPS destinations.
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None


def _is_success(status: int) -> bool:
    return status == 0x0000 or 0xB000 <= status <= 0xBFFF


def _contexts(items: list[Outgoing]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for item in items:
        pair = (item.sop_class_uid, item.transfer_syntax_uid)
        if pair not in pairs:
            pairs.append(pair)
        fallback = (item.sop_class_uid, _EXPLICIT_LE)
        if item.transfer_syntax_uid in _UNCOMPRESSED and fallback not in pairs:
            pairs.append(fallback)
    return pairs


def _batches(items: list[Outgoing]) -> Iterable[list[Outgoing]]:
    """Runs of files whose presentation contexts fit in one association."""
    batch: list[Outgoing] = []
    for item in items:
        if len(_contexts([*batch, item])) > MAX_CONTEXTS and batch:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def store(
    items: list[Outgoing],
    dest: Destination,
    acknowledged: Callable[[Outgoing], None],
    how: Association | None = None,
) -> Delivery:
    """C-STORE ``items`` to ``dest``; ``acknowledged`` is called for each success.

    Returns
    -------
    Delivery
        Files a peer refused, and files still unsent after the retry budget, count as
        failed with a reason; nothing is retried that the peer acknowledged.
    """
    how = how or Association()
    _config.STORE_SEND_CHUNKED_DATASET = True  # stream files as they are on disk
    ae = AE(ae_title=how.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = how.timeout_seconds
    if how.max_pdu:
        ae.maximum_pdu_size = how.max_pdu
    delivery = Delivery()
    for batch in _batches(items):
        _store_batch(ae, batch, dest, acknowledged, how, delivery)
    return delivery


def _store_batch(
    ae: AE,
    batch: list[Outgoing],
    dest: Destination,
    acknowledged: Callable[[Outgoing], None],
    how: Association,
    delivery: Delivery,
) -> None:
    pending = list(batch)
    attempts = 0
    established = False
    while pending:
        contexts = [build_context(UID(a), [UID(t)]) for a, t in _contexts(pending)]
        tls_args = (how.tls, dest.host) if how.tls is not None else None
        assoc = ae.associate(
            dest.host, dest.port, contexts=contexts, ae_title=dest.ae_title, tls_args=tls_args
        )
        progressed = False
        if assoc.is_established:
            established = True
            _no_delay(assoc)
            accepted = {
                (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                for cx in assoc.accepted_contexts
            }
            still: list[Outgoing] = []
            dropped = False
            for item in pending:
                if dropped or not assoc.is_established:
                    dropped = True
                    still.append(item)
                    continue
                outcome = _send_one(assoc, item, accepted)
                if outcome is None:  # no response: the association dropped mid-file
                    dropped = True
                    still.append(item)
                elif outcome == "":
                    acknowledged(item)
                    delivery.sent += 1
                    delivery.bytes_sent += item.size
                    progressed = True
                elif outcome.startswith("retry"):
                    still.append(item)
                else:
                    delivery.fail(outcome)
                    progressed = True
            if assoc.is_established:
                assoc.release()
            pending = still
        else:
            logger.warning(
                "Association not established",
                extra={
                    "operation": "send",
                    "status": "retrying",
                    "details": {"destination": dest.label, "rejected": assoc.is_rejected},
                },
            )
        if not pending:
            return
        attempts = 0 if progressed else attempts + 1
        if attempts > how.retries:
            why = "peer unreachable or kept failing after retries"
            if how.tls is not None and not how.tls_cert_file and not established:
                # A peer that verifies clients ends the TLS handshake without saying why
                # to pynetdicom; the likeliest cause is worth one line.
                why = (
                    "no TLS association, and no client certificate was given: a peer that "
                    "verifies clients needs --tls-cert and --tls-key"
                )
            for _ in pending:
                delivery.fail(why)
            return
        time.sleep(how.backoff_seconds * min(2 ** max(attempts - 1, 0), 30))


def _no_delay(assoc: Any) -> None:
    """Send each PDU at once (see :func:`src.network.scp._no_delay`)."""
    with contextlib.suppress(OSError, AttributeError):
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _send_one(assoc: object, item: Outgoing, accepted: set[tuple[str, str]]) -> str | None:
    """Send one file: ``""`` on success, ``None`` when the association dropped, a reason
    starting with ``retry`` for a transient failure, any other reason for a refusal."""
    exact = (item.sop_class_uid, item.transfer_syntax_uid) in accepted
    convertible = item.transfer_syntax_uid in _UNCOMPRESSED and any(
        a == item.sop_class_uid and t in _UNCOMPRESSED for a, t in accepted
    )
    if not exact and not convertible:
        return "peer accepted no presentation context for the file's SOP Class and syntax"
    try:
        payload = item.path if exact else dcmread(item.path)
        status_ds = assoc.send_c_store(payload)  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError) as exc:
        return f"could not be sent ({type(exc).__name__})"
    if not status_ds or "Status" not in status_ds:
        return None
    status = int(status_ds.Status)
    if _is_success(status):
        return ""
    if 0xA700 <= status <= 0xA7FF:
        return f"retry: peer out of resources (0x{status:04X})"
    return f"peer refused the file (0x{status:04X})"


__all__ = ["MAX_CONTEXTS", "Association", "Delivery", "store"]
