"""Atomic file writes: the one home of "temporary file, fsync, ``os.replace``".

A crash at any moment leaves either the previous file or the new one, never a
torn one. The result gets the permissions an ordinary ``open`` would give
(``0o666`` less the umask): ``mkstemp`` creates ``0600``, and the mode must be
set on the file that is renamed into place (a mode set on a file that a writer
then replaces is lost).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from collections.abc import Callable

from stsmooth.errors import StsmoothError

#: OSError numbers that are the disk's or the path's fault, reported in one line
_DISK_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a folder",
                errno.EISDIR: "it is a folder", errno.EEXIST: "a file is in the way of a folder it needs"}


def umask() -> int:
    """The process's umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(path: Path, err: OSError) -> StsmoothError | None:
    """One-line :class:`StsmoothError` for an OSError of writing ``path`` (None if not a disk/path fault)."""
    why = _DISK_ERRORS.get(err.errno)
    if why is None:
        return None
    return StsmoothError(f"cannot write {str(path)!r}: {why} ({err.strerror or err}); choose another out= or free space")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Writes ``path`` atomically: ``write(tmp)`` fills a temporary file of the same folder.

    Args:
        path: destination; its folder is created when missing.
        write: called with the temporary file's path; writes the whole content there.

    Returns:
        The destination path, with mode ``0o666 & ~umask``.

    Raises:
        StsmoothError: the folder cannot be created or written (full or read-only disk,
            a file in the way, no permission); nothing is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:  # the writer may have replaced tmp: flush what is there now
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        one_line = write_error(path, err)
        if one_line is None:
            raise
        raise one_line from err
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
