"""Keyed, deterministic pseudonyms: UIDs, patient IDs and per-patient date offsets.

Everything is an HMAC-SHA256 under a secret key, so the same original maps to the same
pseudonym in every file, run and worker process, and nobody without the key can rebuild
the mapping by hashing a dictionary of candidate IDs.

Keys come, in order, from an explicit argument, the ``MEDPIPE_DEID_KEY`` environment
variable, or a key file (``MEDPIPE_KEY_FILE``, default ``$XDG_CONFIG_HOME/medpipe/deid.key``),
which the embedded default creates once. The cloud path passes a key fetched from Secrets
Manager or SSM (see ``src.orchestration.secrets``); this module never imports boto3.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from src.errors import KeyConfigurationError

logger = logging.getLogger(__name__)

ENV_KEY = "MEDPIPE_DEID_KEY"
ENV_KEY_FILE = "MEDPIPE_KEY_FILE"
MIN_KEY_LENGTH = 16
#: Below this many bytes a key is accepted with a warning (a generated key has 32).
STRONG_KEY_LENGTH = 32
#: Patients whose pseudonym and date offset are kept per process (they are HMACs).
_PATIENT_CACHE = 100_000


@dataclass(frozen=True)
class KeyMaterial:
    """A de-identification key and where it came from (``source`` is safe to log)."""

    key: bytes
    source: str

    def fingerprint(self) -> str:
        """A short, non-reversible label for the key (to tell runs apart in a manifest)."""
        return hashlib.sha256(b"medpipe-key-fingerprint\x00" + self.key).hexdigest()[:12]


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/medpipe/deid.key`` (``~/.config/medpipe/deid.key``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "medpipe" / "deid.key"


def _check(key: bytes, source: str, *, warn: bool = False) -> KeyMaterial:
    if len(key) < MIN_KEY_LENGTH:
        raise KeyConfigurationError(
            f"de-identification key from {source} is shorter than {MIN_KEY_LENGTH} bytes"
        )
    if warn and (len(key) < STRONG_KEY_LENGTH or len(set(key)) < 8):
        # A key someone typed: pseudonyms of guessable inputs (a Patient ID) can then be
        # confirmed by whoever guesses the key. Accepted, but said.
        logger.warning(
            "Weak de-identification key: fewer than %d bytes or few distinct ones "
            "(`medpipe key create` makes a 256-bit one)",
            STRONG_KEY_LENGTH,
            extra={"operation": "key", "status": "weak", "details": {"source": source}},
        )
    return KeyMaterial(key, source)


def _warn_if_shared(path: Path) -> None:
    """Warn when a key file can be read by group or others (it should be 0600)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        logger.warning(
            "Key file readable by group or others (mode %o): chmod 600 it",
            mode & 0o777,
            extra={"operation": "key", "status": "shared", "details": {"mode": oct(mode & 0o777)}},
        )


def _why(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def create_key_file(path: str | os.PathLike[str]) -> KeyMaterial:
    """Write a new random key to ``path`` (mode 0600); refuses to replace a key.

    Raises
    ------
    KeyConfigurationError
        If ``path`` exists or cannot be written.
    """
    target = Path(path)
    if target.exists():
        raise KeyConfigurationError(f"{target} already exists; a key is never replaced")
    try:
        _create_key_file(target)
    except OSError as exc:
        raise KeyConfigurationError(f"cannot create {target} ({_why(exc)})") from exc
    return _check(target.read_text(encoding="utf-8").strip().encode("utf-8"), f"key file {target}")


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".deid-key-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() fails if another process created the key first: theirs wins.
        os.link(tmp, path)
        logger.warning(
            "Created a new de-identification key file; keep it secret and back it up",
            extra={
                "operation": "resolve_key",
                "status": "created",
                "details": {"key_file": str(path)},
            },
        )
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def key_material(key: bytes | str) -> KeyMaterial:
    """A key given by the caller (text is used as its UTF-8 bytes), checked for length.

    Reads no environment and no file.
    """
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    return _check(raw, "argument")


def resolve_key(
    key: bytes | str | None = None,
    key_file: str | os.PathLike[str] | None = None,
    *,
    create: bool = True,
) -> KeyMaterial:
    """Find the de-identification key.

    Parameters
    ----------
    key : bytes or str, optional
        The key itself. Text is used as its UTF-8 bytes.
    key_file : path, optional
        A file holding the key (its stripped text).
    create : bool
        Create the default key file when no key is found anywhere.

    Returns
    -------
    KeyMaterial

    Raises
    ------
    KeyConfigurationError
        If the key is too short, or none exists and ``create`` is False.
    """
    if key is not None:
        return key_material(key)
    env = os.environ.get(ENV_KEY)
    if env:
        return _check(env.strip().encode("utf-8"), f"environment variable {ENV_KEY}", warn=True)
    explicit = key_file or os.environ.get(ENV_KEY_FILE)
    path = Path(explicit) if explicit else default_key_file()
    if not path.exists():
        if explicit or not create:
            raise KeyConfigurationError(
                f"key file {path} does not exist (create one with `medpipe key create "
                f"{path}`, or set {ENV_KEY})"
            )
        try:
            _create_key_file(path)
        except OSError as exc:
            raise KeyConfigurationError(
                f"cannot create the key file {path} ({_why(exc)}); give --key-file or set {ENV_KEY}"
            ) from exc
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KeyConfigurationError(
            f"cannot read key file {path} ({_why(exc)}): it must be readable by this user "
            "(and by no one else: mode 0600)"
        ) from exc
    _warn_if_shared(path)
    return _check(text.encode("utf-8"), f"key file {path}", warn=True)


_DT = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})((?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?))?)?([+-]\d{4})?"
)


class Pseudonymizer:
    """Keyed pseudonyms for one key.

    Parameters
    ----------
    key : bytes
        The secret key.
    uid_root : str
        Root under which replacement UIDs are rendered (``"2.25"`` by default).
    max_date_shift_days : int
        Date offsets fall in ``[-max_date_shift_days, -1]`` days.

    Examples
    --------
    >>> p = Pseudonymizer(b"0123456789abcdef")
    >>> p.uid("1.2.3") == p.uid("1.2.3") and p.uid("1.2.3").startswith("2.25.")
    True
    """

    def __init__(self, key: bytes, uid_root: str = "2.25", max_date_shift_days: int = 3650) -> None:
        self._key = key
        self.uid_root = uid_root
        self.max_date_shift_days = max_date_shift_days
        self._digits = 64 - len(uid_root) - 1
        self._uids: dict[str, str] = {}
        self._patients: dict[str, str] = {}
        self._offsets: dict[str, timedelta] = {}

    def _mac(self, domain: bytes, value: str) -> bytes:
        return hmac.new(
            self._key, domain + b"\x00" + value.encode("utf-8"), hashlib.sha256
        ).digest()

    def uid(self, original: str) -> str:
        """Return the replacement for a UID: ``<root>.<decimal of the HMAC>``, ≤ 64 chars."""
        cached = self._uids.get(original)
        if cached is not None:
            return cached
        number = int.from_bytes(self._mac(b"uid", original.strip())[:16], "big")
        if self._digits < 39:
            number %= 10**self._digits
        new = f"{self.uid_root}.{number}"
        if len(self._uids) < 1_000_000:
            self._uids[original] = new
        return new

    def patient_id(self, original: str) -> str:
        """Return the patient pseudonym, ``ANON-`` and 16 base32 characters."""
        cached = self._patients.get(original)
        if cached is None:
            digest = self._mac(b"patient", original)
            cached = "ANON-" + base64.b32encode(digest[:10]).decode("ascii")
            if len(self._patients) < _PATIENT_CACHE:
                self._patients[original] = cached  # the files of one patient share it
        return cached

    def date_offset(self, patient_key: str) -> timedelta:
        """Return the per-patient date offset: between 1 and ``max_date_shift_days`` back."""
        cached = self._offsets.get(patient_key)
        if cached is None:
            digest = self._mac(b"date-offset", patient_key)
            days = 1 + int.from_bytes(digest[:8], "big") % self.max_date_shift_days
            cached = timedelta(days=-days)
            if len(self._offsets) < _PATIENT_CACHE:
                self._offsets[patient_key] = cached
        return cached

    def shift_date(self, value: str, offset: timedelta) -> str:
        """Shift a DA value (``YYYYMMDD``; ACR-NEMA ``YYYY.MM.DD`` accepted) by ``offset``."""
        text = value.strip().replace(".", "") if len(value.strip()) == 10 else value.strip()
        if len(text) == 4 and text.isdigit():
            text += "0101"
        if len(text) == 6 and text.isdigit():
            text += "01"
        try:
            moved = date(int(text[:4]), int(text[4:6]), int(text[6:8])) + offset
        except ValueError:
            return "19000101"
        if moved.year < 1:
            return "00010101"
        return moved.strftime("%Y%m%d")

    def shift_datetime(self, value: str, offset: timedelta, *, keep_utc_offset: bool = True) -> str:
        """Shift a DT value by whole days, keeping it valid and no more precise than it was.

        ``YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][&ZZXX]``: the date components present are
        shifted (a year-only value stays a year, ``2020+0100`` becomes a shifted year with
        its offset); the time of day and fraction are kept; the UTC offset is dropped
        when ``keep_utc_offset`` is false (Timezone Offset From UTC removed too). A value
        outside the grammar becomes ``19000101``.
        """
        match = _DT.fullmatch(value.strip())
        if match is None:
            return "19000101"
        year, month, day, time_part, utc = match.groups()
        try:
            start = date(int(year), int(month or 1), int(day or 1))
        except ValueError:
            return "19000101"
        moved = start + offset
        if moved.year < 1:
            moved = date(1, 1, 1)
        text = f"{moved.year:04d}"
        if month:
            text += f"{moved.month:02d}"
        if day:
            text += f"{moved.day:02d}"
        return text + (time_part or "") + (utc or "" if keep_utc_offset else "")
