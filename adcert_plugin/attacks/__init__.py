"""Attacks: PGD inside an InputBox, run on the BN-folded eval network.

pgd.py      AttackConfig, pgd_attack, attack_objective
folding.py  eval-mode BN as an affine map; folded_eval_forward (what PGD runs)
"""

from .folding import bn_scale_shift, folded_eval_forward
from .pgd import AttackConfig, attack_objective, pgd_attack

__all__ = ["AttackConfig", "attack_objective", "bn_scale_shift", "folded_eval_forward", "pgd_attack"]
