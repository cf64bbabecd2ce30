"""A minimal, strict DER reader and writer.

Just enough ASN.1 for the structures ``cryptography`` will not parse for us: SM2 private keys
(PKCS#8 and SEC1), SM2 public keys, SM2 ciphertexts in OpenSSL's DER form, and the PBES2
header of an encrypted PKCS#8 key. Strict: definite lengths only, minimal length encoding,
no trailing bytes. Every failure raises ``DerError``; the message names the structure, never
the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06


class DerError(ValueError):
    """Malformed DER."""


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: memoryview

    def children(self) -> list[Tlv]:
        """Decode the contents of a constructed value as a list of TLVs."""
        if not self.tag & 0x20:
            raise DerError("expected a constructed value")
        return read_all(self.value)


def _read_one(buf: memoryview, pos: int) -> tuple[Tlv, int]:
    if pos + 2 > len(buf):
        raise DerError("truncated DER")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not supported")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4:
            raise DerError("indefinite or oversized length")
        if pos + n > len(buf):
            raise DerError("truncated DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        if length < 0x80 or buf[pos] == 0:
            raise DerError("non-minimal DER length")
        pos += n
    end = pos + length
    if end > len(buf):
        raise DerError("truncated DER value")
    return Tlv(tag, buf[pos:end]), end


def read_all(data: bytes | bytearray | memoryview) -> list[Tlv]:
    """Decode a concatenation of TLVs that must fill ``data`` exactly."""
    buf = memoryview(data)
    out: list[Tlv] = []
    pos = 0
    while pos < len(buf):
        tlv, pos = _read_one(buf, pos)
        out.append(tlv)
    return out


def read(data: bytes | bytearray | memoryview, tag: int | None = None) -> Tlv:
    """Decode exactly one TLV filling ``data``; check its tag when given."""
    buf = memoryview(data)
    tlv, end = _read_one(buf, 0)
    if end != len(buf):
        raise DerError("trailing bytes after DER value")
    if tag is not None and tlv.tag != tag:
        raise DerError(f"expected tag 0x{tag:02x}, found 0x{tlv.tag:02x}")
    return tlv


def expect(tlv: Tlv, tag: int) -> Tlv:
    if tlv.tag != tag:
        raise DerError(f"expected tag 0x{tag:02x}, found 0x{tlv.tag:02x}")
    return tlv


def as_int(tlv: Tlv) -> int:
    expect(tlv, INTEGER)
    v = bytes(tlv.value)
    if not v:
        raise DerError("empty INTEGER")
    if len(v) > 1 and ((v[0] == 0 and v[1] < 0x80) or (v[0] == 0xFF and v[1] >= 0x80)):
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(v, "big", signed=True)


def as_oid(tlv: Tlv) -> str:
    expect(tlv, OID)
    v = bytes(tlv.value)
    if not v or v[-1] & 0x80:
        raise DerError("malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    n = 0
    for b in v:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(n)
            n = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def as_bit_string(tlv: Tlv) -> memoryview:
    """Return the bytes of a BIT STRING with no unused bits."""
    expect(tlv, BIT_STRING)
    if len(tlv.value) < 1 or tlv.value[0] != 0:
        raise DerError("BIT STRING with unused bits")
    return tlv.value[1:]


# ---- writing -------------------------------------------------------------------------------


def encode(tag: int, value: bytes | bytearray) -> bytes:
    n = len(value)
    if n < 0x80:
        head = bytes([tag, n])
    else:
        ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([tag, 0x80 | len(ln)]) + ln
    return head + bytes(value)


def sequence(*items: bytes) -> bytes:
    return encode(SEQUENCE, b"".join(items))


def integer(n: int) -> bytes:
    magnitude = n if n >= 0 else ~n
    length = magnitude.bit_length() // 8 + 1  # minimal, with room for the sign bit
    return encode(INTEGER, n.to_bytes(length, "big", signed=True))


def octet_string(v: bytes | bytearray) -> bytes:
    return encode(OCTET_STRING, v)


def bit_string(v: bytes | bytearray) -> bytes:
    return encode(BIT_STRING, b"\x00" + bytes(v))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode(OID, body)


def explicit(number: int, inner: bytes) -> bytes:
    """A context-specific constructed ``[number]`` wrapper."""
    return encode(0xA0 | number, inner)
