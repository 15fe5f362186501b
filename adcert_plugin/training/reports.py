"""What a training run writes and reports: the per-epoch check, checkpoints, the SWA model, the summary.

``RunReports`` is the half of the trainer that looks at the model rather than updating it; the
trainer (``trainer.py``) mixes it in. ``_seed`` derives the repeatable seeds both halves use.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any

import torch

from ..attacks import pgd_attack
from ..bounds import InputBox, normalize
from ..data import make_loader
from . import distributed as D
from .averaging import population_bn
from .checkpoint import save_checkpoint
from .outcome import best_criterion, ramp_reached, selected_on

log = logging.getLogger("adcert_plugin.training.trainer")


def _seed(*parts) -> int:
    """A 63-bit seed derived from ``parts`` (seed, epoch, rank, purpose)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


class RunReports:
    """Mixed into the trainer: evaluation, checkpoints, the SWA model and the run's summary."""

    # set by the trainer (trainer.py)
    arch: Any
    augmentation: Any
    best: Any
    bounded: Any
    cfg: Any
    device: Any
    drop_last: Any
    info: Any
    loss: Any
    lr_sched: Any
    model: Any
    opt_steps: Any
    optimizer: Any
    rows: Any
    run_dir: Any
    spec: Any
    swa: Any
    test_x: Any
    test_y: Any
    train_x: Any
    train_y: Any

    def evaluate(self, epoch: int) -> dict:
        """Clean / PGD / IBP-certified accuracy on this rank's share of the test subset, reduced."""
        cfg, info, spec = self.cfg, self.info, self.spec
        self.model.eval()
        eps, attack = cfg.schedule.eps, cfg.eval.attack()
        gen = torch.Generator(device=self.device).manual_seed(_seed("eval", cfg.seed, epoch, info.rank))
        xs = torch.tensor_split(self.test_x, info.world_size)[info.rank]
        ys = torch.tensor_split(self.test_y, info.world_size)[info.rank]
        counts = torch.zeros(4, dtype=torch.float64)
        batch = cfg.eval.batch_size or cfg.data.batch_size
        t0 = time.time()
        for start in range(0, len(ys), batch):
            x, y = xs[start : start + batch].to(self.device), ys[start : start + batch].to(self.device)
            box = InputBox.from_pixels(x, eps, spec.mean, spec.std)
            with torch.no_grad():
                clean = self.model(box.x_norm).argmax(1) == y
            x_adv = pgd_attack(self.model, box, y, attack, generator=gen)
            with torch.no_grad():
                robust = clean & (self.model(x_adv).argmax(1) == y)
                cert = self.bounded.margin_lower(box, y, "IBP").min(1).values > 0
            counts += torch.tensor(
                [len(y), clean.sum().item(), robust.sum().item(), cert.sum().item()], dtype=torch.float64
            )
        self.model.train()
        n, clean, robust, cert = D.all_reduce_sum(info, counts).tolist()
        div = max(n, 1.0)
        return {
            "clean_acc": clean / div,
            "pgd_acc": robust / div,
            "ibp_cert_acc": cert / div,
            "n_test": int(n),
            "eval_time_s": round(time.time() - t0, 3),
        }

    def end_epoch(self, epoch: int, row: dict) -> None:
        by = self.best.get("criterion") or best_criterion(self.loss.needs)
        score = (row[by], row["clean_acc"])
        improved = not self.best or score > (self.best[by], self.best["clean_acc"])
        if improved:
            self.best = {
                "epoch": epoch,
                "criterion": by,
                **{k: row[k] for k in ("clean_acc", "pgd_acc", "ibp_cert_acc")},
            }
        self.rows.append(row)
        if not self.info.is_main:
            return
        log.info(
            "epoch %d: loss %.4f, train eps %.4g; at eval eps %g on the first %d %s images: clean %.4f, "
            "PGD %.4f, IBP-cert %.4f (%.1f s)",
            epoch,
            row.get("train_loss", math.nan),
            row["eps_train"],
            row["eps_eval"],
            row["n_test"],
            selected_on(self.cfg),
            row["clean_acc"],
            row["pgd_acc"],
            row["ibp_cert_acc"],
            row["time_s"],
        )
        config = self.cfg.to_dict()
        self.run_dir.append_metrics(row)
        if improved:
            save_checkpoint(
                self.run_dir.best, self.model, self.arch, self.spec.name, config, {"epoch": epoch, "metrics": row}
            )
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }
        state = {
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_sched.state_dict(),
            "loss_modules": self.loss.modules.state_dict(),
            "rng": rng,
            "best": self.best,
            "world_size": self.info.world_size,
            "opt_steps": self.opt_steps,
            "swa": None if self.swa is None else self.swa.state_dict(),
        }
        save_checkpoint(self.run_dir.last, self.model, self.arch, self.spec.name, config, state)
        self.run_dir.drop_aside()  # the new run has its first checkpoint: the one it replaces can go

    def training_batches(self):
        """Normalised training images in batches, in order (population BN statistics)."""
        loader = make_loader(
            self.train_x,
            self.train_y,
            self.cfg.data.batch_size,
            shuffle=False,
            seed=self.cfg.seed,
            augmentation=self.augmentation,
            drop_last=self.drop_last,
        )
        return (normalize(x.to(self.device), self.spec.mean, self.spec.std) for x, _ in loader)

    def averaged_model(self) -> dict | None:
        """SWA: the averaged weights replace the model's, BN statistics re-estimated, and re-evaluated."""
        if self.swa is None or self.swa.count == 0:
            return None
        self.swa.copy_into_params()
        population_bn(self.model, self.training_batches())
        return {"swa_updates": self.swa.count, **self.evaluate(int(self.rows[-1]["epoch"]) if self.rows else 0)}

    def finish(self, wall_time: float) -> dict:
        final = self.rows[-1] if self.rows else {}
        averaged = self.averaged_model()
        if averaged is not None:  # the run's model is the averaged one: report what it scores
            final = {**final, **{k: averaged[k] for k in ("clean_acc", "pgd_acc", "ibp_cert_acc", "n_test")}}
        reached, warnings = ramp_reached(final, self.cfg.schedule)
        for message in warnings:
            if self.info.is_main:
                log.warning("warning: %s", message)
        summary = {
            "run_dir": str(self.run_dir.path),
            "dataset": self.spec.name,
            "loss": self.loss.name,
            "eps": self.cfg.schedule.eps,
            "eps_reached": reached,
            "eps_train_reached": final.get("eps_train"),
            "warnings": warnings,
            "eval_pgd_steps": self.cfg.eval.pgd_steps,
            "epochs": int(final.get("epoch", 0)),
            "clean_acc": final.get("clean_acc"),
            "pgd_acc": final.get("pgd_acc"),
            "ibp_cert_acc": final.get("ibp_cert_acc"),
            "n_test": final.get("n_test", 0),
            "selected_on": selected_on(self.cfg),
            "best": self.best,
            "train_time_s": round(sum(r.get("time_s", 0.0) for r in self.rows), 3),
            "wall_time_s": round(wall_time, 3),
            "world_size": self.info.world_size,
            "conventions": self.cfg.recipe.conventions,
            "swa": averaged,
            "files": {
                "config": "config.yaml",
                "metrics": "metrics.jsonl",
                "model": "model.pt",
                "best": "best.pt",
                "last": "last.pt",
            },
        }
        if self.info.is_main:
            save_checkpoint(
                self.run_dir.model,
                self.model,
                self.arch,
                self.spec.name,
                self.cfg.to_dict(),
                {"epoch": summary["epochs"], "metrics": final},
            )
            self.run_dir.write_summary(summary)
        return summary
