"""The byok-keeper error hierarchy.

One root, ``ByokError``. Entrypoints catch only the root and turn it into one line and an exit
code (``exit_code`` on the class). Two branches:

* ``InputError`` (exit 2): usage, configuration or input is wrong. Retrying will not help; the
  operator must change something.
* ``ExecutionError`` (exit 1): something failed while doing the work (KMS said no, material did
  not match, a ciphertext did not open).

Messages are built from structured fields and never contain secret bytes: key material,
ephemeral keys and tokens are not accepted as fields at all.
"""

from __future__ import annotations


class ByokError(Exception):
    """Root of every error byok-keeper raises on purpose."""

    exit_code = 1


class InputError(ByokError):
    """Usage, configuration or input error: change something, then try again."""

    exit_code = 2


class ConfigError(InputError):
    """Settings are missing or contradict each other."""


class KeyMaterialError(InputError):
    """A target private key could not be loaded, or does not fit the key spec."""


class WrappingError(InputError):
    """Wrapping parameters are unusable: unknown algorithm, wrong wrapping key, bad length."""


class ExecutionError(ByokError):
    """The work itself failed."""


class UnwrapError(ExecutionError):
    """Wrapped material did not open.

    Deliberately opaque: which check failed (OAEP padding, SM2 C3 hash, PKCS#7 padding) is not
    said, so the error cannot serve as a padding or decryption oracle.
    """

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        super().__init__(f"wrapped key material does not open under {algorithm}")


class MaterialMismatch(ExecutionError):
    """Two identities of one key disagree (vault vs envelope, vault vs KMS): never import."""

    def __init__(self, key_id: str, where: str, expected: str, actual: str) -> None:
        self.key_id = key_id
        self.where = where
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"material mismatch for {key_id}: {where} has fingerprint {actual[:16]}..., "
            f"the envelope records {expected[:16]}...; nothing was imported"
        )


def shown(value: object) -> str:
    """Caller text quoted in an error: its repr, cut to 40 characters (anything else: its type's
    name). An error's message can become an audit ``reason`` or a log line, which the log
    redaction never cuts, and the text may be an attacker's 128 KiB."""
    text = value if isinstance(value, str) else type(value).__name__
    return repr(text if len(text) <= 40 else text[:40] + "...")
