"""The auto_LiRPA seam: the only module that imports auto_LiRPA.

``wrap_model(model, in_shape)`` returns a ``BoundedNet``; callers pass an ``InputBox``
(clipped and normalised: ε never crosses this line) and labels, and get plain tensors of
margin lower bounds ``[B, K-1]`` for z_y − z_j. No auto_LiRPA object escapes.

Batch-norm statistics while bounding: in eval mode the running statistics; in train mode
the statistics of ``stats_input``, the batch forwarded with the bound (default: the box
centre, i.e. the clean batch). The losses pass the adversarial batch there, which is the
expressive-losses convention ("the statistics of the batch forwarded just before").

IBP on plain chains of Conv/Linear/BN/ReLU/Flatten goes through ``interval.py`` (same
arithmetic as auto_LiRPA's IBP, several times faster); every other case uses auto_LiRPA.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import UnsupportedModelError
from . import interval, lirpa_compat
from .spec import InputBox, margin_matrix

log = logging.getLogger(__name__)

METHODS = ("IBP", "CROWN-IBP", "CROWN", "alpha-CROWN")
_LIRPA_METHOD = {"IBP": "IBP", "CROWN-IBP": "CROWN-IBP", "CROWN": "CROWN", "alpha-CROWN": "CROWN-Optimized"}
_VERSION = lirpa_compat.installed_version()
_lirpa = None


def _auto_lirpa():
    """Import auto_LiRPA once, with the compatibility layer its version needs."""
    global _lirpa
    if _lirpa is None:
        if _VERSION is None:
            raise UnsupportedModelError(
                "auto_LiRPA is not installed; run `pip install --no-deps auto_LiRPA` (see the README's set-up command)"
            )
        applied = lirpa_compat.prepare_import(_VERSION)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                import auto_LiRPA
            except ImportError as err:  # e.g. 0.7 imports graphviz at import time
                missing = f"pip install {err.name}" if getattr(err, "name", None) else "reinstall it"
                raise UnsupportedModelError(
                    f"auto_LiRPA {'.'.join(map(str, _VERSION))} cannot be imported ({err}); {missing}"
                ) from err
        applied += lirpa_compat.patch_bounded_module(auto_LiRPA.BoundedModule, _VERSION)
        if applied:
            log.debug("auto_LiRPA %s compatibility patches: %s", _VERSION, ", ".join(applied))
        _lirpa = auto_LiRPA
    return _lirpa


def auto_lirpa_version() -> tuple[int, ...] | None:
    return _VERSION


def _skip_reload(*args, **kwargs):
    """Stands in for ``load_state_dict`` while auto_LiRPA builds its BoundedModule."""


@contextlib.contextmanager
def _no_state_reload(model: nn.Module, bounded_module_cls: Any):  # auto_LiRPA's class: untyped
    """Skip the state-dict reload that ends BoundedModule construction.

    BoundedModule copies the state dict, traces, then loads the copy back into the model and
    into itself: an in-place write to every (shared) parameter, which breaks autograd graphs
    built earlier in the same step. Tracing runs in eval mode, so nothing changed and the
    reload is a no-op in value; BN buffers are re-synced before every bound anyway.
    """
    model.load_state_dict = _skip_reload
    original = bounded_module_cls.load_state_dict
    bounded_module_cls.load_state_dict = _skip_reload
    try:
        yield
    finally:
        bounded_module_cls.load_state_dict = original
        del model.load_state_dict


class BoundedNet:
    """A model wrapped once for bounding; shares parameters with ``model``."""

    def __init__(self, model: nn.Module, in_shape, use_native_ibp: bool = True):
        self.model = model
        self.in_shape = tuple(in_shape)
        self.native_ibp = use_native_ibp and interval.supports(model)
        self._lirpa_module = None
        self._buffer_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    # -- auto_LiRPA side -------------------------------------------------------------
    def _bounded_module(self):
        if self._lirpa_module is None:
            lirpa = _auto_lirpa()
            device = next(self.model.parameters()).device
            example = torch.zeros((2, *self.in_shape), device=device)
            was_training = self.model.training
            try:
                with _no_state_reload(self.model, lirpa.BoundedModule), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._lirpa_module = lirpa.BoundedModule(
                        self.model.eval(), example, bound_opts=lirpa_compat.default_bound_opts(_VERSION), device=device
                    )
            except Exception as err:  # auto_LiRPA raises bare errors on unsupported graphs
                raise UnsupportedModelError(
                    f"auto_LiRPA cannot bound {type(self.model).__name__}: "
                    f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                ) from err
            finally:
                self.model.train(was_training)
            self._buffer_pairs = self._match_buffers()
        return self._lirpa_module

    def _match_buffers(self):
        """(node, model buffer) pairs: auto_LiRPA 0.3 holds a *copy* of each buffer in a node."""
        ours = dict(self.model.named_buffers())
        nodes = [
            node
            for node in self._lirpa_module.modules()
            if "buffer" in getattr(node, "_buffers", {}) and getattr(node, "ori_name", None) in ours
        ]
        params = {id(p) for p in self.model.parameters()}
        if not all(id(p) in params for p in self._lirpa_module.parameters()):
            raise UnsupportedModelError("auto_LiRPA copied the model's parameters; bounds would go stale")
        return [(node, ours[node.ori_name]) for node in nodes]

    def _sync(self):
        """Mirror the model's mode and BN buffers into the bounded module before each call.

        Buffers are re-bound to fresh copies rather than written in place: a train-mode BN
        forward saves them for backward, so an in-place write would break that graph.
        """
        module = self._bounded_module()
        for node, ours in self._buffer_pairs:
            node.buffer = ours.detach().clone()
        module.train(self.model.training)
        return module

    def _batch_statistics(self, stats_input: torch.Tensor) -> dict[str, torch.Tensor]:
        """Train-mode BN statistics of ``stats_input``, as running-statistics buffers by name.

        Read with hooks on one no-grad train-mode forward; the model's own buffers are put back.
        """
        stats, hooks = {}, []
        saved = {name: b.detach().clone() for name, b in self.model.named_buffers()}

        def record(name):
            def hook(module, inputs):
                h = inputs[0]
                dims = [0] + list(range(2, h.dim()))
                stats[f"{name}.running_mean"] = h.mean(dims)
                stats[f"{name}.running_var"] = h.var(dims, unbiased=False)  # what train-mode BN divides by

            return hook

        for name, m in self.model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                hooks.append(m.register_forward_pre_hook(record(name)))
        try:
            with torch.no_grad():
                self.model(stats_input)
        finally:
            for hook in hooks:
                hook.remove()
            with torch.no_grad():
                for name, b in self.model.named_buffers():
                    b.copy_(saved[name])
        return stats

    def _frozen_statistics(self, module, stats_input: torch.Tensor) -> None:
        """Bound the eval-mode network whose BN statistics are those of ``stats_input``.

        This is what a train-mode bound means (the batch statistics are constants of the bounded
        function), written as an affine BN so that no auto_LiRPA version has to back-propagate
        through statistics: alpha-CROWN's many backward passes would share that graph
        (auto_LiRPA 0.7 then fails with "backward through the graph a second time").
        """
        stats = self._batch_statistics(stats_input)
        names = {id(b): name for name, b in self.model.named_buffers()}
        for node, ours in self._buffer_pairs:
            frozen = stats.get(names[id(ours)])
            if frozen is not None:
                node.buffer = frozen.detach().clone()
        module.eval()

    def _lirpa_margin_lower(
        self, box: InputBox, spec: torch.Tensor, method: str, stats_input: torch.Tensor | None
    ) -> torch.Tensor:
        lirpa = _auto_lirpa()
        module = self._sync()
        value = box.x_norm if stats_input is None else stats_input
        ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=box.lower_norm, x_U=box.upper_norm)
        bounded_x = lirpa.BoundedTensor(value, ptb)
        kwargs = dict(x=(bounded_x,), C=spec, method=_LIRPA_METHOD[method], bound_upper=False)
        if method == "alpha-CROWN":
            module.set_bound_opts({"optimize_bound_args": {"iteration": 20, "lr_alpha": 0.1}, "verbosity": 0})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.model.training and method == "alpha-CROWN":
                self._frozen_statistics(module, value)  # evaluation only: no gradient is wanted here
            elif self.model.training:
                # 0.3's compute_bounds does not forward first, so train-mode BN would use the
                # statistics of whatever batch was forwarded last; forward the stats batch now
                # (with its graph: the training losses differentiate through the statistics).
                module(bounded_x)
            try:
                lower, _ = module.compute_bounds(**kwargs)
            except (RuntimeError, ValueError, TypeError, AssertionError, NotImplementedError) as err:
                raise UnsupportedModelError(
                    f"auto_LiRPA {'.'.join(map(str, _VERSION or ()))} failed to compute {method} bounds for "
                    f"{type(self.model).__name__} in {'train' if self.model.training else 'eval'} mode "
                    f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                    "bound it in eval mode or with another method"
                ) from err
        return lower

    # -- public API --------------------------------------------------------------------
    def margin_lower(
        self, box: InputBox, y: torch.Tensor, method: str = "IBP", stats_input: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Lower bounds of the margins z_y − z_j (j ≠ y) over ``box``: ``[B, K-1]``.

        Args:
            box: the normalised, clipped input box.
            y: labels ``[B]``.
            method: one of ``METHODS``. IBP and CROWN-IBP are differentiable (training);
                CROWN and alpha-CROWN are meant for evaluation.
            stats_input: the batch whose statistics train-mode BN uses (default: box centre).
        """
        if method not in METHODS:
            raise UnsupportedModelError(f"unknown bound method {method!r}; choose one of {', '.join(METHODS)}")
        num_classes = self.model[-1].out_features if isinstance(self.model, nn.Sequential) else None
        spec = margin_matrix(y, num_classes or self._num_outputs(box))
        if method == "IBP" and self.native_ibp:
            return self.ibp_trace(box, y, stats_input).lower
        return self._lirpa_margin_lower(box, spec, method, stats_input)

    def ibp_trace(
        self,
        box: InputBox,
        y: torch.Tensor,
        stats_input: torch.Tensor | None = None,
        keep_relu_inputs: bool = False,
        track_running_stats: bool = False,
        keep_head_input: bool = False,
    ) -> interval.IntervalTrace:
        """IBP margin bounds plus the logits at ``stats_input`` and the ReLU-input bounds.

        One pass gives all three on the native path; this is what the training losses and
        the warm-up regularisers use. ``trace.stats_out`` are logits ``[B, K]`` (not margins).
        With ``track_running_stats`` the pass counts as the model's train-mode forward on
        ``stats_input`` (BN running statistics move once, as they would in ``model(stats_input)``).
        With ``keep_head_input`` the trace also holds the IBP box of the penultimate features.
        """
        if not self.native_ibp:
            raise UnsupportedModelError(
                f"{type(self.model).__name__} is not a plain Conv/Linear/BN/ReLU chain; "
                "use margin_lower() (auto_LiRPA) instead"
            )
        num_classes = self.model[-1].out_features
        spec = margin_matrix(y, num_classes)
        needs_stats = self.model.training or stats_input is not None
        stats = (box.x_norm if stats_input is None else stats_input) if needs_stats else None
        return interval.propagate(
            self.model,
            box.lower_norm,
            box.upper_norm,
            stats,
            spec=spec,
            keep_relu_inputs=keep_relu_inputs,
            track_running_stats=track_running_stats,
            keep_head_input=keep_head_input,
        )

    def _num_outputs(self, box: InputBox) -> int:
        was_training = self.model.training
        try:
            with torch.no_grad():
                return self.model.eval()(box.x_norm[:1]).shape[1]
        finally:
            self.model.train(was_training)


def wrap_model(model: nn.Module, in_shape, use_native_ibp: bool = True) -> BoundedNet:
    """Wrap ``model`` (inputs ``[B, *in_shape]``, normalised) for bounding."""
    return BoundedNet(model, in_shape, use_native_ibp=use_native_ibp)
