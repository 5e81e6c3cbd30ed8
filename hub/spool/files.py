"""The data dir and the files in it are private to the user running the hub.

The spool holds every raw submission (names, e-mail addresses, answers), so the data dir is 0700
and its files 0600, set explicitly rather than left to the process umask. SQLite creates a
database's -wal and -shm files with the database file's own mode, so creating `spool.db` 0600
before SQLite first opens it is what keeps those private too.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("hookhub.spool")

DIR_MODE = 0o700
FILE_MODE = 0o600
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and its parents) with the dir itself 0700; tighten an existing looser one.

    A shared directory (sticky bit, like /tmp) or one owned by someone else is left as it is,
    with a warning: changing it would break other users, and the admin has to choose another.
    """
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    info = path.stat()
    if stat.S_IMODE(info.st_mode) == DIR_MODE:
        return
    if info.st_mode & stat.S_ISVTX or info.st_uid != os.getuid():
        log.warning(
            "data dir is shared: use a directory of its own",
            extra={"event": "data_dir_shared", "path": str(path), "mode": oct(stat.S_IMODE(info.st_mode))},
        )
        return
    _tighten(path, info, DIR_MODE, "data dir")


def ensure_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists; tighten it (and SQLite's side files) if looser."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in _SQLITE_SIDE_FILES)):
        try:
            info = candidate.stat()
        except FileNotFoundError:
            continue
        if stat.S_IMODE(info.st_mode) & ~FILE_MODE:
            _tighten(candidate, info, FILE_MODE, "spool file")


def _tighten(path: Path, info: os.stat_result, mode: int, what: str) -> None:
    """chmod `path` to `mode`; only a pre-existing looser mode is worth a warning (umask, older hubs)."""
    before = stat.S_IMODE(info.st_mode)
    os.chmod(path, mode)
    if before & ~mode & 0o077:
        log.warning(
            f"{what} was readable by other users: tightened",
            extra={
                "event": "permissions_tightened",
                "path": str(path),
                "mode": oct(before),
                "now": oct(mode),
            },
        )
