"""The run directory a training run writes, and the rules for reusing one.

    <out_dir>/config.yaml    resolved TrainConfig, written before step 1
    <out_dir>/metrics.jsonl  one JSON object per finished epoch
    <out_dir>/last.pt        checkpoint after the last finished epoch, with trainer state (resume)
    <out_dir>/best.pt        checkpoint of the best epoch (by what the loss trains for, then clean acc)
    <out_dir>/model.pt       the final student (no trainer state)
    <out_dir>/summary.json   final and best metrics, timings

A folder that already holds a run is refused unless ``resume`` (continue from last.pt with a
compatible config) or ``force``. ``force`` removes only the run files above, and only once the
new run has something to show for it: they are moved to ``<out_dir>/.replaced-run/`` and deleted
when the new run's first epoch has written ``last.pt``; a start that fails or is interrupted
before that puts them back. Other files in the folder are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_text
from .config import TrainConfig, read_config_file, save_config

ASIDE = ".replaced-run"  # an earlier run's files, while a --force run has not finished an epoch
RUN_FILES = ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "model.pt", "summary.json")
# Fields a resumed run may change: where it runs and how long it goes on.
RESUMABLE_CHANGES = ("schedule.epochs", "out_dir", "device", "data.data_dir")


def _flatten(data: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        out.update(_flatten(value, dotted) if isinstance(value, dict) and value else {dotted: value})
    return out


class RunDir:
    """Paths and file operations of one run directory (writes happen on rank 0 only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.last = self.path / "last.pt"
        self.best = self.path / "best.pt"
        self.model = self.path / "model.pt"
        self.summary = self.path / "summary.json"
        self.aside = self.path / ASIDE

    def existing_run_files(self) -> list[str]:
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def check(self, cfg: TrainConfig, resume: bool, force: bool) -> None:
        """Refuse a folder holding a run (without resume/force), or an impossible resume."""
        if resume and force:
            raise ConfigError("--resume and --force contradict each other; pass one of them")
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"out_dir {self.path} exists and is not a folder; choose another --out-dir")
        if self.aside.is_dir():
            raise ConfigError(
                f"{self.aside} holds the run that an earlier --force set aside, and that start was "
                f"stopped before it could finish an epoch or put it back: move the files in it back "
                f"into {self.path} (or delete {self.aside} to drop that run), then run again"
            )
        if resume:
            if not self.last.is_file():
                found = self.existing_run_files()
                then = " with --force (it holds " + ", ".join(found) + ")" if found else ""
                raise ConfigError(
                    f"nothing to resume in {self.path}: it has no last.pt (no epoch finished); "
                    f"drop --resume to start the run afresh{then}"
                )
            self.check_resume_config(cfg)
            return
        found = self.existing_run_files()
        if found and not force and not self.last.is_file():
            raise ConfigError(
                f"{self.path} holds a run that finished no epoch ({', '.join(found)}; no last.pt), so "
                "there is nothing to resume: pass --force to start afresh, or another --out-dir"
            )
        if found and not force:
            raise ConfigError(
                f"{self.path} already holds a run ({', '.join(found)}); pass --resume to continue it, "
                "--force to start afresh, or another --out-dir"
            )

    def check_resume_config(self, cfg: TrainConfig) -> None:
        if not self.config.is_file():
            raise ConfigError(f"cannot resume {self.path}: config.yaml is missing; start afresh with --force")
        saved = _flatten(read_config_file(self.config))
        now = _flatten(cfg.to_dict())
        changed = [
            k for k in sorted(set(saved) | set(now)) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)
        ]
        if changed:
            # The fields that make it another run come first, so a long diff never hides them.
            first = ("loss.name", "data.dataset", "model.name", "schedule.eps", "seed", "teacher")
            changed.sort(key=lambda k: (k not in first, first.index(k) if k in first else 0, k))
            shown = "; ".join(f"{k}: {saved.get(k)!r} → {now.get(k)!r}" for k in changed[:4])
            more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
            raise ConfigError(
                f"cannot resume {self.path} with a different config ({shown}{more}); only "
                f"{', '.join(RESUMABLE_CHANGES)} may change on --resume: resume with the run's own "
                "config (drop --preset/--config), or start a new run in another --out-dir"
            )

    def resume_config(self, cfg: TrainConfig, finished: int) -> None:
        """Record a resumed run's config (its epoch count may differ); refuse fewer epochs than finished."""
        if finished > cfg.schedule.epochs:
            raise ConfigError(
                f"{self.last} is after epoch {finished}, past --epochs {cfg.schedule.epochs}: a resume "
                f"cannot undo epochs; pass --epochs {finished} or more (or use best.pt / model.pt "
                "as they are)"
            )
        self.write_config(cfg)

    def clear(self) -> None:
        """Remove the run files of an earlier run (other files in the folder are kept)."""
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)

    def set_aside(self) -> None:
        """Move an earlier run's files to ``.replaced-run/`` (a --force start): kept until ``drop_aside``."""
        found = self.existing_run_files()
        if not found:
            return
        self.aside.mkdir()
        for name in found:
            os.replace(self.path / name, self.aside / name)

    def drop_aside(self) -> None:
        """The new run finished an epoch: the earlier run it replaces is deleted now."""
        if self.aside.is_dir():
            shutil.rmtree(self.aside)

    def restore_aside(self) -> bool:
        """Put an earlier run back (the --force start failed before an epoch); True when there was one."""
        if not self.aside.is_dir():
            return False
        for name in RUN_FILES:
            if (self.aside / name).exists():
                os.replace(self.aside / name, self.path / name)
            else:
                (self.path / name).unlink(missing_ok=True)
        self.aside.rmdir()
        return True

    def write_config(self, cfg: TrainConfig) -> None:
        save_config(cfg, self.config)

    def append_metrics(self, row: dict) -> None:
        try:
            with self.metrics.open("a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            err.filename = err.filename or str(self.metrics)
            raise

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, epochs: int) -> list[dict]:
        """Keep the rows of epochs ≤ ``epochs`` (a resumed run rewrites later ones)."""
        rows = [r for r in self.read_metrics() if int(r.get("epoch", 0)) <= epochs]
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.summary, json.dumps(summary, indent=2) + "\n")
