"""The asynchronous evaluator (``nasedu.parallel``): arrival out of order, failed trials,
pooled results equal to serial ones, shutdown, argument checks."""

from __future__ import annotations

import math
import os
import random
import time

import pytest
import torch

from nasedu.evaluate import ChildScorer, ChildTraining, Outcome
from nasedu.parallel import (
    AsyncEvaluator,
    Handle,
    ProcessPoolEvaluator,
    SerialEvaluator,
    is_failed,
)

SEED = 7


def toy_score(architecture: dict, step: int) -> Outcome:
    """A cheap stand-in for child training, importable by spawned workers.

    The reward mixes the architecture with a draw from the *global* RNG seeded from
    (SEED, step), as ``ChildTraining.evaluator`` seeds itself: a worker that reused an
    unseeded or shared RNG state would give a different reward.
    """
    time.sleep(architecture.get("sleep", 0.0))
    if architecture.get("raise"):
        raise RuntimeError("CUDA out of memory (simulated)")
    if architecture.get("die"):
        os._exit(3)  # the process vanishes, as under the kernel's OOM killer
    random.seed(SEED * 1_000_003 + step)
    reward = architecture["width"] / 100 + random.random()
    return Outcome(
        reward,
        0.0,
        {
            "pid": os.getpid(),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "threads": torch.get_num_threads(),
        },
    )


def collect(evaluator: AsyncEvaluator, **kwargs) -> list[tuple[Handle, Outcome]]:
    return list(evaluator.results(**kwargs))


@pytest.fixture(scope="module")
def pool():
    """Two CPU workers, both started (spawning imports torch: seconds on this machine)."""
    with ProcessPoolEvaluator(toy_score, workers=2) as evaluator:
        pids: set[int] = set()
        start = time.monotonic()
        while len(pids) < 2 and time.monotonic() - start < 60:
            for step in range(2):
                evaluator.submit({"width": 1, "sleep": 0.3}, step)
            pids |= {outcome.extra["pid"] for _, outcome in evaluator.results()}
        assert len(pids) == 2, "the second worker never started"
        yield evaluator


def test_serial_runs_lazily_in_submission_order():
    calls = []

    def fn(architecture, step):  # in-process: no need to pickle
        calls.append(step)
        return Outcome(float(architecture), 0.0)

    evaluator = SerialEvaluator(fn)
    handles = [evaluator.submit(a, step) for step, a in enumerate([3, 1, 2])]
    assert calls == [] and evaluator.pending() == 3
    arrived = []
    for handle, outcome in evaluator.results():
        arrived.append((handle, outcome.reward))
        if handle.step == 0:  # submitted while iterating: still yielded
            evaluator.submit(5, 3)
    assert [h for h, _ in arrived[:3]] == handles
    assert [r for _, r in arrived] == [3.0, 1.0, 2.0, 5.0]
    assert [h.step for h, _ in arrived] == [0, 1, 2, 3] and evaluator.pending() == 0
    assert arrived[0][0].architecture == 3


def test_pool_yields_results_as_they_finish(pool):
    slow = pool.submit({"width": 1, "sleep": 1.5}, 10)
    fast = [pool.submit({"width": 2}, step) for step in (11, 12)]
    assert pool.pending() == 3
    arrived = collect(pool)
    # One worker is busy with the slow child while the other does both fast ones.
    assert [h for h, _ in arrived] == [*fast, slow]
    costs = {h.step: o.cost for h, o in arrived}
    assert costs[10] >= 1.5 > costs[11]  # measured in the worker, per evaluation
    assert pool.pending() == 0


def test_pool_timeout_leaves_trials_pending(pool):
    handle = pool.submit({"width": 3, "sleep": 1.0}, 20)
    start = time.monotonic()
    assert collect(pool, timeout=0.1) == []
    assert time.monotonic() - start < 0.9 and pool.pending() == 1
    ((got, outcome),) = collect(pool)
    assert got == handle and not is_failed(outcome)


def test_raising_evaluation_fails_the_trial_and_the_search_goes_on(pool):
    bad = pool.submit({"width": 1, "raise": True}, 30)
    good = pool.submit({"width": 1}, 31)
    outcomes = dict(collect(pool))
    assert is_failed(outcomes[bad]) and math.isnan(outcomes[bad].reward)
    assert "RuntimeError: CUDA out of memory" in outcomes[bad].extra["error"]
    assert "toy_score" in outcomes[bad].extra["traceback"]
    assert not is_failed(outcomes[good]) and outcomes[good].reward > 0
    # The same worker processes go on serving trials.
    assert not is_failed(dict(collect_after(pool, {"width": 1}, 32))[32])


def collect_after(evaluator, architecture, step):
    evaluator.submit(architecture, step)
    return [(h.step, o) for h, o in evaluator.results()]


def test_pool_equals_serial(pool):
    pairs = [(4, 0.4), (1, 0.0), (3, 0.2), (2, 0)]
    architectures = [{"width": w, "sleep": s} for w, s in pairs]
    architectures.append({"width": 1, "raise": True})
    serial = SerialEvaluator(toy_score)
    for step, architecture in enumerate(architectures):
        serial.submit(architecture, step)
        pool.submit(architecture, step)
    by_step = {}
    for name, evaluator in (("serial", serial), ("pool", pool)):
        by_step[name] = {h.step: o for h, o in evaluator.results()}
    assert sorted(by_step["pool"]) == list(range(5))
    for step in range(4):
        assert by_step["pool"][step].reward == by_step["serial"][step].reward
    assert is_failed(by_step["pool"][4]) and is_failed(by_step["serial"][4])
    assert by_step["pool"][4].extra["error"] == by_step["serial"][4].extra["error"]
    # Different rewards per step: a worker that skipped the per-step seed would collide.
    assert len({by_step["serial"][step].reward for step in range(4)}) == 4


def test_cpu_workers_use_one_thread_and_no_gpu(pool):
    ((_, outcome),) = collect_after(pool, {"width": 1}, 40)
    assert outcome.extra["threads"] == 1
    assert outcome.extra["cuda_visible"] == os.environ.get("CUDA_VISIBLE_DEVICES")


def test_dead_worker_fails_its_trial_then_pool_recovers_and_close_stops_it():
    evaluator = ProcessPoolEvaluator(toy_score, workers=1)
    ((step, outcome),) = collect_after(evaluator, {"width": 1, "die": True}, 0)
    assert is_failed(outcome) and "worker process died" in outcome.extra["error"]
    ((step, outcome),) = collect_after(evaluator, {"width": 1}, 1)  # a fresh worker
    assert step == 1 and not is_failed(outcome)
    pid = outcome.extra["pid"]
    os.kill(pid, 0)  # alive: raises if not
    evaluator.submit({"width": 1, "sleep": 60}, 2)  # a long child that close() must end
    time.sleep(0.2)
    start = time.monotonic()
    with evaluator:  # the context manager closes it
        pass
    assert time.monotonic() - start < 10 and evaluator.pending() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ValueError, match="closed"):
        evaluator.submit({"width": 1}, 3)
    evaluator.close()  # idempotent


def local_fn(architecture, step):  # module level, picklable
    return Outcome(0.0, 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"workers": -2}, "workers must be"),
        ({"workers": 1.5}, "workers must be"),
        ({"devices": ["gpu0"]}, "unknown device"),
        ({"devices": "0"}, "non-empty list"),
        ({"devices": []}, "non-empty list"),
        ({"devices": ["999"]}, "devices"),
        ({"max_evaluations": 0}, "max_evaluations"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProcessPoolEvaluator(local_fn, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_gpu_device_without_gpu():
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        ProcessPoolEvaluator(local_fn, devices=["0"])


def test_unpicklable_fn_and_bad_submissions():
    with pytest.raises(ValueError, match="lambda or a closure"):
        ProcessPoolEvaluator(lambda a, s: Outcome(0.0, 0.0), workers=1)
    with pytest.raises(ValueError, match="callable"):
        SerialEvaluator(3)
    serial = SerialEvaluator(local_fn, max_evaluations=2)
    serial.submit({}, 1)
    with pytest.raises(ValueError, match="budget spent"):
        serial.submit({}, 2)
    with pytest.raises(ValueError, match="step"):
        serial.submit({}, -1)
    serial.close()
    assert serial.pending() == 0  # close discards what was not evaluated


def test_each_worker_gets_its_own_device_through_the_environment():
    """The GPU assignment, checked without a GPU: the device list is set after the
    constructor's CUDA check, and the toy reports the worker's CUDA_VISIBLE_DEVICES
    (it never initialises CUDA, so any string works)."""
    with ProcessPoolEvaluator(toy_score, workers=2) as evaluator:
        evaluator.devices = ["5", "GPU-fake"]
        seen: dict[int, str] = {}
        for step in range(6):  # 1 s each: both workers take trials
            evaluator.submit({"width": 1, "sleep": 1.0}, step)
        for _, outcome in evaluator.results():
            seen[outcome.extra["pid"]] = outcome.extra["cuda_visible"]
    assert sorted(seen.values()) == ["5", "GPU-fake"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_one_worker_per_gpu():
    devices = [str(i) for i in range(torch.cuda.device_count())]
    with ProcessPoolEvaluator(toy_score, devices=devices) as evaluator:
        assert evaluator.workers == len(devices)
        for step in range(len(devices)):
            evaluator.submit({"width": 1, "sleep": 1.0}, step)
        seen = {o.extra["cuda_visible"] for _, o in evaluator.results()}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    expected = set(visible.split(",")) if visible else set(devices)
    assert seen == expected


def test_real_child_training_pooled_equals_serial():
    """One real search step: tiny DARTS-space children trained on digits in 2 workers
    score exactly as ``ChildTraining.evaluator`` scores them in this process."""
    from nasedu import data, genotypes
    from nasedu.train import TrainConfig

    child = ChildTraining(
        C=4,
        layers=2,
        auxiliary=False,
        train=TrainConfig(
            epochs=1, batch_size=64, lr=0.1, augment=None, cutout=0, drop_path_prob=0.0
        ),
    )
    cells = [genotypes.load("DARTS_V2"), genotypes.load("ENAS")]
    with ProcessPoolEvaluator(
        ChildScorer(child, "digits", "cpu", SEED), workers=2
    ) as pool:
        for step, cell in enumerate(cells):
            pool.submit(cell, step)
        # The serial reference runs here while the workers start up.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in the workers: the same float reduction order
        try:
            score = child.evaluator(data.load("digits"), torch.device("cpu"), SEED)
            serial = [score(cell, step) for step, cell in enumerate(cells)]
        finally:
            torch.set_num_threads(threads)
        pooled = {h.step: o for h, o in pool.results()}
    for step, outcome in enumerate(serial):
        assert not is_failed(pooled[step])
        assert pooled[step].reward == outcome.reward
        assert pooled[step].extra["params"] == outcome.extra["params"]
        assert pooled[step].cost > 0
    assert all(0.0 <= o.reward <= 1.0 for o in serial)
