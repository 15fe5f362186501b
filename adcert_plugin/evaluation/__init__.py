"""Evaluation: the certification cascade (clean -> PGD -> IBP -> ... -> alpha-CROWN -> complete) and its report.

cascade.py    evaluate(checkpoint, ...) -> EvalReport
complete.py   the last stage: undecided samples to a complete verifier; complete.jsonl
verifiers.py  CompleteRequest / CompleteAnswer / CompleteVerifier and the adcert.verifiers registry
shards.py     merge_shards(): the shard folders of a --shard K/N run into one report
report.py     EvalReport, samples.jsonl rows and the summary recounted from them
teacher_agreement.py  is the teacher right at a distilled student's training attack points?
"""

from .cascade import DEFAULT_ATTACK, check_eps, check_range, evaluate, pgd_margins, resolve_methods, select_indices
from .complete import CompleteConfig, parse_shard
from .report import SAMPLE_KEYS, EvalReport, format_table, read_samples, summarize
from .shards import merge_shards
from .teacher_agreement import TeacherAgreement, teacher_at_attack_points
from .verifiers import (
    CompleteAnswer,
    CompleteRequest,
    CompleteVerifier,
    create_verifier,
    list_verifiers,
    register_verifier,
    unregister_verifier,
)

__all__ = [
    "DEFAULT_ATTACK",
    "SAMPLE_KEYS",
    "CompleteAnswer",
    "CompleteConfig",
    "CompleteRequest",
    "CompleteVerifier",
    "EvalReport",
    "TeacherAgreement",
    "check_eps",
    "check_range",
    "create_verifier",
    "evaluate",
    "format_table",
    "list_verifiers",
    "merge_shards",
    "parse_shard",
    "pgd_margins",
    "read_samples",
    "register_verifier",
    "resolve_methods",
    "select_indices",
    "summarize",
    "teacher_at_attack_points",
    "unregister_verifier",
]
