"""A study's finished runs, kept in a folder that can be committed, so that a fresh clone resumes.

A study of hours outlives the machine that runs it only if what it finished lands where the next
machine finds it: in the repository. ``save_run`` copies one finished run's small files to
``<state_dir>/<run path under out_dir>/``; ``restore`` copies them back into an ``out_dir`` that
lacks them, and the study then reuses those runs exactly as if they had been trained there.

Kept per run: ``config.yaml``, ``summary.json``, ``metrics.jsonl``, ``model.sha256`` (the
checkpoint's hash, so that a restored evaluation is matched to the model it judged),
``machine.json`` (where and when the run was saved: a study resumed over sessions runs on
several machines, and results.json counts them) and, of every
finished evaluation folder, ``config.json``, ``summary.json``, ``samples.jsonl`` and
``complete.jsonl``. ``model.pt`` only where the study still needs it: teachers (their students and
the finals of other seeds load them), grid points until selection is decided, and the selected
ones until their test evaluation is done. Never ``last.pt`` or ``best.pt``: training state, three
times the size, needed only to continue an interrupted run, which starts over instead.

A file is written before the ``summary.json`` beside it, so a copy cut short never looks finished.
What is committed is the folder packed as one archive, ``<state_dir>.tar.gz`` (archive.py):
``restore`` unpacks it into a folder that lacks the state, ``save_run`` packs the folder again.

``study_lock``: one study per folder. A second study on the same output or state folder refuses
to start while the first runs, or two processes would train into the same run folders. The lock
is an ``flock`` on a file in the folder, so the kernel frees it when the holder dies, however it
dies; nothing stale is left to delete by hand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

from ...errors import ConfigError
from ...io import atomic_file, atomic_write_text, read_json, sha256_file, write_json
from ...parallel import node_label
from ..unified import machine_info
from .archive import pack, unpack

log = logging.getLogger(__name__)

SUMMARY, MODEL, MODEL_HASH, MACHINE = "summary.json", "model.pt", "model.sha256", "machine.json"
LOCK_NAME = ".study.lock"
RUN_FILES = ("config.yaml", "metrics.jsonl", MODEL_HASH, MACHINE)  # then model.pt where kept, then summary.json
EVAL_FILES = ("config.json", "samples.jsonl", "complete.jsonl")  # then summary.json


def model_hash(run_dir: Path) -> str | None:
    """The SHA-256 of the run's checkpoint: hashed from model.pt, else as the state recorded it."""
    if (run_dir / MODEL).is_file():
        return sha256_file(run_dir / MODEL)
    recorded = run_dir / MODEL_HASH
    return recorded.read_text().strip() if recorded.is_file() else None


def save_run(out_dir: Path, run_dir: Path, state_dir: Path, keep_model: bool, trained_here: bool = False) -> Path:
    """Copy the finished run ``run_dir`` (under ``out_dir``) and its finished evaluations to the state.

    ``trained_here``: this process's machine trained it, so machine.json names this machine (a run
    reused from an earlier call keeps the machine.json it has, or stays without one).
    """
    run_dir = Path(run_dir)
    target = Path(state_dir) / os.path.relpath(run_dir, out_dir)
    if not (run_dir / SUMMARY).is_file():
        raise ValueError(f"{run_dir} is not a finished run (no {SUMMARY})")
    target.mkdir(parents=True, exist_ok=True)
    digest = model_hash(run_dir)
    if digest is None:
        raise ValueError(f"{run_dir} has neither model.pt nor model.sha256")
    atomic_write_text(run_dir / MODEL_HASH, digest + "\n")
    if trained_here:
        record_machine(run_dir)
    for name in RUN_FILES:
        _copy(run_dir / name, target / name)
    for folder in sorted(p for p in run_dir.glob("eval-*") if (p / SUMMARY).is_file()):
        for name in (*EVAL_FILES, SUMMARY):
            _copy(folder / name, target / folder.name / name)
    if keep_model:
        _copy(run_dir / MODEL, target / MODEL)
    else:
        drop_model(target)
    _copy(run_dir / SUMMARY, target / SUMMARY)
    pack(state_dir)  # the archive is what is committed (archive.py)
    return target


def record_machine(run_dir: Path) -> None:
    """Write machine.json (this machine, now) into a run that this process has just trained.

    A study resumed over sessions runs on several machines, and results.json counts them. The job
    calls this as soon as training ends, not when the run is saved: a study stopped during the
    run's evaluation reuses the run next time, and then nothing would say where it was trained.
    """
    if not (Path(run_dir) / MACHINE).is_file():
        write_json(
            Path(run_dir) / MACHINE,
            dict(machine_info(), node=node_label(), saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        )


def trained_on(run_dir: Path) -> str | None:
    """The node that trained the run (machine.json), None when nothing recorded it."""
    path = Path(run_dir) / MACHINE
    return read_json(path).get("node") if path.is_file() else None


@contextlib.contextmanager
def study_lock(*folders):
    """Hold an exclusive lock on each folder given (None skipped) for the block; ConfigError if taken."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    handles = []
    try:
        unique = {Path(f).resolve(): Path(f) for f in reversed(folders) if f is not None}  # one lock per folder
        for folder in reversed(unique.values()):
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 (held open until the study ends)
            handles.append(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise ConfigError(
                    f"another study is running in {folder} ({holder}); wait for it to finish or "
                    "stop it, then run this command again"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
        yield
    finally:
        for handle in handles:
            handle.close()  # closing the file releases its flock


def drop_model(state_run: Path) -> None:
    """Remove a run's model.pt from the state (its hash stays): the study needs it no more."""
    (Path(state_run) / MODEL).unlink(missing_ok=True)


def restore(state_dir: Path, out_dir: Path) -> int:
    """Copy every finished run of the state that ``out_dir`` lacks; returns how many runs came back.

    A run finished in ``out_dir`` is kept as it is, and gains only the finished evaluations of the
    same model (same hash) that it lacks; a run only partly trained there is replaced.
    """
    state_dir, out_dir = Path(state_dir), Path(out_dir)
    unpack(state_dir)  # a fresh clone has only the committed archive (archive.py)
    if not state_dir.is_dir():
        return 0
    restored = 0
    for summary in sorted(state_dir.rglob(SUMMARY)):
        saved = summary.parent
        if saved.name.startswith("eval-"):
            continue
        run = out_dir / saved.relative_to(state_dir)
        if not (run / SUMMARY).is_file():
            _copy_tree(saved, run)
            restored += 1
        elif model_hash(run) == model_hash(saved):
            for folder in sorted(p for p in saved.glob("eval-*") if not (run / p.name / SUMMARY).is_file()):
                _copy_tree(folder, run / folder.name)
        else:
            log.warning("%s: finished here with another model than the state's %s; keeping this one", run, saved)
    if restored:
        log.info("restored %d finished runs from %s into %s", restored, state_dir, out_dir)
    return restored


def _copy_tree(source: Path, target: Path) -> None:
    """Every file of ``source`` into ``target``, summary.json files last (deepest first)."""
    files = sorted(
        (p for p in source.rglob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: (p.name == SUMMARY, -len(p.parts)),
    )
    for path in files:
        _copy(path, target / path.relative_to(source))


def _copy(source: Path, target: Path) -> None:
    """Atomic copy; a missing source is skipped, an identical target left alone."""
    if not source.is_file():
        return
    if (
        target.is_file()
        and target.stat().st_size == source.stat().st_size
        and sha256_file(target) == sha256_file(source)
    ):
        return
    with open(source, "rb") as src, atomic_file(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
