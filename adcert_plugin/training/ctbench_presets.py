"""CTBench recipes (methods.md §9), the framework the AD-CERT paper measured in: ``ctbench-<benchmark>-<method>``.

READ from the MTL-IBP scripts of CTBench (as forked by the AD-CERT authors): epochs and lr
milestones, the ε ramp, PGD steps and restarts, ``attack_range_scale``, α, L1, the robust weight w,
the fast regulariser, the SWA start and population BN. The same recipe serves ``mtl-ibp``,
``cc-ibp``, ``ad-cert`` and ``cc-dist`` (the AD-CERT paper's own α per benchmark is not public).
INFERRED (labelled in ``--list-presets``): the PGD teacher (PGD-10, step max(0.25, 2/10), the
student's schedule, w = 1, no regulariser, no SWA); the MNIST 0.3 training ε (×1.334, as in
the expressive-losses recipe); the CIFAR-10 8/255 fast regulariser (0.5). CTBench's epoch
numbers are 0-based: a script's SWA start s is epoch s + 1 here, its ramp "0 → 20" is
``eps_start_epoch: 1, eps_length_epochs: 20``.
"""

from __future__ import annotations

from ..attacks.ctbench_pgd import default_step_size

METHODS = ("mtl-ibp", "cc-ibp", "ad-cert", "cc-dist")
SOURCE = "CTBench recipe (matteo-melis/ad-cert CTBench scripts, methods.md §9)"
TEACHER_SOURCE = "INFERRED ctbench PGD-AT teacher (PGD-10, the student's schedule), methods.md §7/§9"

# bench: dataset, eps, batch, epochs, milestones, eps_start_epoch, ramp length, train_eps_mul,
#        steps, restarts, attack_range_scale, alpha, l1, robust_weight, fast_reg, swa_start (0-based), pop_bn
_RECIPES = {
    "mnist-0.1": ("mnist", 0.1, 256, 70, [50, 60], 1, 20, 2.0, 10, 3, 1.0, 0.02, 1e-5, 0.7, 0.5, 65, True),
    "mnist-0.3": ("mnist", 0.3, 256, 70, [50, 60], 1, 20, 1.334, 1, 3, 1.0, 0.5, 1e-6, 1.0, 0.5, 65, False),
    "cifar10-2-255": (
        "cifar10",
        2 / 255,
        128,
        160,
        [120, 140],
        2,
        80,
        1.0,
        1,
        3,
        2.0,
        0.01,
        3e-6,
        0.9,
        0.5,
        150,
        False,
    ),
    "cifar10-8-255": ("cifar10", 8 / 255, 128, 240, [200, 220], 2, 120, 1.0, 1, 3, 1.0, 0.6, 0.0, 1.0, 0.5, 225, False),
    "tinyimagenet-1-255": (
        "tinyimagenet",
        1 / 255,
        128,
        160,
        [120, 140],
        2,
        80,
        1.0,
        1,
        3,
        1.5,
        0.05,
        5e-5,
        0.7,
        0.2,
        150,
        False,
    ),
}


def ctbench_preset(bench: str, method: str) -> dict:
    """The recipe of ``bench`` for ``method`` (one of ``METHODS``, or ``pgd`` for the teacher)."""
    (
        dataset,
        eps,
        batch,
        epochs,
        milestones,
        start,
        length,
        mul,
        steps,
        restarts,
        scale,
        alpha,
        l1,
        weight,
        fast_reg,
        swa_start,
        pop_bn,
    ) = _RECIPES[bench]
    teacher = method == "pgd"
    attack_steps = 10 if teacher else steps
    preset = {
        "data": {"dataset": dataset, "batch_size": batch},
        "model": {"name": "cnn7", "ibp_init": not teacher},
        "loss": {"name": method, "params": {} if teacher else {"alpha": alpha}},
        "attack": {
            "steps": attack_steps,
            "step_size": default_step_size(attack_steps),
            "restarts": 1 if teacher else restarts,
            "eps_factor": 1.0 if teacher else scale,
        },
        "schedule": {
            "epochs": epochs,
            "eps": eps,
            "train_eps_mul": 1.0 if teacher else mul,
            "eps_start_epoch": start,
            "eps_length_epochs": length,
            "reg_lambda": 0.0 if teacher else fast_reg,
        },
        "optim": {"lr": 5e-4, "milestones": milestones, "gamma": 0.2, "grad_clip": 10.0, "l1": 0.0 if teacher else l1},
        "recipe": {
            "conventions": "ctbench",
            "robust_weight": 1.0 if teacher else weight,
            "swa_start_epoch": None if teacher else swa_start + 1,
            "pop_bn": pop_bn and not teacher,
        },
        "out_dir": f"runs/ctbench-{bench}-{method}",
        "device": "auto",
    }
    if method in ("ad-cert", "cc-dist"):
        preset["teacher"] = f"runs/ctbench-{bench}-pgd/model.pt"
    return preset


def ctbench_presets() -> dict[str, tuple[dict, str]]:
    """name -> (preset, source) for every benchmark and method, teachers included."""
    out = {}
    for bench in _RECIPES:
        out[f"ctbench-{bench}-pgd"] = (ctbench_preset(bench, "pgd"), TEACHER_SOURCE)
        for method in METHODS:
            out[f"ctbench-{bench}-{method}"] = (ctbench_preset(bench, method), SOURCE)
    return out
