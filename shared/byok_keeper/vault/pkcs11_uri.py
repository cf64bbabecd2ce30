"""Naming a seal key in a PKCS#11 token: the RFC 7512 URI, its PIN and its module.

``pkcs11:token=byok;object=byok-seal?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin``

What is accepted, and why it is strict:

* path attributes ``token`` (required), ``object`` (required), ``id``, ``serial``,
  ``manufacturer``, ``model``, ``type`` (only ``secret-key``), ``slot-id``; query attributes
  ``module-path`` (required, absolute), ``pin-source``; vendor attributes (``x-...``) are
  ignored, as RFC 7512 section 2.3 allows. Anything else is refused, so a typo cannot select
  another token or object silently.
* ``pin-value`` is refused: URIs end up in settings files, process lists and logs. The PIN comes
  from ``pin-source`` (``file:/path`` or an absolute path) or ``BYOK_PKCS11_PIN``.
* loading ``module-path`` runs its code in this process, next to the key material, so it must
  be absolute, a regular file, and neither it nor any folder above it up to ``/`` (nor, through
  a link, the target and every folder above the target) writable by anyone but root or the
  running user; a sticky folder such as ``/tmp`` is refused too.

Nothing here touches a token; ``pkcs11`` does. The PIN is read into a ``bytearray`` the caller
wipes, and no message here ever quotes it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from ..domain.errors import ConfigError
from ..domain.files import FileTooLarge, read_capped

PIN_ENV = "BYOK_PKCS11_PIN"
MAX_PIN_BYTES = 256
_PATH_ATTRS = ("token", "object", "id", "serial", "manufacturer", "model", "type", "slot-id")
_QUERY_ATTRS = ("module-path", "pin-source")
# RFC 7512's pchar set, percent-encoded otherwise; used to render a key reference.
_SAFE = "-._~!$'()*+,=:@&"


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed ``pkcs11:`` URI. Holds no secret: the PIN is never part of it."""

    token: str
    object: str
    module_path: str
    id: bytes | None = None
    serial: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    slot_id: int | None = None
    pin_source: str | None = None

    def key_ref(self, key_id: bytes) -> str:
        """The reference an envelope records: token, label and ``CKA_ID``, no module, no PIN."""
        hex_id = "".join(f"%{b:02x}" for b in key_id)
        token, label = quote(self.token, _SAFE), quote(self.object, _SAFE)
        return f"pkcs11:token={token};object={label};id={hex_id}"


def _decode(value: str, name: str, uri_name: str) -> bytes:
    if re.search(r"%(?![0-9A-Fa-f]{2})", value):
        raise ConfigError(f"{uri_name}: {name} has a malformed percent-encoding")
    return unquote_to_bytes(value)


def _text(value: bytes, name: str, uri_name: str) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{uri_name}: {name} is not UTF-8") from None
    if not text or any(ord(c) < 0x20 for c in text):
        raise ConfigError(f"{uri_name}: {name} is empty or holds control characters")
    return text


def _attributes(part: str, sep: str, uri_name: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for item in part.split(sep) if part else []:
        name, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"{uri_name}: attribute {name!r} has no value")
        if name == "pin-value":
            raise ConfigError(
                f"{uri_name}: pin-value is refused (a URI ends up in settings files, process "
                f"lists and logs); use pin-source=file:/path or {PIN_ENV}"
            )
        if name in found:
            raise ConfigError(f"{uri_name}: attribute {name} is given twice")
        found[name] = _decode(value, name, uri_name)
    return found


def parse_uri(uri: str, *, uri_name: str = "seal_pkcs11") -> Pkcs11Uri:
    """Parse an RFC 7512 URI naming one secret-key object. Raises ``ConfigError`` (exit 2)
    whose message names the attribute at fault, never a PIN."""
    if not uri.startswith("pkcs11:"):
        raise ConfigError(f"{uri_name} must be a pkcs11: URI (RFC 7512)")
    path, _, query = uri[len("pkcs11:") :].partition("?")
    attrs = _attributes(path, ";", uri_name)
    query_attrs = _attributes(query, "&", uri_name)
    # Only pin-value's presence matters before this point; the rest is checked by name.
    for name in attrs:
        if name not in _PATH_ATTRS and not name.startswith("x-"):
            raise ConfigError(f"{uri_name}: unsupported path attribute {name!r}")
    for name in query_attrs:
        if name not in _QUERY_ATTRS and not name.startswith("x-"):
            raise ConfigError(f"{uri_name}: unsupported query attribute {name!r}")
    for name in ("token", "object"):
        if name not in attrs:
            raise ConfigError(f"{uri_name}: the {name}= attribute is required")
    if "module-path" not in query_attrs:
        raise ConfigError(f"{uri_name}: module-path= (the PKCS#11 library) is required")
    text = {n: _text(v, n, uri_name) for n, v in {**attrs, **query_attrs}.items() if n != "id"}
    if text.get("type", "secret-key") != "secret-key":
        raise ConfigError(f"{uri_name}: type must be secret-key (an AES key), not {text['type']}")
    slot_id = text.get("slot-id")
    if slot_id is not None and not slot_id.isdigit():
        raise ConfigError(f"{uri_name}: slot-id must be a decimal number")
    if "id" in attrs and not attrs["id"]:
        raise ConfigError(f"{uri_name}: id is empty")
    return Pkcs11Uri(
        token=text["token"],
        object=text["object"],
        module_path=check_module_path(text["module-path"], uri_name),
        id=attrs.get("id"),
        serial=text.get("serial"),
        manufacturer=text.get("manufacturer"),
        model=text.get("model"),
        slot_id=int(slot_id) if slot_id is not None else None,
        pin_source=text.get("pin-source"),
    )


def _check_trusted(path: str, what: str, uri_name: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{uri_name}: cannot use {what} {path}: {exc.strerror}") from None
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigError(
            f"{uri_name}: {what} {path} is owned by uid {st.st_uid}, neither root nor the user "
            "running byok-keeper; loading the module runs its code here"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"{uri_name}: {what} {path} is writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); loading the module runs its code here"
        )
    return st


def check_module_path(module_path: str, uri_name: str = "seal_pkcs11") -> str:
    """Refuse a module path that is relative, not a regular file, or replaceable by others."""
    if not os.path.isabs(module_path):
        raise ConfigError(f"{uri_name}: module-path must be absolute, not {module_path!r}")
    real = os.path.realpath(module_path)
    st = _check_trusted(real, "module", uri_name)
    for candidate in dict.fromkeys((module_path, real)):
        # Every folder up to /: whoever can write any of them can swap the path below it.
        # A sticky folder is no exception (a module has no business under /tmp).
        folder = os.path.dirname(candidate)
        for _ in range(candidate.count("/") + 1):  # bounded: one step per path component
            _check_trusted(folder, "the folder", uri_name)
            if folder == os.path.dirname(folder):
                break
            folder = os.path.dirname(folder)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{uri_name}: module {module_path} is not a regular file")
    return module_path


def read_pin(uri: Pkcs11Uri, env: Mapping[str, str] | None = None) -> bytearray:
    """The token PIN from ``pin-source`` or ``BYOK_PKCS11_PIN``, as a ``bytearray`` the caller
    wipes. A PIN file must be a regular file owned by the running user, not writable by group
    or others and not readable by others (the state directory's rule, plus: it is a secret);
    one trailing newline is dropped. Raises ``ConfigError`` naming the source, never the PIN."""
    env = os.environ if env is None else env
    if uri.pin_source is None:
        value = env.get(PIN_ENV)
        if not value:
            raise ConfigError(
                f"the token {uri.token} needs a PIN: add pin-source=file:/path to the URI or "
                f"set {PIN_ENV}"
            )
        return bytearray(value.encode())
    source = uri.pin_source
    path = source[len("file:") :] if source.startswith("file:") else source
    path = path[2:] if path.startswith("//") else path  # file:///run/... as well as file:/run/...
    if not os.path.isabs(path):
        raise ConfigError("pin-source must be file:/absolute/path (or an absolute path)")
    try:
        data, st = read_capped(Path(path), MAX_PIN_BYTES, "PIN file")
    except FileNotFoundError:
        raise ConfigError(f"cannot read PIN file {path}: no such file") from None
    except FileTooLarge:
        raise ConfigError(f"PIN file {path} is larger than {MAX_PIN_BYTES} bytes") from None
    problem = None
    if st.st_uid != os.geteuid():
        problem = f"is owned by uid {st.st_uid}, not by the user running byok-keeper"
    elif st.st_mode & 0o022:
        problem = "is writable by group or others"
    elif st.st_mode & 0o004:
        problem = "is readable by others; run chmod o-rwx"
    if problem:
        data[:] = bytes(len(data))
        raise ConfigError(f"PIN file {path} {problem} (mode {stat.S_IMODE(st.st_mode):04o})")
    if data.endswith(b"\n"):
        data[-1:] = b""
        if data.endswith(b"\r"):
            data[-1:] = b""
    if not data:
        raise ConfigError(f"PIN file {path} is empty")
    return data
