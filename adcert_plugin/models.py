"""Model zoo: CNN7 (Shi et al.), a small CNN and an MLP for CPU runs.

Every model is an ``nn.Sequential`` whose last module is the final ``nn.Linear``: the
penultimate (post-ReLU, pre-final-linear) features are ``model[:-1](x)``. That one
convention serves feature distillation, ONNX export and the bound seam alike.
Models consume *normalised* inputs; normalisation lives outside the network (formats.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import UnknownModelError

_MODELS: dict[str, Callable[..., nn.Sequential]] = {}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture name and keyword arguments (width, linear_size, ...)."""

    name: str = "small-cnn"
    kwargs: dict = field(default_factory=dict)


def register_model(name: str):
    """Register ``fn(in_shape, num_classes, **kwargs) -> nn.Sequential`` under ``name``."""

    def wrap(fn):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, in_shape: tuple[int, int, int], num_classes: int, **kwargs) -> nn.Sequential:
    """Build a registered model for inputs of ``in_shape`` = (C, H, W)."""
    if name not in _MODELS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    try:
        return _MODELS[name](tuple(in_shape), int(num_classes), **kwargs)
    except TypeError as err:
        raise UnknownModelError(f"model {name!r} does not take {sorted(kwargs)}: {err}") from err


def split_head(model: nn.Sequential) -> tuple[nn.Sequential, nn.Linear]:
    """(body, head): body(x) are the penultimate features, head the final linear layer."""
    if not isinstance(model, nn.Sequential) or not isinstance(model[-1], nn.Linear):
        raise UnknownModelError("adcert models are nn.Sequential ending in nn.Linear; got " + type(model).__name__)
    return model[:-1], model[-1]


def penultimate_features(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Post-ReLU, pre-final-linear activations ``[B, F]``."""
    body, _ = split_head(model)
    return body(x)


def feature_width(model: nn.Sequential) -> int:
    return split_head(model)[1].in_features


def ibp_init(model: nn.Module) -> nn.Module:
    """IBP initialisation (Shi et al. 2021): N(0, 2π/fan_in²) for every Conv/Linear weight but the last.

    Biases and BN parameters are untouched. The last layer keeps its default init.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers[:-1]:
        fan_in = layer.weight[0].numel()
        std = math.sqrt(2 * math.pi / fan_in**2)
        with torch.no_grad():
            layer.weight.normal_(0.0, std)
    return model


def _conv_block(c_in: int, c_out: int, stride: int, bn: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    return layers + [nn.ReLU()]


def _out_hw(size: int, strides: list[int]) -> int:
    for s in strides:
        size = (size + 2 - 3) // s + 1
    return size


@register_model("cnn7")
def cnn7(in_shape, num_classes, width: int = 64, linear_size: int = 512, bn: bool = True) -> nn.Sequential:
    """CNN7 of Shi et al. (``cnn_7layer_bn2``): BN after every layer but the last.

    For 64×64 inputs the fifth conv has stride 2 (``cnn_7layer_bn_imagenet``).
    """
    c, h, w = in_shape
    strides = [1, 1, 2, 1, 2 if h >= 64 else 1]
    chans = [c, width, width, 2 * width, 2 * width, 2 * width]
    layers: list[nn.Module] = []
    for i, s in enumerate(strides):
        layers += _conv_block(chans[i], chans[i + 1], s, bn)
    flat = chans[-1] * _out_hw(h, strides) * _out_hw(w, strides)
    layers += [nn.Flatten(), nn.Linear(flat, linear_size)]
    if bn:
        layers.append(nn.BatchNorm1d(linear_size))
    layers += [nn.ReLU(), nn.Linear(linear_size, num_classes)]
    return nn.Sequential(*layers)


@register_model("small-cnn")
def small_cnn(in_shape, num_classes, width: int = 16, linear_size: int = 100, bn: bool = False) -> nn.Sequential:
    """Two strided convs and a hidden linear layer: trains on CPU in minutes, verifies in seconds."""
    c, h, w = in_shape
    layers = [nn.Conv2d(c, width, 4, stride=2, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(width))
    layers += [nn.ReLU(), nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(2 * width))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(2 * width * (h // 4) * (w // 4), linear_size)]
    if bn:
        layers.append(nn.BatchNorm1d(linear_size))
    layers += [nn.ReLU(), nn.Linear(linear_size, num_classes)]
    return nn.Sequential(*layers)


@register_model("mlp")
def mlp(in_shape, num_classes, hidden: tuple[int, ...] = (100, 100)) -> nn.Sequential:
    """Fully connected ReLU network on the flattened input."""
    sizes = [math.prod(in_shape), *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], num_classes))
    return nn.Sequential(*layers)
