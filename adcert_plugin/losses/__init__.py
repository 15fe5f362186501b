"""Losses: every training objective is a plugin ``(ctx: LossContext, cfg) -> LossOutput`` in one registry.

registry.py  register_loss / create_loss / list_losses, and the ``adcert.losses`` entry points
base.py      LossOutput, lb_loss, kl_distill, the Loss class; context.py: LossContext
teacher.py   the frozen Teacher that distillation losses read
ibp.py crown_ibp.py pgd.py trades.py mtl_ibp.py cc_ibp.py exp_ibp.py sabr.py cc_dist.py ad_cert.py
             one file per loss: its config dataclass and function
"""

# Built-in losses register themselves on import (order is irrelevant).
from . import ad_cert, cc_dist, cc_ibp, crown_ibp, exp_ibp, ibp, mtl_ibp, pgd, sabr, trades  # noqa: F401
from .base import Loss, LossContext, LossOutput, kl_distill, lb_loss
from .registry import (
    ENTRY_POINT_GROUP,
    create_loss,
    describe_losses,
    list_losses,
    loss_config,
    loss_needs,
    register_loss,
    unregister_loss,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Loss",
    "LossContext",
    "LossOutput",
    "create_loss",
    "describe_losses",
    "kl_distill",
    "lb_loss",
    "list_losses",
    "loss_config",
    "loss_needs",
    "register_loss",
    "unregister_loss",
]
