"""Benchmarks: speed and memory measured and reported, never asserted in tests.

``nasedu bench NAME [--device auto] [--out FILE]`` prints a JSON report and writes it
to ``FILE``. Papers register their own benchmarks (e.g. DARTS's search steps); the
foundation provides ``train``: steps of the DARTS evaluation network at paper shapes.
``scaling`` times a computation at growing sizes and fits its growth exponent (the
slope of log time against log size), as the Auto-Keras and NASBOT benchmarks do for
their distances, GP fits and acquisition optimisations.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from nasedu.registry import Registry

BENCHMARKS: Registry[Callable[..., dict[str, Any]]] = Registry("benchmark")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: CUDA allocator peak on GPUs, process max RSS on CPUs."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def timed(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1
) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def environment(device: torch.device) -> dict[str, Any]:
    """Where a benchmark ran, recorded beside its numbers."""
    return {
        "device": str(device),
        "torch": torch.__version__,
        "hardware": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads"
        ),
    }


@BENCHMARKS.register("train")
def bench_train(
    device: torch.device,
    batch_size: int = 96,
    C: int = 36,
    layers: int = 20,
    repeats: int = 3,
) -> dict[str, Any]:
    """One training step (forward, backward, SGD) of DARTS_V2's evaluation network at the
    paper's shapes (DARTS App. A.2.1: batch 96, C = 36, 20 cells, 32×32 inputs), with the
    engine's GPU settings (AMP, channels_last) on CUDA."""
    from nasedu.genotypes import load
    from nasedu.networks import NetworkCIFAR
    from nasedu.train import TrainConfig, train_step

    model = NetworkCIFAR(load("DARTS_V2"), C=C, layers=layers).to(device)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    step = train_step(model, TrainConfig(), device)
    seconds = timed(lambda: step(x, y, 0.2), device, repeats)
    return {
        "benchmark": "train",
        "batch_size": batch_size,
        "C": C,
        "layers": layers,
        "seconds_per_step": seconds,
        "images_per_second": batch_size / seconds,
        "peak_memory_mb": peak_memory_mb(device),
        **environment(device),
    }


# --------------------------------------------------------------------------- scaling
def growth_exponent(sizes: list[float], seconds: list[float]) -> float:
    """The slope of log(seconds) against log(size), fitted by least squares: time grows
    like size^slope (1: linear, 2: quadratic, 3: cubic)."""
    if len(sizes) < 2 or len(sizes) != len(seconds):
        raise ValueError(
            f"need two or more (size, seconds) pairs, got {len(sizes)} sizes and "
            f"{len(seconds)} times"
        )
    x = np.log(np.asarray(sizes, dtype=float))
    y = np.log(np.maximum(np.asarray(seconds, dtype=float), 1e-9))
    return float(np.polyfit(x, y, 1)[0])


def scaling(
    make: Callable[[int], Callable[[], Any]], sizes: list[int], repeats: int = 3
) -> dict[str, Any]:
    """Time ``make(size)()`` at each size (median of ``repeats``, after ``make`` has
    built its inputs, which is not timed) and fit the growth exponent."""
    cpu = torch.device("cpu")
    seconds = [timed(make(n), cpu, repeats, warmup=0) for n in sizes]
    return {
        "sizes": list(sizes),
        "seconds": seconds,
        "exponent": growth_exponent(sizes, seconds),
    }


def scaling_table(title: str, results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of ``scaling`` results: one block per measured quantity."""
    lines = [title]
    for name, r in results.items():
        lines.append(f"  {name} (time ~ size^{r['exponent']:.2f})")
        lines.append(f"    {'size':>8}  {'seconds':>12}")
        for n, s in zip(r["sizes"], r["seconds"], strict=True):
            lines.append(f"    {n:>8}  {s:>12.6f}")
    return "\n".join(lines)
