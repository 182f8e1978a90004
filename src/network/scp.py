"""``medpipe receive``: a de-identifying C-STORE SCP (pynetdicom) over the one pipeline.

Every storage SOP Class pynetdicom knows is accepted, in every transfer syntax it knows,
plus Verification (C-ECHO). Each instance is streamed to a file as it arrives and handed
to :class:`~src.network.intake.Intake`; the sender's status is the intake's answer.

Access is deny-by-default once a list is given: calling AE titles (pynetdicom rejects
the association) and source addresses or networks (the connection is closed before any
PDU is read). TLS wraps every connection when a certificate is given, and verifies
clients against ``tls_ca`` when that is given too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from src.errors import ConfigurationError, StorageError
from src.network.destinations import Destination, check_ae_title
from src.network.forward import Forwarder
from src.network.guard import ConnectionGuard, GuardedRequestHandler, requested, security_event
from src.network.intake import Intake, Study, error_name
from src.network.scu import Association

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ReceiverOptions:
    """How ``medpipe receive`` listens and whom it lets in.

    Attributes
    ----------
    port : int
    bind : str
        The address to listen on (default loopback only).
    ae_title : str
    allowed_aes : tuple of str
        Calling AE titles let in; empty lets any in.
    allowed_hosts : tuple of str
        Source addresses or networks (``10.0.0.0/8``) let in; empty lets any in.
    tls : ssl.SSLContext, optional
    max_associations : int
        Concurrent associations; more are rejected (transient, local limit exceeded).
    max_pdu : int
        Largest PDU we receive (bytes; 0 means no limit).
    idle_seconds : float
        An association silent this long is aborted; each PDU must arrive within it.
    association_seconds : float
        From connect to a whole A-ASSOCIATE-RQ, TLS handshake included; a connection
        that has not associated by then is closed.
    max_pending : int
        Connections not yet associated at once (they take no association slot); over
        it the oldest is closed.
    quiet_seconds : float
        A study with no new instance for this long is complete.
    forward : Destination, optional
        Where a completed study is sent.
    """

    port: int
    bind: str = "127.0.0.1"
    ae_title: str = "MEDPIPE"
    allowed_aes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    tls: ssl.SSLContext | None = None
    max_associations: int = 10
    max_pdu: int = 16382
    idle_seconds: float = 60.0
    association_seconds: float = 10.0
    max_pending: int = 32
    quiet_seconds: float = 30.0
    forward: Destination | None = None
    forward_how: Association | None = None


def parse_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """Parse ``--allow-host`` values; raises ConfigurationError naming the bad one."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ConfigurationError(
                f"--allow-host {value!r} is not an address or network"
            ) from exc
    return tuple(out)


def server_tls(cert: str, key: str, ca: str | None) -> ssl.SSLContext:
    """A server TLS context; with ``ca`` every client must present a certificate it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the TLS certificate or key ({exc})") from exc
    context.verify_mode = ssl.CERT_REQUIRED if ca else ssl.CERT_NONE
    return context


def _no_delay(sock: Any) -> None:
    """Send small PDUs (C-STORE responses) at once: Nagle's algorithm and delayed ACKs
    otherwise add tens of milliseconds to every instance."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _echo(_event: Any) -> int:
    return 0x0000


class _GuardedAE(AE):
    """An AE whose association limit counts only peers that have sent an A-ASSOCIATE-RQ:
    a connection that never does cannot take a slot (see :mod:`src.network.guard`)."""

    @property
    def active_associations(self) -> list[Any]:
        return [a for a in super().active_associations if requested(a)]


class _AllowListServer(ThreadedAssociationServer):
    """pynetdicom's server, closing connections from addresses not on the list, and
    leaving the TLS handshake to each connection's own thread."""

    allowed: tuple[Network, ...] = ()
    guard: ConnectionGuard

    def get_request(self) -> tuple[Any, Any]:
        listening: Any = self.socket
        client, address = listening.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        _no_delay(request)
        if not self.allowed:
            return True
        try:
            address = ipaddress.ip_address(client_address[0])
        except (ValueError, IndexError, TypeError):
            return False
        if any(address in net for net in self.allowed):
            return True
        security_event("source address not allowed", client_address)
        return False


class Receiver:
    """A running C-STORE SCP feeding an :class:`Intake`.

    Parameters
    ----------
    intake : Intake
    options : ReceiverOptions
    """

    def __init__(self, intake: Intake, options: ReceiverOptions) -> None:
        self.intake = intake
        self.options = options
        self.networks = parse_networks(options.allowed_hosts)
        for title in (options.ae_title, *options.allowed_aes):
            check_ae_title(title)
        self.ae = self._make_ae()
        self.server: Any = None
        self.forwarder: Forwarder | None = None
        self._threads: list[threading.Thread] = []
        self._dirty = False
        self._stopping = threading.Event()

    def _make_ae(self) -> AE:
        options = self.options
        ae = _GuardedAE(ae_title=options.ae_title)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_associations = options.max_associations
        ae.maximum_pdu_size = options.max_pdu
        ae.network_timeout = options.idle_seconds
        ae.acse_timeout = min(options.association_seconds, options.idle_seconds)
        ae.dimse_timeout = min(options.idle_seconds, 30.0)
        ae.require_calling_aet = list(options.allowed_aes)
        ae.require_called_aet = True
        return ae

    def _on_rejected(self, event: Any) -> None:
        """Name why pynetdicom rejected an association (a security event)."""
        requestor = event.assoc.requestor
        calling = str(requestor.ae_title).strip()
        called = str(getattr(requestor.primitive, "called_ae_title", "")).strip()
        if self.options.allowed_aes and calling not in self.options.allowed_aes:
            reason = "calling AE title not allowed"
        elif called != self.options.ae_title:
            reason = "called AE title is not ours"
        else:
            reason = "association limit reached"
        security_event(reason, (requestor.address, requestor.port))

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> tuple[str, int]:
        """Start listening (in background threads); returns the bound address."""
        # Each instance is streamed into a file of the spool as it arrives (bounded memory;
        # a crash leaves it where the next start sweeps it away).
        _config.STORE_RECV_CHUNKED_DATASET = True
        tempfile.tempdir = str(self.intake.spool)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_ECHO, _echo),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        options = self.options
        self.server = self.ae.make_server(
            (options.bind, options.port),
            evt_handlers=handlers,
            ssl_context=options.tls,
            server_class=_AllowListServer,
            request_handler=GuardedRequestHandler,
        )
        self.server.allowed = self.networks
        self.server.guard = ConnectionGuard(
            options.association_seconds, options.idle_seconds, options.max_pdu, options.max_pending
        )
        self.ae._servers.append(self.server)  # as start_server does: shutdown() expects it
        self._spawn(self.server.serve_forever, "scp-accept")
        self._spawn(self._watch_studies, "scp-studies")
        if self.options.forward is not None:
            self.forwarder = Forwarder(self.intake, self.options.forward, self.options.forward_how)
        return self.address

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _on_store(self, event: Any) -> int:
        try:
            path = str(event.dataset_path)
            sop = str(event.request.AffectedSOPInstanceUID)
            calling = str(event.assoc.requestor.ae_title)
        except Exception:  # an unreadable request: nothing to store, tell the sender
            return 0xC000
        try:
            status = self.intake.accept(path, sop, calling)
        except Exception as exc:  # never a traceback (pynetdicom would log one): a failure
            logger.error(
                "Unexpected error while storing an instance",
                extra={
                    "operation": "receive",
                    "status": "failed",
                    "details": {"error": type(exc).__name__},
                },
            )
            return 0xC000
        self._dirty = True
        return status

    def _watch_studies(self) -> None:
        last_flush = time.monotonic()
        while not self._stopping.is_set():
            time.sleep(0.25)
            for study in self.intake.studies.due():
                self._complete(study)
            if self._dirty and time.monotonic() - last_flush > 2.0:
                self._dirty = False
                last_flush = time.monotonic()
                self._flush()

    def _flush(self) -> bool:
        """Rewrite the reports; a failure (a full disk) is logged, never fatal: the
        journal already holds every instance and the next flush rewrites them."""
        try:
            self.intake.flush()
        except (OSError, StorageError) as exc:
            logger.error(
                "Reports not written",
                extra={
                    "operation": "receive",
                    "status": "failed",
                    "details": {"error": error_name(exc)},
                },
            )
            return False
        return True

    def _complete(self, study: Study) -> None:
        logger.info(
            "Study complete",
            extra={
                "operation": "receive",
                "status": "study-complete",
                "details": {"study": study.uid, "instances": len(study.keys)},
            },
        )
        if self.forwarder is not None:
            self.forwarder.submit(study)

    def stop(self, grace_seconds: float = 30.0) -> bool:
        """Stop accepting, let associations in flight finish, complete every study
        received, finish forwarding and write the reports.

        Returns
        -------
        bool
            False when the reports could not be written (the journal has everything).
        """
        if self.server is not None:
            self.server.shutdown()  # no new connections; the socket is closed
            self.server.guard.close_pending()
        deadline = time.monotonic() + grace_seconds
        # Associations in flight may finish; a connection that never sent an
        # A-ASSOCIATE-RQ (a port probe, a half-open socket) is not waited for.
        while time.monotonic() < deadline and any(
            a.is_established for a in self.ae.active_associations
        ):
            time.sleep(0.05)
        for assoc in self.ae.active_associations:
            assoc.abort()
        self._stopping.set()
        for study in self.intake.studies.due(everything=True):
            self._complete(study)
        if self.forwarder is not None:
            self.forwarder.close()
        for thread in self._threads:
            if thread.name != "scp-accept":
                thread.join()
        written = self._flush()
        self.intake.close()
        return written


__all__ = ["Receiver", "ReceiverOptions", "parse_networks", "server_tls"]
