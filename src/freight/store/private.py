"""Keeping what Freight stores private to its user: folders 0700, files 0600, any umask.

FREIGHT_HOME holds the database (prompts, results, key hashes), file bodies and the
dashboard's secret. Created by Freight, each folder is 0700 and each file 0600 whatever
the process umask (a mode passed to mkdir/open is only narrowed by the umask, so it is
set again with chmod). SQLite creates its `-wal` and `-shm` files with the database
file's mode, so creating the database file 0600 first covers them too.

A home left readable by an older Freight (or a loose umask) is tightened when a
process opens it (`secure_home`), and the log says what changed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077  # group and other permission bits


def make_dir(path: Path) -> None:
    """Create the folder `path` 0700 if it is missing (its parents as mkdir -p would)."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return  # another process made it meanwhile
    os.chmod(path, DIR_MODE)


def open_new(path: Path) -> int:
    """Create `path` exclusively with mode 0600; returns a descriptor open for writing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def touch(path: Path) -> None:
    """Make sure `path` exists as a 0600 file (an existing one keeps its content)."""
    try:
        os.close(open_new(path))
    except FileExistsError:
        tighten(path)


def tighten(path: Path) -> bool:
    """Take group and other permissions off `path` (not following links); True if changed."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode) or not mode & _OTHERS:
        return False
    os.chmod(path, stat.S_IMODE(mode) & ~_OTHERS)
    return True


# What Freight writes in its home (config.py, service/access.py, web/session.py,
# service/offline.py). Only these are tightened: a home shared with other things keeps
# their modes (the home's own 0700 already keeps other users out of all of it).
HOME_ENTRIES = (
    "freight.db",
    "freight.db-wal",
    "freight.db-shm",
    "freight.db-journal",
    "freight.toml",
    "secret.key",
    "session_secret",
    "files",
    "run",
    "runs",
    "models",
)


def secure_home(home: Path) -> None:
    """Create `home` 0700, or tighten an existing one that others could enter.

    A home others can enter was written by an older Freight or under a loose umask:
    it and what Freight keeps in it (HOME_ENTRIES, folders walked, links not followed)
    lose their group and other permissions, once. A home that is already 0700 keeps
    others out of whatever it holds, so it is not walked again.
    """
    if not home.exists():
        make_dir(home)
        return
    if not home.stat().st_mode & _OTHERS:
        return
    root = home.resolve()
    num_tightened = int(tighten(root))
    for entry in (root / name for name in HOME_ENTRIES):
        num_tightened += tighten(entry)
        if entry.is_dir() and not entry.is_symlink():
            for folder, dirs, names in os.walk(entry):
                for name in [*dirs, *names]:
                    num_tightened += tighten(Path(folder) / name)
    log.warning(
        "%s was open to other users; took group/other permissions off %d paths in it "
        "(Freight keeps its home 0700 and its files 0600)",
        home,
        num_tightened,
    )
