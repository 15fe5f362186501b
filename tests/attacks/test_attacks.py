"""PGD stays inside the clipped box and finds worse points than random sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adcert_plugin.attacks import AttackConfig, attack_objective, pgd_attack
from adcert_plugin.bounds import InputBox
from adcert_plugin.models import create_model

MEAN, STD = (0.5,), (0.25,)


@pytest.fixture(scope="module")
def trained_toy():
    """A small MLP trained on a separable 2-class problem on 1×4×4 images."""
    torch.manual_seed(0)
    x = torch.rand(512, 1, 4, 4)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    model = create_model("mlp", (1, 4, 4), 2, hidden=(32,))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x_norm = (x - 0.5) / 0.25
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x_norm), y).backward()
        opt.step()
    return model.eval(), x[:64], y[:64]


@pytest.mark.parametrize(
    "cfg",
    [
        AttackConfig(steps=1, step_size=10.0),
        AttackConfig(steps=10, step_size=0.25),
        AttackConfig(steps=5, step_size=0.5, restarts=3, objective="margin"),
    ],
)
def test_pgd_stays_in_clipped_box(trained_toy, cfg):
    model, x, y = trained_toy
    x = x.clone()
    x[:8] = 0.0  # pixels at the edge of [0, 1]: the box is clipped there
    box = InputBox.from_pixels(x, 0.2, MEAN, STD)
    x_adv = pgd_attack(model, box, y, cfg, generator=torch.Generator().manual_seed(1))
    assert box.contains(x_adv, tol=0.0).all()
    assert (x_adv >= (0 - 0.5) / 0.25).all()  # never below the normalised image of pixel 0


def test_pgd_beats_random_points(trained_toy):
    model, x, y = trained_toy
    box = InputBox.from_pixels(x, 0.1, MEAN, STD)
    x_adv = pgd_attack(
        model, box, y, AttackConfig(steps=20, step_size=0.1, restarts=2), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        attacked = attack_objective(model(x_adv), y, "ce")
        gen = torch.Generator().manual_seed(2)
        random_best = torch.stack(
            [
                attack_objective(
                    model(box.lower_norm + torch.rand(x.shape, generator=gen) * (box.upper_norm - box.lower_norm)),
                    y,
                    "ce",
                )
                for _ in range(50)
            ]
        ).amax(0)
    assert (attacked >= random_best - 1e-4).float().mean() > 0.95
    assert attacked.mean() > random_best.mean()
    assert (model(x_adv).argmax(1) != y).sum() > (model(box.x_norm).argmax(1) != y).sum()


def test_pgd_restores_mode_and_leaves_no_gradients(trained_toy):
    model, x, y = trained_toy
    model.zero_grad(set_to_none=True)
    model.train()
    pgd_attack(model, InputBox.from_pixels(x, 0.1, MEAN, STD), y, AttackConfig(steps=3, step_size=0.5))
    assert model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    model.eval()


def test_kl_objective_needs_a_target():
    with pytest.raises(ValueError, match="target_logits"):
        attack_objective(torch.zeros(2, 3), torch.tensor([0, 1]), "kl")


def test_margin_objective_positive_iff_misclassified():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = torch.tensor([0, 0])
    value = attack_objective(logits, y, "margin")
    assert value[0] < 0 < value[1]
