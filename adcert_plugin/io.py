"""Files every stage writes: atomic writes, JSON, and file hashes.

A reader never sees a half-written file: ``atomic_file`` writes beside the target and renames
over it, so a failed write leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from .errors import ConfigError, OutputError


def creation_mode(base: int) -> int:
    """``base`` (0o666 for files, 0o777 for folders) minus the process umask, as ``open`` would give."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _target_mode(path: Path) -> int:
    """The mode a rewritten ``path`` gets: its current one, else what ``open`` would create."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return creation_mode(0o666)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success rename it over ``path``, else delete it.

    A reader never sees a half-written file, and a failed write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _target_mode(path))  # mkstemp files are 0600: a collaborator could not read them
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # ENOSPC from write/fsync names no file
            err.filename = str(path)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_file(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    """Parse a JSON file written by :func:`write_json`.

    Raises:
        ConfigError: the file is not valid JSON.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); pass --overwrite to start afresh") from None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space (or choose a folder on another disk) and run it again",
    errno.EDQUOT: "the disk quota is exhausted: free some space and run it again",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "permission denied: choose a folder you can write to",
    errno.ENOTDIR: "a part of that path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder, not a file: give a file path",
    errno.EEXIST: "something is already there: choose another path",
}


def output_error(err: OSError, what: str = "") -> OutputError | None:
    """An OSError the user can fix (full disk, read-only, permissions, a file in the path) as a one-line
    :class:`OutputError` saying what to do; None for any other OSError (a bug: keep its traceback)."""
    advice = _OS_ADVICE.get(err.errno) if err.errno is not None else None
    if advice is None:
        return None
    if err.filename is None:
        return OutputError(f"cannot write {what or 'a file'}: {advice}")
    return OutputError(f"{err.filename}{f' ({what})' if what else ''}: {advice}")


@contextlib.contextmanager
def writing(what: str = ""):
    """Turn an OSError inside the block into a one-line :class:`OutputError` (full disk, read-only, ...)."""
    try:
        yield
    except OSError as err:
        mapped = output_error(err, what)
        if mapped is None:
            raise
        raise mapped from err


def check_output_file(path: str | Path, option: str) -> Path:
    """Refuse an output file path that cannot be a file: a folder there, or a file as its parent."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file path, e.g. {path / 'report.json'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a folder; choose another path")
            break
    return path


def check_output_dir(path: str | Path, option: str) -> Path:
    """Refuse an output folder path that is a file, or lies under a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; choose another {option}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {path}: {parent} is a file, not a folder; choose another {option}")
            break
    return path


# ------------------------------------------------------------ one writer per folder

LOCK_NAME = ".adcert.lock"


class FolderLock:
    """An exclusive lock on a folder while a command writes into it: ``<folder>/.adcert.lock``.

    ``flock`` on the lock file, so a process that dies (SIGKILL, power loss) holds nothing: a
    stale lock file is simply locked again. The file records the holder's pid, host and command
    line, for the error a second writer gets. A folder this lock had to create, and that is empty
    when it is released, is removed again (nothing is left behind by a start that wrote nothing).
    """

    def __init__(self, folder: str | Path, option: str = "--out-dir"):
        self.folder, self.option = Path(folder), option
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._created = False

    def _busy(self, fd: int) -> ConfigError:
        holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        return ConfigError(
            f"{self.folder} is being written by {holder}; wait for it to finish, or choose another {self.option}"
        )

    def check_free(self) -> None:
        """Refuse now if another process holds the lock, without writing anything (for early checks)."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # no lock file (or no folder): nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._busy(fd) from None
        os.close(fd)

    def acquire(self) -> FolderLock:
        import fcntl
        import socket
        import sys

        check_output_dir(self.folder, self.option)
        with writing(f"the lock file of {self.option} {self.folder}"):
            self._created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, creation_mode(0o666))
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise self._busy(fd) from None
                # The holder before us may have unlinked the file between our open and flock: retry.
                if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300]
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({command})\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None
        if self._created:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it
                self.folder.rmdir()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------ pickles that cannot run code

# What the official CIFAR python batches (and other plain data pickles) are made of: builtin
# containers and scalars, and numpy arrays. ``find_class`` is the only way a pickle reaches code
# (a payload names ``os.system`` or ``builtins.eval`` there); anything not listed is refused.
PLAIN_PICKLE_GLOBALS = frozenset(
    {
        ("builtins", name)
        for name in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "int",
            "float",
            "str",
            "bool",
            "complex",
            "bytes",
            "bytearray",
        )
    }
    | {("_codecs", "encode"), ("collections", "OrderedDict")}
    | {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {("numpy", "ndarray"), ("numpy", "dtype")}
)


def load_plain_pickle(file, encoding: str = "ASCII"):
    """Unpickle data (containers, numbers, strings, numpy arrays) from a binary file; never code.

    Raises:
        pickle.UnpicklingError: the pickle names anything else (a function, a class of its own).
    """
    import pickle

    class _Plain(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) in PLAIN_PICKLE_GLOBALS:
                return super().find_class(module, name)
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a data file never holds (refused: unpickling it could run code)"
            )

    return _Plain(file, encoding=encoding).load()
