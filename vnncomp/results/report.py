"""Cross-check: merge adcert-eval's per-sample report with complete-verifier results.

Merged certified accuracy counts a sample as certified when an incomplete method
certified it or a complete verifier answered ``unsat``. Contradictions (a verifier
``unsat`` on an attacked sample, a ``sat`` on a certified one, two verifiers disagreeing)
raise :class:`SoundnessError`. Before the join every answer is checked against the
benchmark's own evidence (:func:`check_answers`), and the eval report and the benchmark must
be of the same network (checkpoint sha256) and eps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from adcert_plugin.errors import ConfigError, SoundnessError

from ..export.instances import instance_sample_index, read_instances, read_metadata
from .counterexamples import validate_counterexamples
from .evidence import Coverage, benchmark_identity, check_answers, claimed_word
from .external import needs_counterexample, read_source
from .readers import VerifierResult, read_table_identity

logger = logging.getLogger(__name__)

# adcert-eval's report files (adcert_plugin.evaluation.report); not imported, as that pulls in
# torch and this module is read by the torch-free verifier workers' package.
SUMMARY_FILE, CONFIG_FILE = "summary.json", "config.json"


@dataclass(frozen=True)
class CrossCheck:
    """Eval rows merged with verifier results.

    Attributes:
        rows: Per sample: the eval row plus ``verifiers`` ({name: result}) and ``merged``
            (``certified``, ``falsified`` or ``open``).
        total: Number of eval rows.
        certified_incomplete: Rows certified by an incomplete method.
        certified_merged: Rows certified by an incomplete method or a verifier ``unsat``.
        falsified: Rows attacked, misclassified, or ``sat``.
        contradictions: One line per contradiction (empty when consistent).
        answers: Decided verifier answers (sat/unsat) on the benchmark's instances.
        answers_in_eval: Of them, those on samples the eval report holds (cross-checked against its rows).
        coverage: How many answers the benchmark's own evidence cross-checked (:class:`Coverage`).
        rejected: ``instance/verifier: why`` for each ``sat`` read from the results whose counterexample
            did not hold (or was missing where the format carries one): counted as errors; the CLI fails.
    """

    rows: list[dict]
    total: int
    certified_incomplete: int
    certified_merged: int
    falsified: int
    contradictions: list[str]
    answers: int = 0
    answers_in_eval: int = 0
    coverage: Coverage = Coverage()
    rejected: tuple[str, ...] = ()

    @property
    def certified_accuracy(self) -> float:
        return self.certified_merged / self.total if self.total else float("nan")

    def summary(self) -> dict:
        return {
            "total": self.total,
            "certified_incomplete": self.certified_incomplete,
            "certified_merged": self.certified_merged,
            "falsified": self.falsified,
            "certified_accuracy": self.certified_accuracy,
            "contradictions": self.contradictions,
            "coverage": {**self.coverage.summary(), "answers_in_eval": self.answers_in_eval},
        }

    def coverage_lines(self) -> list[str]:
        return [
            self.coverage.line(),
            f"cross-checked {self.answers_in_eval}/{self.answers} verifier answers against the eval report's rows"
            + (
                f" ({self.answers - self.answers_in_eval} are on samples it does not hold)"
                if self.answers_in_eval < self.answers
                else ""
            ),
        ]


def _with_eval_answer(row: dict, answers: dict[str, str]) -> dict[str, str]:
    """The benchmark's answers plus the eval's own complete-verifier answer (``adcert-eval --complete``)."""
    complete = row.get("complete") or {}
    if complete.get("result") in ("sat", "unsat"):
        return {**answers, f"eval:{complete.get('verifier', 'complete')}": complete["result"]}
    return answers


def _merge_row(row: dict, answers: dict[str, str], problems: list[str]) -> dict:
    answers = _with_eval_answer(row, answers)
    index, certified = row["index"], row.get("certified_by")
    attacked = not row.get("pgd_robust", True)
    unsat = sorted(v for v, word in answers.items() if word == "unsat")
    sat = sorted(v for v, word in answers.items() if word == "sat")
    if unsat and attacked:
        problems.append(
            f"sample {index}: {', '.join(unsat)} says unsat but the attack succeeded (or the sample is misclassified)"
        )
    if sat and certified:
        problems.append(f"sample {index}: {', '.join(sat)} says sat but {certified} certified it")
    if unsat and sat:
        problems.append(f"sample {index}: {', '.join(unsat)} unsat vs {', '.join(sat)} sat")
    merged = "certified" if certified or unsat else "falsified" if attacked or sat else "open"
    return {**row, "verifiers": dict(answers), "merged": merged}


def cross_check(
    eval_rows: Sequence[dict],
    results: Sequence[VerifierResult],
    instance_index: dict[str, int],
    instance_labels: dict[str, int] | None = None,
    raise_on_contradiction: bool = True,
) -> CrossCheck:
    """Merge adcert-eval's per-sample rows with complete-verifier results.

    Certified = an incomplete method certified it OR some verifier said ``unsat``.
    Contradictions: ``unsat`` where the attack succeeded; ``sat`` where an incomplete
    method certified; two verifiers disagreeing (unsat vs sat).

    Args:
        eval_rows: Dicts with ``index``, ``label``, ``pgd_robust``, ``certified_by``.
        results: Verifier results (invalid ``sat`` should already be ``error``).
        instance_index: Instance name → test-set index (from ``metadata.json``).
        instance_labels: Instance name → label, checked against the eval rows.
        raise_on_contradiction: Raise instead of returning contradictions.

    Raises:
        SoundnessError: Contradictions found and ``raise_on_contradiction``.
        ConfigError: A label in the benchmark differs from the eval row's label.
    """
    by_index = {int(r["index"]): r for r in eval_rows}
    answers: dict[int, dict[str, str]] = {}
    for r in results:
        if r.instance not in instance_index:
            logger.warning("result for unknown instance %s ignored", r.instance)
            continue
        index = instance_index[r.instance]
        label = (instance_labels or {}).get(r.instance)
        if index in by_index and label is not None and int(by_index[index]["label"]) != int(label):
            raise ConfigError(
                f"instance {r.instance}: label {label} but the eval report says "
                f"{by_index[index]['label']} for sample {index}; different data sets?"
            )
        answers.setdefault(index, {})[r.verifier] = r.result
    missing = sorted(set(answers) - set(by_index))
    if answers and len(missing) == len(answers):  # nothing would be cross-checked: not a result, a mismatch
        raise ConfigError(
            f"none of the {len(answers)} verified samples (test indices {missing[:10]}) is in the eval "
            "report, so nothing can be cross-checked; export the samples the eval covers "
            "(adcert-export with adcert-eval's --start/--end) or evaluate the benchmark's samples"
        )
    if missing:
        logger.warning(
            "%d verified samples are not in the eval report (not cross-checked against it): %s",
            len(missing),
            missing[:10],
        )
    decided = [r for r in results if r.instance in instance_index and claimed_word(r) in ("sat", "unsat")]
    problems: list[str] = []
    rows = [_merge_row(row, answers.get(int(row["index"]), {}), problems) for row in eval_rows]
    check = CrossCheck(
        rows,
        len(rows),
        sum(bool(r.get("certified_by")) for r in rows),
        sum(r["merged"] == "certified" for r in rows),
        sum(r["merged"] == "falsified" for r in rows),
        problems,
        len(decided),
        sum(instance_index[r.instance] in by_index for r in decided),
    )
    if problems and raise_on_contradiction:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise SoundnessError(f"{len(problems)} contradictions: {shown}")
    return check


def _json_lines(path: Path, text: str) -> list:
    """One JSON value per line; a bad line is named by its number in the file (not "line 1" of itself)."""
    rows, lines = [], text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            last = all(not rest.strip() for rest in lines[number:])
            why = (
                "is cut short: the file was truncated (a crash or a full disk); adcert-eval --resume on its "
                "folder repairs it"
                if last
                else f"is not JSON ({err.msg}, column {err.colno})"
            )
            raise ConfigError(f"{path} line {number} {why}") from None
    return rows


def read_eval_rows(path: str | Path) -> list[dict]:
    """Read adcert-eval's per-sample report: JSON lines, or a JSON list / ``{"rows": [...]}``.

    Raises:
        ConfigError: Unreadable file or rows without ``index``/``label``.
    """
    path = Path(path)
    try:
        text = path.read_text()
        stripped = text.lstrip()
        if stripped.startswith("[") or (stripped.startswith("{") and path.suffix == ".json"):
            data = json.loads(text)
            rows = data if isinstance(data, list) else data.get("rows", data.get("samples", []))
        else:
            rows = _json_lines(path, text)
    except (OSError, json.JSONDecodeError, AttributeError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read eval report {path}: {err}") from err
    if not isinstance(rows, list) or not rows:
        raise ConfigError(
            f"{path} holds no per-sample rows; pass adcert-eval's samples.jsonl "
            "(e.g. runs/adcert/eval-0.1/samples.jsonl), not its summary.json or an empty file"
        )
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or "index" not in row or "label" not in row:
            raise ConfigError(f"{path}: row {number} lacks 'index'/'label'; is this adcert-eval's per-sample file?")
    return rows


def _load_source(source: Path, instances: dict, metadata: dict, identity: dict) -> tuple[list, list[str]]:
    """Read one ``--results`` source (format detected), re-check the counterexamples it carries;
    (the results, the ``sat`` answers that were rejected)."""
    results, kind = read_source(source, instances, metadata)
    if kind == "table":
        _check_table_identity(source, identity)
    checked = validate_counterexamples(results, instances, require=needs_counterexample(kind))
    return checked, _rejected_sats(results, checked)


def _rejected_sats(before: Sequence[VerifierResult], after: Sequence[VerifierResult]) -> list[str]:
    """The ``sat`` answers that validation turned into errors: ``instance/verifier: why``."""
    return [
        f"{b.instance}/{b.verifier}: {a.note}"
        for b, a in zip(before, after)
        if b.result == "sat" and a.result == "error"
    ]


def _same_eps(a, b) -> bool:
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))


def _check_table_identity(path: Path, identity: dict) -> None:
    for digest, eps in read_table_identity(path):
        if digest and identity.get("network_sha256") and digest != identity["network_sha256"]:
            raise ConfigError(
                f"{path} holds results for another network (ONNX sha256 {digest[:12]}, "
                f"the benchmark's is {identity['network_sha256'][:12]}); pass results of this benchmark"
            )
        if eps and identity.get("eps") is not None and not _same_eps(eps, identity["eps"]):
            raise ConfigError(f"{path} holds results at eps {eps}, the benchmark is at eps {identity['eps']}")


def eval_identity(eval_path: Path) -> dict:
    """``checkpoint_sha256`` and ``eps`` of an eval report, from its config.json/summary.json beside it."""
    found: dict = {}
    for name in (SUMMARY_FILE, CONFIG_FILE):
        try:
            data = json.loads((Path(eval_path).parent / name).read_text())
        except (OSError, ValueError):
            continue
        for key in ("checkpoint_sha256", "eps"):
            if found.get(key) is None and isinstance(data, dict) and data.get(key) is not None:
                found[key] = data[key]
    return found


def check_same_network(eval_path: Path, bench_dir: Path, identity: dict) -> None:
    """Refuse to join an eval report and a benchmark of different networks or eps (one-line ConfigError)."""
    ev = eval_identity(eval_path)
    if ev.get("checkpoint_sha256") and identity.get("checkpoint_sha256"):
        if ev["checkpoint_sha256"] != identity["checkpoint_sha256"]:
            raise ConfigError(
                f"{eval_path} evaluates another network than {bench_dir} (checkpoint sha256 "
                f"{ev['checkpoint_sha256'][:12]} vs {identity['checkpoint_sha256'][:12]}); "
                "evaluate the checkpoint the benchmark was exported from"
            )
    else:
        logger.warning(
            "cannot tell whether %s and %s are of the same network (no checkpoint sha256 recorded)",
            eval_path,
            bench_dir,
        )
    if ev.get("eps") is not None and identity.get("eps") is not None and not _same_eps(ev["eps"], identity["eps"]):
        raise ConfigError(
            f"{eval_path} is at eps {ev['eps']}, {bench_dir} at eps {identity['eps']}; evaluate at the benchmark's eps"
        )


def report_benchmark(
    eval_path, bench_dir, sources: Sequence[str | Path] | None = None, raise_on_contradiction: bool = True
) -> CrossCheck:
    """Merge an eval per-sample report with every verifier result of a benchmark.

    Every answer is first checked against the benchmark's evidence (export attack points,
    bound certificates, a verify-time attack where there is neither; :func:`check_answers`).

    Args:
        eval_path: adcert-eval's per-sample file (JSON lines).
        bench_dir: Benchmark folder (its ``metadata.json`` maps instances to samples).
        sources: adcert results tables, abCROWN pickles, result files or folders, VNN-COMP
            ``results.csv`` files (or their folders), 2026 per-model JSON records (format detected);
            default: every ``<bench>/results/*.csv``.
        raise_on_contradiction: Raise :class:`SoundnessError` on contradictions.

    Raises:
        ConfigError: No results to merge, unreadable inputs, or eval report, benchmark and
            results of different networks or eps.
        SoundnessError: Contradictions (when ``raise_on_contradiction``).
    """
    eval_rows = read_eval_rows(eval_path)  # first: a wrong eval file is the likelier mistake
    bench_dir = Path(bench_dir).resolve()
    metadata = read_metadata(bench_dir)
    identity = benchmark_identity(bench_dir)
    check_same_network(Path(eval_path), bench_dir, identity)
    instances = {i.name: i for i in read_instances(bench_dir)}
    paths = [Path(s) for s in sources] if sources else sorted((bench_dir / "results").glob("*.csv"))
    if not paths:
        raise ConfigError(
            f"no verifier results under {bench_dir / 'results'}; run adcert-verify first or pass --results"
        )
    results: list = []
    rejected: list = []
    for path in paths:
        loaded, refused = _load_source(path, instances, metadata, identity)
        results, rejected = results + loaded, rejected + refused
    checked = check_answers(bench_dir, results)
    labels = {e["instance"]: int(e["label"]) for e in metadata.get("instances", [])}
    try:
        merged = cross_check(
            eval_rows, checked.results, instance_sample_index(metadata), labels, raise_on_contradiction=False
        )
    except ConfigError:  # e.g. no verified sample in the eval report; a contradiction outranks that
        checked.raise_if_contradicted()
        raise
    merged = replace(
        merged,
        contradictions=checked.contradictions + merged.contradictions,
        coverage=checked.coverage,
        rejected=tuple(rejected),
    )
    if merged.contradictions and raise_on_contradiction:
        shown = "; ".join(merged.contradictions[:10])
        raise SoundnessError(f"{len(merged.contradictions)} contradictions: {shown}")
    return merged
