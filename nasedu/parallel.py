"""Asynchronous evaluation: many children trained at once, results taken as they finish
(chapter *NAS-RL*, "Children evaluated in parallel"; used again by *Hierarchical
evolution*, *NASBOT* and *Auto-Keras*).

Every search that trains children from scratch spends nearly all its time in those
trainings, and the papers ran them side by side. One small interface serves them all::

    with ProcessPoolEvaluator(ChildScorer(child, "digits", seed=0), workers=2) as pool:
        for step in range(2):                         # one child per worker
            pool.submit(strategy.ask(), step)
        for handle, outcome in pool.results():        # in order of arrival
            strategy.tell(handle.architecture, ...)   # e.g. a HistoryRecord
            if pool.submitted < budget:               # keep every worker busy
                pool.submit(strategy.ask(), pool.submitted)

``submit(architecture, step)`` returns a ``Handle`` at once; ``results()`` yields
``(handle, Outcome)`` pairs as evaluations finish, out of order, and also picks up
trials submitted while it runs; ``pending()`` counts what has not been yielded.

How the papers' set-ups map onto it:

* **NAS-RL** (Zoph & Le 2017, §3.2 "parallelism"): S parameter-server shards hold the
  controller's weights, K controller replicas each sample m children and train them in
  parallel, then send the gradient to the servers — reported as S = 20, K = 100, m = 8,
  so 800 children on 800 GPUs (``paper-settings.md`` §1: these numbers are UNVERIFIED
  secondary quotes). Here one controller plays all K replicas: it submits a round of
  m·K children, waits for all of them with ``results()``, and makes K REINFORCE
  updates of m children each (``nasedu.papers.nas_rl``); each pool worker is one of
  the 800 GPUs. The parameter servers are not
  needed with a single controller process (their job was to share the controller's
  weights between replicas).
* **Hierarchical evolution** (Liu et al. 2018): an asynchronous controller hands
  mutated architectures to free workers and adds each result to the population the
  moment it arrives (reported as 200 GPU workers; UNVERIFIED). That is the loop
  above: take one result, tell the population, submit one new child.
* **NASBOT / Auto-Keras**: asynchronous Bayesian optimisation — whenever a worker
  frees up, fit the GP to the results so far and submit the next maximiser of the
  acquisition function.

Backends: ``SerialEvaluator`` runs each evaluation in this process, in submission
order (deterministic, nothing to set up); ``ProcessPoolEvaluator`` runs them in spawned
worker processes, one per GPU (``CUDA_VISIBLE_DEVICES``) or per CPU slot;
``RayEvaluator`` runs them as Ray tasks, on this machine or on a cluster of many
(``pip install "nasedu[ray]"``; chapter *Hierarchical evolution*, "More than one
machine"): start the head with ``ray start --head``, join each other machine with
``ray start --address=HEAD_IP:6379``, and pass ``address="auto"`` on the head.

Determinism: an evaluation function seeds itself from ``(seed, step)`` (as
``ChildTraining.evaluator`` does), so each result is the same whichever backend or
worker ran it; only the order of arrival changes. A search that checkpoints should
store the trials still pending (their steps and architectures) and submit them again on
resume: their scores will be the ones an uninterrupted run gets.

Failures: an evaluation that raises (a CUDA out-of-memory error, a NaN loss) gives a
failed ``Outcome`` — reward NaN, ``extra["failed"] = True`` and the error — and the
search goes on (``nas-pitfalls.md``: "an OOM inside a candidate evaluation must mark
the trial failed, not kill the search"). A worker process that dies outright fails the
trials in flight with it, and the pool starts fresh workers.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import math
import multiprocessing
import os
import pickle
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    Future,
    ProcessPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from nasedu.evaluate import Outcome

EvaluationFn = Callable[[Any, int], Outcome]

# A CUDA_VISIBLE_DEVICES entry: an index, or a GPU / MIG instance UUID as nvidia-smi -L
# prints it.
_DEVICE = re.compile(r"\d+|(GPU|MIG)-[0-9A-Za-z-]+")


@dataclass(frozen=True)
class Handle:
    """A submitted trial: ``id`` counts submissions from 0; ``step`` is the search's
    index for it (its seed); ``architecture`` is what was submitted."""

    id: int
    step: int
    architecture: Any = field(compare=False, repr=False)


def is_failed(outcome: Outcome) -> bool:
    """Whether the evaluation behind ``outcome`` raised or its worker died."""
    return bool(outcome.extra.get("failed", False))


def failed_outcome(error: str, cost: float, details: str = "") -> Outcome:
    """The outcome of a trial that could not be scored: reward NaN, so it never looks
    like a good architecture, and the error kept for the history."""
    return Outcome(
        math.nan, cost, {"failed": True, "error": error, "traceback": details}
    )


def timed_call(fn: EvaluationFn, architecture: Any, step: int) -> Outcome:
    """Run ``fn(architecture, step)``; cost = the seconds it took here, in this process.

    Any ``Exception`` becomes a failed outcome instead of propagating: one bad child
    must not end a search of thousands (``KeyboardInterrupt`` still stops it).
    """
    start = time.perf_counter()
    try:
        outcome = fn(architecture, step)
    except Exception as error:
        outcome = failed_outcome(
            f"{type(error).__name__}: {error}", 0.0, traceback.format_exc()
        )
    cost = time.perf_counter() - start
    if is_failed(outcome):
        _release_gpu_memory()  # after the except block, so the traceback's tensors are gone
    return dataclasses.replace(outcome, cost=cost)


def _release_gpu_memory() -> None:
    # A CUDA OOM leaves the failed child's blocks in the caching allocator; free them so
    # the next child on this GPU starts with the whole card.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class AsyncEvaluator(abc.ABC):
    """Submit architectures now, collect their outcomes as they finish.

    Like ``nasedu.evaluate.Evaluator`` it owns the budget: with ``max_evaluations``
    set, submitting a step at or beyond it raises. Use it as a context manager (or call
    ``close``) so that worker processes end with the search.
    """

    def __init__(self, fn: EvaluationFn, max_evaluations: int | None = None):
        if not callable(fn):
            raise ValueError(
                f"fn must be callable as fn(architecture, step), got {fn!r}"
            )
        if max_evaluations is not None and (
            not _is_int(max_evaluations) or max_evaluations < 1
        ):
            raise ValueError(
                f"max_evaluations must be None or an integer >= 1, "
                f"got {max_evaluations!r}"
            )
        self.fn, self.max_evaluations = fn, max_evaluations
        self.submitted = 0
        self.closed = False

    def submit(self, architecture: Any, step: int) -> Handle:
        """Start evaluating ``architecture`` as the search's ``step``; returns at once."""
        if self.closed:
            raise ValueError(f"{type(self).__name__} is closed; create a new one")
        if not _is_int(step) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        if self.exhausted(step):
            raise ValueError(
                f"budget spent: {self.max_evaluations} evaluations allowed, "
                f"step {step} submitted"
            )
        handle = Handle(self.submitted, step, architecture)
        self.submitted += 1
        self._start(handle)
        return handle

    def exhausted(self, evaluations_done: int) -> bool:
        return (
            self.max_evaluations is not None
            and evaluations_done >= self.max_evaluations
        )

    @abc.abstractmethod
    def results(self, timeout: float | None = None) -> Iterator[tuple[Handle, Outcome]]:
        """Yield ``(handle, outcome)`` as evaluations finish, until none is pending.

        Trials submitted while iterating are included. With ``timeout`` (seconds) the
        iteration simply ends when the time is up; the trials still running stay
        pending for a later call. Breaking out early loses nothing either.
        """

    @abc.abstractmethod
    def pending(self) -> int:
        """Trials submitted whose outcome has not been yielded yet."""

    @abc.abstractmethod
    def _start(self, handle: Handle) -> None:
        """Begin (or queue) the evaluation of a new trial."""

    def close(self) -> None:
        """Discard the pending trials and stop the workers; idempotent."""
        self.closed = True

    def __enter__(self) -> AsyncEvaluator:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class SerialEvaluator(AsyncEvaluator):
    """Runs each trial in this process, in submission order, when ``results`` asks.

    The reference backend: deterministic, no processes, errors from the evaluation
    turned into failed outcomes exactly as the pool does.
    """

    def __init__(self, fn: EvaluationFn, max_evaluations: int | None = None):
        super().__init__(fn, max_evaluations)
        self._queue: collections.deque[Handle] = collections.deque()

    def _start(self, handle: Handle) -> None:
        self._queue.append(handle)

    def results(self, timeout: float | None = None) -> Iterator[tuple[Handle, Outcome]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        # An evaluation cannot be interrupted here, so the deadline is checked between them.
        while self._queue and (deadline is None or time.monotonic() < deadline):
            handle = self._queue.popleft()
            yield handle, timed_call(self.fn, handle.architecture, handle.step)

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._queue.clear()
        super().close()


class ProcessPoolEvaluator(AsyncEvaluator):
    """Evaluates trials in ``workers`` spawned processes on this machine.

    Args:
        fn: a picklable ``fn(architecture, step) -> Outcome``: a module-level function
            or an instance of a module-level class such as
            ``nasedu.evaluate.ChildScorer`` (not a lambda, a closure, or a function
            defined in a notebook — spawned workers import it by name).
        workers: number of worker processes; default one per device, or one per CPU
            slot without devices.
        devices: CUDA device indices (or GPU UUIDs) as strings, e.g. ``["0", "1"]``.
            Worker ``i`` sees only ``devices[i % len(devices)]`` (through
            ``CUDA_VISIBLE_DEVICES``, as its ``cuda:0``), so ``workers=4`` with two
            devices puts two workers on each GPU. None: CPU workers, one thread each.
        max_evaluations: the budget, as in ``AsyncEvaluator``.

    Raises:
        ValueError: ``workers < 1``, a malformed or absent device, or an ``fn`` that
            workers could not load.
    """

    def __init__(
        self,
        fn: EvaluationFn,
        workers: int | None = None,
        devices: list[str] | None = None,
        max_evaluations: int | None = None,
    ):
        super().__init__(fn, max_evaluations)
        _check_picklable(fn)
        self.devices = None if devices is None else _physical_devices(devices)
        if workers is None:
            workers = len(self.devices) if self.devices else _cpu_slots()
        if not _is_int(workers) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        self.workers = workers
        # CPU workers share the cores: one thread each, or N workers would oversubscribe
        # them N-fold. A GPU worker's CPU threads only feed its GPU.
        self.threads = max(1, _cpu_slots() // workers) if self.devices else 1
        self._executor: ProcessPoolExecutor | None = None
        # Each future with its trial and the executor that runs it (to tell a broken
        # pool from the fresh one that replaced it).
        self._futures: dict[Future, tuple[Handle, ProcessPoolExecutor]] = {}

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(
            "spawn"
        )  # fork + CUDA or threads is unsafe
        queue = None
        if self.devices:
            # Workers start one by one as work arrives; each takes the next device.
            queue = context.Queue()
            for i in range(self.workers):
                queue.put(self.devices[i % len(self.devices)])
        return ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self.fn, queue, self.threads),
        )

    def _start(self, handle: Handle) -> None:
        if self._executor is None:
            self._executor = self._new_executor()
        try:
            future = self._executor.submit(
                _evaluate_in_worker, handle.architecture, handle.step
            )
        except BrokenProcessPool:  # a worker died before this submission: start afresh
            self._restart(self._executor)
            self._executor = self._new_executor()
            future = self._executor.submit(
                _evaluate_in_worker, handle.architecture, handle.step
            )
        self._futures[future] = (handle, self._executor)

    def results(self, timeout: float | None = None) -> Iterator[tuple[Handle, Outcome]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._futures:
            remaining = (
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            done, _ = wait(
                list(self._futures), timeout=remaining, return_when=FIRST_COMPLETED
            )
            if not done:
                return
            # Trials finishing together are yielded by submission order, not set order.
            for future in sorted(done, key=lambda f: self._futures[f][0].id):
                if future not in self._futures:  # close() was called while iterating
                    return
                handle, executor = self._futures.pop(future)
                yield handle, self._outcome(future, executor)

    def _outcome(self, future: Future, executor: ProcessPoolExecutor) -> Outcome:
        try:
            return future.result()
        except (BrokenProcessPool, CancelledError) as error:
            # The process died (segfault, the kernel's OOM killer, os._exit): which trial
            # caused it is unknown, so every trial in flight on this pool fails with it.
            self._restart(executor)
            return failed_outcome(
                f"worker process died: {type(error).__name__}: {error}", 0.0
            )

    def _restart(self, executor: ProcessPoolExecutor | None) -> None:
        # Only the broken pool is replaced; a fresh one may already run newer trials.
        if executor is not None and executor is self._executor:
            executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def pending(self) -> int:
        return len(self._futures)

    def close(self) -> None:
        """Cancel queued trials, end running ones and wait until every worker exited."""
        executor, self._executor = self._executor, None
        self._futures.clear()
        super().close()
        if executor is None:
            return
        # shutdown() alone would wait for running children, possibly hours of training;
        # their results are discarded anyway (a resumed search submits them again).
        processes = list((executor._processes or {}).values())  # no public accessor
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        executor.shutdown(wait=True)


# --------------------------------------------------------------------------- workers
_WORKER_FN: EvaluationFn | None = None


def _init_worker(fn: EvaluationFn, devices: Any, threads: int) -> None:
    global _WORKER_FN
    if devices is not None:
        # Before anything initialises CUDA in this process, or the setting is ignored.
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get(timeout=60)
    import torch

    torch.set_num_threads(threads)
    _WORKER_FN = fn


def _evaluate_in_worker(architecture: Any, step: int) -> Outcome:
    return timed_call(_WORKER_FN, architecture, step)


# --------------------------------------------------------------------------- checks
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cpu_slots() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _check_picklable(fn: EvaluationFn) -> None:
    module = getattr(fn, "__module__", None) or type(fn).__module__
    main = sys.modules.get("__main__")
    if module == "__main__" and not getattr(main, "__file__", None):
        raise ValueError(
            f"fn {fn!r} is defined in a notebook or an interactive session; "
            f"spawned workers cannot import it. Define it in a module (e.g. "
            f"use nasedu.evaluate.ChildScorer) or use SerialEvaluator"
        )
    try:
        pickle.dumps(fn)  # our own object, serialised only to ship it to the workers
    except Exception as error:
        raise ValueError(
            f"fn {fn!r} cannot be sent to worker processes ({error}); use a "
            f"module-level function or an instance of a module-level class, "
            f"not a lambda or a closure"
        ) from None


def _physical_devices(devices: list[str]) -> list[str]:
    """Check ``devices`` and translate indices through this process's own
    ``CUDA_VISIBLE_DEVICES`` (index 0 of a process that sees "2,3" is GPU 2)."""
    if isinstance(devices, str) or not devices:
        raise ValueError(
            f"devices must be a non-empty list of strings such as ['0', '1'], "
            f"got {devices!r}"
        )
    bad = [d for d in devices if not isinstance(d, str) or not _DEVICE.fullmatch(d)]
    if bad:
        raise ValueError(
            f"unknown device(s) {bad}; valid: CUDA indices as strings ('0', "
            f"'1', ...) or GPU-/MIG- UUIDs from `nvidia-smi -L`"
        )
    import torch

    count = torch.cuda.device_count()
    indices = [int(d) for d in devices if d.isdigit()]
    if indices and max(indices) >= count:
        valid = (
            f"valid indices 0..{count - 1}" if count else "no CUDA device is visible"
        )
        raise ValueError(
            f"devices {devices}: {valid}; pass devices=None for CPU workers"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(devices)
    parent = [v.strip() for v in visible.split(",")]
    return [parent[int(d)] if d.isdigit() else d for d in devices]


def child_evaluator(
    child: Any,
    data,
    device,
    seed: int,
    workers: int = 0,
    devices: Any = None,
    max_evaluations: int | None = None,
) -> AsyncEvaluator:
    """The evaluator of a search that trains children from scratch: serial in this
    process (``workers = 0``), or ``workers`` processes that each load ``data`` by name
    (one per GPU of ``devices``, ``CUDA_VISIBLE_DEVICES``). A child scores the same
    either way (``nasedu.evaluate.ChildScorer``).

    Args:
        child: a child config with ``evaluator(data, device, seed)`` (e.g.
            ``nasedu.evaluate.ChildTraining``).
    """
    from nasedu.evaluate import ChildScorer

    if workers == 0:
        return SerialEvaluator(child.evaluator(data, device, seed), max_evaluations)
    worker_device = "auto" if devices else str(device)
    return ProcessPoolEvaluator(
        ChildScorer(child, data.name, worker_device, seed),
        workers=workers,
        devices=list(devices) if devices else None,
        max_evaluations=max_evaluations,
    )


# --------------------------------------------------------------------------- Ray
class RayEvaluator(AsyncEvaluator):
    """Evaluates trials as Ray tasks: the workers of a Ray cluster, or of a local Ray
    instance started here (chapter *Hierarchical evolution*, "More than one machine").

    A cluster is started outside Python::

        ray start --head --port=6379                 # on the head machine
        ray start --address=HEAD_IP:6379             # on every other machine

    and the search on the head connects with ``address="auto"``. Every machine needs
    the same Python environment (nasedu, torch) and its own copy of the dataset
    (``nasedu.data`` caches CIFAR-10 under the same path on each).

    Args:
        fn: ``fn(architecture, step) -> Outcome``; Ray serialises it with cloudpickle,
            so closures work, but everything it touches must exist on the workers.
        address: ``None`` starts a private local Ray instance (``num_cpus`` CPUs,
            no dashboard); ``"auto"`` or ``"HOST:PORT"`` connects to a
            running cluster (``ray.init(address=...)``). When Ray is already
            initialised in this process it is used as it is.
        num_cpus: CPUs of the local instance (``address=None`` only).
        cpus_per_trial, gpus_per_trial: resources each trial reserves; Ray schedules
            as many trials at once as the cluster has room for. With
            ``gpus_per_trial=1`` Ray sets ``CUDA_VISIBLE_DEVICES`` for each task.
        max_evaluations: the budget, as in ``AsyncEvaluator``.

    Raises:
        ValueError: Ray is not installed, or a resource count is negative.

    Failures are those of the other backends: an exception in ``fn`` gives a failed
    outcome (``timed_call`` runs inside the task); a worker that dies (``os._exit``,
    the OOM killer, a lost node) fails its trial, Ray starts a new worker, and the
    search goes on. Tasks are never retried: a retry would hide the failure and, for
    a deterministic crash, fail again.
    """

    def __init__(
        self,
        fn: EvaluationFn,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        max_evaluations: int | None = None,
    ):
        super().__init__(fn, max_evaluations)
        try:
            import ray
        except ImportError:
            raise ValueError(
                'the Ray backend needs Ray: pip install "nasedu[ray]" '
                "(or pip install ray)"
            ) from None
        if cpus_per_trial < 0 or gpus_per_trial < 0:
            raise ValueError(
                f"cpus_per_trial and gpus_per_trial must be >= 0, got "
                f"{cpus_per_trial}, {gpus_per_trial}"
            )
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if address is None:
                # A private instance: no address is published and nothing joins it.
                # (Ray maps 127.0.0.1 to the node's IP, so it cannot be pinned to
                # loopback; its token authentication keeps strangers out.)
                ray.init(
                    num_cpus=num_cpus or _cpu_slots(),
                    include_dashboard=False,
                    log_to_driver=False,
                )
            else:
                ray.init(address=address, log_to_driver=False)
        available = ray.cluster_resources()
        for name, need in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
            if need > available.get(name, 0):
                # Ray would queue such trials forever instead of failing.
                raise ValueError(
                    f"each trial asks for {need} {name}(s) but the Ray cluster has "
                    f"{available.get(name, 0):g}; lower the per-trial request (e.g. "
                    f"gpus_per_trial=0 for CPU children) or add machines"
                )
        self._task = ray.remote(max_retries=0)(_evaluate_in_ray).options(
            num_cpus=cpus_per_trial, num_gpus=gpus_per_trial
        )
        self._threads = max(1, int(cpus_per_trial))
        self._fn_ref = ray.put(fn)  # shipped to the object store once, not per trial
        self._refs: dict[Any, Handle] = {}

    def _start(self, handle: Handle) -> None:
        ref = self._task.remote(
            self._fn_ref, handle.architecture, handle.step, self._threads
        )
        self._refs[ref] = handle

    def results(self, timeout: float | None = None) -> Iterator[tuple[Handle, Outcome]]:
        ray = self._ray
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._refs:
            remaining = (
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            ready, _ = ray.wait(
                list(self._refs), num_returns=1, timeout=remaining, fetch_local=True
            )
            if not ready:
                return
            # Take every trial that is ready now, by submission order.
            ready, _ = ray.wait(
                list(self._refs), num_returns=len(self._refs), timeout=0
            )
            for ref in sorted(ready, key=lambda r: self._refs[r].id):
                if ref not in self._refs:  # close() was called while iterating
                    return
                handle = self._refs.pop(ref)
                yield handle, self._outcome(ref)

    def _outcome(self, ref: Any) -> Outcome:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as error:
            # The worker process or its node died: only this trial is lost.
            return failed_outcome(
                f"Ray worker failed: {type(error).__name__}: {error}", 0.0
            )

    def pending(self) -> int:
        return len(self._refs)

    def close(self) -> None:
        """Cancel the trials in flight; shut Ray down if this evaluator started it."""
        refs, self._refs = list(self._refs), {}
        super().close()
        if not self._ray.is_initialized():
            return
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished or its worker already gone
                pass
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False


def _evaluate_in_ray(
    fn: EvaluationFn, architecture: Any, step: int, threads: int
) -> Outcome:
    # Runs in a Ray worker: as many torch threads as CPUs the trial reserved, or N
    # trials on one machine would oversubscribe its cores N-fold.
    import torch

    torch.set_num_threads(threads)
    return timed_call(fn, architecture, step)
