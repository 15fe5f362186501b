"""The certified-accuracy report: per-sample rows (``samples.jsonl``) and their summary.

Every number in ``summary.json`` is recomputed from the rows by :func:`summarize`, so a
resumed evaluation and a straight one give the same summary, and anyone can recount it
from ``samples.jsonl`` alone. One row per evaluated test sample::

    {"index": 17, "label": 3, "prediction": 3, "clean_correct": true, "pgd_robust": true,
     "attack_margin": 1.42, "margin_lower": {"IBP": -0.8, "CROWN": 0.31},
     "certified_by": "CROWN", "status": "certified", "seconds": 0.0021,
     "stage_seconds": {"clean": 1e-05, "pgd": 0.0009, "IBP": 4e-05, "CROWN": 0.0011},
     "soundness_errors": []}

``attack_margin`` is min_j (z_y − z_j) at the strongest point the attack found (the clean
point for a misclassified sample); ``margin_lower[m]`` is min_j of method m's lower bound on
that margin, present only for the methods that actually bounded the sample (the cascade
skips decided samples). With ``--complete`` each row also has ``complete``: the complete
verifier's answer (see complete.py), or null for a sample the cascade decided.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, SoundnessError
from ..io import atomic_write_text, read_json, write_json

logger = logging.getLogger(__name__)

SAMPLE_KEYS = (
    "index",
    "label",
    "prediction",
    "clean_correct",
    "pgd_robust",
    "attack_margin",
    "margin_lower",
    "certified_by",
    "status",
    "seconds",
    "stage_seconds",
    "soundness_errors",
)
STATUSES = ("misclassified", "pgd-broken", "certified", "unknown")
SAMPLES_FILE, SUMMARY_FILE, CONFIG_FILE = "samples.jsonl", "summary.json", "config.json"
SET_ASIDE = "set aside unsat:"  # the note of an unsat the evidence check set aside (vnncomp.results.evidence)
COMPLETE_FILE, WORK_DIR = "complete.jsonl", "complete"  # verifier answers; the verifiers' own files
ANSWER_WORDS = ("unsat", "sat", "timeout", "error", "unknown")


@dataclass(frozen=True)
class EvalReport:
    """What :func:`adcert_plugin.evaluation.evaluate` returns: the summary and where the files are.

    Attributes:
        out_dir: folder holding ``samples.jsonl``, ``summary.json`` and ``config.json``.
        summary: the ``summary.json`` contents (see :func:`summarize`).
        rows: the per-sample rows, sorted by index.
    """

    out_dir: Path
    summary: dict
    rows: list[dict] = field(repr=False, default_factory=list)

    @property
    def samples_path(self) -> Path:
        return self.out_dir / SAMPLES_FILE

    @property
    def summary_path(self) -> Path:
        return self.out_dir / SUMMARY_FILE

    @property
    def n(self) -> int:
        return self.summary["n"]

    @property
    def standard_acc(self) -> float:
        return self.summary["standard_acc"]

    @property
    def pgd_acc(self) -> float:
        return self.summary["pgd_acc"]

    @property
    def certified_acc(self) -> dict[str, float]:
        """Cumulative certified accuracy per method, in cascade order."""
        return self.summary["certified_acc"]

    @property
    def complete(self) -> dict | None:
        """The complete-verification section (None without ``--complete``); see :func:`summarize_complete`."""
        return self.summary.get("complete")

    @property
    def soundness_errors(self) -> list[dict]:
        return self.summary["soundness_errors"]

    def table(self) -> str:
        return format_table(self.summary)


def raise_on_soundness(report: EvalReport) -> EvalReport:
    """Return ``report``, or raise SoundnessError (carrying it) when it records violations."""
    errors = report.summary["soundness_errors"]
    if errors:
        err = SoundnessError(
            f"{len(errors)} soundness violations (first: sample {errors[0]['index']}: "
            f"{errors[0]['detail']}); see {report.summary_path}"
        )
        err.report = report
        raise err
    return report


def summary_meta(run_config: dict) -> dict:
    """The run settings a summary repeats (from ``config.json``)."""
    meta = {key: run_config[key] for key in ("checkpoint", "dataset", "eps", "methods", "seed", "attack")}
    meta["selection"] = {k: run_config.get(k) for k in ("start", "end", "n")}
    return meta


def summarize(rows: Sequence[dict], methods: Sequence[str], meta: dict | None = None) -> dict:
    """Counts, accuracies and timings recomputed from ``rows``.

    Certified accuracy is cumulative along the cascade: for method m, the share of samples
    certified by m or by a method before it. ``seconds_per_sample[m]`` divides m's time by the
    number of samples m actually bounded; ``clean`` and ``total`` divide by n, ``pgd`` by the
    number attacked (the correctly classified samples).
    """
    n = len(rows)
    correct = sum(r["clean_correct"] for r in rows)
    robust = sum(r["pgd_robust"] for r in rows)
    certified, running = {}, 0
    for m in methods:
        running += sum(r["certified_by"] == m for r in rows)
        certified[m] = running
    stages = ["clean", "pgd", *methods]
    seconds = {s: sum(r["stage_seconds"].get(s, 0.0) for r in rows) for s in stages}
    seconds["total"] = sum(r["seconds"] for r in rows)
    handled = {"clean": n, "pgd": correct, **{m: sum(m in r["margin_lower"] for r in rows) for m in methods}}
    per_sample = {s: (seconds[s] / handled[s] if handled[s] else 0.0) for s in stages}
    per_sample["total"] = seconds["total"] / n if n else 0.0
    errors = [dict(e, index=r["index"]) for r in rows for e in r["soundness_errors"]]
    ratio = lambda k: k / n if n else 0.0
    extra = {}
    if meta and meta.get("complete"):
        extra["complete"] = summarize_complete(rows, meta["complete"], running)
    return {
        **(meta or {}),
        **extra,
        "n": n,
        "counts": {
            "clean_correct": correct,
            "pgd_robust": robust,
            "certified": certified,
            "status": {s: sum(r["status"] == s for r in rows) for s in STATUSES},
        },
        "standard_acc": ratio(correct),
        "pgd_acc": ratio(robust),
        "certified_acc": {m: ratio(k) for m, k in certified.items()},
        "samples_bounded": {m: handled[m] for m in methods},
        "seconds": seconds,
        "seconds_per_sample": per_sample,
        "soundness_errors": errors,
    }


def summarize_complete(rows: Sequence[dict], config: dict, bound_certified: int) -> dict:
    """The complete-verification numbers, recounted from the rows' ``complete`` answers.

    ``certified`` = certified by a bound + ``unsat``, over all n samples; timeouts, errors and
    unknowns count as not certified; ``set_aside`` counts the unknowns that were an ``unsat`` facing
    a counterexample within VNN-COMP's 1e-4 tolerance (vnncomp.results.evidence). ``upper_acc`` =
    (PGD-robust − falsified) / n: no more samples than that can be robust; falsified = ``sat`` answers
    plus answers carrying a re-checked counterexample (``falsified`` in the answer: a verify-time
    attack's point behind a rejected ``unsat``). ``pending``: undecided samples without an answer here
    (another shard's, or not yet sent). ``seconds`` sums the verifier's per-sample times.
    """
    n = len(rows)
    answered = [r["complete"] for r in rows if r.get("complete")]
    counts = {w: sum(a["result"] == w for a in answered) for w in ANSWER_WORDS}
    undecided = sum(r["status"] == "unknown" for r in rows)
    robust = sum(r["pgd_robust"] for r in rows)
    seconds = sum(a["seconds"] for a in answered)
    certified = bound_certified + counts["unsat"]
    # a sat, or any answer with a re-checked counterexample (a verify-time attack's): not robust
    falsified = sum(bool(a.get("falsified", a["result"] == "sat")) for a in answered)
    set_aside = sum(a["result"] == "unknown" and (a.get("note") or "").startswith(SET_ASIDE) for a in answered)
    return {
        **{k: config[k] for k in ("verifier", "timeout", "jobs", "shard") if k in config},
        "undecided": undecided,
        "answered": len(answered),
        "pending": undecided - len(answered),
        "counts": counts,
        "certified": certified,
        "certified_acc": certified / n if n else 0.0,
        "falsified": falsified,
        "upper_acc": (robust - falsified) / n if n else 0.0,
        "not_certified": {w: counts[w] for w in ("timeout", "error", "unknown")},
        "set_aside": set_aside,
        "seconds": seconds,
        "seconds_per_sample": seconds / len(answered) if answered else 0.0,
        "wall_seconds": config.get("wall_seconds"),
    }


def format_table(summary: dict) -> str:
    """A fixed-width table of accuracy and time per stage (certified rows are cumulative)."""
    attack = summary.get("attack", {})
    head = (
        f"{summary.get('dataset', '?')}  eps={summary.get('eps', '?')}  n={summary['n']}  "
        f"checkpoint={summary.get('checkpoint', '?')}"
    )
    lines = [head, f"{'stage':<22}{'accuracy':>10}{'count':>8}{'handled':>9}{'seconds':>10}{'s/sample':>11}"]
    per, secs, counts = summary["seconds_per_sample"], summary["seconds"], summary["counts"]

    def line(name, acc, count, handled, stage):
        lines.append(f"{name:<22}{100 * acc:>9.2f}%{count:>8}{handled:>9}{secs[stage]:>10.2f}{per[stage]:>11.5f}")

    line("clean", summary["standard_acc"], counts["clean_correct"], summary["n"], "clean")
    line(f"PGD-{attack.get('steps', '?')}", summary["pgd_acc"], counts["pgd_robust"], counts["clean_correct"], "pgd")
    for m, acc in summary["certified_acc"].items():
        line(f"certified {m}", acc, counts["certified"][m], summary["samples_bounded"][m], m)
    lines.append(f"{'total':<22}{'':>10}{'':>8}{summary['n']:>9}{secs['total']:>10.2f}{per['total']:>11.5f}")
    complete = summary.get("complete")
    if complete:
        lines.extend(_complete_lines(complete))
    if summary["soundness_errors"]:
        lines.append(f"SOUNDNESS ERRORS: {len(summary['soundness_errors'])} (see summary.json)")
    return "\n".join(lines)


def _complete_lines(c: dict) -> list[str]:
    lines = [
        f"{'certified (complete)':<22}{100 * c['certified_acc']:>9.2f}%{c['certified']:>8}{c['answered']:>9}"
        f"{c['seconds']:>10.2f}{c['seconds_per_sample']:>11.5f}  (timeout {c.get('timeout', float('nan')):g} s)"
    ]
    counts = ", ".join(f"{w} {k}" for w, k in c["counts"].items() if k) or "no answers"
    lines.append(
        f"  {c['verifier']} (timeout {c['timeout']:g} s) on {c['answered']} undecided samples: {counts}; "
        f"timeouts count as not certified; robust at most {100 * c['upper_acc']:.2f}%"
    )
    if c.get("set_aside"):
        lines.append(
            f"  {c['set_aside']} unsat answers set aside (not certified): a point within 1e-4 of "
            "violating the property was in hand"
        )
    if c["pending"]:
        where = f" (shard {c['shard'][0]}/{c['shard'][1]}: merge the shards)" if c.get("shard") else ""
        lines.append(f"  {c['pending']} undecided samples not answered here{where}")
    return lines


# -- files ---------------------------------------------------------------------------------
def write_samples(path: Path, rows: Iterable[dict]) -> None:
    """Replace ``samples.jsonl`` atomically with ``rows``, one JSON object per line."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_samples(path: Path, rows: Iterable[dict]) -> None:
    """Append rows and flush, so a crash loses at most the line being written."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def read_samples(path: Path) -> list[dict]:
    """Rows of a ``samples.jsonl``; a torn last line (a crash mid-write) is dropped and cut off.

    Raises:
        ConfigError: a line other than the last is not a valid row.
    """
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    rows, good_bytes = [], 0
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or any(k not in row for k in SAMPLE_KEYS) or not line.endswith("\n"):
                raise ValueError("not a complete sample row")
        except ValueError as err:
            if number == len(lines):
                break
            raise ConfigError(
                f"{path} line {number} is not a sample row ({err}); "
                "delete the file or pass --overwrite instead of --resume"
            ) from None
        rows.append(row)
        good_bytes += len(line.encode("utf-8"))
    if good_bytes != len(text.encode("utf-8")):
        with open(path, "r+b") as f:  # cut the torn line so appends stay one row per line
            f.truncate(good_bytes)
    return rows


def prepare_out_dir(
    out_dir: Path, run_config: dict, resume_keys: Sequence[str], resume: bool, overwrite: bool
) -> dict[int, dict]:
    """Create or check the report folder; return the rows already done (resume), by index.

    A folder holding a report is refused unless ``resume`` (then ``config.json`` must agree
    with ``run_config`` on ``resume_keys``) or ``overwrite`` (then the old files are removed).
    ``config.json`` is (re)written before any sample is evaluated.

    Raises:
        ConfigError: the folder holds a report and neither flag fits.
    """
    files = [out_dir / name for name in (SAMPLES_FILE, SUMMARY_FILE, CONFIG_FILE, COMPLETE_FILE)]
    existing = [f for f in files if f.exists()]
    done: dict[int, dict] = {}
    if existing and resume:
        config_file = out_dir / CONFIG_FILE
        old = read_json(config_file) if config_file.exists() else None
        if old is None:
            raise ConfigError(f"cannot resume in {out_dir}: {CONFIG_FILE} is missing; pass --overwrite")
        changed = [k for k in resume_keys if old.get(k) != run_config.get(k)]
        if changed:
            raise ConfigError(
                f"cannot resume in {out_dir}: {', '.join(changed)} differ from the earlier run; "
                "use the same arguments, another --out-dir, or --overwrite"
            )
        wanted = {i for a, b in run_config["indices"] for i in range(a, b + 1)}
        for row in read_samples(out_dir / SAMPLES_FILE):
            if row["index"] not in wanted:
                raise ConfigError(f"{out_dir / SAMPLES_FILE} holds sample {row['index']}, outside this selection")
            done[row["index"]] = row
        logger.info("resuming in %s: %d samples already evaluated", out_dir, len(done))
    elif existing and not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a report ({existing[0].name}); pass --resume to continue it, "
            "--overwrite to replace it, or another --out-dir"
        )
    else:
        for f in existing:
            f.unlink()
        if existing:
            shutil.rmtree(out_dir / WORK_DIR, ignore_errors=True)  # the verifiers' answers of the old report
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / CONFIG_FILE, run_config)
    return done


class Progress:
    """A tqdm bar on stderr, only on a TTY and not under CI (or when asked)."""

    def __init__(self, total: int, initial: int, show: bool | None):
        if show is None:
            show = sys.stderr.isatty() and not os.environ.get("CI")
        self.bar = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="sample", file=sys.stderr, desc="adcert-eval")

    def __enter__(self):
        return self

    def update(self, k: int) -> None:
        if self.bar is not None:
            self.bar.update(k)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
