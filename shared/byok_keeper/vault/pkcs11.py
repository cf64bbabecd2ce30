"""The ``pkcs11`` sealer: the seal key is an AES-256 key inside a PKCS#11 token, and stays there.

The only module that imports the PyKCS11 binding (``docs/CUSTODY.md`` says why that one).

* The seal key is a token object (``CKA_TOKEN``), ``CKA_SENSITIVE`` and not
  ``CKA_EXTRACTABLE``, made inside the token by ``byok-keeper seal-key new --pkcs11 URI``
  (``new_token_key``); a key found without those attributes is refused before it is used.
* A data key is sealed with ``CKM_AES_GCM`` by the token (``C_Encrypt``/``C_Decrypt``): a
  fresh 96-bit IV from ``os.urandom``, a 128-bit tag, and the seal context (key id and
  fingerprint, as the other sealers bind it) as additional data, so a wrapped data key opens
  only for its own envelope. The wrapped form is Base64 of ``IV || ciphertext || tag``.
* One login per process and per token: ``_Token`` loads the module once, logs in once and
  keeps a pool of sessions; each operation borrows one session, so the sweep's workers never
  share a session (PKCS#11 sessions are not safe for concurrent use) and never log in twice.
  PyKCS11 initialises the module with ``CKF_OS_LOCKING_OK``.
* Failures are one line, exit 2 (``Pkcs11Error``, a ``ConfigError``): module that does not
  load, token absent, wrong PIN, PIN locked, key missing or exportable. A data key that does not
  open is a ``SealError``, as with the other sealers. No message ever holds the PIN.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..crypto.material import wipe
from ..domain.errors import ConfigError
from .pkcs11_uri import Pkcs11Uri, parse_uri, read_pin
from .sealers import SealError

IV_BYTES = 12
TAG_BITS = 128
DATA_KEY_BYTES = 32
MAX_IDLE_SESSIONS = 64  # the sweep's concurrency cap; more are closed when returned
_SESSION_CODES = (
    "CKR_DEVICE_REMOVED",
    "CKR_DEVICE_ERROR",
    "CKR_TOKEN_NOT_PRESENT",
    "CKR_SESSION_HANDLE_INVALID",
    "CKR_SESSION_CLOSED",
    "CKR_USER_NOT_LOGGED_IN",
    "CKR_CRYPTOKI_NOT_INITIALIZED",
)


class Pkcs11Error(ConfigError):
    """The token cannot be used: module, token, PIN or key. Exit 2: an operator must act."""


def _pk() -> Any:
    try:
        import PyKCS11
    except ImportError:
        raise Pkcs11Error(
            "the pkcs11 sealer needs the PyKCS11 binding: pip install 'byok-keeper[hsm]'"
        ) from None
    return PyKCS11


def _code(exc: Exception) -> str:
    pk = _pk()
    value = getattr(exc, "value", None)
    return str(pk.CKR.get(value, f"CKR_0x{value:x}" if isinstance(value, int) else "unknown"))


def _canonical(context: Mapping[str, str]) -> bytes:
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode()


def _zero(buf: Any) -> None:
    """Zero a binding-owned byte vector (PyKCS11's ``ckbytelist``) in place."""
    for i in range(len(buf)):
        buf[i] = 0


class _Token:
    """One loaded module and one logged-in token, shared by every sealer of this process."""

    def __init__(self, uri: Pkcs11Uri, env: Mapping[str, str] | None) -> None:
        pk = _pk()
        self.label = uri.token
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self.lib = pk.PyKCS11Lib()
        try:
            self.lib.load(uri.module_path)
        except pk.PyKCS11Error:
            raise Pkcs11Error(f"the PKCS#11 module {uri.module_path} does not load") from None
        try:
            self.slot = self._find_slot(uri)
            self._login_session = self._login(uri, env)
        except BaseException:
            self.lib.unload()
            raise

    def _find_slot(self, uri: Pkcs11Uri) -> int:
        pk = _pk()
        found = []
        try:
            for slot in self.lib.getSlotList(tokenPresent=True):
                info = self.lib.getTokenInfo(slot)
                facts = {
                    "token": info.label.strip(),
                    "serial": info.serialNumber.strip(),
                    "manufacturer": info.manufacturerID.strip(),
                    "model": info.model.strip(),
                }
                wanted = {k: getattr(uri, k) for k in facts if getattr(uri, k) is not None}
                if all(facts[k] == v for k, v in wanted.items()) and uri.slot_id in (None, slot):
                    found.append(slot)
        except pk.PyKCS11Error as exc:
            raise Pkcs11Error(f"listing the module's tokens failed ({_code(exc)})") from None
        if not found:
            raise Pkcs11Error(f"no token labelled {uri.token!r} is present in {uri.module_path}")
        if len(found) > 1:
            raise Pkcs11Error(
                f"{len(found)} tokens match {uri.token!r}: add serial= or slot-id= to the URI"
            )
        return int(found[0])

    def _login(self, uri: Pkcs11Uri, env: Mapping[str, str] | None) -> Any:
        pk = _pk()
        pin = read_pin(uri, env)
        self.pin_digest, login = _pin_digest(pin), (os.path.realpath(uri.module_path), self.slot)
        session = self.lib.openSession(self.slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION)
        try:
            session.login(bytes(pin))
        except pk.PyKCS11Error as exc:
            # Already logged in (the login state is the application's, and a session of it
            # survived): keep this session too, it holds the login from now on, but only for
            # the PIN that login used (the token does not look at the PIN again).
            code = _code(exc)
            if code != "CKR_USER_ALREADY_LOGGED_IN":
                _close_quietly(session)
                raise Pkcs11Error(_login_message(uri.token, code)) from None
            if not hmac.compare_digest(_LOGINS.get(login, b""), self.pin_digest):
                _close_quietly(session)
                raise Pkcs11Error(_login_message(uri.token, "another PIN")) from None
        finally:
            wipe(pin)
        _LOGINS[login] = self.pin_digest
        return session

    def check_pin(self, uri: Pkcs11Uri, env: Mapping[str, str] | None) -> None:
        """Refuse ``uri`` when its PIN is not the one this process logged in with."""
        pin = read_pin(uri, env)
        try:
            same = hmac.compare_digest(_pin_digest(pin), self.pin_digest)
        finally:
            wipe(pin)
        if not same:
            raise Pkcs11Error(_login_message(uri.token, "another PIN"))

    @contextmanager
    def session(self) -> Iterator[Any]:
        """Borrow a session of the logged-in token; a session that failed is closed, not kept."""
        pk = _pk()
        with self._lock:
            session = self._idle.pop() if self._idle else None
        if session is None:
            try:
                session = self.lib.openSession(self.slot, pk.CKF_SERIAL_SESSION | pk.CKF_RW_SESSION)
            except pk.PyKCS11Error as exc:
                raise Pkcs11Error(f"the token {self.label!r}: {_code(exc)}") from None
        try:
            yield session
        except BaseException:
            _close_quietly(session)
            raise
        with self._lock:
            if len(self._idle) < MAX_IDLE_SESSIONS:
                self._idle.append(session)
                return
        _close_quietly(session)

    def drop_sessions(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for session in [*idle, self._login_session]:
            _close_quietly(session)

    def close(self) -> None:
        self.drop_sessions()
        self.lib.unload()


def _close_quietly(session: Any) -> None:
    with contextlib.suppress(Exception):  # already gone with its token: nothing to release
        session.closeSession()


def _login_message(token: str, code: str) -> str:
    if code == "CKR_PIN_INCORRECT":
        return f"the token {token!r} refused the PIN (CKR_PIN_INCORRECT); HSMs lock after a few"
    if code == "CKR_PIN_LOCKED":
        return f"the token {token!r} is locked (CKR_PIN_LOCKED): its security officer unlocks it"
    if code == "another PIN":
        return f"the token {token!r} is logged in by this process with another PIN"
    return f"logging in to the token {token!r} failed ({code})"


# A keyed digest (never the PIN) of the PIN each login of this process used, so a later URI
# naming another PIN source is refused whether it meets a cached login or the token's
# "already logged in"; the key is random per process.
_PIN_KEY = secrets.token_bytes(32)
_LOGINS: dict[tuple[str, int], bytes] = {}


def _pin_digest(pin: bytearray) -> bytes:
    return hmac.new(_PIN_KEY, pin, "sha256").digest()


_TOKENS: dict[tuple[Any, ...], _Token] = {}
_TOKENS_LOCK = threading.Lock()
_RETIRED: list[_Token] = []  # forgotten after a lost login; unloaded by close_all


def token_for(uri: Pkcs11Uri, env: Mapping[str, str] | None = None) -> _Token:
    """This process's logged-in ``_Token`` for ``uri`` (one login per process and token).
    Cached by every attribute that picks the token and by the PIN source; a cached login is
    handed out only after the URI's PIN is read and found to be the one it used."""
    key = (uri.module_path, uri.token, uri.serial, uri.manufacturer, uri.model, uri.slot_id,
           uri.pin_source)  # fmt: skip
    with _TOKENS_LOCK:
        token = _TOKENS.get(key)
        if token is None:
            token = _TOKENS[key] = _Token(uri, env)
            return token
    token.check_pin(uri, env)
    return token


def forget(token: _Token) -> None:
    """Drop ``token`` from this process's cache (its sessions or login are gone): the next
    ``token_for`` logs in again. Its module stays loaded (another sealer may be using it)."""
    with _TOKENS_LOCK:
        for key, cached in list(_TOKENS.items()):
            if cached is token:
                del _TOKENS[key]
                _RETIRED.append(token)
    token.drop_sessions()


def close_all() -> None:
    """Log out and unload every module this process opened (tests; a daemon shutting down)."""
    with _TOKENS_LOCK:
        tokens = [*_TOKENS.values(), *_RETIRED]
        _TOKENS.clear()
        _RETIRED.clear()
    for token in tokens:
        token.close()


def _key_template(pk: Any, uri: Pkcs11Uri) -> list[tuple[int, Any]]:
    template: list[tuple[int, Any]] = [
        (pk.CKA_CLASS, pk.CKO_SECRET_KEY),
        (pk.CKA_KEY_TYPE, pk.CKK_AES),
        (pk.CKA_LABEL, uri.object),
    ]
    if uri.id is not None:
        template.append((pk.CKA_ID, uri.id))
    return template


def _find_keys(session: Any, uri: Pkcs11Uri) -> list[Any]:
    return list(session.findObjects(_key_template(_pk(), uri)))


class Pkcs11Sealer:
    """Seals data keys with an AES-256 key that never leaves the token."""

    kind = "pkcs11"

    def __init__(self, uri: Pkcs11Uri, env: Mapping[str, str] | None = None) -> None:
        self._uri = uri
        self._env = env
        self._rebind_lock = threading.Lock()
        self._token, self._handle, key_id = self._bind()
        self.key_ref = uri.key_ref(key_id)

    def _bind(self) -> tuple[_Token, Any, bytes]:
        """This process's logged-in token, the key's handle and its ``CKA_ID``; refuses a key
        that is missing, ambiguous, or can leave the token."""
        pk, uri = _pk(), self._uri
        token = token_for(uri, self._env)
        with token.session() as session:
            try:
                keys = _find_keys(session, uri)
                if len(keys) != 1:
                    raise Pkcs11Error(
                        f"the token {uri.token!r} holds {len(keys)} AES keys labelled "
                        f"{uri.object!r}"
                        + (
                            ": add id= to the URI"
                            if keys
                            else "; make one with: byok-keeper seal-key new --pkcs11 URI"
                        )
                    )
                # Made in the token and never out of it: a key imported with a known value
                # (C_CreateObject: not CKA_LOCAL) or once extractable is refused.
                musts = [pk.CKA_TOKEN, pk.CKA_SENSITIVE, pk.CKA_LOCAL, pk.CKA_ALWAYS_SENSITIVE,
                         pk.CKA_NEVER_EXTRACTABLE]  # fmt: skip
                key_id, extractable, *held = session.getAttributeValue(
                    keys[0], [pk.CKA_ID, pk.CKA_EXTRACTABLE, *musts]
                )
            except pk.PyKCS11Error as exc:
                raise Pkcs11Error(f"the token {uri.token!r}: {_code(exc)}") from None
        if extractable is not False or not all(value is True for value in held):
            raise Pkcs11Error(
                f"the key {uri.object!r} in the token {uri.token!r} may be known outside it (it "
                "must be CKA_TOKEN, CKA_SENSITIVE, CKA_LOCAL, CKA_ALWAYS_SENSITIVE, "
                "CKA_NEVER_EXTRACTABLE and not CKA_EXTRACTABLE); make one with: byok-keeper "
                "seal-key new --pkcs11 URI"
            )
        return token, keys[0], bytes(key_id)

    def _run(self, operation: Callable[[Any, Any], Any]) -> Any:
        """``operation(session, key handle)`` on a borrowed session. When the token lost this
        process's sessions or login (unplugged and back, restarted, logged out), log in again
        once (reading the PIN again), check the key is the same one, and retry once."""
        pk = _pk()
        token, handle = self._token, self._handle
        try:
            with token.session() as session:
                return operation(session, handle)
        except pk.PyKCS11Error as exc:
            if _code(exc) not in _SESSION_CODES:
                raise
        with self._rebind_lock:
            if self._token is token:  # not yet rebound by another worker
                forget(token)
                self._token, self._handle, key_id = self._bind()
                if self._uri.key_ref(key_id) != self.key_ref:
                    raise Pkcs11Error(f"the key {self._uri.object!r} changed in the token")
            token, handle = self._token, self._handle
        with token.session() as session:
            return operation(session, handle)

    def _mechanism(self, iv: bytes, context: Mapping[str, str]) -> Any:
        return _pk().AES_GCM_Mechanism(iv, _canonical(context), TAG_BITS)

    def new_data_key(self, context: dict[str, str]) -> tuple[bytearray, str]:
        pk = _pk()
        data_key = bytearray(os.urandom(DATA_KEY_BYTES))
        iv = os.urandom(IV_BYTES)
        # The binding takes bytes (an immutable copy, gone when collected): a residual
        # docs/CUSTODY.md names; the data key itself is wiped by the vault after use.
        plain = bytes(data_key)
        try:
            sealed = self._run(
                lambda session, key: bytes(
                    session.encrypt(key, plain, self._mechanism(iv, context))
                )
            )
        except pk.PyKCS11Error as exc:
            wipe(data_key)
            code = _code(exc)
            raise Pkcs11Error(f"the token {self._uri.token!r} did not seal ({code})") from None
        except BaseException:
            wipe(data_key)
            raise
        return data_key, base64.b64encode(iv + sealed).decode()

    def open_data_key(self, wrapped: str, context: dict[str, str]) -> bytearray:
        pk = _pk()
        try:
            blob = base64.b64decode(wrapped, validate=True)
        except (binascii.Error, ValueError):
            raise SealError("the envelope's wrapped data key is not Base64") from None
        if len(blob) != IV_BYTES + DATA_KEY_BYTES + TAG_BITS // 8:
            raise SealError("the envelope's wrapped data key has the wrong length")
        mechanism = self._mechanism(blob[:IV_BYTES], context)
        try:
            plain = self._run(lambda session, key: session.decrypt(key, blob[IV_BYTES:], mechanism))
        except pk.PyKCS11Error as exc:
            code = _code(exc)
            if code in _SESSION_CODES:
                raise Pkcs11Error(f"the token {self._uri.token!r}: {code}") from None
            raise SealError(
                "the envelope's data key does not open with this token key and context"
            ) from None
        try:
            if len(plain) != DATA_KEY_BYTES:
                raise SealError("the envelope's data key has the wrong length")
            return bytearray(plain)
        finally:
            _zero(plain)

    def __repr__(self) -> str:
        return f"Pkcs11Sealer(key_ref={self.key_ref})"


def new_token_key(uri_text: str, env: Mapping[str, str] | None = None) -> str:
    """Generate the seal key inside the token (AES-256, ``CKA_TOKEN``, ``CKA_SENSITIVE``, not
    ``CKA_EXTRACTABLE``, encrypt/decrypt only). Refuses (exit 2) when any object with the label
    exists. The ``CKA_ID`` is the URI's ``id`` or 8 random bytes. Returns the key reference."""
    pk = _pk()
    uri = parse_uri(uri_text, uri_name="--pkcs11")
    key_id = uri.id if uri.id is not None else os.urandom(8)
    token = token_for(uri, env)
    with token.session() as session:
        try:
            # Any object with the label, not only an AES key: a seal key whose label is shared
            # would make a later bind ambiguous, or find the other object first.
            if session.findObjects([(pk.CKA_LABEL, uri.object)]):
                raise Pkcs11Error(
                    f"the token {uri.token!r} already holds an object labelled {uri.object!r}; "
                    "a seal key is never replaced"
                )
            session.generateKey(
                [
                    (pk.CKA_CLASS, pk.CKO_SECRET_KEY),
                    (pk.CKA_KEY_TYPE, pk.CKK_AES),
                    (pk.CKA_VALUE_LEN, 32),
                    (pk.CKA_LABEL, uri.object),
                    (pk.CKA_ID, key_id),
                    (pk.CKA_TOKEN, True),
                    (pk.CKA_PRIVATE, True),
                    (pk.CKA_SENSITIVE, True),
                    (pk.CKA_EXTRACTABLE, False),
                    (pk.CKA_MODIFIABLE, False),
                    (pk.CKA_ENCRYPT, True),
                    (pk.CKA_DECRYPT, True),
                    (pk.CKA_WRAP, False),
                    (pk.CKA_UNWRAP, False),
                    (pk.CKA_SIGN, False),
                    (pk.CKA_VERIFY, False),
                    (pk.CKA_DERIVE, False),
                ],
                pk.MechanismAESGENERATEKEY,
            )
        except pk.PyKCS11Error as exc:
            code = _code(exc)
            raise Pkcs11Error(f"the token {uri.token!r} did not make the key ({code})") from None
    return uri.key_ref(key_id)


def build_pkcs11_sealer(uri_text: str, env: Mapping[str, str] | None = None) -> Pkcs11Sealer:
    """The sealer for the ``seal_pkcs11`` setting."""
    return Pkcs11Sealer(parse_uri(uri_text), env)
