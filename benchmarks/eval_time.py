"""Evaluation cost: seconds per sample for each stage of the certification cascade.

Part 1 (CNN7, MNIST): clean forward, PGD-40 and each bound method on the same test images,
timed directly (not through the cascade, so every method bounds every sample). The CNN7 is
untrained with IBP initialisation (Shi et al.): bound *cost* does not depend on training,
only the bound values do. auto_LiRPA's one-time tracing is excluded (a warm-up call);
CROWN's intermediate-layer bounds make it far costlier, so it can run on fewer samples.

Part 2 (small trained model): ``evaluate`` end to end (clean → PGD-40 → IBP → CROWN) on
``--eval-n`` MNIST test images for a model trained for a few seconds on 2000 images.

    python benchmarks/eval_time.py --data-dir ../shared/data --n 32 --costly-n 2

Memory: CROWN and alpha-CROWN on CNN7 keep linear bounds per neuron and per sample; at the
defaults (--costly-n 32) the run needs 10-12 GB (issue 36). --costly-n 2, as above, or
--methods IBP,CROWN-IBP needs a few GB (see benchmarks/bound_time.py for measured peaks).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import torch
import torch.nn.functional as F

from adcert_plugin.bounds import InputBox, wrap_model
from adcert_plugin.data import get_data_spec, load_split
from adcert_plugin.evaluation import DEFAULT_ATTACK, evaluate, pgd_margins
from adcert_plugin.models import create_model, ibp_init
from adcert_plugin.training import arch_record, save_checkpoint


def _timed(fn):
    tic = time.perf_counter()
    out = fn()
    return time.perf_counter() - tic, out


def bench_cnn7(x, y, eps: float, methods: list[str], n: int, costly_n: int) -> list[tuple[str, int, float]]:
    """Rows (stage, samples, seconds) for an IBP-initialised CNN7."""
    spec = get_data_spec("mnist")
    torch.manual_seed(0)
    model = ibp_init(create_model("cnn7", spec.shape, spec.num_classes)).eval().requires_grad_(False)
    net = wrap_model(model, spec.shape)
    rows = []
    box = InputBox.from_pixels(x[:n], eps, spec.mean, spec.std)
    with torch.no_grad():
        seconds, _ = _timed(lambda: model(box.x_norm))
    rows.append(("clean", n, seconds))
    seeds = list(range(n))
    seconds, _ = _timed(lambda: pgd_margins(model, box, y[:n], DEFAULT_ATTACK, seeds))
    rows.append((f"PGD-{DEFAULT_ATTACK.steps}", n, seconds))
    with torch.no_grad():  # warm-up: auto_LiRPA traces the model once
        one = InputBox.from_pixels(x[:1], eps, spec.mean, spec.std)
        net.margin_lower(one, y[:1], "IBP"), net.margin_lower(one, y[:1], "CROWN-IBP")
    for method in methods:
        k = costly_n if method in ("CROWN", "alpha-CROWN") else n
        sub = InputBox.from_pixels(x[:k], eps, spec.mean, spec.std)
        with torch.set_grad_enabled(method == "alpha-CROWN"):
            seconds, _ = _timed(lambda: net.margin_lower(sub, y[:k], method))  # noqa: B023 - called now
        rows.append((method, k, seconds))
    return rows


def bench_small(data_dir, eps: float, eval_n: int, arch: str) -> tuple[float, float, dict]:
    """(train seconds, evaluate seconds, summary) for a small model trained on 2000 images."""
    x, y = load_split("mnist", "train", data_dir)
    x, y = x[:2000], y[:2000]
    torch.manual_seed(0)
    kwargs = {"hidden": [64]} if arch == "mlp" else {}
    model = create_model(arch, (1, 28, 28), 10, **kwargs)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    gen = torch.Generator().manual_seed(0)
    tic = time.perf_counter()
    for _ in range(6):
        for idx in torch.randperm(2000, generator=gen).split(100):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - tic
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        save_checkpoint(
            path, model.eval(), arch_record(arch, (1, 28, 28), 10, kwargs), "mnist", {"schedule": {"eps": eps}}
        )
        seconds, report = _timed(
            lambda: evaluate(
                path, data_dir=data_dir, methods=("IBP", "CROWN"), end=eval_n, device="cpu", progress=False
            )
        )
    return train_s, seconds, report


@click.command(context_settings={"show_default": True})
@click.option("--data-dir", type=click.Path(path_type=Path), envvar="ADCERT_DATA", default=None)
@click.option("--n", default=32, help="Test samples for clean, PGD, IBP and CROWN-IBP (CNN7).")
@click.option("--costly-n", default=32, help="Test samples for CROWN / alpha-CROWN (CNN7).")
@click.option("--methods", default="IBP,CROWN-IBP,CROWN", help="Bound methods to time on CNN7.")
@click.option("--eps", default=0.1, help="Pixel-space eps.")
@click.option("--eval-n", default=1000, help="Test samples for the end-to-end evaluate() run (0 skips it).")
@click.option("--small-arch", type=click.Choice(["mlp", "small-cnn"]), default="mlp")
@click.option("--small-eps", default=0.01, help="Pixel-space eps for the end-to-end run.")
@click.option("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice).")
@click.option("--skip-cnn7", is_flag=True)
def main(data_dir, n, costly_n, methods, eps, eval_n, small_arch, small_eps, threads, skip_cnn7):
    """Print seconds per sample per evaluation stage."""
    if threads:
        torch.set_num_threads(threads)
    click.echo(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if not skip_cnn7 and costly_n > 4 and ({"CROWN", "alpha-CROWN"} & set(methods.split(","))):
        click.echo(
            f"note: CROWN on {costly_n} samples of CNN7 needs about 10-12 GB at --costly-n 32; "
            "--costly-n 2 needs far less (see the docstring)"
        )
    if not skip_cnn7:
        x, y = load_split("mnist", "test", data_dir)
        rows = bench_cnn7(x, y, eps, [m.strip() for m in methods.split(",")], n, costly_n)
        click.echo(f"\nCNN7 (IBP init, untrained), MNIST, eps={eps}")
        click.echo(f"{'stage':<12}{'samples':>8}{'seconds':>10}{'s/sample':>11}")
        for stage, k, seconds in rows:
            click.echo(f"{stage:<12}{k:>8}{seconds:>10.3f}{seconds / k:>11.4f}")
    if eval_n:
        train_s, seconds, report = bench_small(data_dir, small_eps, eval_n, small_arch)
        click.echo(
            f"\nevaluate(): {small_arch} trained {train_s:.1f} s on 2000 images; {eval_n} test samples, "
            f"IBP+CROWN: {seconds:.2f} s wall"
        )
        click.echo(report.table())


if __name__ == "__main__":
    main()
