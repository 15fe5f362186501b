"""adcert: certified training by adversarial distillation, on auto_LiRPA bounds."""

__version__ = "0.1.0"
