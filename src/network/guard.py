"""What a connection may cost the receiver before it has associated.

pynetdicom's server does the TLS handshake in its single accept thread, reads a PDU of
whatever length the peer declares, counts connections that never sent an
A-ASSOCIATE-RQ against the association limit, and times out per ``recv`` only. Each of
those lets one unauthenticated peer stop the node. This module bounds them:

- the TLS handshake runs in the connection's own thread, within the association
  deadline, so a silent socket delays nobody else;
- the A-ASSOCIATE-RQ must arrive whole within ``association_seconds`` of the connect;
  after that every PDU must arrive whole within ``idle_seconds`` (a byte every few
  seconds no longer holds a slot);
- a PDU header is checked before its body is read: an A-ASSOCIATE-RQ may be at most
  :data:`MAX_ASSOCIATE_RQ_BYTES`, and a P-DATA-TF at most the Maximum Length we
  announced (PS3.8 D.1), so no declared length is ever allocated;
- connections that have not associated do not take an association slot; they are
  bounded separately (``max_pending``), and the oldest is dropped for a new one.

Every refusal is a security event in the log: the reason and the peer's address, never
an AE title or anything the peer sent.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from typing import Any

from pynetdicom.transport import AssociationSocket, RequestHandler

logger = logging.getLogger(__name__)

#: The largest A-ASSOCIATE-RQ accepted (bytes after the 6-byte header). 128 presentation
#: contexts (the most PS3.8 allows) of 30 transfer syntaxes each fit in about 100 KiB.
MAX_ASSOCIATE_RQ_BYTES = 1 << 20
#: The largest P-DATA-TF accepted when we announce no Maximum Length (``--max-pdu 0``).
MAX_UNANNOUNCED_PDU_BYTES = 64 << 20

_A_ASSOCIATE_RQ = 0x01
_P_DATA_TF = 0x04


def security_event(reason: str, peer: Any, **details: Any) -> None:
    """Log one refusal of the receiver (JSON log format; PHI-free).

    Parameters
    ----------
    reason : str
        A fixed phrase naming what was refused.
    peer : tuple or str
        The peer's socket address; only its host part is logged.
    """
    host = peer[0] if isinstance(peer, tuple) and peer else str(peer or "")
    logger.warning(
        "Security event: %s",
        reason,
        extra={
            "operation": "receive",
            "status": "security",
            "details": {"reason": reason, "peer": host, **details},
        },
    )


class GuardedSocket(AssociationSocket):
    """pynetdicom's association socket, reading each PDU within its bounds and deadline.

    The DUL reads a PDU as ``recv(6)`` (type, reserved, length) and then
    ``recv(length)``; this class checks the header before the body is read.
    """

    _connected_at: float
    _idle_seconds: float
    _max_pdata: int
    _peer: Any
    _guard: ConnectionGuard
    requested: bool
    _body: int | None
    _body_type: int

    def arm(self, guard: ConnectionGuard, peer: Any) -> None:
        """Set the bounds (called once, right after the socket is made)."""
        self._connected_at = time.monotonic()
        self._idle_seconds = guard.idle_seconds
        self._max_pdata = guard.max_pdu or MAX_UNANNOUNCED_PDU_BYTES
        self._peer = peer
        self._guard = guard
        self.requested = False  # a whole A-ASSOCIATE-RQ has been read
        self._body = None
        self._body_type = 0
        self._deadline = self._connected_at + guard.association_seconds

    def recv(self, nr_bytes: int) -> bytearray:
        if self._body is None:  # a header
            if self.requested:
                self._deadline = time.monotonic() + self._idle_seconds
            data = self._read(nr_bytes)
            if len(data) == 6:
                pdu_type, _, length = struct.unpack(">BBL", data)
                if not self._allowed(pdu_type, length):
                    self._drop()
                    return bytearray()
                self._body, self._body_type = length, pdu_type
            return data
        data = self._read(nr_bytes)
        if self._body_type == _A_ASSOCIATE_RQ and len(data) == self._body and not self.requested:
            self.requested = True
            self._guard.associated(self.socket)
        self._body = None
        return data

    def _allowed(self, pdu_type: int, length: int) -> bool:
        if not self.requested:
            if pdu_type != _A_ASSOCIATE_RQ:
                security_event("a PDU other than A-ASSOCIATE-RQ before association", self._peer)
                return False
            if length > MAX_ASSOCIATE_RQ_BYTES:
                security_event(
                    "A-ASSOCIATE-RQ longer than allowed", self._peer, limit=MAX_ASSOCIATE_RQ_BYTES
                )
                return False
            return True
        limit = self._max_pdata if pdu_type == _P_DATA_TF else MAX_ASSOCIATE_RQ_BYTES
        if length > limit:
            security_event("PDU longer than the announced maximum", self._peer, limit=limit)
            return False
        return True

    def _read(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        out = bytearray()
        if sock is None:
            return out
        try:
            while len(out) < nr_bytes:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(min(65536, nr_bytes - len(out)))
                if not chunk:
                    break
                out.extend(chunk)
        except TimeoutError:
            why = "PDU not received in time" if self.requested else "no association in time"
            security_event(why, self._peer)
            self._drop()
            return bytearray()
        except OSError:
            return out
        with contextlib.suppress(OSError):
            sock.settimeout(self._idle_seconds)
        return out

    def _drop(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)


class GuardedRequestHandler(RequestHandler):
    """One connection's thread: TLS handshake within the deadline, then a guarded socket."""

    server: Any

    def setup(self) -> None:
        self.refused = False
        guard: ConnectionGuard = self.server.guard
        request = self.request
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(guard.association_seconds)
                request.do_handshake()
            except (OSError, ssl.SSLError, ValueError):
                security_event("TLS handshake failed or timed out", self.client_address)
                self.refused = True
                return
        with contextlib.suppress(OSError):
            request.settimeout(guard.idle_seconds)

    def handle(self) -> None:
        if self.refused:
            return
        self.server.guard.add_pending(self.request, self.client_address)
        super().handle()  # starts the association's own thread and returns

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        sock: Any = assoc.dul.socket
        # pynetdicom makes its AssociationSocket inside this method with no hook for the
        # class (transport.RequestHandler._create_association); the subclass adds only
        # methods, so the made socket is given its class here.
        sock.__class__ = GuardedSocket
        sock.arm(self.server.guard, self.client_address)
        return assoc


class ConnectionGuard:
    """The receiver's per-connection bounds, shared by its connection threads.

    Parameters
    ----------
    association_seconds : float
        From connect to a whole A-ASSOCIATE-RQ (TLS handshake included).
    idle_seconds : float
        For each later PDU to arrive whole.
    max_pdu : int
        The Maximum Length we announce (0: none announced).
    max_pending : int
        Connections at once that have not yet associated; the oldest is dropped.
    """

    def __init__(
        self, association_seconds: float, idle_seconds: float, max_pdu: int, max_pending: int
    ) -> None:
        self.association_seconds = association_seconds
        self.idle_seconds = idle_seconds
        self.max_pdu = max_pdu
        self.max_pending = max_pending
        self._pending: deque[tuple[Any, Any]] = deque()
        self._lock = threading.Lock()

    def add_pending(self, request: Any, peer: Any) -> None:
        """Count a new connection; over the bound, drop the oldest one not yet associated."""
        with self._lock:
            self._pending = deque(p for p in self._pending if _open(p[0]))
            self._pending.append((request, peer))
            while len(self._pending) > self.max_pending:
                old, old_peer = self._pending.popleft()
                security_event("too many connections not yet associated", old_peer)
                with contextlib.suppress(OSError):
                    old.shutdown(socket.SHUT_RDWR)

    def associated(self, request: Any) -> None:
        """The connection sent its A-ASSOCIATE-RQ: it no longer counts as pending."""
        with self._lock:
            self._pending = deque(p for p in self._pending if p[0] is not request)

    def close_pending(self) -> None:
        """Close every connection not yet associated (the receiver is stopping)."""
        with self._lock:
            for request, _ in self._pending:
                with contextlib.suppress(OSError):
                    request.shutdown(socket.SHUT_RDWR)
            self._pending.clear()


def _open(sock: Any) -> bool:
    try:
        return bool(sock.fileno() >= 0)
    except (OSError, ValueError):
        return False


def requested(assoc: Any) -> bool:
    """Whether an association's peer has sent a whole A-ASSOCIATE-RQ (counts for a slot)."""
    sock = getattr(assoc.dul, "socket", None)
    return bool(getattr(sock, "requested", True))


__all__ = [
    "MAX_ASSOCIATE_RQ_BYTES",
    "ConnectionGuard",
    "GuardedRequestHandler",
    "GuardedSocket",
    "requested",
    "security_event",
]
