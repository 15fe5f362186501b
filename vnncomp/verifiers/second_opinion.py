"""A second verifier on a sample of an evaluation's complete-verification answers.

``adcert-eval --complete V`` leaves a full benchmark in ``<eval>/complete/V`` (instances.csv,
vnnlib/, onnx/, metadata.json with each instance's test index) and V's answers in
``<eval>/complete.jsonl``. :func:`second_opinion` runs another verifier on a seeded sample of
those instances and compares: where both decide (``sat``/``unsat``) they must agree (a
disagreement means one of them is wrong: the caller treats it as a soundness error); where only
one decides, the other's timeout is recorded, which tells whether the verifier of record was the
limit. Each answer of the second verifier goes through the same evidence checks as any other
(``verify_benchmark``).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from adcert_plugin.errors import ConfigError

DECIDED = ("sat", "unsat")


@dataclass
class SecondOpinion:
    """What a second verifier said on a sample of an evaluation's instances."""

    eval_dir: str
    of_record: str  # the evaluation's verifier
    second: str
    timeout: float
    pairs: list[dict] = field(default_factory=list)  # {"index", "of_record", "second"}

    @property
    def both_decided(self) -> list[dict]:
        return [p for p in self.pairs if p["of_record"] in DECIDED and p["second"] in DECIDED]

    @property
    def disagreements(self) -> list[dict]:
        return [p for p in self.both_decided if p["of_record"] != p["second"]]

    def only(self, who: str) -> int:
        """Samples that ``who`` (of_record or second) decided and the other did not."""
        other = "second" if who == "of_record" else "of_record"
        return sum(p[who] in DECIDED and p[other] not in DECIDED for p in self.pairs)

    def record(self) -> dict:
        return dict(
            asdict(self),
            both_decided=len(self.both_decided),
            agree=len(self.both_decided) - len(self.disagreements),
            disagreements=self.disagreements,
            only_of_record=self.only("of_record"),
            only_second=self.only("second"),
        )


def answers_of_eval(eval_dir: Path) -> tuple[str, dict[int, str]]:
    """(verifier of record, sample index -> its answer) of a finished ``adcert-eval --complete`` folder."""
    config = json.loads((eval_dir / "config.json").read_text()) if (eval_dir / "config.json").is_file() else {}
    complete = config.get("complete") or {}
    if not complete.get("verifier"):
        raise ConfigError(f"{eval_dir} is not an adcert-eval --complete report (its config.json names no verifier)")
    answers: dict[int, str] = {}
    path = eval_dir / "complete.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        entry = json.loads(line)
        if entry.get("verifier") == complete["verifier"]:
            answers[int(entry["index"])] = entry["result"]  # a later line wins, as in the evaluation
    return complete["verifier"], answers


def second_opinion(
    eval_dir: str | Path, second: str, sample: int, timeout: float, seed: int = 0, **verify_options
) -> SecondOpinion:
    """Run verifier ``second`` on up to ``sample`` of the evaluation's instances (seeded), compare.

    Raises:
        ConfigError: ``eval_dir`` is not a complete-verification report, or ``second`` is its verifier.
    """
    from . import verify_benchmark

    eval_dir = Path(eval_dir)
    of_record, answers = answers_of_eval(eval_dir)
    if second == of_record:
        raise ConfigError(f"{eval_dir} was verified by {second}; a second opinion needs another verifier")
    bench = eval_dir / "complete" / of_record
    opinion = SecondOpinion(str(eval_dir), of_record, second, float(timeout))
    if not (bench / "metadata.json").is_file():  # the bounds decided every sample: nothing was sent
        return opinion
    meta = json.loads((bench / "metadata.json").read_text())
    name_of = {int(e["index"]): e["instance"] for e in meta["instances"]}
    indices = sorted(i for i in answers if i in name_of)
    chosen = sorted(random.Random(seed).sample(indices, min(sample, len(indices))))
    if not chosen:
        return opinion
    results, _ = verify_benchmark(
        bench,
        second,
        timeout=timeout,
        instances=[name_of[i] for i in chosen],
        table=bench / "results" / f"{second}.csv",
        raise_on_contradiction=False,
        keep_other_rows=True,
        **verify_options,
    )
    said = {r.instance: r.result for r in results}
    opinion.pairs = [{"index": i, "of_record": answers[i], "second": said.get(name_of[i], "error")} for i in chosen]
    return opinion
