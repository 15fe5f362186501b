"""``train(cfg) -> RunResult``: one training loop for every loss (methods.md B.2).

Per batch: the scheduled eps (smoothed ramp, per batch) × ``train_eps_mul`` is the training
eps. A natural batch (eps = 0) trains clean CE; any other batch calls the configured loss on a
``LossContext``. During warm-up (until the ramp ends) the Shi et al. regulariser, from IBP
bounds at the same eps (1e-6 on natural batches), is added with weight λ·(1 − ε_t/ε_max);
L1 over Conv/Linear weights is added throughout. Then gradient accumulation, clipping, Adam,
and MultiStepLR per epoch. A loss's behaviour is reached only through ``loss.needs`` (the
teacher) and its config fields (``kappa`` follows the CROWN-IBP schedule when present).

Repeatability: the model is built after ``torch.manual_seed(seed)``; the data order of epoch e
and the PGD generator of epoch e depend only on (seed, e, rank); the torch RNG is checkpointed.
So a run resumed from ``last.pt`` gives the parameters of an uninterrupted run.
After each epoch the first ``data.test_subset`` test images (the ones ``adcert-eval --end N``
evaluates) are evaluated at the TARGET (eval) eps: clean accuracy, PGD accuracy (the
``eval`` attack, PGD-10 in the small presets, not adcert-eval's PGD-40) and IBP-certified
accuracy, in eval mode. ``best.pt`` is the best epoch by what the loss trains for
(:func:`best_criterion`). A run that stops before its eps ramp ends is warned about, and its
summary records the eps it reached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..bounds import InputBox, normalize, wrap_model
from ..data import get_data_spec, load_split, make_loader, subset, validation_split
from ..errors import CheckpointError, TrainingError, UnsupportedModelError
from ..io import FolderLock
from ..losses.base import LossContext
from ..models import create_model, ibp_init
from . import distributed as D, schedules as S
from .allocator import reuse_freed_memory
from .averaging import WeightAverage, population_bn
from .checkpoint import arch_record, read_checkpoint
from .config import TrainConfig
from .outcome import RunResult, divergence_cause
from .regularizers import l1_penalty, warmup_terms
from .reports import RunReports, _seed
from .rundir import RunDir
from .teacher import load_teacher

log = logging.getLogger(__name__)

# Loss-config fields the trainer sets at every step, when a loss's config has them.
SCHEDULED_FIELDS = {"kappa": S.kappa_at}  # CROWN-IBP: 1 → 0 along the eps ramp


def train(cfg: TrainConfig, resume: bool = False, force: bool = False, progress: bool | None = None) -> RunResult:
    """Train as configured; write the run directory (see ``rundir.py``).

    Args:
        cfg: the validated run config.
        resume: continue from ``<out_dir>/last.pt`` (same config but ``schedule.epochs``).
        force: start afresh in an ``out_dir`` that holds a run (its run files are replaced once the
            new run's first epoch is saved; a start that fails before that puts them back).
        progress: show a tqdm bar; default only on a TTY with ``CI`` unset (rank 0).

    Raises:
        ConfigError: the run dir holds a run (without resume/force), a bad resume, a teacher
            that does not fit the data set.
        DataError, CheckpointError: missing data or teacher files.
        TrainingError: a non-finite loss or gradient; ``last.pt`` of the last finished epoch is kept.
    """
    info = D.init_distributed(cfg.device)
    if info.device.type == "cpu":
        reuse_freed_memory()  # a step's large temporaries stop page-faulting in anew (allocator.py)
    try:
        if info.is_main:  # a refused start writes nothing, not even a lock file
            FolderLock(cfg.out_dir).check_free()
            RunDir(cfg.out_dir).check(cfg, resume, force)
        with FolderLock(cfg.out_dir) if info.is_main else contextlib.nullcontext():
            return _Trainer(cfg, info).run(resume, force, progress)
    finally:
        D.shutdown(info)


class _StepModule(nn.Module):
    """Student + training-only loss modules; ``forward(fn)`` runs the step's loss inside DDP."""

    def __init__(self, student: nn.Module, loss_modules: nn.ModuleDict):
        super().__init__()
        self.student, self.loss_modules = student, loss_modules

    def forward(self, compute):
        return compute()


class _Trainer(RunReports):
    def __init__(self, cfg: TrainConfig, info: D.DistInfo):
        self.cfg, self.info, self.device = cfg, info, info.device
        self.run_dir = RunDir(cfg.out_dir)
        self.best: dict = {}
        self.rows: list[dict] = []
        self.created: list[Path] = []  # what this start wrote before its first epoch finished
        self.updates = 0  # optimizer steps taken by this process (a divergence before any is not the lr's)
        self.opt_steps = 0  # optimizer steps of the whole run (SWA counts them), checkpointed
        self.swa: WeightAverage | None = None

    # -- set-up -------------------------------------------------------------------------
    def setup(self, resume: bool, force: bool) -> int:
        cfg, info = self.cfg, self.info
        self.run_dir.check(cfg, resume, force)
        self.spec = spec = get_data_spec(cfg.data.dataset)
        self.loss = cfg.loss.create()
        self.teacher = None
        if "teacher" in self.loss.needs:
            assert cfg.teacher is not None  # TrainConfig's check: a loss that needs a teacher has one
            self.teacher = load_teacher(
                cfg.teacher, expect_shape=spec.shape, expect_classes=spec.num_classes, expect_dataset=spec.name
            )
            self.teacher.to(self.device)
        elif cfg.teacher:
            log.info("loss %s uses no teacher; ignoring teacher %s", self.loss.name, cfg.teacher)
        self.train_x, self.train_y = load_split(spec.name, "train", cfg.data.data_dir)
        if cfg.data.validation_size:  # model selection looks at the holdout, never at the test split
            (self.train_x, self.train_y), (self.test_x, self.test_y) = validation_split(
                self.train_x, self.train_y, cfg.data.validation_size
            )
        else:
            self.test_x, self.test_y = load_split(spec.name, "test", cfg.data.data_dir)
        if cfg.data.train_subset:
            self.train_x, self.train_y = subset(self.train_x, self.train_y, cfg.data.train_subset, cfg.seed)
        if cfg.data.test_subset:  # the first N: the images adcert-eval --end N evaluates
            self.test_x, self.test_y = self.test_x[: cfg.data.test_subset], self.test_y[: cfg.data.test_subset]
        self.augmentation = cfg.data.augmentation or spec.augmentation
        self.drop_last = len(self.train_y) >= cfg.data.batch_size

        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model.name, spec.shape, spec.num_classes, **cfg.model.kwargs).to(self.device)
        if cfg.model.ibp_init:
            ibp_init(self.model)
        self.arch = arch_record(cfg.model.name, spec.shape, spec.num_classes, cfg.model.kwargs)
        self.bounded = wrap_model(self.model, spec.shape)
        if cfg.schedule.reg_lambda > 0 and not self.bounded.native_ibp:
            raise UnsupportedModelError(
                f"the warm-up regulariser needs a plain Conv/Linear/BN/ReLU chain; "
                f"{cfg.model.name} is not one: set schedule.reg_lambda: 0"
            )
        self.loss.prepare(self.model, self.teacher)
        self.loss.modules.to(self.device)
        self.params = list(self.model.parameters()) + list(self.loss.modules.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.optim.lr)
        self.lr_sched = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, list(cfg.optim.milestones), cfg.optim.gamma
        )
        self.step_module = D.wrap_ddp(_StepModule(self.model, self.loss.modules), info)
        self.generator = torch.Generator(device=self.device)
        loss_fields = {f.name for f in dataclasses.fields(self.loss.config)}
        self.scheduled = {name: fn for name, fn in SCHEDULED_FIELDS.items() if name in loss_fields}
        self.steps_per_epoch = len(
            make_loader(
                self.train_x, self.train_y, cfg.data.batch_size, shuffle=False, seed=0, drop_last=self.drop_last
            )
        )
        if cfg.recipe.swa_start_epoch is not None:  # optimizer steps before the SWA start epoch's first one
            start = (cfg.recipe.swa_start_epoch - 1) * -(-self.steps_per_epoch // cfg.optim.grad_acc_steps)
            self.swa = WeightAverage(list(self.model.parameters()), start, cfg.recipe.swa_freq)

        if info.is_main:  # everything is checked: only now touch the folder
            if force and not resume:
                self.run_dir.set_aside()  # deleted after the first epoch; put back if none finishes
            if not self.run_dir.path.exists():
                self.run_dir.path.mkdir(parents=True)
                self.created.append(self.run_dir.path)
            if not resume:
                self.run_dir.write_config(cfg)
                self.created.insert(0, self.run_dir.config)
        D.barrier(info)
        return self.restore() if resume else 0

    def restore(self) -> int:
        last = self.run_dir.last
        record = read_checkpoint(last)
        try:
            state = record["state"]
            self.model.load_state_dict(record["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.lr_sched.load_state_dict(state["lr_scheduler"])
            self.loss.modules.load_state_dict(state["loss_modules"])
            torch.set_rng_state(state["rng"]["torch"])
            if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
            self.best = dict(state.get("best", {}))
            self.opt_steps = int(state.get("opt_steps", 0))
            if self.swa is not None and state.get("swa") is not None:
                self.swa.load_state_dict(state["swa"])
            epoch = int(state["epoch"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            what = f"field {err}" if isinstance(err, KeyError) else " ".join(str(err).split())[:200]
            raise CheckpointError(
                f"{last} cannot be resumed: its trainer state is incomplete or does not fit "
                f"this run ({what}); start afresh with --force"
            ) from err
        if self.info.is_main:
            self.run_dir.resume_config(self.cfg, epoch)  # config.yaml records the new epoch count
        self.rows = self.run_dir.truncate_metrics(epoch) if self.info.is_main else []
        log.info("resuming %s after epoch %d", self.run_dir.path, epoch)
        return epoch

    # -- the loop -----------------------------------------------------------------------
    def run(self, resume: bool, force: bool, progress: bool | None) -> RunResult:
        started = time.time()
        start_epoch = self.setup(resume, force)
        cfg = self.cfg
        if progress is None:
            progress = sys.stderr.isatty() and not os.environ.get("CI")
        self.progress = progress and self.info.is_main
        if start_epoch >= cfg.schedule.epochs:
            log.info("%s already finished %d epochs", self.run_dir.path, start_epoch)
        try:
            for epoch in range(start_epoch + 1, cfg.schedule.epochs + 1):
                t0 = time.time()
                row = self.train_epoch(epoch)
                if cfg.recipe.pop_bn:
                    population_bn(self.model, self.training_batches())
                row.update(self.evaluate(epoch))
                row["time_s"] = round(time.time() - t0, 3)
                self.end_epoch(epoch, row)
        except BaseException:
            self.discard_unstarted()
            if self.info.is_main and self.run_dir.restore_aside():
                log.warning(
                    "no epoch of the new run finished: the earlier run in %s is put back as it was", self.run_dir.path
                )
            raise
        summary = self.finish(time.time() - started)
        D.barrier(self.info)
        return RunResult(self.run_dir.path, summary, self.info.is_main)

    def train_epoch(self, epoch: int) -> dict:
        cfg, info = self.cfg, self.info
        loader = make_loader(
            self.train_x,
            self.train_y,
            cfg.data.batch_size,
            shuffle=True,
            seed=_seed("data", cfg.seed, epoch),
            augmentation=self.augmentation,
            drop_last=self.drop_last,
        )
        steps = len(loader)
        self.generator.manual_seed(_seed("attack", cfg.seed, epoch, info.rank))
        self.model.train()
        acc_steps = cfg.optim.grad_acc_steps
        sums: dict[str, torch.Tensor] = {}  # part -> Σ value·n over the batches that report it
        counts: dict[str, int] = {}  # part -> Σ n
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, desc=f"epoch {epoch}/{cfg.schedule.epochs}", leave=False, file=sys.stderr)
        eps = reg_weight = 0.0
        for i, (x, y) in enumerate(loader):
            step = (epoch - 1) * steps + i
            eps = S.train_eps_at(step, steps, cfg.schedule)
            reg_weight = S.reg_weight_at(step, steps, cfg.schedule) if cfg.schedule.reg_lambda > 0 else 0.0
            for name, fn in self.scheduled.items():
                self.loss.config = dataclasses.replace(self.loss.config, **{name: fn(step, steps, cfg.schedule)})
            robust_weight = S.robust_weight_at(step, steps, cfg.recipe)
            (x, y), weight = D.shard(info, x, y)
            x, y = x.to(self.device), y.to(self.device)
            last_micro = (i + 1) % acc_steps == 0 or i == steps - 1
            with D.no_sync(self.step_module, skip=not last_micro):
                loss, parts = self.step_module(functools.partial(self.loss_terms, x, y, eps, reg_weight, robust_weight))
                if D.any_rank(info, not bool(torch.isfinite(loss.detach()))):
                    raise self.diverged(epoch, i, steps, f"loss {loss.item()}")
                (loss * (weight / acc_steps)).backward()
            if last_micro:
                self.optimizer_step(epoch, i, steps)
            for name, value in {"loss": loss.detach(), **parts}.items():  # tensors: no device sync here
                sums[name] = sums.get(name, 0.0) + value.detach().double() * x.shape[0]
                counts[name] = counts.get(name, 0) + x.shape[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(eps=f"{eps:.4g}", loss=f"{float(loss.detach()):.4f}")
        if bar is not None:
            bar.close()
        lr = self.optimizer.param_groups[0]["lr"]
        self.lr_sched.step()
        names = sorted(sums)  # the same on every rank: every rank runs the same phase at each step
        totals = D.all_reduce_sum(
            info,
            torch.stack(
                [
                    torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=self.device) for k in names]),
                    torch.tensor([float(counts[k]) for k in names], dtype=torch.float64, device=self.device),
                ],
                dim=1,
            ),
        )
        row = {
            "epoch": epoch,
            "step": epoch * steps,
            "lr": lr,
            "eps_train": eps,
            "eps_eval": cfg.schedule.eps,
            "reg_weight": reg_weight,
        }
        row.update({f"train_{k}": float(totals[j, 0] / totals[j, 1]) for j, k in enumerate(names)})
        return row

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, eps: float, reg_weight: float, robust_weight: float = 1.0):
        """(loss, detached parts) of one (local) batch: (1 − w)·CE(f(x), y) + w·(the loss), or clean CE
        in the ε-0 epochs of the expressive-losses convention (ctbench runs the loss at ε = 0), + reg + L1."""
        cfg, spec = self.cfg, self.spec
        conventions = cfg.recipe.conventions
        if S.is_natural(eps) and conventions != "ctbench":
            loss = F.cross_entropy(self.model(normalize(x, spec.mean, spec.std)), y)
            parts = {"ce_clean": loss.detach()}
        else:
            ctx = LossContext(
                self.model,
                self.bounded,
                x,
                y,
                eps,
                spec,
                attack=cfg.attack,
                teacher=self.teacher,
                generator=self.generator,
                keep_relu_inputs=reg_weight > 0 and eps >= S.MIN_EPS_REG,
                conventions=conventions,
            )
            if conventions == "expressive-losses" and (cfg.recipe.clean_forward or robust_weight < 1.0):
                ctx.student_logits("clean")  # the clean batch moves the running statistics first
            out = self.loss(ctx)
            loss, parts = out.loss, dict(out.parts)
            if robust_weight < 1.0:  # the clean logits: the statistics batch's forward under ctbench
                natural = F.cross_entropy(ctx.student_logits("clean"), y)
                loss = (1.0 - robust_weight) * natural + robust_weight * loss
                parts["ce_clean"] = natural.detach()
        if reg_weight > 0:
            reg = self.warmup_regulariser(x, y, eps, None if S.is_natural(eps) else ctx)
            loss = loss + reg_weight * reg
            parts["reg"] = reg.detach()
        if cfg.optim.l1 > 0:
            l1 = l1_penalty(self.model)
            loss = loss + cfg.optim.l1 * l1
            parts["l1"] = l1.detach()
        return loss, parts

    def warmup_regulariser(self, x: torch.Tensor, y: torch.Tensor, eps: float, ctx: LossContext | None):
        """Shi et al. warm-up terms, from the loss's own ε-box IBP pass when it made one."""
        relu_inputs = ctx.relu_input_bounds() if ctx is not None else None
        if ctx is not None and relu_inputs is not None:
            box = ctx.box
        else:  # natural phase, tiny eps, or a loss without a native IBP pass: bound once more
            box = InputBox.from_pixels(x, max(eps, S.MIN_EPS_REG), self.spec.mean, self.spec.std)
            relu_inputs = self.bounded.ibp_trace(box, y, keep_relu_inputs=True).relu_inputs
        return warmup_terms(relu_inputs, box.half_width, self.cfg.schedule.reg_tolerance).total

    def optimizer_step(self, epoch: int, i: int, steps: int) -> None:
        clip = self.cfg.optim.grad_clip
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
            if not bool(torch.isfinite(norm)):
                raise self.diverged(epoch, i, steps, f"gradient norm {float(norm)}")
        self.optimizer.step()
        self.updates += 1
        self.opt_steps += 1
        if self.swa is not None:
            self.swa.after_step(self.opt_steps)
        self.optimizer.zero_grad(set_to_none=True)

    def discard_unstarted(self) -> None:
        """A start that fails before its first epoch ends leaves nothing: a rerun needs no --force."""
        if not self.info.is_main or self.run_dir.last.is_file():
            return
        for path in self.created:
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)

    def diverged(self, epoch: int, i: int, steps: int, what: str) -> TrainingError:
        if self.run_dir.last.is_file():
            kept = f"the last good checkpoint is {self.run_dir.last}"
        elif self.run_dir.aside.is_dir():
            kept = f"no epoch finished, so the earlier run in {self.run_dir.path} is put back as it was"
        else:
            kept = "no epoch finished, so nothing was kept"
        cause = divergence_cause(self.updates, self.params, self.optimizer.param_groups[0]["lr"])
        return TrainingError(
            f"non-finite {what} at epoch {epoch}, step {i + 1}/{steps}; training stopped and {kept}; {cause}"
        )
