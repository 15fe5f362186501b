"""Every command × bad inputs and outputs: a table of what the user gets (issue 36).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bad_input_sweep.py [--out table.md] [--only train,eval]

Each case runs the real console script in a fresh process (as a user would) on a tiny fake
MNIST and a seconds-long run, then classifies what happened:

    ok            exit 0
    error: Class  a one-line ``Error: Class: ...`` (the message is in the table)
    usage error   click's one-line ``Error: Invalid value ...`` (exit 2)
    interrupted   exit 130 after SIGINT, with what to do next
    TRACEBACK     a raw traceback: a bug
and checks, after every case, that no protected file changed (``LOST``) and that no planted
pickle payload ran (``EXECUTED``). A case whose outcome is not the expected kind is marked
``UNEXPECTED``. Read-only and full-disk cases need root (bind / tmpfs mounts); without it they
are listed as ``skipped``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))


@dataclass
class Case:
    command: str
    name: str
    args: list[str]
    expect: str = "error"  # error | ok | interrupted | ok-or-error
    protect: list[Path] = field(default_factory=list)
    setup: object = None  # callable run before (may return a context manager)
    interrupt_after: float | None = None
    concurrent: bool = False


def _digest(paths: list[Path]) -> dict:
    out = {}
    for root in paths:
        items = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for p in items:
            if p.is_file() and p.name != ".adcert.lock":
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _classify(rc: int | None, err: str) -> tuple[str, str]:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if "Traceback (most recent call last)" in err:
        return "TRACEBACK", last[:140]
    if rc == 0:
        return "ok", ""
    if rc == 130:
        return "interrupted", last[:140]
    if last.startswith(("Error: Invalid value", "Error: No such option", "Error: Missing")):
        return "usage error", last[7:140]
    if last.startswith("Error: "):
        kind = last[7:].split(":", 1)[0]
        return f"error: {kind}", last[7 + len(kind) + 2 :][:140]
    return f"exit {rc}", last[:140]


def _run(cmd: list[str], env: dict, interrupt_after: float | None = None, timeout: float = 300) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if interrupt_after is not None:
        time.sleep(interrupt_after)
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return -9, err + "\n(timed out)"
    return proc.returncode, err


# ------------------------------------------------------------------ mounts (root only)


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` mounted read-only over itself (its files stay readable)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@contextlib.contextmanager
def full_disk(folder: Path, size: str = "48k", fill: bool = True):
    """A tiny tmpfs at ``folder``, (nearly) filled, so that writes fail with ENOSPC."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        if fill:  # full but for a few pages: the first small files fit, a checkpoint or report does not
            with contextlib.suppress(OSError), open(folder / "filler", "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            with open(folder / "filler", "r+b") as f:
                f.truncate(max(0, os.path.getsize(folder / "filler") - 12288))
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False)


# ------------------------------------------------------------------ fixtures


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def build_world(root: Path, env: dict) -> dict:
    """Fake data, a trained tiny run, an eval report and a benchmark, plus broken copies of each."""
    import torch
    from train_fixtures import tiny_sets, write_fake_mnist

    w = {"root": root}
    data = write_fake_mnist(root / "data")
    w["data"] = data
    w["sets"] = lambda out, epochs=1: [a for s in tiny_sets(data, out, epochs=epochs) for a in ("--set", s)]
    run = root / "run"
    rc, err = _run([str(BIN / "adcert-train"), *w["sets"](run)], env)
    assert rc == 0, err
    w["run"], w["model"] = run, run / "model.pt"
    rc, err = _run(
        [
            str(BIN / "adcert-eval"),
            str(run / "model.pt"),
            "--end",
            "16",
            "--methods",
            "IBP",
            "--out-dir",
            str(root / "ev"),
            "--data-dir",
            str(data),
        ],
        env,
    )
    assert rc == 0, err
    w["ev"] = root / "ev"
    rc, err = _run(
        [
            str(BIN / "adcert-export"),
            str(run / "model.pt"),
            "--out-dir",
            str(root / "bench"),
            "--n",
            "2",
            "--end",
            "16",
            "--data-dir",
            str(data),
            "--timeout",
            "5",
        ],
        env,
    )
    assert rc == 0, err
    w["bench"] = root / "bench"
    bad = root / "bad"
    bad.mkdir()
    good = (run / "model.pt").read_bytes()
    (bad / "empty.pt").write_bytes(b"")
    (bad / "truncated.pt").write_bytes(good[: len(good) // 2])
    (bad / "corrupted.pt").write_bytes(os.urandom(len(good)))
    (bad / "text.pt").write_text("a model, surely\n")
    (bad / "folder.pt").mkdir()
    record = torch.load(run / "model.pt", weights_only=True)
    nan = {**record, "model": {k: v.clone() for k, v in record["model"].items()}}
    next(iter(nan["model"].values())).view(-1)[0] = float("nan")
    torch.save(nan, bad / "nan.pt")
    torch.save({**record, "version": 99}, bad / "future.pt")
    torch.save(torch.nn.Linear(2, 2), bad / "module.pt")
    w["bad"] = bad
    w["marker"] = root / "PAYLOAD-RAN"
    return w


def cases(w: dict) -> list[Case]:
    root, data, bad, model = w["root"], str(w["data"]), w["bad"], str(w["model"])
    out = lambda name: str(root / "out" / name)
    (root / "out").mkdir(exist_ok=True)
    afile = root / "afile"
    afile.write_text("precious\n")
    foreign = root / "foreign"
    foreign.mkdir(exist_ok=True)
    (foreign / "thesis.tex").write_text("years of work\n")
    protect = [w["run"], w["ev"], w["bench"], afile, foreign]
    ckpts = ["empty", "truncated", "corrupted", "text", "folder", "nan", "future", "module"]
    result: list[Case] = []
    add = lambda *a, **k: result.append(Case(*a, protect=protect, **k))
    sets = w["sets"]

    # adcert-train
    add("train", "out-dir is a file", [*sets(afile)])
    add("train", "out-dir parent is a file", [*sets(afile / "run")])
    add("train", "out-dir holds a finished run", [*sets(w["run"])])
    add("train", "config file missing", ["--config", str(root / "none.yaml"), "--out-dir", out("t1")])
    cfgs = root / "cfgs"
    cfgs.mkdir(exist_ok=True)
    (cfgs / "empty.yaml").write_text("")
    (cfgs / "truncated.yaml").write_text("schedule:\n  epochs: 2\n  eps: [0.1,\n")
    (cfgs / "binary.yaml").write_bytes(os.urandom(256))
    (cfgs / "list.yaml").write_text("- 1\n- 2\n")
    (cfgs / "eps.yaml").write_text("schedule:\n  eps: 2/255\n")
    for name in ("truncated", "binary", "list"):
        add("train", f"config file {name}", ["--config", str(cfgs / f"{name}.yaml"), "--out-dir", out("t2")])
    add(
        "train",
        "config file empty (all defaults, no data)",
        ["--config", str(cfgs / "empty.yaml"), "--data-dir", str(root / "nodata"), "--out-dir", out("t3")],
    )
    add("train", "config eps: 2/255", [*sets(out("t4")), "--config", str(cfgs / "eps.yaml")], expect="ok")
    add("train", "--eps 2/255", [*sets(out("t5")), "--eps", "2/255"], expect="ok")
    add("train", "--eps nan", [*sets(out("t6")), "--eps", "nan"])
    for kind in ckpts:
        add(
            "train",
            f"teacher {kind}",
            [*sets(out(f"t-{kind}")), "--set", "loss.name=ad-cert", "--teacher", str(bad / f"{kind}.pt")],
        )
    add("train", "data dir missing", [*sets(out("t7")), "--set", f"data.data_dir={root / 'nodata'}"])
    empty_data = root / "emptydata"
    (empty_data / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
    add("train", "data dir empty", [*sets(out("t8")), "--set", f"data.data_dir={empty_data}"])
    trunc = root / "truncdata"
    shutil.copytree(w["data"], trunc, dirs_exist_ok=True)
    img = trunc / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    img.write_bytes(img.read_bytes()[:200])
    add("train", "data file truncated", [*sets(out("t9")), "--set", f"data.data_dir={trunc}"])
    cifar = root / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (cifar / name).write_bytes(pickle.dumps({b"data": _Payload(str(w["marker"])), b"labels": []}))
    add(
        "train",
        "CIFAR batch with a pickle payload",
        [*sets(out("t10")), "--set", "data.dataset=cifar10", "--set", f"data.data_dir={root / 'cifar'}"],
    )
    again = root / "again"
    shutil.copytree(w["run"], again, dirs_exist_ok=True)
    add("train", "--resume of a finished run, --epochs 2", [*sets(again, epochs=2), "--resume"], expect="ok")
    add(
        "train",
        "--resume with another preset",
        ["--preset", "mnist-small-ibp", "--out-dir", str(w["run"]), "--resume", "--data-dir", data],
    )
    add("train", "two at once into one folder", [*sets(out("t11"), epochs=3)], expect="ok-or-error", concurrent=True)
    add("train", "Ctrl-C in training", [*sets(out("t12"), epochs=200)], expect="interrupted", interrupt_after=8.0)
    forced = root / "forced"
    shutil.copytree(w["run"], forced, dirs_exist_ok=True)
    add(
        "train",
        "Ctrl-C under --force (old run must stay)",
        [*sets(forced, epochs=200), "--force"],
        expect="interrupted",
        interrupt_after=6.0,
    )
    result[-1].protect = protect + [forced]
    ro = root / "ro"
    ro.mkdir(exist_ok=True)
    add("train", "out-dir in a read-only folder", [*sets(ro / "run")], setup=lambda: read_only(ro))
    full = root / "full"
    add("train", "out-dir on a full disk", [*sets(full / "run")], setup=lambda: full_disk(full))

    # adcert-eval
    base = ["--data-dir", data, "--end", "8", "--methods", "IBP"]
    add("eval", "checkpoint missing", [str(root / "none.pt"), *base, "--out-dir", out("e0")])
    for kind in ckpts:
        add("eval", f"checkpoint {kind}", [str(bad / f"{kind}.pt"), *base, "--out-dir", out(f"e-{kind}")])
    add("eval", "out-dir is a file", [model, *base, "--out-dir", str(afile)])
    add("eval", "out-dir parent is a file", [model, *base, "--out-dir", str(afile / "ev")])
    add("eval", "out-dir holds a report", [model, *base, "--out-dir", str(w["ev"])])
    add("eval", "--eps 2/255", [model, *base, "--eps", "2/255", "--out-dir", out("e1")], expect="ok")
    add("eval", "--eps nan", [model, *base, "--eps", "nan", "--out-dir", out("e2")])
    torn = root / "torn"
    shutil.copytree(w["ev"], torn, dirs_exist_ok=True)
    text = (torn / "samples.jsonl").read_text()
    (torn / "samples.jsonl").write_text(text[: len(text) * 2 // 3])
    add(
        "eval",
        "--resume on a truncated samples.jsonl",
        [model, "--data-dir", data, "--end", "16", "--methods", "IBP", "--out-dir", str(torn), "--resume"],
        expect="ok",
    )
    ro_ck = root / "roshared"
    ro_ck.mkdir(exist_ok=True)
    shutil.copy(w["model"], ro_ck / "model.pt")
    add(
        "eval",
        "default report folder beside a read-only checkpoint",
        [str(ro_ck / "model.pt"), *base],
        setup=lambda: read_only(ro_ck),
    )
    add("eval", "out-dir on a full disk", [model, *base, "--out-dir", str(full / "ev")], setup=lambda: full_disk(full))
    add(
        "eval",
        "two --overwrite at once",
        [model, "--data-dir", data, "--end", "64", "--methods", "IBP,CROWN", "--out-dir", out("e3"), "--overwrite"],
        expect="ok-or-error",
        concurrent=True,
    )
    add(
        "eval",
        "Ctrl-C",
        [model, "--data-dir", data, "--methods", "IBP,CROWN", "--batch-size", "1", "--out-dir", out("e4")],
        expect="interrupted",
        interrupt_after=7.0,
    )

    # adcert-eval-merge
    add("eval-merge", "folder missing", [str(root / "nowhere")])
    add("eval-merge", "folder without shards", [str(w["ev"])])

    # adcert-export
    ebase = ["--data-dir", data, "--n", "2", "--end", "16"]
    for kind in ckpts:
        add("export", f"checkpoint {kind}", [str(bad / f"{kind}.pt"), *ebase, "--out-dir", out(f"x-{kind}")])
    add("export", "out-dir is a file", [model, *ebase, "--out-dir", str(afile)])
    add("export", "out-dir parent is a file", [model, *ebase, "--out-dir", str(afile / "b")])
    add("export", "--force on a folder of other files", [model, *ebase, "--out-dir", str(foreign), "--force"])
    add("export", "--force on the parent of benchmarks", [model, *ebase, "--out-dir", str(root), "--force"])
    again_bench = root / "again-bench"
    shutil.copytree(w["bench"], again_bench, dirs_exist_ok=True)
    add(
        "export", "--force on an earlier export", [model, *ebase, "--out-dir", str(again_bench), "--force"], expect="ok"
    )
    add("export", "--timeout nan", [model, *ebase, "--timeout", "nan", "--out-dir", out("x2")])
    add("export", "--eps 2/255", [model, *ebase, "--eps", "2/255", "--out-dir", out("x3")], expect="ok")
    add(
        "export",
        "out-dir in a read-only folder",
        [model, *ebase, "--out-dir", str(ro / "b")],
        setup=lambda: read_only(ro),
    )
    add(
        "export",
        "out-dir on a full disk",
        [model, *ebase, "--out-dir", str(full / "b")],
        setup=lambda: full_disk(full, size="512k"),
    )

    # adcert-verify (cases that must fail before any verifier runs, plus one real run)
    benches = root / "benches"
    for name, content in (
        ("empty", ""),
        ("truncated", None),
        ("corrupted", "\x00\x01garbage,,\n"),
        ("nan", None),
        ("negative", None),
    ):
        b = benches / name
        shutil.copytree(w["bench"], b, dirs_exist_ok=True)
        row = (b / "instances.csv").read_text().splitlines()[0]
        onnx, vnnlib, _ = row.split(",")
        text = {
            "truncated": row[: len(row) // 2] + "\n",
            "nan": f"{onnx},{vnnlib},nan\n",
            "negative": f"{onnx},{vnnlib},-5\n",
        }.get(name, content)
        (b / "instances.csv").write_text(text)
        add("verify", f"instances.csv {name}", [str(b)])
    add("verify", "benchmark folder missing", [str(root / "nowhere")])
    add("verify", "benchmark folder empty", [str(empty_data)])
    add("verify", "--timeout nan", [str(w["bench"]), "--timeout", "nan"])
    add("verify", "--out is a folder", [str(w["bench"]), "--out", str(root)])
    add("verify", "--out parent is a file", [str(w["bench"]), "--out", str(afile / "r.csv")])

    # adcert-report
    samples = str(w["ev"] / "samples.jsonl")
    reps = root / "reps"
    reps.mkdir(exist_ok=True)
    lines = Path(samples).read_text().splitlines(keepends=True)
    (reps / "truncated.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    (reps / "empty.jsonl").write_text("")
    (reps / "corrupted.jsonl").write_bytes(os.urandom(300))
    add("report", "eval file missing", [str(root / "none.jsonl"), str(w["bench"])])
    for name in ("truncated", "empty", "corrupted"):
        add("report", f"eval file {name}", [str(reps / f"{name}.jsonl"), str(w["bench"])])
    add("report", "eval file is summary.json", [str(w["ev"] / "summary.json"), str(w["bench"])])
    add("report", "no verifier results", [samples, str(w["bench"]), "--out", out("r.json")], expect="ok-or-error")
    add("report", "--out is a folder", [samples, str(w["bench"]), "--out", str(root)])
    add("report", "--out parent is a file", [samples, str(w["bench"]), "--out", str(afile / "r.json")])
    add(
        "report",
        "--out on a full disk",
        [samples, str(w["bench"]), "--out", str(full / "r.json")],
        setup=lambda: full_disk(full, size="4k"),
        expect="ok-or-error",
    )
    return result


SCRIPTS = {
    "train": "adcert-train",
    "eval": "adcert-eval",
    "eval-merge": "adcert-eval-merge",
    "export": "adcert-export",
    "verify": "adcert-verify",
    "report": "adcert-report",
}


def run_case(case: Case, env: dict, marker: Path) -> dict:
    needs_root = case.setup is not None
    if needs_root and not _can_mount():
        return {"outcome": "skipped", "detail": "needs root for a mount", "flags": []}
    before = _digest(case.protect)
    cmd = [str(BIN / SCRIPTS[case.command]), *case.args]
    with case.setup() if case.setup else contextlib.nullcontext():
        if case.concurrent:
            procs = [
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for _ in range(2)
            ]
            outs = [p.communicate(timeout=600) for p in procs]
            results = [_classify(p.returncode, o[1]) for p, o in zip(procs, outs)]
            outcome = " + ".join(r[0] for r in results)
            detail = next((r[1] for r in results if r[1]), "")
            ok = sorted(p.returncode for p in procs) == [0, 2] and "TRACEBACK" not in outcome
            flags = [] if ok else ["UNEXPECTED"]
            return {"outcome": outcome, "detail": detail, "flags": flags + _damage(before, case, marker)}
        rc, err = _run(cmd, env, case.interrupt_after)
    outcome, detail = _classify(rc, err)
    flags = []
    kind = outcome.split(":")[0]
    expected = {
        "error": ("error", "usage error"),
        "ok": ("ok",),
        "interrupted": ("interrupted",),
        "ok-or-error": ("ok", "error", "usage error"),
    }[case.expect]
    if kind not in expected:
        flags.append("UNEXPECTED")
    return {"outcome": outcome, "detail": detail, "flags": flags + _damage(before, case, marker)}


def _damage(before: dict, case: Case, marker: Path) -> list[str]:
    after = _digest(case.protect)
    flags = []
    if any(after.get(k) != v for k, v in before.items()):
        flags.append("LOST")
    if marker.exists():
        flags.append("EXECUTED")
    return flags


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    parser.add_argument("--only", default=None, help="comma list of commands (train,eval,export,verify,report)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "CI": "1"}
    env.pop("ADCERT_DEBUG", None)
    root = Path(tempfile.mkdtemp(prefix="adcert-sweep-"))
    started = time.time()
    try:
        world = build_world(root, env)
        todo = [c for c in cases(world) if not args.only or c.command in args.only.split(",")]
        rows = ["| command | case | outcome | flags | what the user reads |", "|---|---|---|---|---|"]
        bad = 0
        for case in todo:
            r = run_case(case, env, world["marker"])
            bad += bool(r["flags"]) or r["outcome"].startswith("TRACEBACK")
            detail = r["detail"].replace("|", "\\|").replace(str(root), "…")
            rows.append(
                f"| {SCRIPTS[case.command]} | {case.name} | {r['outcome']} | {' '.join(r['flags'])} | {detail} |"
            )
            print(rows[-1], flush=True)
        rows.append(
            f"\n{len(todo)} cases, {bad} with a traceback, a lost file, an executed payload or an "
            f"unexpected outcome; {time.time() - started:.0f} s"
        )
        print(rows[-1])
        if args.out:
            args.out.write_text("\n".join(rows) + "\n")
        return 1 if bad else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
