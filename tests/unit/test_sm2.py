"""SM2 arithmetic and primitives (OpenSSL interop lives in test_openssl_oracle.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byok_keeper.crypto import sm2


def test_base_point_is_on_the_curve_and_has_order_n():
    assert sm2.on_curve(sm2.GX, sm2.GY)
    assert sm2._mul(sm2.N, (sm2.GX, sm2.GY)) is None
    assert sm2._mul(sm2.N + 1, (sm2.GX, sm2.GY)) == (sm2.GX, sm2.GY)


def test_sm3_known_answer():
    # GB/T 32905 example 1.
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def sm3_hex(data: bytes) -> str:
    return sm2.sm3(data).hex()


def test_scalar_multiplication_is_additive():
    g = (sm2.GX, sm2.GY)
    p5 = sm2._mul(5, g)
    p7 = sm2._mul(7, g)
    sum_ = sm2._affine(sm2._add((*p5, 1), (*p7, 1)))
    assert sum_ == sm2._mul(12, g)
    assert sm2._affine(sm2._double((*p5, 1))) == sm2._mul(10, g)


@settings(max_examples=25, deadline=None)
@given(message=st.binary(min_size=1, max_size=300))
def test_encrypt_decrypt_round_trip(message):
    key = sm2.Sm2PrivateKey.generate()
    ct = sm2.encrypt(key.public_key(), message)
    assert len(ct) == 65 + 32 + len(message)
    assert bytes(key.decrypt(ct)) == message


def test_decrypt_refuses_tampered_c3_c2_and_c1_with_one_error():
    key = sm2.Sm2PrivateKey.generate()
    ct = bytearray(sm2.encrypt(key.public_key(), b"0123456789abcdef"))
    for pos in (0, 10, 40, 70, len(ct) - 1):
        bad = bytearray(ct)
        bad[pos] ^= 0x80
        with pytest.raises(sm2.Sm2Error, match="^SM2 decryption failed$"):
            key.decrypt(bad)
    with pytest.raises(sm2.Sm2Error):
        sm2.Sm2PrivateKey.generate().decrypt(ct)  # another key
    with pytest.raises(sm2.Sm2Error):
        key.decrypt(ct[:90])


def test_point_off_curve_is_refused():
    with pytest.raises(sm2.Sm2Error, match="not on the SM2 curve"):
        sm2.Sm2PublicKey(sm2.GX, sm2.GY + 1)


def test_spki_round_trip_and_detection():
    pub = sm2.Sm2PrivateKey.generate().public_key()
    der = pub.spki_der()
    assert sm2.is_sm2_spki(der)
    assert sm2.Sm2PublicKey.from_spki_der(der) == pub
    assert not sm2.is_sm2_spki(b"\x30\x00")


def test_sign_verify_and_refusals():
    key = sm2.Sm2PrivateKey.generate()
    e = sm2.user_digest(key.public_key(), b"message")
    r, s = key.sign_digest(e)
    sm2.verify_digest(key.public_key(), e, r, s)
    for bad in ((r, (s + 1) % sm2.N), (0, s), (r, sm2.N)):
        with pytest.raises(sm2.Sm2Error):
            sm2.verify_digest(key.public_key(), e, *bad)
    other = sm2.user_digest(key.public_key(), b"other")
    with pytest.raises(sm2.Sm2Error):
        sm2.verify_digest(key.public_key(), other, r, s)


def test_private_key_repr_hides_the_scalar():
    key = sm2.Sm2PrivateKey.generate()
    assert "SENSITIVE" in repr(key)
    assert key.scalar_bytes().hex() not in repr(key) + str(key)
    assert f"{key._d:x}" not in repr(key)


@pytest.mark.parametrize(
    "oids",
    [
        (sm2.OID_EC_PUBLIC_KEY, "1.2.840.10045.3.1.7"),  # the same point labelled P-256
        ("1.2.156.10197.1.301.1", sm2.OID_SM2_CURVE),  # not id-ecPublicKey
    ],
)
def test_a_key_info_that_does_not_name_sm2_is_refused_even_when_its_point_is_on_sm2(oids):
    from byok_keeper.crypto import der

    pub = sm2.Sm2PrivateKey.generate().public_key()
    relabelled = der.sequence(der.sequence(*(der.oid(o) for o in oids)),
                              der.bit_string(pub.point_bytes()))  # fmt: skip
    with pytest.raises(sm2.Sm2Error, match="does not hold an SM2 key"):
        sm2.Sm2PublicKey.from_spki_der(relabelled)
    assert not sm2.is_sm2_spki(relabelled)


def test_public_keys_compare_hash_and_show_by_their_point():
    one, other = (
        sm2.Sm2PrivateKey.generate().public_key(),
        sm2.Sm2PrivateKey.generate().public_key(),
    )
    same = sm2.Sm2PublicKey.from_spki_der(one.spki_der())
    assert one == same and hash(one) == hash(same) and len({one, same, other}) == 2
    assert one != other and one != (one.x, one.y)
    assert repr(one) == f"Sm2PublicKey(x={one.x:064x})"


@pytest.mark.parametrize(
    "d, accepted",
    [(0, False), (1, True), (sm2.N - 2, True), (sm2.N - 1, False), (sm2.N, False)],
    ids=["0", "1", "n-2", "n-1", "n"],
)
def test_a_private_scalar_outside_1_to_n_minus_2_is_refused(d, accepted):
    """GB/T 32918.1: d in [1, n-2], so that 1 + d is invertible mod n (signing divides by it)."""
    if accepted:
        assert (
            sm2.Sm2PrivateKey(d).public_key()
            == sm2.Sm2PrivateKey.from_bytes(d.to_bytes(32, "big")).public_key()
        )
    else:
        with pytest.raises(sm2.Sm2Error, match="out of range"):
            sm2.Sm2PrivateKey(d)


@pytest.mark.parametrize("size", [31, 33])
def test_a_private_scalar_not_32_bytes_long_is_refused(size):
    with pytest.raises(sm2.Sm2Error, match="must be 32 bytes"):
        sm2.Sm2PrivateKey.from_bytes(b"\x01" * size)


def test_a_ciphertext_too_short_to_hold_c1_c3_and_one_byte_is_one_opaque_error():
    key = sm2.Sm2PrivateKey.generate()
    ct = sm2.encrypt(key.public_key(), b"x")
    assert len(ct) == 65 + 32 + 1 and key.decrypt(ct) == b"x"
    with pytest.raises(sm2.Sm2Error, match="^SM2 decryption failed$"):
        key.decrypt(ct[:-1])


def test_the_kdf_counts_its_blocks_one_two_three_as_the_standard_says():
    """GB/T 32918.4's KDF: SM3(Z || ct) for ct = 1, 2, ... as 32-bit big-endian, truncated. Our
    wrapping uses one block (a 16-byte ESK); a message longer than 32 bytes needs the next."""
    z = bytes(range(64))
    blocks = [sm2.sm3(z, ct.to_bytes(4, "big")) for ct in (1, 2, 3)]
    assert sm2._kdf(z, 70) == b"".join(blocks)[:70]
    key = sm2.Sm2PrivateKey.generate()
    message = bytes(range(100))
    assert key.decrypt(sm2.encrypt(key.public_key(), message)) == message


def test_an_empty_message_is_not_encrypted():
    with pytest.raises(sm2.Sm2Error, match="cannot encrypt an empty message"):
        sm2.encrypt(sm2.Sm2PrivateKey.generate().public_key(), b"")


def test_a_signature_with_r_or_s_plus_n_is_refused():
    """GB/T 32918.2 requires r, s in [1, n-1]: without that check, (r, s + n) verifies too
    (the ladder reduces its scalar mod n), so a signature would have more than one form."""
    key = sm2.Sm2PrivateKey.generate()
    e = sm2.user_digest(key.public_key(), b"message")
    r, s = key.sign_digest(e)
    for bad in ((r, s + sm2.N), (r + sm2.N, s)):
        with pytest.raises(sm2.Sm2Error, match="does not verify"):
            sm2.verify_digest(key.public_key(), e, *bad)


def test_the_openssl_ciphertext_converters_refuse_what_is_not_a_ciphertext():
    from byok_keeper.crypto import der

    key = sm2.Sm2PrivateKey.generate()
    raw = sm2.encrypt(key.public_key(), b"x")
    assert sm2.ciphertext_from_der(sm2.ciphertext_to_der(raw)) == raw
    for bad in (raw[:97], b"\x05" + raw[1:]):
        with pytest.raises(sm2.Sm2Error, match="not a raw C1C3C2"):
            sm2.ciphertext_to_der(bad)
    x1, y1 = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:65], "big")
    c3, c2 = der.octet_string(raw[65:97]), der.octet_string(raw[97:])
    for fields in (
        (der.integer(x1 + sm2.P), der.integer(y1), c3, c2),
        (der.integer(x1), der.integer(-1), c3, c2),
        (der.integer(x1), der.integer(y1), der.octet_string(raw[65:96]), c2),
    ):
        with pytest.raises(sm2.Sm2Error, match="not a DER SM2 ciphertext"):
            sm2.ciphertext_from_der(der.sequence(*fields))


# ---- the group law's edges, and the CSPRNG's edges -------------------------------------------

G = (sm2.GX, sm2.GY)
MINUS_G = (sm2.GX, sm2.P - sm2.GY)


def test_the_group_law_holds_for_infinity_and_for_equal_and_opposite_points():
    """Infinity is the identity on either side; adding a point to itself doubles it, adding its
    opposite gives infinity. The ladder never meets these cases with valid points, but the
    verification's sum k1*P1 + k2*P2 does whenever one of the two products is infinity."""
    g = (*G, 1)
    assert sm2._add(sm2._INF, g) == g and sm2._add(g, sm2._INF) == g
    assert sm2._affine(sm2._add(g, g)) == sm2._affine(sm2._double(g)) == sm2._mul(2, G)
    assert sm2._affine(sm2._add(g, (*MINUS_G, 1))) is None
    assert sm2._mul_add(sm2.N, G, 3, G) == sm2._mul(3, G)
    assert sm2._mul_add(3, G, sm2.N, G) == sm2._mul(3, G)
    assert sm2._mul_add(sm2.N, G, sm2.N, G) is None


def test_the_curve_point_with_x_zero_is_on_the_curve_and_its_ciphertext_converts():
    """y^2 = b has a root on this curve: (0, sqrt(b)) is a valid point, and a ciphertext whose C1
    is that point converts to OpenSSL's DER and back."""
    y0 = pow(sm2.B, (sm2.P + 1) // 4, sm2.P)  # p = 3 mod 4
    assert sm2.on_curve(0, y0) and sm2.Sm2PublicKey(0, y0).x == 0
    raw = b"\x04" + bytes(32) + y0.to_bytes(32, "big") + bytes(range(32)) + b"c2"
    assert sm2.ciphertext_from_der(sm2.ciphertext_to_der(raw)) == raw


def test_is_sm2_spki_answers_a_bool_and_the_wipe_helper_zeroes_every_byte():
    assert sm2.is_sm2_spki(b"\x30\x00") is False
    buf = bytearray(b"secret")
    sm2._wipe(buf)
    assert buf == bytearray(6)


def test_a_signature_with_r_plus_s_equal_to_n_is_refused_though_the_equation_holds():
    """With t = r + s = n, s*G + t*P is s*G whatever the public key P: without the t = 0 check,
    one (r, s) built from the digest alone would verify under every key."""
    key = sm2.Sm2PrivateKey.generate()
    r = 12345
    s = sm2.N - r
    e = ((r - sm2._mul(s, G)[0]) % sm2.N).to_bytes(32, "big")
    with pytest.raises(sm2.Sm2Error, match="does not verify"):
        sm2.verify_digest(key.public_key(), e, r, s)


def draws(monkeypatch, *picks) -> list[int]:
    """Stand in for the CSPRNG (the edge of this module): each draw answers the next pick, a
    function of the bound; the bounds asked for are returned. Running out is a test failure."""
    bounds: list[int] = []
    left = iter(picks)

    def randbelow(n: int) -> int:
        bounds.append(n)
        return next(left)(n)

    monkeypatch.setattr(sm2.secrets, "randbelow", randbelow)
    return bounds


LOWEST, HIGHEST = (lambda n: 0), (lambda n: n - 1)


def nonce(key: sm2.Sm2PrivateKey, r: int, s: int) -> int:
    """The k a signature was made with: s(1 + d) = k - r*d (mod n)."""
    d = key._d
    return (s * (1 + d) + r * d) % sm2.N


def test_the_signing_nonce_spans_exactly_1_to_n_minus_1(monkeypatch):
    key = sm2.Sm2PrivateKey(12345)
    e = sm2.user_digest(key.public_key(), b"message")
    bounds = draws(monkeypatch, LOWEST, HIGHEST)
    low, high = key.sign_digest(e), key.sign_digest(e)
    assert (nonce(key, *low), nonce(key, *high)) == (1, sm2.N - 1)
    assert bounds == [sm2.N - 1, sm2.N - 1]
    for sig in (low, high):
        sm2.verify_digest(key.public_key(), e, *sig)


def test_the_encryption_nonce_spans_exactly_1_to_n_minus_1(monkeypatch):
    key = sm2.Sm2PrivateKey.generate()
    draws(monkeypatch, LOWEST, HIGHEST)
    c1s = [sm2.encrypt(key.public_key(), b"material")[1:65] for _ in range(2)]
    assert c1s == [sm2.Sm2PublicKey(*p).point_bytes()[1:] for p in (G, MINUS_G)]


def test_a_new_private_scalar_spans_exactly_1_to_n_minus_2(monkeypatch):
    draws(monkeypatch, LOWEST, HIGHEST)
    keys = [sm2.Sm2PrivateKey.generate() for _ in range(2)]
    assert [int.from_bytes(k.scalar_bytes(), "big") for k in keys] == [1, sm2.N - 2]


@pytest.mark.parametrize("bad", ["r = 0", "r + k = n"])
def test_signing_draws_a_new_nonce_when_r_is_0_or_r_plus_k_is_n(monkeypatch, bad):
    """GB/T 32918.2 step A5: r = 0 or r + k = n gives no usable signature (r + k = n makes
    s = k and r + s = n, which no verifier accepts); a digest chosen for the first nonce
    forces the case, and the second nonce must be used."""
    key = sm2.Sm2PrivateKey(12345)
    k = 7
    x1 = sm2._mul(k, G)[0]
    r = 0 if bad == "r = 0" else sm2.N - k
    e = ((r - x1) % sm2.N).to_bytes(32, "big")
    bounds = draws(monkeypatch, lambda n: k - 1, lambda n: 10)
    r2, s2 = key.sign_digest(e)
    assert len(bounds) == 2 and nonce(key, r2, s2) == 11
    sm2.verify_digest(key.public_key(), e, r2, s2)


@pytest.mark.parametrize("which", ["r", "s"])
def test_a_signature_with_r_or_s_equal_to_1_verifies(monkeypatch, which):
    """[1, n-1] includes 1: a digest chosen for the nonce makes r = 1, or s = 1."""
    key = sm2.Sm2PrivateKey(12345)
    d, k = key._d, 99
    r = 1 if which == "r" else (k - 1 - d) * pow(d, -1, sm2.N) % sm2.N
    e = ((r - sm2._mul(k, G)[0]) % sm2.N).to_bytes(32, "big")
    draws(monkeypatch, lambda n: k - 1)
    sig = key.sign_digest(e)
    assert sig[0 if which == "r" else 1] == 1
    sm2.verify_digest(key.public_key(), e, *sig)
