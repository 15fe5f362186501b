"""Merge the shard folders of a sharded complete-verification run into one report.

``adcert-eval ... --complete V --shard K/N`` writes ``<out_dir>/shard-K-of-N/``: every shard runs
the (cheap, deterministic) cascade on all samples and sends its share of the undecided ones to
the verifier. :func:`merge_shards` checks that the N folders belong to one run (same checkpoint
sha256, data set, eps, methods, samples, seed, attack, verifier and timeout), that they agree on
every sample's cascade outcome and that every undecided sample has its owner's answer, then
writes ``samples.jsonl``, ``complete.jsonl``, ``summary.json`` and ``config.json`` into
``out_dir``: the same numbers one unsharded run gives (times aside).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from ..errors import ConfigError
from ..io import FolderLock, atomic_write_text, read_json, write_json
from . import report as R
from .complete import CompleteConfig, answer_key, attach_answers, load_answers, owned, undecided_indices
from .report import EvalReport

log = logging.getLogger(__name__)

MERGE_KEYS = ("checkpoint_sha256", "dataset", "eps", "methods", "indices", "seed", "attack", "arch")
COMPLETE_KEYS = ("verifier", "timeout")
_SHARD = re.compile(r"shard-(\d+)-of-(\d+)")
_SAME_OUTCOME = ("label", "prediction", "clean_correct", "pgd_robust", "certified_by", "status")


def find_shards(out_dir: Path) -> dict[int, Path]:
    """Shard folders under ``out_dir`` by K; all must share one N and all K in 0..N-1 be there.

    Raises:
        ConfigError: none found, mixed N, or missing shards.
    """
    found = [
        (int(m[1]), int(m[2]), p)
        for p in sorted(out_dir.iterdir())
        if p.is_dir()
        for m in [_SHARD.fullmatch(p.name)]
        if m
    ]
    if not found:
        raise ConfigError(f"no shard-K-of-N folders in {out_dir}; run adcert-eval ... --shard K/N --out-dir {out_dir}")
    sizes = sorted({n for _, n, _ in found})
    if len(sizes) > 1:
        raise ConfigError(
            f"{out_dir} holds shards of different counts N ({', '.join(map(str, sizes))}); "
            "merge the shards of one run only (move the others away)"
        )
    n = sizes[0]
    missing = sorted(set(range(n)) - {k for k, _, _ in found})
    if missing:
        raise ConfigError(f"{out_dir}: shards {', '.join(f'{k}/{n}' for k in missing)} are missing; run them first")
    return {k: p for k, _, p in found}


def _config(folder: Path) -> dict:
    path = folder / R.CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{folder} holds no {R.CONFIG_FILE}; rerun that shard")
    config = read_json(path)
    if not config.get("complete") or not config["complete"].get("shard"):
        raise ConfigError(f"{path} is not a shard of a complete-verification run (no --complete/--shard)")
    return config


def _check_same_run(configs: dict[int, dict], shards: dict[int, Path]) -> None:
    first = configs[0]
    for k, config in configs.items():
        changed = [key for key in MERGE_KEYS if config.get(key) != first.get(key)]
        changed += [
            f"complete.{key}" for key in COMPLETE_KEYS if config["complete"].get(key) != first["complete"].get(key)
        ]
        if changed:
            raise ConfigError(
                f"{shards[k].name} differs from {shards[0].name} in {', '.join(changed)}: "
                "these are not shards of one run; merge the shards of one network and config only"
            )


def _rows(folder: Path, wanted: list[int]) -> dict[int, dict]:
    rows = {r["index"]: r for r in R.read_samples(folder / R.SAMPLES_FILE)}
    if set(wanted) - set(rows):
        raise ConfigError(
            f"{folder.name} has evaluated {len(set(wanted) & set(rows))} of {len(wanted)} samples; "
            "finish it first (rerun it with --resume)"
        )
    return rows


def merge_shards(out_dir: str | Path, overwrite: bool = False) -> EvalReport:
    """Combine ``out_dir/shard-*-of-N`` into one report in ``out_dir`` (see the module docstring).

    Raises:
        ConfigError: shards of different runs or networks, a shard missing or unfinished, or
            ``out_dir`` already holding an unsharded report (pass ``overwrite``).
        SoundnessError: the merged report records violations (raised after it is written).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is not a folder; pass the --out-dir the shards were run with")
    shards = find_shards(out_dir)
    configs = {k: _config(p) for k, p in shards.items()}
    _check_same_run(configs, shards)
    _refuse_unmerged(out_dir, overwrite)
    first = configs[0]
    wanted = [i for a, b in first["indices"] for i in range(a, b + 1)]
    rows = {k: _rows(p, wanted) for k, p in shards.items()}
    for k in shards:
        for i in wanted:
            if any(rows[k][i][f] != rows[0][i][f] for f in _SAME_OUTCOME):
                raise ConfigError(
                    f"{shards[k].name} and {shards[0].name} disagree on sample {i} "
                    f"({rows[k][i]['status']} vs {rows[0][i]['status']}): the cascade ran differently "
                    "(another device or version?); rerun the shards alike"
                )
    cfg = CompleteConfig(
        verifier=first["complete"]["verifier"],
        timeout=first["complete"]["timeout"],
        jobs=first["complete"].get("jobs", 1),
    )
    key = answer_key(first["checkpoint_sha256"], first["eps"], cfg.verifier, cfg.timeout)
    base = [rows[0][i] for i in wanted]
    undecided, answers = undecided_indices(base), dict[int, dict]()
    size = len(shards)
    for k, folder in shards.items():
        got = load_answers(folder / R.COMPLETE_FILE, key)
        mine = owned(undecided, (k, size))
        missing = [i for i in mine if i not in got]
        if missing:
            raise ConfigError(
                f"{folder.name} has answered {len(mine) - len(missing)} of its {len(mine)} undecided "
                "samples; rerun it with --resume, then merge again"
            )
        answers.update((i, got[i]) for i in mine)
    merged = attach_answers(base, answers, cfg)
    with FolderLock(out_dir, "OUT_DIR"):  # two merges (or a merge and an eval) never write one report at once
        return _write(out_dir, first, merged, answers, shards, cfg)


def _refuse_unmerged(out_dir: Path, overwrite: bool) -> None:
    path = out_dir / R.CONFIG_FILE
    if path.is_file() and not read_json(path).get("merged_from") and not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a report that is not a merge of its shards; "
            "pass --overwrite to replace it, or merge into another folder"
        )


def _write(
    out_dir: Path, first: dict, rows: list[dict], answers: dict, shards: dict[int, Path], cfg: CompleteConfig
) -> EvalReport:
    walls = []
    for folder in shards.values():
        summary = folder / R.SUMMARY_FILE
        if summary.is_file():
            walls.append((read_json(summary).get("complete") or {}).get("wall_seconds") or 0.0)
    config = dict(first, complete=dict(first["complete"], shard=None), merged_from=[p.name for p in shards.values()])
    atomic_write_text(out_dir / R.COMPLETE_FILE, "".join(json.dumps(answers[i]) + "\n" for i in sorted(answers)))
    R.write_samples(out_dir / R.SAMPLES_FILE, rows)
    meta = dict(R.summary_meta(config), merged_from=config["merged_from"])
    meta["complete"] = dict(cfg.record(), shard=None, wall_seconds=max(walls, default=0.0), shard_wall_seconds=walls)
    merged = R.summarize(rows, first["methods"], meta)
    write_json(out_dir / R.CONFIG_FILE, config)
    write_json(out_dir / R.SUMMARY_FILE, merged)
    log.info("merged %d shards into %s", len(shards), out_dir)
    return R.raise_on_soundness(EvalReport(out_dir, merged, rows))
