"""The workload of the jobs that the UDF ``gearsync_send`` produces (``udf/gs_envelope.h``).

One job carries a batch of records of one Gearman function, in the order the triggers sent them::

    workload := b"GS1" flags:u8 record+ [mac:32 bytes when flags & 1]
    record   := version:u64 big-endian, length:u32 big-endian, payload bytes
    mac      := HMAC-SHA256(secret, function_name || b"\\x00" || workload without the mac)

The version is the per-mysqld counter the trigger took under the row's lock (``gearsync_seq``):
for one key, a later change has a higher version, so a worker applying records through the
versioned write cannot leave an older value behind. Other flag bits are 0; a reader refuses
unknown bits. A workload that does not start with ``b"GS1"`` comes from something else
(``gman_do_background``, the ``gearman`` CLI, an older library) and decodes as one record of
version 0 — unless a secret is required, in which case it is refused like any unsigned job.

This is the worker's per-job path: :func:`decode` is plain ``struct.unpack_from`` over the
bytes (measured in ``tests/test_envelope.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

__all__ = ["MAGIC", "FLAG_MAC", "MAC_LEN", "EnvelopeError", "MalformedEnvelope", "BadSignature",
           "decode", "encode"]

MAGIC = b"GS1"
FLAG_MAC = 0x01
MAC_LEN = 32
_HEADER = 4
_RECORD = struct.Struct(">QI")
_KNOWN_FLAGS = FLAG_MAC


class EnvelopeError(ValueError):
    """A workload that is not an acceptable envelope."""


class MalformedEnvelope(EnvelopeError):
    """Truncated, overrunning, empty, or with flag bits this reader does not know."""


class BadSignature(EnvelopeError):
    """A secret is required and the MAC is missing or does not match."""


def _mac(secret: bytes, function: bytes, body: memoryview | bytes) -> bytes:
    h = hmac.new(secret, function + b"\x00", hashlib.sha256)
    h.update(body)
    return h.digest()


def decode(function: bytes, workload: bytes, secret: bytes | None) -> list[tuple[int, bytes]]:
    """The records ``(version, payload)`` of one job of Gearman function ``function``.

    With ``secret`` (the key of ``gearsync_udf.cnf``'s ``secret`` / ``secret_file``), a job
    must carry a valid MAC; without it, a MAC is not checked. Raises :class:`MalformedEnvelope`
    or :class:`BadSignature` (both :class:`EnvelopeError`, a ``ValueError``)."""
    if workload[:3] != MAGIC:
        if secret:
            raise BadSignature(f"unsigned job for {function!r} (not an envelope) refused: a secret is set")
        return [(0, bytes(workload))]
    n = len(workload)
    if n < _HEADER:
        raise MalformedEnvelope("envelope shorter than its header")
    flags = workload[3]
    if flags & ~_KNOWN_FLAGS:
        raise MalformedEnvelope(f"unknown envelope flags 0x{flags:02x}")
    end = n
    if flags & FLAG_MAC:
        end = n - MAC_LEN
        if end < _HEADER:
            raise MalformedEnvelope("envelope shorter than its MAC")
        if secret:
            view = memoryview(workload)
            if not hmac.compare_digest(_mac(secret, function, view[:end]), view[end:]):
                raise BadSignature(f"bad MAC on a job for {function!r}")
    elif secret:
        raise BadSignature(f"job for {function!r} carries no MAC: a secret is set")
    records: list[tuple[int, bytes]] = []
    append = records.append
    unpack = _RECORD.unpack_from
    off = _HEADER
    limit = end - 12
    while off < end:
        if off > limit:
            raise MalformedEnvelope(f"truncated record header at byte {off}")
        version, length = unpack(workload, off)
        off += 12
        stop = off + length
        if stop > end:
            raise MalformedEnvelope(f"record at byte {off - 12} overruns the envelope")
        append((version, workload[off:stop]))
        off = stop
    if not records:
        raise MalformedEnvelope("envelope without records")
    return records


def encode(function: bytes, records: list[tuple[int, bytes]], secret: bytes | None = None) -> bytes:
    """The envelope the library would write for ``records`` (for tests and tools)."""
    if not records:
        raise ValueError("an envelope holds at least one record")
    parts = [MAGIC, bytes([FLAG_MAC if secret else 0])]
    pack = _RECORD.pack
    for version, payload in records:
        parts.append(pack(version, len(payload)))
        parts.append(payload)
    body = b"".join(parts)
    return body + _mac(secret, function, body) if secret else body
