"""The export's folder: refuse what it must not replace, write beside it, swap it in at the end.

adcert-export writes the whole benchmark into a temporary folder next to ``--out-dir`` and moves it
into place only when everything checked out, so a failed export leaves the old folder as it was;
``--force`` replaces only a benchmark adcert-export wrote (its manifest, manifest.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from adcert_plugin.errors import ConfigError
from adcert_plugin.io import check_output_dir, output_error, writing

from .manifest import foreign_files


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def prepare_target(out_dir: Path, force: bool) -> None:
    """Refuse an --out-dir that holds anything but an earlier export (that one only with ``force``)."""
    check_output_dir(out_dir, "--out-dir")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise ConfigError(
                f"{out_dir} exists and is not empty; use --force to replace it (only a benchmark "
                "adcert-export wrote is replaced), or choose another --out-dir"
            )
        foreign = foreign_files(out_dir)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ConfigError(
                f"--force replaces only a benchmark adcert-export wrote, and {out_dir} also holds "
                f"what it did not write ({shown}); move that away, or choose another --out-dir"
            )
    with writing(f"the parent folder of --out-dir {out_dir}"):
        out_dir.parent.mkdir(parents=True, exist_ok=True)


def commit(tmp: Path, out_dir: Path) -> None:
    """Move the finished temporary folder into place, replacing ``out_dir`` if it exists."""
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, old / "old")
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def output_error_of(err: OSError, out_dir: Path) -> Exception:
    """A full disk or a read-only folder, named by the benchmark (not by its temporary folder)."""
    mapped = output_error(OSError(err.errno, err.strerror), f"the benchmark {out_dir} (nothing was written)")
    return mapped if mapped is not None else err
