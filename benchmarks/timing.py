"""Round-robin timing shared by the benchmark scripts.

Closures are run one after another per round, so load drifting on a shared machine hits them
alike; ratios are taken within a round (paired) and summarised by their median and quartiles.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def round_robin(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    steps_per_turn: int = 1,
    sync: Callable[[], object] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds of each closure per round, after one warm-up call of each (tracing, allocator, kernels).

    In a round each closure runs ``steps_per_turn`` times in a row and the last run is timed.
    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before and after the timed run.
    """
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            for _ in range(steps_per_turn - 1):
                fn()
            sync()
            start = time.perf_counter()
            fn()
            sync()
            samples[name].append(time.perf_counter() - start)
    return samples


def medians(samples: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def paired_ratio(samples: dict[str, list[float]], name: str, base: str) -> tuple[float, float, float]:
    """Median, 25th and 75th percentile over rounds of samples[name][r] / samples[base][r]."""
    ratios = sorted(a / b for a, b in zip(samples[name], samples[base]))
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return statistics.median(ratios), quartiles[0], quartiles[2]
