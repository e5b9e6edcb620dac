"""SNMPv1/v2c messages on the wire: a small BER encoder for requests and decoder for responses.

pysnmp's own message layer (pyasn1) takes about 4 ms of CPU to decode a 60-binding response;
this takes a few hundred microseconds, which is what lets one server poll a thousand printers
a minute on a fraction of a core. Only what a manager needs: GET, GETNEXT and GETBULK requests
with NULL values, and GetResponse PDUs with the SMIv2 value types and exceptions. SNMPv3
(USM authentication and privacy) stays with pysnmp (`pcnet.devices.snmp`).

Decoding is strict and bounded: any malformed input is a `WireError`, never an IndexError or a
huge allocation (lengths are checked against what is left of the datagram).
"""

from __future__ import annotations

from collections.abc import Sequence

OID = tuple[int, ...]

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
INTEGER, OCTET_STRING, NULL, OBJECT_ID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
IP_ADDRESS, COUNTER32, GAUGE32, TIMETICKS, OPAQUE, COUNTER64 = 0x40, 0x41, 0x42, 0x43, 0x44, 0x46
NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW = 0x80, 0x81, 0x82
VERSIONS = {"1": 0, "2c": 1}


class WireError(ValueError):
    """A datagram that is not a well-formed SNMP message."""


class _End:
    """endOfMibView: the agent has nothing after this OID."""

    def __repr__(self):
        return "END"


END = _End()


# --- encoding --------------------------------------------------------------------------------

def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def encode_integer(v: int) -> bytes:
    return _tlv(INTEGER, v.to_bytes(max(1, (v + (v < 0)).bit_length() // 8 + 1), "big", signed=True))


def encode_oid(oid: OID) -> bytes:
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] > 39):
        raise ValueError(f"not an OID: {oid!r}")
    out = bytearray()
    for i, sub in enumerate((oid[0] * 40 + oid[1],) + tuple(oid[2:])):
        if sub < 0 or sub > 0xFFFFFFFF and i:
            raise ValueError(f"sub-identifier out of range in {oid!r}")
        chunk = [sub & 0x7F]
        sub >>= 7
        while sub:
            chunk.append(0x80 | (sub & 0x7F))
            sub >>= 7
        out += bytes(reversed(chunk))
    return _tlv(OBJECT_ID, bytes(out))


_NULL = _tlv(NULL, b"")


def encode_request(version: str, community: str, pdu_type: int, request_id: int,
                   oids: Sequence[OID], non_repeaters: int = 0, max_repetitions: int = 0) -> bytes:
    """A GET / GETNEXT / GETBULK message asking for `oids` (NULL values)."""
    binds = b"".join(_tlv(SEQUENCE, encode_oid(o) + _NULL) for o in oids)
    if pdu_type == GETBULK:
        a, b = non_repeaters, max_repetitions
    else:
        a, b = 0, 0
    pdu = _tlv(pdu_type, encode_integer(request_id) + encode_integer(a) + encode_integer(b)
               + _tlv(SEQUENCE, binds))
    return _tlv(SEQUENCE, encode_integer(VERSIONS[version])
                + _tlv(OCTET_STRING, community.encode("utf-8")) + pdu)


# --- decoding --------------------------------------------------------------------------------

def _read(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of body, end of body) of the TLV at `i`."""
    if i + 2 > len(data):
        raise WireError("truncated")
    tag, first = data[i], data[i + 1]
    i += 2
    if first & 0x80:
        n = first & 0x7F
        if n == 0 or n > 4 or i + n > len(data):
            raise WireError("bad length")
        length = int.from_bytes(data[i:i + n], "big")
        i += n
    else:
        length = first
    end = i + length
    if end > len(data):
        raise WireError("length past the end of the message")
    return tag, i, end


def _integer(data: bytes, start: int, end: int) -> int:
    if start == end or end - start > 9:
        raise WireError("bad integer")
    return int.from_bytes(data[start:end], "big", signed=True)


def decode_oid(body: bytes) -> OID:
    if not body:
        raise WireError("empty OID")
    subs, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            subs.append(value)
            value = 0
        elif value > 0xFFFFFFFF:
            raise WireError("sub-identifier too large")
    if body[-1] & 0x80:
        raise WireError("OID ends inside a sub-identifier")
    first = subs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return head + tuple(subs[1:])


def _value(data: bytes, tag: int, start: int, end: int):
    if tag == INTEGER:
        return _integer(data, start, end)
    if tag in (COUNTER32, GAUGE32, TIMETICKS, COUNTER64):
        if end - start > 9:
            raise WireError("bad unsigned integer")
        return int.from_bytes(data[start:end], "big", signed=False)
    if tag in (OCTET_STRING, OPAQUE):
        return data[start:end]
    if tag == OBJECT_ID:
        return ".".join(map(str, decode_oid(data[start:end])))
    if tag == IP_ADDRESS:
        return ".".join(str(b) for b in data[start:end])
    if tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE):
        return None
    if tag == END_OF_MIB_VIEW:
        return END
    raise WireError(f"unknown value type 0x{tag:02x}")


def decode_response(data: bytes):
    """(version, community bytes, request id, error status, error index, [(oid, value)]) of a
    GetResponse message; values as `pcnet.devices.snmp` wants them (int, bytes, str; None for
    NULL / noSuchObject / noSuchInstance; END for endOfMibView)."""
    try:
        tag, s, e = _read(data, 0)
        if tag != SEQUENCE:
            raise WireError("not a message")
        tag, vs, ve = _read(data, s)
        if tag != INTEGER:
            raise WireError("no version")
        version = _integer(data, vs, ve)
        tag, cs, ce = _read(data, ve)
        if tag != OCTET_STRING:
            raise WireError("no community")
        community = data[cs:ce]
        tag, ps, pe = _read(data, ce)
        if tag != RESPONSE:
            raise WireError("not a response")
        fields = []
        i = ps
        for _ in range(3):
            tag, fs, fe = _read(data, i)
            if tag != INTEGER:
                raise WireError("bad PDU header")
            fields.append(_integer(data, fs, fe))
            i = fe
        tag, bs, be = _read(data, i)
        if tag != SEQUENCE:
            raise WireError("no variable bindings")
        binds = []
        i = bs
        while i < be:
            tag, vbs, vbe = _read(data, i)
            if tag != SEQUENCE:
                raise WireError("bad variable binding")
            tag, os_, oe = _read(data, vbs)
            if tag != OBJECT_ID:
                raise WireError("variable binding without an OID")
            oid = decode_oid(data[os_:oe])
            tag, xs, xe = _read(data, oe)
            binds.append((oid, _value(data, tag, xs, xe)))
            i = vbe
        return version, community, fields[0], fields[1], fields[2], binds
    except WireError:
        raise
    except (IndexError, ValueError, OverflowError) as e:
        raise WireError(str(e)) from None
