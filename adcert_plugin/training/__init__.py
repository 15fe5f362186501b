"""Training: the run config, the one loop for every loss, and what a run writes.

config.py        frozen dataclasses, strict YAML/JSON files (strict.py: the builder)
presets.py       named presets (paper settings, small CPU runs)
layering.py      defaults < preset < file < flags < --set -> TrainConfig
schedules.py     eps ramp, regulariser weight, lr: pure functions of the step
regularizers.py  warm-up regularisers, L1
teacher.py       load_teacher: a frozen Teacher from a checkpoint
trainer.py       train(cfg) -> RunResult
allocator.py     reuse_freed_memory: glibc keeps a CPU step's freed blocks for the next step
outcome.py       RunResult (the summary in words), best_criterion (best.pt), ramp_reached
rundir.py        the run directory and the rules for reusing one
checkpoint.py    save/load with torch.load(weights_only=True)
distributed.py   torchrun / DistributedDataParallel helpers
"""

from .checkpoint import arch_record, load_model, read_checkpoint, save_checkpoint
from .config import (
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RecipeConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    read_config_file,
    save_config,
)
from .distributed import pick_device
from .layering import build_config, parse_sets
from .outcome import RunResult
from .presets import get_preset, list_presets, register_preset
from .rundir import RunDir
from .teacher import load_teacher
from .trainer import train

__all__ = [
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RecipeConfig",
    "RunDir",
    "RunResult",
    "ScheduleConfig",
    "TrainConfig",
    "arch_record",
    "build_config",
    "config_from_dict",
    "get_preset",
    "list_presets",
    "load_config",
    "load_model",
    "load_teacher",
    "parse_sets",
    "pick_device",
    "read_checkpoint",
    "read_config_file",
    "register_preset",
    "save_checkpoint",
    "save_config",
    "train",
]
