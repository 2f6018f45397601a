"""Files that are whole or absent: the atomic write every saved result and checkpoint goes through.

A long run is killed at any instant (a scheduler's SIGKILL, the OOM killer, a lost node). A file
written in place can then be left empty or half written, and the good file it replaced is gone.
:func:`atomic_write` writes to a temporary file in the destination's folder, flushes and
fsyncs it, and moves it over the destination with ``os.replace`` (an atomic rename on POSIX and Windows),
then fsyncs the folder: a reader, or the next run, sees the previous file or the new one, never
a part.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "check_writable"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path`` and move it over ``path`` atomically.

    The parent folder is created. On any exception (a ``KeyboardInterrupt`` too) the temporary
    file is removed and ``path`` is left as it was. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:                                          # the rename itself, durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def check_writable(folder: str | os.PathLike, name: str = "out") -> Path:
    """Create ``folder`` if needed and prove it writable (a temporary file is written and removed),
    before any work whose result goes there; a ``ValueError`` naming ``name`` and the folder otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mixbook-write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"{name}: cannot write results to {folder} ({err.strerror or err}); "
                         "choose a folder this process can create and write") from None
    return folder
