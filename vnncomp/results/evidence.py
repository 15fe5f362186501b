"""Check every verifier answer against what the benchmark knows: attack points and bound certificates.

A verifier's word is not taken alone. For each instance answered, :func:`check_answers` consults
its evidence (``evidence/<instance>.json``, see ``vnncomp.export.evidence``):

* an ``unsat`` while a point of the box that violates the property is in hand (the export attack
  point, a verify-time attack, or another verifier's counterexample, each re-checked with
  onnxruntime: margin ≤ 0 at the point clipped into the box) is a verifier error: the answer
  becomes ``error`` and a contradiction names instance, verifier and margin;
* an ``unsat`` while the closest point in hand is a counterexample only by VNN-COMP's tolerance
  (0 < margin ≤ 1e-4) is *set aside*: it becomes ``unknown`` (not verified: by the benchmark's
  rules a counterexample exists), noted ``set aside unsat: ...``; neither answer is shown wrong,
  so it is no contradiction;
* a ``sat`` on an instance a bound certified is a contradiction;
* a ``sat`` whose counterexample does not re-check becomes ``error`` (validate_counterexamples);
* an ``unsat`` and a ``sat`` that no counterexample settles contradict each other.

An instance answered without a counterexample in hand or a bound certificate gets a
verify-time attack (``falsify``: PGD over every disjunct on the ONNX network), cached in its
evidence so that a rerun does not attack again. Coverage counts the decided answers (sat,
unsat) that were cross-checked against an attack, a bound or a re-checked counterexample.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from adcert_plugin.errors import SoundnessError, VerifierError
from adcert_plugin.io import sha256_file

from ..export.evidence import CEX_ATOL, add_attack, box_margin, load_point, new_record, read_record, write_record
from ..export.instances import Instance, read_instances
from .counterexamples import check_counterexample, validate_counterexamples
from .readers import VerifierResult, reject

logger = logging.getLogger(__name__)

__all__ = ["Checked", "Coverage", "check_answers", "claimed_word", "counterexample_in_hand"]

_REJECTED = re.compile(r"^(?:rejected|set aside) (sat|unsat):")
_DECIDED = ("sat", "unsat")


@dataclass(frozen=True)
class Coverage:
    """How many decided answers (sat/unsat) were cross-checked, and how.

    Attributes:
        answers: Decided answers seen.
        checked: Of them, those checked against an attack, a bound or a re-checked counterexample.
        by: Counts per kind of evidence (``attack``, ``bound``, ``counterexample``).
        unchecked: ``instance/verifier: why`` for the others.
    """

    answers: int = 0
    checked: int = 0
    by: dict = field(default_factory=dict)
    unchecked: tuple[str, ...] = ()

    @property
    def fraction(self) -> float:
        return self.checked / self.answers if self.answers else 1.0

    def summary(self) -> dict:
        return {
            "answers": self.answers,
            "checked": self.checked,
            "fraction": self.fraction,
            "by": dict(self.by),
            "unchecked": list(self.unchecked),
        }

    def line(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.by.items()) if v)
        return f"cross-checked {self.checked}/{self.answers} verifier answers against an attack or a bound" + (
            f" ({kinds})" if kinds else ""
        )


@dataclass(frozen=True)
class Checked:
    """What :func:`check_answers` found.

    Attributes:
        results: The answers, a contradicted ``unsat`` and an invalid ``sat`` turned into ``error``.
        contradictions: One line each (empty when every answer agrees with the evidence).
        coverage: A :class:`Coverage`.
        identity: ``{"network_sha256", "eps"}`` of the benchmark (None where unknown).
    """

    results: list[VerifierResult]
    contradictions: list[str]
    coverage: Coverage
    identity: dict = field(default_factory=dict)

    def raise_if_contradicted(self, where: str = "") -> None:
        """Raise :class:`SoundnessError` (exit 3) naming the contradictions, if any."""
        if self.contradictions:
            shown = "; ".join(self.contradictions[:10])
            more = f"; and {len(self.contradictions) - 10} more" if len(self.contradictions) > 10 else ""
            raise SoundnessError(
                f"{len(self.contradictions)} contradictions: {shown}{more}" + (f" (see {where})" if where else "")
            )


def claimed_word(result: VerifierResult) -> str:
    """What the verifier said, also for an answer an earlier check rejected or set aside."""
    found = _REJECTED.match(result.note or "") if result.result in ("error", "unknown") else None
    return found.group(1) if found else result.result


def benchmark_identity(bench_dir: Path) -> dict:
    """``network_sha256`` (of the ONNX file) and ``eps`` from ``benchmark.json``; None where absent."""
    try:
        params = json.loads((Path(bench_dir) / "benchmark.json").read_text())
    except (OSError, ValueError):
        params = {}
    return {
        "network_sha256": params.get("onnx_sha256"),
        "eps": params.get("eps"),
        "checkpoint_sha256": params.get("checkpoint_sha256"),
    }


class _Instance:
    """One instance's evidence while its answers are judged."""

    def __init__(self, bench_dir: Path, inst: Instance, digest: str):
        self.bench_dir, self.inst = bench_dir, inst
        self.record = read_record(bench_dir, inst.name, digest) or new_record(inst.name, digest)
        self.dirty = False

    def counterexample(self) -> dict | None:
        """The stored point that re-checks as a counterexample with the lowest margin, else None.

        The entry returned carries ``box_margin``: the margin at the point clipped into the box
        (≤ 0: the property is violated there; above: a counterexample only by the tolerance).
        """
        best = None
        for entry in self.record["attacks"]:
            if not entry.get("counterexample"):
                continue
            point = load_point(self.bench_dir, entry["point"])
            if point is None or not check_counterexample(self.inst.onnx, self.inst.vnnlib, point).valid:
                continue
            found = dict(entry, box_margin=box_margin(self.inst.onnx, self.inst.vnnlib, point))
            if best is None or found["box_margin"] < best["box_margin"]:
                best = found
        return best

    def certificate(self) -> dict | None:
        bound = self.record.get("bound")
        return bound if bound and bound.get("certified") else None

    def keep(self, source: str, method: str, x) -> None:
        add_attack(self.bench_dir, self.record, source, method, x, self.inst.onnx, self.inst.vnnlib)
        self.dirty = True

    def attacked(self) -> dict | None:
        return next((a for a in self.record["attacks"] if a.get("source") == "verify-time"), None)

    def attack(self) -> str:
        """Run the verify-time attack once (cached); '' or why it could not run."""
        from .falsify import falsify  # torch: only when an attack is needed

        start = next((a for a in self.record["attacks"] if a.get("source") == "export"), None)
        point = load_point(self.bench_dir, start["point"]) if start else None
        try:
            found = falsify(self.inst.onnx, self.inst.vnnlib, start=point)
        except VerifierError as err:
            return str(err)
        if found.point is not None:
            self.keep("verify-time", found.method, found.point)
            self.record["attacks"][-1]["disjunct_margins"] = list(found.margins)
        logger.info("verify-time attack on %s: %s", self.inst.name, "counterexample" if found.found else found.note)
        return ""

    def save(self) -> None:
        if self.dirty:
            try:
                write_record(self.bench_dir, self.record)
            except OSError as err:
                logger.warning("cannot cache evidence for %s: %s", self.inst.name, err)


def _judge(
    state: _Instance, answers: list[VerifierResult], problems: list[str], counts: dict, unchecked: list[str]
) -> list[VerifierResult]:
    """Judge one instance's answers; return them, contradicted ones turned into ``error``."""
    name = state.inst.name
    for r in answers:  # a valid counterexample from one verifier is evidence against the others
        if r.result == "sat" and r.counterexample is not None:
            state.keep(f"verifier-{r.verifier}", f"{r.verifier}'s counterexample", r.counterexample)
    decided = [r for r in answers if claimed_word(r) in _DECIDED]
    cex, cert = (state.counterexample(), state.certificate()) if decided else (None, None)
    why_not = ""
    if decided and cex is None and cert is None and state.attacked() is None:
        why_not = state.attack()
        cex = state.counterexample()
    out = []
    for r in answers:
        word = claimed_word(r)
        if word not in _DECIDED:
            out.append(r)
            continue
        if word == "unsat" and cex is not None and cex["box_margin"] <= 0:
            detail = (
                f"{name}: {r.verifier} says unsat but a counterexample is in hand ({cex['source']}, "
                f"margin {cex['box_margin']:.4g}, re-checked with onnxruntime)"
            )
            problems.append(detail + ": verifier error")
            in_hand = f"counterexample in hand ({cex['source']}, margin {cex['box_margin']:.4g})"
            r = r if r.result == "error" else reject(replace(r, result="unsat"), in_hand)
            kind = "counterexample"
        elif word == "unsat" and cex is not None:  # an earlier rejection (older rule) is set aside too
            r = r if r.result == "unknown" else set_aside(replace(r, result="unsat"), cex)
            kind = "counterexample"
        elif word == "sat" and cert is not None:
            problems.append(
                f"{name}: {r.verifier} says sat but {cert['method']} certified it "
                f"(min margin lower bound {cert['min_margin_lower']:.4g})"
            )
            kind = "bound"
        elif r.result == "error" or (word == "sat" and r.counterexample is not None):
            kind = "counterexample"  # its own point was re-checked (and kept, or rejected)
        elif cex is not None:
            kind = "counterexample"
        elif cert is not None:
            kind = "bound"
        elif state.attacked() is not None and word == "unsat":
            kind = "attack"
        else:
            kind = ""
            unchecked.append(
                f"{name}/{r.verifier}: "
                + (why_not or "no counterexample to re-check and no certificate; the attack found none")
            )
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
        out.append(r)
    _disagreement(name, out, cex, problems)
    return out


def set_aside(result: VerifierResult, cex: dict) -> VerifierResult:
    """An ``unsat`` facing a counterexample only by VNN-COMP's tolerance, made ``unknown`` (not verified)."""
    why = (
        f"a point within VNN-COMP's tolerance of a counterexample is in hand ({cex['source']}, margin "
        f"{cex['box_margin']:.4g}, 0 < margin <= {CEX_ATOL:g}); not counted as verified, not a contradiction"
    )
    logger.warning("%s on %s: setting unsat aside: %s", result.verifier, result.instance, why)
    return replace(result, result="unknown", note=f"set aside unsat: {why}")


def _disagreement(name: str, answers: list[VerifierResult], cex, problems: list[str]) -> None:
    unsat = sorted(r.verifier for r in answers if r.result == "unsat")
    sat = sorted(r.verifier for r in answers if r.result == "sat")
    if unsat and sat and cex is None:
        problems.append(f"{name}: {', '.join(unsat)} unsat vs {', '.join(sat)} sat, and no counterexample re-checks")


def check_answers(bench_dir, results: Sequence[VerifierResult]) -> Checked:
    """Check every answer against the benchmark's evidence (see the module docstring).

    Args:
        bench_dir: Benchmark folder (``instances.csv``; ``evidence/`` is read and extended).
        results: Verifier answers; a ``sat`` with a counterexample has it re-checked here.

    Returns:
        A :class:`Checked`; raise with ``raise_if_contradicted``.
    """
    bench_dir = Path(bench_dir).resolve()
    instances = {i.name: i for i in read_instances(bench_dir)}
    results = validate_counterexamples(results, instances, require=False)
    by_instance: dict[str, list[VerifierResult]] = {}
    for r in results:
        by_instance.setdefault(r.instance, []).append(r)
    digests: dict[Path, str] = {}
    problems: list[str] = []
    counts: dict[str, int] = {}
    unchecked: list[str] = []
    judged: dict[int, VerifierResult] = {}
    for name, answers in sorted(by_instance.items()):
        if name not in instances:
            logger.warning("results for unknown instance %s are not checked", name)
            unchecked += [
                f"{name}/{r.verifier}: not an instance of {bench_dir}" for r in answers if claimed_word(r) in _DECIDED
            ]
            continue
        inst = instances[name]
        digest = digests.setdefault(inst.onnx, sha256_file(inst.onnx))
        state = _Instance(bench_dir, inst, digest)
        for old, new in zip(answers, _judge(state, answers, problems, counts, unchecked)):
            judged[id(old)] = new
        state.save()
    out = [judged.get(id(r), r) for r in results]
    decided = sum(claimed_word(r) in _DECIDED for r in out)
    coverage = Coverage(decided, decided - len(unchecked), counts, tuple(unchecked))
    identity = benchmark_identity(bench_dir)
    if identity["network_sha256"] is None and len(set(digests.values())) == 1:
        identity["network_sha256"] = next(iter(digests.values()))
    return Checked(out, problems, coverage, identity)


def counterexample_in_hand(bench_dir, instance: str):
    """The point of ``instance``'s evidence that re-checks as a counterexample (margin ≤ 0 in the box), or None.

    What rejected an ``unsat`` (the export attack, a verify-time attack, another verifier's point),
    normalised and flat as in VNN-LIB, for a caller that counts the sample as falsified.
    """
    bench_dir = Path(bench_dir).resolve()
    inst = {i.name: i for i in read_instances(bench_dir)}.get(instance)
    if inst is None:
        return None
    found = _Instance(bench_dir, inst, sha256_file(inst.onnx)).counterexample()
    if found is None or found["box_margin"] > 0:
        return None
    return load_point(bench_dir, found["point"])
