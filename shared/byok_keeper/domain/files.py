"""Reading the local files byok-keeper trusts (envelopes, the seal key, key files, settings):
regular files only, checked on the opened descriptor, and never more than a cap; and writing
the few it creates (a seal key, a break-glass wrap) as new files only, mode 0600; and replacing
the files others read whole (envelopes, the fleet report, metrics, the health file) atomically.

A path that is a link to ``/dev/zero`` (or a FIFO, or a huge sparse file) must not make a run
read until memory runs out or block forever, so the file is opened non-blocking, ``fstat`` on
the descriptor (not the path, which could be swapped in between) must say regular file, and at
most ``cap + 1`` bytes are read: one more than allowed is enough to know it is too big.
Symbolic links are followed (Kubernetes secret mounts are links); what they resolve to is what
is checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ConfigError, InputError


class FileTooLarge(InputError):
    """A file is larger than the cap for its kind."""


def read_capped(path: str | Path, cap: int, what: str) -> tuple[bytearray, os.stat_result]:
    """Read a regular file of at most ``cap`` bytes into a ``bytearray`` (the caller wipes it
    if it is secret). Returns the data and the descriptor's ``stat``.

    Raises ``FileNotFoundError`` when it does not exist, ``ConfigError`` when it cannot be read
    or is not a regular file, ``FileTooLarge`` when it holds more than ``cap`` bytes.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        data = bytearray(cap + 1)
        view = memoryview(data)
        size = 0
        try:
            while size <= cap:
                n = os.readv(fd, [view[size:]])
                if n == 0:
                    break
                size += n
        except OSError as exc:
            raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
        finally:
            view.release()
        if size > cap:
            data[:] = bytes(len(data))
            raise FileTooLarge(f"{what} {path} is larger than {cap} bytes")
        # Shrink in place (no copy of the contents is left behind in another object).
        del data[size:]
        return data, st
    finally:
        os.close(fd)


def check_owner(st: os.stat_result, path: str | Path, what: str) -> None:
    """Refuse a file someone else could have written: it must be owned by the running user (or
    root, who could change anything anyway: a Kubernetes ConfigMap mount, FC's code package)
    and not writable by group or others. ``st`` is the opened descriptor's ``stat``. Raises
    ``ConfigError`` (exit 2). The settings file is held to it, as the daemon's state directory
    is: it says where wrapped material is sent and which roles are assumed."""
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            f"{what} {path} is owned by uid {st.st_uid}, not by the user running byok-keeper "
            f"(uid {os.geteuid()}) or root; its owner could send the material elsewhere"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"{what} {path} is writable by group or others (mode {st.st_mode & 0o7777:04o}); "
            f"it decides where wrapped material is sent: run chmod go-w {path}"
        )


def write_new(path: str | Path, data: bytes | bytearray, what: str) -> None:
    """Create ``path`` (mode 0600; never over an existing file or a link) and write ``data``,
    flushed to disk. Raises ``ConfigError`` naming ``what``; a failed write leaves no file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; {what} is never overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {what} {path}: {exc.strerror}") from None


def replace_atomically(path: str | Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` so a reader sees the old file or the new one, never half:
    a temporary file beside it (``mode`` whatever the umask), flushed to disk, renamed over
    ``path``; a failed write leaves no temporary file behind. Raises ``OSError`` for the caller
    to name."""
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
