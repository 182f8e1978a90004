"""Structured JSON logging in the documented Logging Format.

Every record carries exactly these keys: ``timestamp`` (ISO-8601 UTC with milliseconds),
``level``, ``logger``, ``module``, ``function``, ``line``, ``message``, ``operation``,
``status`` and ``details``. Extra fields passed through ``extra=`` other than
``operation``, ``status`` and ``details`` are folded into ``details``.

Never log a PHI value: log tag names, counts and pseudonymous keys.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

LOG_KEYS = (
    "timestamp",
    "level",
    "logger",
    "module",
    "function",
    "line",
    "message",
    "operation",
    "status",
    "details",
)

_RENAMES = {
    "asctime": "timestamp",
    "levelname": "level",
    "name": "logger",
    "funcName": "function",
    "lineno": "line",
}


class PipelineJsonFormatter(JsonFormatter):
    """python-json-logger formatter that emits exactly :data:`LOG_KEYS`."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(module)s %(funcName)s %(lineno)d %(message)s",
            rename_fields=_RENAMES,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"

    def add_fields(
        self,
        log_record: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        super().add_fields(log_record, record, message_dict)
        details = log_record.get("details")
        folded: dict[str, Any] = dict(details) if isinstance(details, dict) else {}
        if details is not None and not isinstance(details, dict):
            folded["value"] = details
        for key in list(log_record):
            if key in ("exc_info", "stack_info", "taskName"):
                log_record.pop(key)
            elif key not in LOG_KEYS:
                folded[key] = log_record.pop(key)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type only: its text may quote data.
            folded.setdefault("exception_type", record.exc_info[0].__name__)
        log_record["details"] = folded
        log_record.setdefault("operation", record.funcName)
        log_record.setdefault("status", None)
        ordered = {key: log_record.get(key) for key in LOG_KEYS}
        log_record.clear()
        log_record.update(ordered)

    def formatException(self, ei: Any) -> str:  # noqa: N802
        # Tracebacks can quote values from the data being processed; keep them out.
        return ""


_FORMAT = "json"


def current_format() -> str:
    """The format the last :func:`configure_logging` chose (worker processes follow it)."""
    return _FORMAT


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def terminal_safe(text: str) -> str:
    """``text`` with control characters (C0, DEL, C1) shown as ``\\xNN``: a file name
    cannot move the cursor, set the window title or hide a line (OSC/CSI sequences)."""
    return text.translate(_CONTROL)


class HumanFormatter(logging.Formatter):
    """One short line per record for a terminal: the message and its details, which hold
    ids, tags, reasons and counts (never PHI), as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        details = getattr(record, "details", None) or {}
        parts = [
            f"{k}={v}" for k, v in details.items() if v not in ("", None, [], {}) and k != "seconds"
        ]
        tail = f" ({', '.join(parts)})" if parts else ""
        return terminal_safe(f"medpipe: {record.getMessage().lower()}{tail}")


def configure_logging(
    level: int | str = logging.INFO, stream: TextIO | None = None, fmt: str = "json"
) -> None:
    """Send the ``src`` loggers' records to ``stream`` as JSON lines (or human lines).

    Parameters
    ----------
    level : int or str
        The threshold for the ``src`` logger tree.
    stream : file-like, optional
        Where to write; standard error by default.
    fmt : str
        ``"json"`` (the documented Logging Format, default) or ``"human"``.
    """
    global _FORMAT
    _FORMAT = fmt
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(HumanFormatter() if fmt == "human" else PipelineJsonFormatter())
    root = logging.getLogger("src")
    for old in list(root.handlers):
        if getattr(old, "_medpipe", False):
            root.removeHandler(old)
    handler._medpipe = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    """Return the named logger (use ``__name__``)."""
    return logging.getLogger(name)
