"""Where the complete verifier's samples run: in this process, or one Ray task per sample.

Without a Ray session (adcert_plugin/parallel.py) each request goes to ``verifier.verify`` here,
as one call (the verifier runs ``request.jobs`` samples at once itself). With one open (the
CLI opens it for ``--jobs N`` > 1 or ``--ray-address``; a study's runs are Ray tasks already),
every sample is a Ray task of its own (a bulk verifier's requests, :func:`~.verifiers.is_bulk`,
stay whole and run here: one process over many samples is its fast path): ``request.jobs`` in
flight, one CPU each (one GPU when the verifier's device is gpu), the network put in Ray's
object store once. A task whose worker or node dies is run again; every answer comes back as
soon as it is there, so the caller keeps it (complete.jsonl) before the next one finishes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from .. import parallel
from .verifiers import CompleteAnswer, CompleteRequest, CompleteVerifier


def verify_requests(
    verifier: CompleteVerifier, requests: Iterable[CompleteRequest], window: int = 1, bulk: bool = False
) -> Iterator[tuple[CompleteRequest, list[CompleteAnswer]]]:
    """Yield ``(request, answers)``: each request whole, or on Ray each sample as its own request.

    ``window``: samples in flight on Ray (``--jobs``). ``bulk``: the verifier's requests stay whole
    and run here (it parallelises over ``request.jobs`` processes itself).
    """
    if not parallel.active() or bulk:
        for request in requests:
            yield request, list(verifier.verify(request))
        return
    sent: dict[int, CompleteRequest] = {}
    for index, answers, _node in parallel.run_tasks(_tasks(verifier, requests, sent), window=window):
        yield sent.pop(index), answers


def _tasks(
    verifier: CompleteVerifier, requests: Iterable[CompleteRequest], sent: dict[int, CompleteRequest]
) -> Iterator[parallel.Task]:
    """One task per sample; ``sent[index]`` keeps its request (with the network) for the caller's checks."""
    shared = None
    for request in requests:
        if shared is None:
            shared = parallel.put(request.model)  # once: every sample's task reads the same network
        gpus = 1.0 if str(request.options.get("device", "cpu")) in ("gpu", "cuda") else 0.0
        for p, index in enumerate(request.indices):
            single = dataclasses.replace(
                request, x=request.x[p : p + 1], y=request.y[p : p + 1], indices=(index,), jobs=1
            )
            sent[int(index)] = single
            yield parallel.Task(
                int(index),
                _verify_one,
                (verifier, shared, dataclasses.replace(single, model=None)),
                name=f"adcert-verify sample {index}",
                num_gpus=gpus,
            )


def _verify_one(verifier: CompleteVerifier, model, request: CompleteRequest) -> list[CompleteAnswer]:
    """Runs in a Ray worker: one sample's answers."""
    return list(verifier.verify(dataclasses.replace(request, model=model)))
