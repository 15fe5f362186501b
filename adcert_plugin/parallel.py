"""Ray, in one place: the study's training runs and the complete verifier's instances as Ray tasks.

Nothing else in adcert imports ``ray``. Two calls:

- :func:`session`: Ray for a block of work. A session already open in this process (a caller's,
  or this process is a Ray worker) is used as it is; else ``address`` (or ``$RAY_ADDRESS``) joins
  a running cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); else a local Ray instance
  starts, sized to ``num_cpus``, and stops at the end of the block. The dashboard is off; Ray's
  logs and temp files go to Ray's session folder in the system temp (``/tmp/ray``), never the
  current folder.
- :func:`run_tasks`: run :class:`Task` s on the open session and yield each result as it finishes,
  with the node that computed it. A task whose worker or node dies is run again (``RETRIES``
  times): the study's runs resume from their last epoch, a verifier instance reruns. An
  exception raised by the task itself is not retried; it is raised here as it was raised there.
  Leaving the loop early (an error, Ctrl-C, SIGTERM) stops the tasks still running, so no
  worker goes on training for a driver that is gone: the session this module opened ends, and
  Ray ends the job's workers with it (a forced ``ray.cancel`` racing a task that is just
  finishing crashes Ray 2.60's driver, so it is not used); inside a session of someone else's
  (a caller's, or a Ray worker's) the tasks are cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import AdcertError, ConfigError

log = logging.getLogger(__name__)

ADDRESS_ENV = "RAY_ADDRESS"
_OWN: list[bool] = []  # one entry per open session(): True where this module started or joined Ray
RETRIES = 3  # a task whose worker or node dies runs again this often before the study gives up
INSTALL_HINT = "pip install 'ray>=2.9' (make venv installs it)"


class TaskLost(AdcertError):
    """A task's worker or node died more often than ``RETRIES``."""


@dataclass(frozen=True)
class Task:
    """``fn(*args)`` as one Ray task, with the resources it holds while it runs.

    ``name`` shows in Ray's process titles (``ray::<name>``) and logs.
    """

    key: Any
    fn: Callable
    args: tuple = ()
    name: str = "adcert"
    num_cpus: float = 1.0
    num_gpus: float = 0.0


def active() -> bool:
    """A Ray session is open in this process (a driver's, or this process is a Ray worker)."""
    ray = sys.modules.get("ray")  # importing ray costs seconds: never for a caller that has not
    return ray is not None and ray.is_initialized()


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"Ray is not installed: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def session(address: str | None = None, num_cpus: int | None = None):
    """Ray for the block (see the module docstring); yields the address joined, or None for a local one.

    Raises:
        ConfigError: Ray is not installed, or the cluster at ``address`` cannot be reached.
    """
    if active():
        _OWN.append(False)
        try:
            yield None
        finally:
            _OWN.pop()
        return
    ray = _ray()
    address = address or os.environ.get(ADDRESS_ENV) or None
    options = {"include_dashboard": False, "log_to_driver": False}
    main = threading.current_thread() is threading.main_thread()
    on_term = signal.getsignal(signal.SIGTERM) if main else None
    try:
        if address:
            log.info("joining the Ray cluster at %s", address)
            ray.init(address=address, **options)
        else:
            log.info("starting a local Ray instance with %s CPUs", num_cpus or "all")
            ray.init(address="local", num_cpus=num_cpus, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"cannot start or join Ray at {address or 'a local instance'}: {err}; check "
            "--ray-address / $RAY_ADDRESS (`ray status` on the head node shows its address)"
        ) from err
    if on_term not in (None, signal.SIG_DFL):
        signal.signal(signal.SIGTERM, on_term)  # ray.init replaced the caller's handler (the CLI's) with its own
    _OWN.append(True)
    try:
        yield address
    finally:
        _OWN.pop()
        ray.shutdown()  # ends the job's tasks and workers (and the local instance this started)


def node_label() -> str:
    """Where this process runs: ``host`` outside Ray, ``host node <id>`` in a Ray worker.

    The node id tells apart two Ray nodes on one host (a loopback cluster, several per machine).
    """
    host = socket.gethostname()
    if not active():
        return host
    node = sys.modules["ray"].get_runtime_context().get_node_id()
    return f"{host} node {node[:8]}"


def put(value: Any):
    """``value`` in Ray's object store, once; a task given the reference receives the value itself."""
    return _ray().put(value)


def _call(fn: Callable, *args) -> tuple[Any, str]:
    """Runs in the worker: the task's result, and the node that computed it."""
    return fn(*args), node_label()


def run_tasks(tasks: Iterable[Task], window: int | None = None) -> Iterator[tuple[Any, Any, str]]:
    """Run ``tasks`` on the open session; yield ``(key, result, node)`` as each finishes.

    ``window``: at most this many tasks submitted at once (None: all); ``tasks`` is read lazily,
    so a long list of verifier instances never sits in Ray's object store all at once.

    Raises:
        whatever a task raised (the original exception); TaskLost when a task's worker died
        more than ``RETRIES`` times.
    """
    ray = _ray()
    remote = ray.remote(_call)
    pending: dict = {}
    todo = iter(tasks)
    try:
        while True:
            while window is None or len(pending) < window:
                task = next(todo, None)
                if task is None:
                    break
                ref = remote.options(
                    name=task.name,
                    num_cpus=task.num_cpus,
                    num_gpus=task.num_gpus,
                    max_retries=RETRIES,
                    retry_exceptions=False,
                ).remote(task.fn, *task.args)
                pending[ref] = task
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            result, node = _result(ray, ready[0], task)
            yield task.key, result, node
    finally:
        if pending and not (_OWN and _OWN[-1]):  # our own session's end stops them (module docstring)
            for ref in pending:
                ray.cancel(ref)


def _result(ray, ref, task: Task) -> tuple[Any, str]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None  # as the task raised it: the CLI's one-line errors hold
        raise
    except ray.exceptions.RaySystemError as err:  # the worker could not even unpickle the task
        raise ConfigError(
            f"{task.name}: a Ray worker could not load the task ({err.args[0] if err.args else err}); "
            "every node needs adcert installed at the same path (and the same PYTHONPATH)"
        ) from err
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as err:
        raise TaskLost(
            f"{task.name}: its Ray worker died {RETRIES + 1} times ({type(err).__name__}); "
            "see the worker logs in Ray's session folder (/tmp/ray/session_latest/logs)"
        ) from err
