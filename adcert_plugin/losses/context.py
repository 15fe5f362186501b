"""``LossContext``: the per-step, lazily memoised view of a batch that every loss reads.

The context owns autograd, devices and train/eval mode; a loss only asks for quantities.
Every accessor computes at most once per step, so terms of a loss share work: one PGD run,
one train-mode forward per input, one bound per method.

Batch-norm statistics (expressive-losses convention, methods.md §4.1): the bound of a loss
that uses an attack is computed with the statistics of the adversarial batch (the batch
forwarded just before bounding); a loss without an attack uses the clean batch. That
"statistics batch" is forwarded once in train mode, so BN running statistics move once per
forwarded batch. On plain chains (``bounded.native_ibp``) the IBP bound and the train-mode
logits at the statistics batch come out of ONE ``ibp_trace`` pass; the penultimate
features are captured from that pass too (a pre-hook on the final linear layer).

The student runs in whatever mode it is in (the trainer puts it in train mode); only the
attack (``pgd_attack``) and the TRADES target switch it to eval, and they restore it.

``conventions="ctbench"`` (methods.md §9, the AD-CERT paper's framework) changes three things:
the statistics batch is always the clean one (its train-mode forward moves the running
statistics, once); every other forward (the adversarial one, and the attack, which runs in
train mode) normalises with the clean batch's statistics, frozen (``bounds.batch_stats``); and
the attack is CTBench's (``attacks.ctbench_pgd``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..attacks import AttackConfig, folded_eval_forward, pgd_attack
from ..attacks.ctbench_pgd import ctbench_pgd
from ..attacks.pgd import Objective
from ..bounds import BoundedNet, InputBox, margins as exact_margins, wrap_model
from ..bounds.batch_stats import batch_statistics, forward_with_statistics, has_batchnorm
from ..errors import ConfigError
from .teacher import Teacher

Which = Literal["clean", "adv"]
Conventions = Literal["expressive-losses", "ctbench"]
CONVENTIONS = ("expressive-losses", "ctbench")


class LossContext:
    """Lazy, memoised quantities of one training step.

    Args:
        student: the model being trained (``nn.Sequential`` ending in ``nn.Linear``).
        bounded: ``wrap_model(student, in_shape)``, wrapped once by the trainer (None: wrap here).
        x: pixel-space batch ``[B, C, H, W]`` in [0, 1].
        y: labels ``[B]``.
        eps: the current (ramped) pixel-space ε of the bound and the attack box.
        spec: the ``DataSpec`` (mean/std normalise; ε/σ_c per channel).
        attack: PGD settings; the attack box is ``eps * attack.eps_factor`` (clipped to [0, 1]).
        teacher: a ``Teacher`` (an ``nn.Module`` is wrapped, which freezes it) or None.
        generator: random source of the PGD start (seed-reproducible steps).
        needs: what the loss uses; ``Loss.__call__`` binds it (decides the BN statistics batch).
        keep_relu_inputs: keep the ReLU-input bounds of the ε-box IBP pass, so the trainer's
            warm-up regulariser reuses them (``relu_input_bounds``) instead of bounding again.
        conventions: ``"expressive-losses"`` (default) or ``"ctbench"`` (see the module docstring).
    """

    def __init__(
        self,
        student: nn.Module,
        bounded: BoundedNet | None,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float,
        spec,
        attack: AttackConfig = AttackConfig(),
        teacher=None,
        generator: torch.Generator | None = None,
        needs: frozenset[str] = frozenset(),
        keep_relu_inputs: bool = False,
        conventions: Conventions = "expressive-losses",
    ):
        if conventions not in CONVENTIONS:
            raise ConfigError(f"unknown conventions {conventions!r}; choose one of {', '.join(CONVENTIONS)}")
        if bounded is not None and bounded.model is not student:
            raise ConfigError(
                "LossContext: `bounded` wraps a different model than `student`; pass wrap_model(student, in_shape)"
            )
        if teacher is not None and not isinstance(teacher, Teacher):
            teacher = Teacher(teacher)
        self.student, self._bounded = student, bounded
        self.x, self.y, self.eps, self.spec = x, y, float(eps), spec
        self.attack, self.teacher, self.generator = attack, teacher, generator
        self.needs = frozenset(needs)
        self.keep_relu_inputs = keep_relu_inputs
        self.conventions = conventions
        self._memo: dict = {}

    # -- binding and inputs ---------------------------------------------------------------
    def bind(self, needs) -> LossContext:
        """Record what the loss uses (called by ``Loss.__call__`` before the loss runs)."""
        self.needs = frozenset(needs)
        return self

    @property
    def bounded(self) -> BoundedNet:
        if self._bounded is None:
            self._bounded = wrap_model(self.student, tuple(self.x.shape[1:]))
        return self._bounded

    @property
    def num_classes(self) -> int:
        return int(self.spec.num_classes)

    def _once(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    @property
    def box(self) -> InputBox:
        """The ε box [x − ε, x + ε] ∩ [0, 1], normalised (bounds are over this box)."""
        return self._once("box", lambda: InputBox.from_pixels(self.x, self.eps, self.spec.mean, self.spec.std))

    @property
    def attack_box(self) -> InputBox:
        """The box PGD searches: radius ``eps * attack.eps_factor``, clipped, normalised."""
        if self.attack.eps_factor == 1.0:
            return self.box
        return self._once(
            "attack_box",
            lambda: InputBox.from_pixels(self.x, self.eps * self.attack.eps_factor, self.spec.mean, self.spec.std),
        )

    @property
    def x_norm(self) -> torch.Tensor:
        return self.box.x_norm

    @property
    def stats_point(self) -> Which:
        """The batch whose statistics train-mode BN uses while bounding: adv with an attack
        (expressive-losses); always the clean batch under ctbench."""
        if self.conventions == "ctbench":
            return "clean"
        return "adv" if "attack" in self.needs else "clean"

    @property
    def frozen_stats(self) -> bool:
        """Forwards other than the statistics batch's use its statistics, frozen (ctbench)."""
        return self.conventions == "ctbench" and self._once("has_bn", lambda: has_batchnorm(self.student))

    def batch_stats(self):
        """The clean batch's BN statistics (differentiable), computed once per step."""
        return self._once("batch_stats", lambda: batch_statistics(self.student, self.x_norm))

    def input(self, which: Which | torch.Tensor) -> torch.Tensor:
        """Normalised input for ``"clean"`` / ``"adv"`` (a tensor passes through)."""
        if isinstance(which, torch.Tensor):
            return which
        if which == "clean":
            return self.x_norm
        if which == "adv":
            return self.x_adv
        raise ValueError(f"which must be 'clean' or 'adv', got {which!r}")

    # -- attack ---------------------------------------------------------------------------
    def adversarial(
        self, objective: Objective | None = None, target: Literal["teacher", "student"] | None = None
    ) -> torch.Tensor:
        """x_adv (normalised, detached ``[B, C, H, W]``): one PGD run per step, memoised.

        ``objective`` defaults to ``attack.objective``. For ``kl`` the attack maximises
        KL(p_target(x) ‖ p_S(x')), with ``target`` ``"teacher"`` (the teacher's clean logits,
        RSLAD) or ``"student"`` (the student's eval-mode clean logits, detached: TRADES); the
        default is the teacher when there is one. A loss that overrides the objective must call
        this before anything else asks for ``x_adv``.
        """
        objective = objective or self.attack.objective
        if objective == "kl" and target is None:
            target = "teacher" if self.teacher is not None else "student"
        request = (objective, target if objective == "kl" else None)
        if "x_adv" in self._memo:
            if self._memo["x_adv_request"] != request:
                raise RuntimeError(
                    f"x_adv was already computed for {self._memo['x_adv_request']}, not {request}: one PGD run per step"
                )
            return self._memo["x_adv"]
        target_logits = None
        if objective == "kl":
            target_logits = self.teacher_logits("clean") if target == "teacher" else self._student_eval_logits()
        if self.conventions == "ctbench":
            x_adv = ctbench_pgd(
                self._attack_forward(),
                self.attack_box,
                self.y,
                self.attack.steps,
                self.attack.step_size,
                self.attack.restarts,
                objective,
                target_logits,
                self.generator,
            )
        else:
            cfg = AttackConfig(
                self.attack.steps, self.attack.step_size, self.attack.restarts, objective, self.attack.eps_factor
            )
            x_adv = pgd_attack(self.student, self.attack_box, self.y, cfg, target_logits, self.generator)
        self._memo["x_adv_request"], self._memo["x_adv"] = request, x_adv
        return x_adv

    @property
    def x_adv(self) -> torch.Tensor:
        """The memoised adversarial point (normalised); see ``adversarial``."""
        if "x_adv" in self._memo:
            return self._memo["x_adv"]
        return self.adversarial()

    def _attack_forward(self):
        """ctbench: the student in train mode, BN frozen at the clean batch's statistics (detached:
        the attack differentiates with respect to its input only)."""
        if not self.frozen_stats:
            return self.student
        stats = self.batch_stats().detach()
        return lambda x: forward_with_statistics(self.student, x, stats)[1]

    def _student_eval_logits(self) -> torch.Tensor:
        was_training = self.student.training
        try:
            with torch.no_grad():
                return self.student.eval()(self.x_norm).detach()
        finally:
            self.student.train(was_training)

    # -- student forwards -----------------------------------------------------------------
    def student_logits(self, which: Which = "clean") -> torch.Tensor:
        """Student logits ``[B, K]`` at the clean or adversarial batch (current mode, memoised)."""
        key = ("logits", which)
        if key not in self._memo:
            if self._fuses(which):
                self._fused_trace(self.box, which)
            else:
                self._forward(which)
        return self._memo[key]

    def student_features(self, which: Which = "clean") -> torch.Tensor:
        """Student penultimate (post-ReLU, pre-final-linear) features ``[B, F]``, memoised."""
        key = ("features", which)
        if key not in self._memo:
            if ("logits", which) in self._memo:
                raise RuntimeError(
                    f"student logits at {which} were computed by a forward that kept no features; "
                    "ask for the features first"
                )
            self.student_logits(which)
        return self._memo[key]

    def _forward(self, which: Which) -> None:
        inputs = self.input(which)
        if self.frozen_stats and which != self.stats_point:
            features, logits = forward_with_statistics(self.student, inputs, self.batch_stats())
            self._memo[("features", which)], self._memo[("logits", which)] = features, logits
            return
        if isinstance(self.student, nn.Sequential) and isinstance(self.student[-1], nn.Linear):
            features = self.student[:-1](inputs)
            self._memo[("features", which)] = features
            self._memo[("logits", which)] = self.student[-1](features)
        else:
            self._memo[("logits", which)] = self.student(inputs)

    def _fuses(self, which: Which) -> bool:
        """Logits at ``which`` come from the IBP trace when the loss also needs the bound."""
        return "bounds" in self.needs and which == self.stats_point and self.bounded.native_ibp

    # -- bounds ---------------------------------------------------------------------------
    def margin_lower(self, method: str = "IBP", box: InputBox | None = None) -> torch.Tensor:
        """Lower bounds of the margins z_y − z_j (j ≠ y) over ``box`` (default: the ε box): ``[B, K-1]``.

        BN uses the statistics of ``stats_point`` (see the module docstring). Memoised per method
        for the ε box; a custom box (SABR) is computed on each call.
        """
        key = ("bound", method)
        if box is None and key in self._memo:
            return self._memo[key]
        region = self.box if box is None else box
        which = self.stats_point
        if method == "IBP" and self.bounded.native_ibp:
            bound = self._fused_trace(region, which)
        else:
            # auto_LiRPA first: its first call builds the BoundedModule, which rewrites the model's
            # tensors in place and would invalidate a graph built earlier in the step. Its BN uses
            # the batch statistics of stats_input on buffer copies, so the order changes nothing else.
            bound = self.bounded.margin_lower(region, self.y, method, stats_input=self.input(which))
            self.student_logits(which)  # the statistics batch's own train-mode forward (running stats)
        if box is None:
            self._memo[key] = bound
        return bound

    def _fused_trace(self, region: InputBox, which: Which) -> torch.Tensor:
        """One native IBP pass over ``region`` that also yields logits/features at ``which``."""
        stats_input = self.input(which)
        first = ("logits", which) not in self._memo
        captured: dict = {}

        def keep_features(_module, args):
            captured.setdefault("f", args[0])  # the head's input: penultimate features at stats_input

        hook = self.student[-1].register_forward_pre_hook(keep_features)
        try:
            trace = self.bounded.ibp_trace(
                region,
                self.y,
                stats_input=stats_input,
                track_running_stats=first,
                keep_relu_inputs=self.keep_relu_inputs and region is self.box,
                keep_head_input=region is self.box,
            )
        finally:
            hook.remove()
        if first:
            self._memo[("logits", which)] = trace.stats_out
            self._memo[("features", which)] = captured["f"]
        if region is self.box:
            self._memo[("bound", "IBP")] = trace.lower
            self._memo["feature_box"] = trace.head_input
            if self.keep_relu_inputs:
                self._memo["relu_inputs"] = trace.relu_inputs
        return trace.lower

    def feature_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """IBP bounds (l_φ, u_φ) ``[B, F]`` of the student's penultimate features over the ε box.

        They come from the same native pass as the IBP margin bound (the head's IBP over this box
        is that bound), with the statistics batch's BN statistics, so asking for both bounds once.
        """
        if "feature_box" not in self._memo:
            if not self.bounded.native_ibp:
                raise ConfigError(
                    f"feature bounds need a plain Conv/Linear/BN/ReLU chain ending in a Linear; "
                    f"{type(self.student).__name__} is not one"
                )
            self.margin_lower("IBP")
        return self._memo["feature_box"]

    def relu_input_bounds(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """ReLU-input bounds of this step's ε-box IBP pass, if one ran with ``keep_relu_inputs``."""
        return self._memo.get("relu_inputs")

    def margins(self, which: Which = "adv") -> torch.Tensor:
        """Exact margins C_y f(x) at the clean or adversarial batch ``[B, K-1]``."""
        return exact_margins(self.student_logits(which), self.y)

    # -- teacher --------------------------------------------------------------------------
    def _teacher(self):
        if self.teacher is None:
            raise ConfigError("this loss needs a teacher; set teacher: <checkpoint path> in the config")
        return self.teacher

    def teacher_logits(self, x: Which | torch.Tensor = "clean") -> torch.Tensor:
        """Frozen teacher logits ``[B, K]`` (eval mode, no_grad, detached) at ``x``."""
        if isinstance(x, torch.Tensor):
            return self._teacher_logits(x)
        return self._once(("teacher_logits", x), lambda: self._teacher_logits(self.input(x)))

    def _teacher_logits(self, x_norm: torch.Tensor) -> torch.Tensor:
        """The teacher's eval function through its BN-folded network (the attack's, ``folding.py``):
        the same logits up to float rounding without BN's passes, channels-last on wide CPU convs.
        Once the bound pass got cheaper this forward was a tenth of an ad-cert step. A teacher on
        another device or dtype than the batch goes through ``Teacher.logits`` (it moves the input)."""
        teacher = self._teacher()
        model = teacher.model
        param = next(model.parameters(), None)
        if param is None or (param.device, param.dtype) != (x_norm.device, x_norm.dtype):
            return teacher.logits(x_norm)
        teacher.train(False)  # re-asserts eval mode, as Teacher.logits does
        with torch.no_grad():
            return folded_eval_forward(model)(x_norm.detach()).detach()

    def teacher_features(self, x: Which | torch.Tensor = "clean") -> torch.Tensor:
        """Frozen teacher penultimate features ``[B, F_T]`` at ``x`` (detached)."""
        if isinstance(x, torch.Tensor):
            return self._teacher().features(x)
        return self._once(("teacher_features", x), lambda: self._teacher().features(self.input(x)))
