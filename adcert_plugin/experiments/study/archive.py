"""A study's state folder, committed as one archive: ``<state_dir>.tar.gz`` beside the folder.

A state folder holds hundreds of small files per study (state.py); a reader browsing the
repository should meet the results, not them. So the folder is what a study works in (git
ignores it) and the archive is what is committed:

- ``unpack(state_dir)``: a folder that holds no finished run (absent, or empty) is restored from
  its archive first. A folder that holds runs is the newer copy and is used as it is; runs that
  only the archive holds are named in a warning (delete the folder to restore from the archive).
- ``pack(state_dir)``: after every change the folder is packed again. The archive is
  deterministic (sorted members, no times or owners, gzip without a timestamp), so packing the
  same files gives the same bytes and git sees no change; a folder whose files (names, sizes,
  times) are those of the last packing is not packed again.

The archive is read as data only: regular files and folders under the state folder; a link, a
device or a path that leaves the folder is refused, and nothing in it is executed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from ...errors import DataError
from ...io import atomic_file, atomic_write_text

log = logging.getLogger(__name__)

SUFFIX = ".tar.gz"
FINISHED = "summary.json"
PACKED = ".packed"  # in the folder: the fingerprint of the files last packed (hidden: never packed itself)


def archive_path(state_dir: str | Path) -> Path:
    """The archive that stands for ``state_dir`` in the repository: ``<state_dir>.tar.gz``."""
    state_dir = Path(state_dir)
    return state_dir.with_name(state_dir.name + SUFFIX)


def _files(state_dir: Path) -> list[Path]:
    """The files to pack, sorted: hidden ones (the study's lock, temporary copies) stay out."""
    return sorted(
        p
        for p in state_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(state_dir).parts)
    )


def _fingerprint(files: list[Path], state_dir: Path) -> str:
    listing = "\n".join(
        f"{p.relative_to(state_dir).as_posix()} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def pack(state_dir: str | Path) -> Path:
    """Write ``<state_dir>.tar.gz`` from the folder (atomically, deterministically); returns its path."""
    state_dir, target = Path(state_dir), archive_path(state_dir)
    files = _files(state_dir)
    fingerprint = _fingerprint(files, state_dir)
    if target.is_file() and (state_dir / PACKED).is_file() and (state_dir / PACKED).read_text() == fingerprint:
        return target
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(state_dir).as_posix())
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    with (
        atomic_file(target, "wb") as out,
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9, filename="") as gz,
    ):
        gz.write(buffer.getvalue())
    atomic_write_text(state_dir / PACKED, fingerprint)
    return target


def _members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, each a regular file or folder with a relative path that stays inside."""
    members = tar.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if not (m.isfile() or m.isdir()) or PurePosixPath(m.name).is_absolute() or ".." in parts:
            raise DataError(
                f"{archive}: member {m.name!r} is not a plain file inside the state folder; "
                "a state archive holds only files (restore it from git)"
            )
    return members


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finished_runs(names) -> set[str]:
    return {str(PurePosixPath(n).parent) for n in names if PurePosixPath(n).name == FINISHED}


def unpack(state_dir: str | Path) -> int:
    """Restore ``state_dir`` from its archive when the folder holds no finished run; returns the files restored."""
    state_dir, archive = Path(state_dir), archive_path(state_dir)
    if not archive.is_file():
        return 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = _members(tar, archive)
            if state_dir.is_dir() and any(state_dir.rglob(FINISHED)):
                _warn_if_behind(state_dir, archive, members)
                return 0
            state_dir.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=state_dir.parent, prefix=f".{state_dir.name}."))
            staging.chmod(0o777 & ~_umask())  # mkdtemp's folder is private; the state is an ordinary folder
            try:
                for m in members:
                    target = staging / m.name
                    if m.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(m)
                    assert src is not None  # a regular file (_members refused the rest)
                    with src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                if state_dir.is_dir():
                    shutil.rmtree(state_dir)  # holds no finished run (checked above): nothing is lost
                os.replace(staging, state_dir)  # the whole state appears at once, or not at all
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{archive}: cannot be read as a state archive ({err}); restore it with git") from err
    restored = sum(m.isfile() for m in members)
    log.info("restored %s from %s (%d files)", state_dir, archive, restored)
    return restored


def _warn_if_behind(state_dir: Path, archive: Path, members: list[tarfile.TarInfo]) -> None:
    """The folder is used as it is; say so when the archive holds finished runs that the folder lacks."""
    here = _finished_runs(p.relative_to(state_dir).as_posix() for p in state_dir.rglob(FINISHED))
    missing = sorted(_finished_runs(m.name for m in members) - here)
    if missing:
        log.warning(
            "%s lacks %d finished runs that %s holds (first: %s); the folder is used as it is: delete it "
            "to restore the state from the archive",
            state_dir,
            len(missing),
            archive,
            missing[0],
        )
