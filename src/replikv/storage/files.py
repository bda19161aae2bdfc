"""File primitives the storage layer shares: durable creation and replacement.

Rules:
- Every file and directory replikv creates is owner-only: files 0600,
  directories 0700. They hold client data (and the cluster secret), so they
  are created with those modes: never created wider and narrowed later.
- ``atomic_write_file``: a crash leaves the old file or the new one, never a
  mix: write ``<path>.tmp``, fsync it, rename over ``path``, fsync the
  directory (POSIX: a rename survives power loss only once its directory is
  fsynced).
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def fsync_directory(directory: str | Path) -> None:
    """Make the creations, renames and deletions in ``directory`` durable.

    POSIX: fsync on a file covers its data, not its directory entry; a new or
    renamed file survives power loss only after its directory is fsynced.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def atomic_write_file(path: str | Path, data: bytes) -> None:
    """Replace (or create) ``path`` with ``data``, owner-only, crash-atomic."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # a leftover .tmp may have been created wider
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # a full disk: ``path`` is untouched; the part written gives its space back
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    fsync_directory(path.parent)


def private_dir(path: str | Path, narrow: bool = False) -> Path:
    """Create ``path`` (and missing parents) as 0700. ``narrow``: also make an
    existing one 0700 (only for directories replikv owns by name, such as
    ``wal/``: never a directory a user chose, which may be shared)."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if narrow and path.stat().st_mode & 0o077:
        os.chmod(path, DIR_MODE)
    return path
