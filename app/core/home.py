"""The service's own files are private, whatever the umask: folders 0700, files 0600 (SYNTHAUDIT_HOME,
the SQLite database and its WAL, STORAGE_DIR and every upload in it); and GROUP_KEY_SECRET, which the
embedded mode generates and keeps in its home when none is set, and every other mode must be given.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthaudit.app.core.config import Settings

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
SECRET_FILE = "group_key_secret"
MIN_SECRET_CHARS = 16


class MissingSecret(RuntimeError):
    """GROUP_KEY_SECRET is needed and not set (or too short to be a secret)."""


def private_dir(path: Path) -> Path:
    """Create the folder (and missing parents) with mode 0700; tighten it when it exists and is ours."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            pass
        _tighten(folder, PRIVATE_DIR)  # mkdir's mode is filtered by the umask: set it for real
    _tighten(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create the file empty with mode 0600 unless it exists; tighten it to 0600 when it is ours."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        os.close(fd)
    except FileExistsError:
        pass
    _tighten(path, PRIVATE_FILE)
    return path


def private_tree(root: Path) -> None:
    """Every folder below root 0700 and every regular file 0600 (an upload before it is published)."""
    for folder, dirs, files in os.walk(root):
        _tighten(Path(folder), PRIVATE_DIR)
        for name in files:
            _tighten(Path(folder) / name, PRIVATE_FILE)
        for name in dirs:
            _tighten(Path(folder) / name, PRIVATE_DIR)


def _tighten(path: Path, mode: int) -> None:
    """chmod to mode, for folders and regular files of this user (never through a symlink)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) == mode:
        return
    if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
        os.chmod(path, mode)


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if not database_url.startswith("sqlite"):
        return None
    path = database_url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" and "///" in database_url else None


def prepare_home(settings: Settings) -> None:
    """Before the database is opened: the embedded home 0700, the SQLite file (and its WAL and shared
    memory, which SQLite creates with the database's mode) 0600."""
    if settings.embedded:
        private_dir(settings.synthaudit_home)
    database = sqlite_path(settings.database_url)
    if database is not None:
        private_dir(database.parent)
        private_file(database)
        for suffix in ("-wal", "-shm", "-journal"):
            _tighten(database.with_name(database.name + suffix), PRIVATE_FILE)


def group_key_secret(settings: Settings) -> str:
    """GROUP_KEY_SECRET; in the embedded mode without one, the secret kept in SYNTHAUDIT_HOME (made once,
    32 random bytes, file 0600). Raises MissingSecret everywhere else."""
    if settings.group_key_secret:
        return _checked(settings.group_key_secret, "GROUP_KEY_SECRET")
    if not settings.embedded:
        raise MissingSecret(
            "GROUP_KEY_SECRET is not set: outside the embedded mode it is required (it keys the patient "
            "pseudonyms). Set it to a long random value, the same on every API replica and never changed "
            "(e.g. `openssl rand -hex 32`)"
        )
    path = private_dir(settings.synthaudit_home) / SECRET_FILE
    if not path.exists():
        draft = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            os.fchmod(fh.fileno(), PRIVATE_FILE)
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)  # whole or not at all; a second process starting at once keeps the first
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    _tighten(path, PRIVATE_FILE)
    return _checked(path.read_text(encoding="ascii", errors="replace").strip(), str(path))


def _checked(secret: str, where: str) -> str:
    if len(secret) < MIN_SECRET_CHARS:
        raise MissingSecret(
            f"{where} holds fewer than {MIN_SECRET_CHARS} characters: too short to key the patient "
            "pseudonyms (e.g. `openssl rand -hex 32`)"
        )
    return secret


def resolve_group_key_secret(settings: Settings) -> None:
    """Fill settings.group_key_secret at start (the embedded mode's kept secret), or raise MissingSecret."""
    settings.group_key_secret = group_key_secret(settings)
