"""The last stage of the cascade: samples the bounds leave undecided go to a complete verifier.

Only samples with status ``unknown`` (correct, PGD-robust, certified by no bound method) are sent.
Each answer lands in ``complete.jsonl`` (appended and fsynced after every chunk of samples, after
every sample when they run as Ray tasks: dispatch.py),
keyed by (checkpoint sha256, eps, verifier, timeout): a rerun with ``--resume`` sends only the
samples without an answer for that key (or whose answer was ``error``: those are retried), and a
killed run continues where it stopped. At the end
every row of ``samples.jsonl`` gets a ``complete`` field::

    {"verifier": "neuralsat", "timeout": 30.0, "result": "unsat", "seconds": 6.2, "note": "", "cex_margin": null,
     "falsified": false}

(``null`` for a sample the cascade decided, or one another shard owns). Certified (complete)
= certified by a bound + ``unsat``; ``timeout``/``error``/``unknown`` count as not certified.

A ``sat`` counts as a falsification only if its counterexample re-checks here, on the PyTorch
model: inside the eps box (1e-4 slack in normalised space, then clamped into it) with a
margin ≤ 1e-4 (the VNN-COMP tolerance). Otherwise it becomes ``error``. Any other answer may carry
a point the verifier side found (say the verify-time attack that rejected an ``unsat``): re-checked
the same way, it marks the sample ``falsified`` (not robust: "robust at most" drops) while the answer
itself stays what it was. A ``sat`` on a
bound-certified sample, or an ``unsat`` on one the attack broke, is a contradiction, and so is an
answer the verifier side flags (an ``unsat`` while a verify-time attack holds a counterexample):
it is recorded in the row's ``soundness_errors`` and ``evaluate`` raises ``SoundnessError``.

Shards (``--shard K/N``): the undecided samples, in index order, are dealt round-robin; shard K
sends those at positions p ≡ K (mod N), into its own folder ``shard-K-of-N`` (see shards.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..bounds import InputBox, margins
from ..errors import ConfigError
from ..io import atomic_write_text
from .dispatch import verify_requests
from .report import COMPLETE_FILE, WORK_DIR
from .verifiers import ANSWERS, CompleteAnswer, CompleteRequest, CompleteVerifier, is_bulk

log = logging.getLogger(__name__)

BOX_SLACK = 1e-4  # normalised-space slack for a counterexample's coordinates (VNN-COMP's atol)
MARGIN_SLACK = 1e-4  # a counterexample may have margin up to this (float32 vs onnxruntime)
CONTRADICTION = "complete-contradiction"


BULK_CHUNK = 512  # a bulk verifier's samples per call: few start-ups, answers still saved as they come


@dataclass(frozen=True)
class CompleteConfig:
    """How to run the complete-verification stage.

    Attributes:
        verifier: registry name (``neuralsat``, ``abcrown``, ``marabou``, or a plugin's).
        timeout: seconds per sample; a timeout counts as not certified.
        jobs: samples verified in parallel.
        shard: ``(K, N)``: send only the undecided samples at positions ≡ K (mod N).
        options: verifier-specific settings passed through (``device``, interpreters, checkouts).
        chunk: samples per verifier call (answers are saved after each); default max(8, 4·jobs), or
            ``BULK_CHUNK`` for a bulk verifier (abCROWN's csv mode: one start-up per chunk).
    """

    verifier: str = "neuralsat"
    timeout: float = 60.0
    jobs: int = 1
    shard: tuple[int, int] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    chunk: int | None = None

    def __post_init__(self):
        if not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ConfigError(f"complete-verification timeout {self.timeout}: must be a positive number of seconds")
        if self.jobs < 1:
            raise ConfigError(f"jobs={self.jobs}: must be ≥ 1")
        if self.shard is not None and not 0 <= self.shard[0] < self.shard[1]:
            raise ConfigError(f"shard {self.shard[0]}/{self.shard[1]}: need 0 ≤ K < N")
        if self.chunk is not None and self.chunk < 1:
            raise ConfigError(f"chunk={self.chunk}: must be ≥ 1")

    def record(self) -> dict:
        """What config.json and summary.json keep (options as given, for the record)."""
        record = asdict(self)
        record["shard"] = list(self.shard) if self.shard else None
        record["options"] = dict(self.options)
        return record


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)`` with 0 ≤ K < N.

    Raises:
        ConfigError: not of that form.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or not int(match[1]) < int(match[2]):
        raise ConfigError(f"--shard {text!r}: expected K/N with 0 ≤ K < N, e.g. 0/4 (K counts from 0)")
    return int(match[1]), int(match[2])


def shard_dir_name(shard: tuple[int, int]) -> str:
    return f"shard-{shard[0]}-of-{shard[1]}"


def answer_key(checkpoint_sha256: str, eps: float, verifier: str, timeout: float) -> dict:
    """What an answer must match to be reused."""
    return {"network_sha256": checkpoint_sha256, "eps": float(eps), "verifier": verifier, "timeout": float(timeout)}


def undecided_indices(rows: Sequence[dict]) -> list[int]:
    """Indices the cascade left undecided (``status == "unknown"``), ascending."""
    return sorted(r["index"] for r in rows if r["status"] == "unknown")


def owned(undecided: Sequence[int], shard: tuple[int, int] | None) -> list[int]:
    """The undecided indices a shard sends: every one at a position ≡ K (mod N)."""
    return list(undecided) if shard is None else [i for p, i in enumerate(undecided) if p % shard[1] == shard[0]]


# -- the stage ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompleteInputs:
    """What the stage needs from the evaluation: the model, the images and the box."""

    model: torch.nn.Module
    x: torch.Tensor  # pixel space [N, C, H, W], rows of ``indices``
    y: torch.Tensor  # [N]
    indices: Sequence[int]
    eps: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    checkpoint_sha256: str
    network: str = "network"  # file-name-safe, e.g. mnist_small-cnn


def run_complete(
    rows: list[dict], data: CompleteInputs, cfg: CompleteConfig, verifier: CompleteVerifier, out_dir: Path
) -> tuple[list[dict], float]:
    """Send this process's undecided samples to ``verifier``; return the rows with answers, and the wall time.

    Raises:
        VerifierError, ConfigError: from the verifier (missing, misconfigured).
    """
    key = answer_key(data.checkpoint_sha256, data.eps, cfg.verifier, cfg.timeout)
    answers = load_answers(out_dir / COMPLETE_FILE, key)
    retry = lambda i: answers.get(i, {}).get("result", "error") == "error"  # no answer yet, or an error: (re)send
    todo = [i for i in owned(undecided_indices(rows), cfg.shard) if retry(i)]
    position = {int(index): p for p, index in enumerate(data.indices)}
    model = data.model.cpu().eval()
    classes = model_classes(model, data.x)
    bulk = is_bulk(verifier, cfg.options)
    size = cfg.chunk or (BULK_CHUNK if bulk else max(8, 4 * cfg.jobs))
    log.info(
        "complete verification with %s: %d undecided samples to send (%d answered before; the verifier reuses "
        "the answers it kept in %s), timeout %g s, %d jobs",
        cfg.verifier,
        len(todo),
        len(answers),
        out_dir / WORK_DIR / cfg.verifier,
        cfg.timeout,
        cfg.jobs,
    )
    wall = time.perf_counter()

    def requests():
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            pick = torch.tensor([position[i] for i in chunk])
            yield CompleteRequest(
                model,
                data.x[pick].cpu(),
                data.y[pick].cpu(),
                tuple(chunk),
                data.eps,
                data.mean,
                data.std,
                classes,
                cfg.timeout,
                cfg.jobs,
                out_dir / WORK_DIR / cfg.verifier,
                data.checkpoint_sha256,
                data.network,
                dict(cfg.options),
            )

    sent = 0
    for request, returned in verify_requests(verifier, requests(), window=cfg.jobs, bulk=bulk):
        got = _checked(returned, request)
        entries = {i: dict(key, index=i, **got[i]) for i in request.indices}
        append_answers(out_dir / COMPLETE_FILE, list(entries.values()))
        answers.update(entries)
        sent += len(request.indices)
        _log_progress(cfg.verifier, answers, sent, len(todo))
    return attach_answers(rows, answers, cfg), time.perf_counter() - wall


def model_classes(model: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(torch.zeros(1, *x.shape[1:])).shape[1])


def _log_progress(name: str, answers: dict, sent: int, total: int) -> None:
    counts = {w: sum(a["result"] == w for a in answers.values()) for w in ANSWERS}
    log.info(
        "%s: %d/%d sent; answers so far: %s", name, sent, total, ", ".join(f"{w} {c}" for w, c in counts.items() if c)
    )


def _checked(answers: Sequence[CompleteAnswer], request: CompleteRequest) -> dict[int, dict]:
    """One stored answer per requested index; counterexamples re-checked on the PyTorch model."""
    wanted = {int(i): p for p, i in enumerate(request.indices)}
    out: dict[int, dict] = {}
    for answer in answers:
        index = int(answer.index)
        if index not in wanted or index in out:
            log.warning(
                "ignoring a %s answer for sample %d: %s",
                request.work_dir.name,
                index,
                "answered twice" if index in out else "not in the request",
            )
            continue
        result, note, margin = str(answer.result), answer.note or "", None
        if result not in ANSWERS:
            result, note = "error", f"unknown answer {answer.result!r}; {note}".rstrip("; ")
        falsified = False
        if result == "sat":
            valid, margin, why = recheck_counterexample(request, wanted[index], answer.counterexample)
            falsified = valid
            if not valid:
                result, note = "error", f"sat rejected: {why}" + (f"; {note}" if note else "")
        elif answer.counterexample is not None:  # a point the verifier side found (its verify-time attack)
            falsified, margin, _ = recheck_counterexample(request, wanted[index], answer.counterexample)
            margin = margin if falsified else None
        seconds = float(answer.seconds) if math.isfinite(float(answer.seconds)) else 0.0  # NaN: not measured
        out[index] = {"result": result, "seconds": seconds, "note": note, "cex_margin": margin, "falsified": falsified}
        if answer.contradiction:
            out[index]["contradiction"] = str(answer.contradiction)
    for index in wanted:
        out.setdefault(
            index, {"result": "error", "seconds": 0.0, "note": "the verifier gave no answer", "cex_margin": None}
        )
    return out


def recheck_counterexample(request: CompleteRequest, position: int, point) -> tuple[bool, float | None, str]:
    """Is ``point`` (normalised, flat) in the sample's box, with margin ≤ MARGIN_SLACK on the model?"""
    if point is None:
        return False, None, "no counterexample given"
    box = InputBox.from_pixels(request.x[position : position + 1], request.eps, request.mean, request.std)
    flat = np.array(point, dtype=np.float64).ravel()  # a copy: the verifier's array may be read-only
    if flat.size != box.x_norm.numel():
        return False, None, f"counterexample has {flat.size} inputs, the network {box.x_norm.numel()}"
    x = torch.as_tensor(flat, dtype=box.x_norm.dtype).reshape(box.x_norm.shape)
    outside = (x < box.lower_norm - BOX_SLACK) | (x > box.upper_norm + BOX_SLACK)
    if bool(outside.any()):
        return False, None, f"counterexample has {int(outside.sum())} inputs outside the eps box"
    x = torch.maximum(torch.minimum(x, box.upper_norm), box.lower_norm)
    with torch.no_grad():
        margin = float(margins(request.model(x), request.y[position : position + 1]).amin())
    if margin > MARGIN_SLACK:
        return False, margin, f"the model's margin at the counterexample is {margin:.4g} > 0"
    return True, margin, ""


def attach_answers(rows: list[dict], answers: Mapping[int, dict], cfg: CompleteConfig) -> list[dict]:
    """Each row with its ``complete`` answer (or None), contradictions in ``soundness_errors``."""
    out = []
    for row in rows:
        row = dict(row, soundness_errors=[e for e in row["soundness_errors"] if e.get("kind") != CONTRADICTION])
        answer = answers.get(row["index"])
        row["complete"] = (
            None
            if answer is None
            else {
                "verifier": cfg.verifier,
                "timeout": cfg.timeout,
                "result": answer["result"],
                "seconds": answer["seconds"],
                "note": answer.get("note", ""),
                "cex_margin": answer.get("cex_margin"),
                "falsified": bool(answer.get("falsified", answer["result"] == "sat")),
            }
        )
        problem = contradiction(row) or (answer or {}).get("contradiction", "")
        if problem:
            row["soundness_errors"].append({"kind": CONTRADICTION, "method": cfg.verifier, "detail": problem})
        out.append(row)
    return out


def contradiction(row: dict) -> str:
    """Why a row's complete answer contradicts the cascade ('' when it does not)."""
    answer = (row.get("complete") or {}).get("result")
    if answer == "sat" and row["certified_by"]:
        return f"the verifier falsified a sample {row['certified_by']} certified"
    if answer == "unsat" and not row["pgd_robust"]:
        what = "misclassified" if not row["clean_correct"] else "broken by the attack"
        return f"the verifier says unsat (robust) on a sample {what} (margin {row['attack_margin']:.4g})"
    return ""


# -- complete.jsonl -------------------------------------------------------------------------
def load_answers(path: Path, key: dict) -> dict[int, dict]:
    """Answers in ``path`` that match ``key`` (the last line per index); the file is rewritten without the others."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    kept, answers = [], {}
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            index = int(entry["index"])
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                break  # a torn last line (killed mid-write)
            raise ConfigError(f"{path} line {number} is not an answer; delete the file or pass --overwrite") from None
        if all(entry.get(k) == v for k, v in key.items()):
            answers[index] = entry
            kept.append(line)
    if len(kept) != len(lines):
        log.info("%s: dropping %d answers of another network, verifier or timeout", path, len(lines) - len(kept))
        atomic_write_text(path, "".join(line + "\n" for line in kept))
    return answers


def append_answers(path: Path, entries: Sequence[dict]) -> None:
    """Append answers and fsync (a crash loses at most the chunk being verified); a later line wins."""
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(e) + "\n" for e in entries))
        f.flush()
        os.fsync(f.fileno())
