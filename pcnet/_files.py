"""Writing files that must survive a crash whole: keys, credentials, journal entries; and
directories only their owner may enter.

A file is written in full under a temporary name, fsync'ed, given its final mode (the umask
may have masked bits off at creation), renamed into place and its directory fsync'ed: after a
crash it is either entirely there or not at all, and a key is never readable by others, even
briefly.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_directory(path: Path) -> Path:
    """Make `path` (and missing parents) a directory; one this call creates is mode 0700.

    An existing directory keeps its mode: an administrator may have chosen it (a group that
    reads the logs), and pcnet's secret files in it are 0600 anyway.
    """
    path = Path(path)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if not path.is_dir():
                raise
        else:
            os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    return path


def write_durably(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` as `path` atomically and durably, with permissions `mode`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def remove_durably(path: Path) -> None:
    """Remove `path` (if it exists) and make the removal durable."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return
    fsync_directory(Path(path).parent)
