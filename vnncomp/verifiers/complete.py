"""The complete verifiers of ``adcert-eval --complete``: a request becomes a VNN-COMP benchmark.

Registered in the ``adcert.verifiers`` entry-point group (setup.py) as ``neuralsat``, ``abcrown``
and ``marabou``; the evaluation finds them there and never imports vnncomp. For each request the
samples are written as a benchmark in ``request.work_dir`` (under the eval's out_dir)::

    onnx/<net>.onnx                       written once per network (checkpoint and ONNX sha256 in benchmark.json)
    vnnlib/<net>_idx<i>_eps<eps>.vnnlib   one VNN-LIB 1.0 property per sample sent so far
    instances.csv metadata.json benchmark.json abcrown_{cpu,gpu}.yaml run_abcrown.sh
    results/<verifier>/...                the verifier's files (verify_benchmark)

then :func:`vnncomp.verifiers.verify_benchmark` runs on exactly the request's instances, with
its counterexample and evidence checks (a verify-time attack on every answered instance), and
each result becomes a ``CompleteAnswer``; an ``unsat`` the evidence contradicts comes back as
``error`` with ``contradiction`` set, which the evaluation turns into exit 3 after its report. The folder
is an ordinary adcert benchmark: ``adcert-verify`` and ``adcert-report`` read it too.

Options (``request.options``): ``device`` (cpu/gpu), ``neuralsat_python``, ``abcrown``,
``abcrown_python``, ``abcrown_attack`` (pgd or diversed: ``ATTACKS`` in export/abcrown.py),
``abcrown_mode`` (csv, the default: one abCROWN process per chunk of samples and job, its
``sat`` answers with the counterexamples abCROWN saved, re-checked as single mode's; or single); keys a
verifier does not use are ignored. abCROWN's checkout and interpreter default to ``make abcrown``'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adcert_plugin.bounds.spec import normalize
from adcert_plugin.errors import ExportError
from adcert_plugin.evaluation.verifiers import CompleteAnswer, CompleteRequest
from adcert_plugin.io import atomic_write_text, sha256_file

from ..export.abcrown import write_abcrown_configs
from ..export.instances import INSTANCES_CSV, METADATA_JSON, write_instances_csv
from ..export.onnx_export import export_onnx
from ..export.vnnlib import property_from_sample, render_v1, validate_v1

logger = logging.getLogger(__name__)

BENCHMARK_JSON = "benchmark.json"


def _eps_tag(eps: float) -> str:
    return np.format_float_positional(eps, precision=6, unique=True, fractional=False, trim="-")


def _identity(request: CompleteRequest) -> dict:
    return {
        "format": "adcert-benchmark",
        "version": 1,
        "source": "adcert-eval --complete",
        "net": request.network,
        "checkpoint_sha256": request.network_sha256,
        "eps": float(request.eps),
        "mean": list(request.mean),
        "std": list(request.std),
        "shape": list(request.x.shape[1:]),
        "num_classes": request.num_classes,
        "timeout": float(request.timeout),
        "onnx": f"onnx/{request.network}.onnx",
    }


def prepare_benchmark(request: CompleteRequest) -> tuple[Path, dict[str, int]]:
    """Write (or extend) the benchmark for ``request``; return its folder and instance → index.

    The ONNX file is exported once per network; a folder left by another network or eps is
    cleared first. Properties accumulate, so ``instances.csv`` lists every sample sent so far.

    Raises:
        ExportError: the ONNX export or a property does not check out.
    """
    with _locked(Path(request.work_dir)):  # Ray runs one task per sample: several prepare one folder at once
        return _prepare(request)


@contextlib.contextmanager
def _locked(bench: Path):
    """An flock beside ``bench`` for the block (a no-op where there is no fcntl)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    bench.parent.mkdir(parents=True, exist_ok=True)
    with open(bench.parent / f".{bench.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _prepare(request: CompleteRequest) -> tuple[Path, dict[str, int]]:
    bench, params = Path(request.work_dir), _identity(request)
    stored = bench / BENCHMARK_JSON
    keys = ("net", "checkpoint_sha256", "eps", "mean", "std", "shape")
    if stored.is_file():
        old = json.loads(stored.read_text())
        if any(old.get(k) != params[k] for k in keys):
            logger.info("%s holds another network or eps: clearing it", bench)
            shutil.rmtree(bench)
    bench.mkdir(parents=True, exist_ok=True)
    onnx = bench / params["onnx"]
    if not onnx.is_file() or not stored.is_file():
        probe = normalize(request.x[:8].float(), request.mean, request.std)
        export_onnx(request.model, tuple(request.x.shape[1:]), onnx, check_inputs=probe)
    params["onnx_sha256"] = sha256_file(onnx)  # the network's identity for the evidence checks
    (bench / "vnnlib").mkdir(exist_ok=True)
    names, labels = {}, {}
    for x, y, index in zip(request.x, request.y.tolist(), request.indices):
        name = _write_property(bench, params, int(index), x, int(y))
        names[name], labels[name] = int(index), int(y)
    _write_lists(bench, params, names, labels)
    # abCROWN's YAMLs: a full benchmark for any verifier
    write_abcrown_configs(bench, params["timeout"], attack=request.options.get("abcrown_attack") or "pgd")
    atomic_write_text(stored, json.dumps(params, indent=1) + "\n")
    return bench, names


def _write_property(bench: Path, params: dict, index: int, image, label: int) -> str:
    name = f"{params['net']}_idx{index}_eps{_eps_tag(params['eps'])}"
    comment = (
        f"adcert-eval --complete: test index {index}, label {label}; L_inf eps {params['eps']!r} in pixel "
        f"space; bounds normalised with mean {params['mean']} std {params['std']}, NCHW flattening"
    )
    prop = property_from_sample(
        image, label, params["eps"], params["mean"], params["std"], params["num_classes"], comment
    )
    text = render_v1(prop)
    parsed = validate_v1(text)
    if parsed.label != label or not (
        np.array_equal(parsed.lower, prop.lower) and np.array_equal(parsed.upper, prop.upper)
    ):
        raise ExportError(f"{name}: the VNN-LIB text does not read back as the intended property")
    path = bench / "vnnlib" / f"{name}.vnnlib"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return name


def _write_lists(bench: Path, params: dict, names: dict[str, int], labels: dict[str, int]) -> None:
    """instances.csv and metadata.json over every sample sent so far (earlier calls kept), by index."""
    meta_path = bench / METADATA_JSON
    old = json.loads(meta_path.read_text()).get("instances", []) if meta_path.is_file() else []
    entries = {e["instance"]: e for e in old if (bench / e["vnnlib"]).is_file()}
    for name, index in names.items():
        entries[name] = {
            "instance": name,
            "index": index,
            "label": labels[name],
            "onnx": params["onnx"],
            "vnnlib": f"vnnlib/{name}.vnnlib",
            "timeout": params["timeout"],
            "pgd_robust": True,
        }
    rows = sorted(entries.values(), key=lambda e: e["index"])
    for row, entry in enumerate(rows):
        entry["row"] = row
    partial = bench / f".{INSTANCES_CSV}.{os.getpid()}"  # a reader in another process never sees half a list
    write_instances_csv(partial, [(e["onnx"], e["vnnlib"], e["timeout"]) for e in rows])
    os.replace(partial, bench / INSTANCES_CSV)
    metadata = {
        "net": params["net"],
        "eps": params["eps"],
        "checkpoint_sha256": params["checkpoint_sha256"],
        "onnx_sha256": params["onnx_sha256"],
        "source": params["source"],
        "instances": rows,
    }
    atomic_write_text(meta_path, json.dumps(metadata, indent=1) + "\n")


# csv mode (one abCROWN process per request, its start-up paid once) is the evaluation's default:
# single mode starts abCROWN for every sample, seconds each before it verifies anything.
DEFAULT_ABCROWN_MODE = "csv"


def _verify_kwargs(name: str, options: dict) -> dict:
    """verify_benchmark's keyword arguments for verifier ``name`` from the request's options."""
    kwargs = {"device": options.get("device") or "cpu"}
    if name == "neuralsat":
        kwargs["python"] = options.get("neuralsat_python")
    elif name == "abcrown":
        kwargs.update(
            abcrown_path=options.get("abcrown"),
            abcrown_python=options.get("abcrown_python"),
            mode=options.get("abcrown_mode") or DEFAULT_ABCROWN_MODE,
        )
    return kwargs


@dataclass(frozen=True)
class BenchmarkVerifier:
    """A :class:`~adcert_plugin.evaluation.verifiers.CompleteVerifier` running ``verify_benchmark``."""

    name: str

    def bulk(self, options: dict) -> bool:
        """abCROWN in csv mode verifies a whole request in one process per job: keep requests whole."""
        return self.name == "abcrown" and (options.get("abcrown_mode") or DEFAULT_ABCROWN_MODE) == "csv"

    def check(self, options: dict) -> None:
        """Fail early when the verifier cannot run (VerifierError)."""
        from . import find_abcrown, find_abcrown_python, find_neuralsat

        if self.name == "neuralsat":
            find_neuralsat(options.get("neuralsat_python"))
        elif self.name == "abcrown":
            find_abcrown(options.get("abcrown"))
            find_abcrown_python(options.get("abcrown_python"))
        elif self.name == "marabou":
            logger.warning(
                "Marabou 2.0.0 answers unsat on properties with valid counterexamples on padded CNNs "
                "(small-cnn); its unsat is cross-checked but not trustworthy there (README)"
            )

    def verify(self, request: CompleteRequest) -> list[CompleteAnswer]:
        from . import verify_benchmark

        bench, names = prepare_benchmark(request)
        results, _ = verify_benchmark(
            bench,
            self.name,
            timeout=request.timeout,
            instances=sorted(names),
            table=bench / "results" / f"{self.name}.csv",
            jobs=request.jobs,
            raise_on_contradiction=False,
            keep_other_rows=True,
            **_verify_kwargs(self.name, dict(request.options)),
        )
        return [
            CompleteAnswer(
                names[r.instance], r.result, float(r.seconds), _point(bench, r), r.note, contradiction=_contradiction(r)
            )
            for r in results
            if r.instance in names
        ]


def _point(bench: Path, result):
    """A sat's counterexample; for an unsat the evidence rejected, the point that rejected it (so the
    evaluation counts the sample as falsified, not robust)."""
    from ..results.evidence import claimed_word, counterexample_in_hand

    if result.result == "sat" or result.counterexample is not None:
        return result.counterexample
    if result.result == "error" and claimed_word(result) == "unsat":
        return counterexample_in_hand(bench, result.instance)
    return None


def _contradiction(result) -> str:
    """The evidence check's verdict on a rejected ``unsat``: a counterexample was in hand."""
    from ..results.evidence import claimed_word

    if result.result == "error" and claimed_word(result) == "unsat":
        return f"{result.verifier} says unsat, {result.note.split(':', 1)[1].strip()}"
    return ""


def neuralsat() -> BenchmarkVerifier:
    """Entry point ``adcert.verifiers: neuralsat`` (the default)."""
    return BenchmarkVerifier("neuralsat")


def abcrown() -> BenchmarkVerifier:
    """Entry point ``adcert.verifiers: abcrown``."""
    return BenchmarkVerifier("abcrown")


def marabou() -> BenchmarkVerifier:
    """Entry point ``adcert.verifiers: marabou`` (unsound on padded CNNs; see the README)."""
    return BenchmarkVerifier("marabou")
