"""Writing secret files: whole or not at all, owner-only from the start, never through a link."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_private_file(
    path: Path, data: bytes, *, exclusive: bool = False, mode: int = 0o600
) -> None:
    """Write `data` to `path` atomically, readable by its owner only (0600) by default.

    The bytes go to a new temporary file in the same directory (O_CREAT|O_EXCL|O_NOFOLLOW,
    mode 0600), are fsynced, and the file is renamed onto `path`; then the directory is
    fsynced. A failure at any point (a full disk) leaves no partial file at `path` and the
    previous one, if any, whole; a symlink at `path` is replaced, never written through.
    `exclusive`: refuse (FileExistsError) if `path` exists, instead of replacing it (a
    link is used, so two writers racing cannot both succeed).
    `mode`: another mode for a file that is not secret but must be whole (a signer
    `group.json`: 0644, less the umask).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)  # fails with FileExistsError if anything is at `path`
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
