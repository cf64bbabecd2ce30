import pytest

from byok_keeper.crypto import der


@pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 256, -1, -128, -129, 2**255 + 7])
def test_integer_round_trip(n):
    assert der.as_int(der.read(der.integer(n))) == n


@pytest.mark.parametrize("dotted", ["1.2.840.10045.2.1", "1.2.156.10197.1.301", "2.5.4.3"])
def test_oid_round_trip(dotted):
    assert der.as_oid(der.read(der.oid(dotted))) == dotted


def test_long_lengths_round_trip():
    blob = der.octet_string(b"x" * 70000)
    assert bytes(der.read(blob, der.OCTET_STRING).value) == b"x" * 70000


@pytest.mark.parametrize(
    "blob",
    [
        b"",  # empty
        b"\x30",  # no length
        b"\x30\x05\x02\x01",  # truncated value
        b"\x30\x80\x00\x00",  # indefinite length
        b"\x04\x81\x05hello",  # non-minimal length
        b"\x02\x01\x01\x00",  # trailing byte
        b"\x1f\x01\x00",  # multi-byte tag
    ],
)
def test_malformed_der_raises(blob):
    with pytest.raises(der.DerError):
        der.read(blob)


def test_non_minimal_integer_raises():
    with pytest.raises(der.DerError):
        der.as_int(der.read(b"\x02\x02\x00\x01"))
