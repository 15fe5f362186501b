"""Shared pieces of the complete-verification tests: a trained MLP on fake MNIST, a fake verifier."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from train_fixtures import write_fake_mnist

from adcert_plugin.bounds import InputBox
from adcert_plugin.data import load_split
from adcert_plugin.evaluation import CompleteAnswer
from adcert_plugin.models import create_model
from adcert_plugin.training import arch_record, save_checkpoint

EPS = 0.03  # on the fixture: about 36 IBP-certified, 2 PGD-broken, 26 undecided of 64
WORDS = ("unsat", "timeout", "sat", "error", "unknown", "unsat")


class Killed(Exception):
    """Stands for the process being killed mid-run."""


class Fake:
    """Answers by index: words[index % len(words)]; a sat carries the clean point (no counterexample
    of a robust sample: it counts only where a test raises MARGIN_SLACK)."""

    name = "fake"

    def __init__(self, log: list, fail_after: int | None = None, words: tuple[str, ...] = WORDS):
        self.log, self.fail_after, self.words = log, fail_after, words

    def verify(self, request):
        if self.fail_after is not None and len(self.log) >= self.fail_after:
            raise Killed("killed")  # a run killed between chunks
        self.log.append(request)
        answers = []
        for position, index in enumerate(request.indices):
            word = self.words[index % len(self.words)]
            box = InputBox.from_pixels(request.x[position : position + 1], request.eps, request.mean, request.std)
            point = box.x_norm.flatten().numpy() if word == "sat" else None
            answers.append(CompleteAnswer(index, word, 1.5, point, note=f"fake {word}"))
        return answers


def trained_mlp(folder: Path) -> tuple[Path, Path]:
    """A fake MNIST folder and an MLP trained on it for two epochs (seconds): (checkpoint, data root)."""
    root = write_fake_mnist(folder / "data", n_train=512, n_test=64)
    x, y = load_split("mnist", "train", root)
    torch.manual_seed(0)
    model = create_model("mlp", (1, 28, 28), 10, hidden=[32])
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    for _ in range(2):
        for idx in torch.randperm(512).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    path = folder / "run" / "model.pt"
    save_checkpoint(
        path, model.eval(), arch_record("mlp", (1, 28, 28), 10, {"hidden": [32]}), "mnist", {"schedule": {"eps": EPS}}
    )
    return path, root
