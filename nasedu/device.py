"""Devices, mixed precision and seeds: the one place nasedu picks where code runs
(chapter *Introduction*, "Running on a GPU").

Every chapter, the CLI and the training engine call :func:`resolve_device` with the
reader's ``device`` parameter; nothing else in the package looks for a GPU. The engine
asks :func:`amp_dtype` which autocast dtype to use: bfloat16 on GPUs that have it in
hardware (Ampere and later), float16 with a gradient scaler on older ones such as
Colab's free T4, and full precision on CPUs.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any

import numpy as np
import torch

VALID_DEVICES = "auto, cpu, cuda, cuda:N"


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """The torch device for a ``--device`` value.

    Args:
        spec: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``; a ``torch.device`` is checked the same way.

    Raises:
        ValueError: CUDA asked for but absent, ``cuda:N`` beyond the visible devices, or
            a spec that is none of the valid forms.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise ValueError(f"unknown device {str(spec)!r}; valid forms: {VALID_DEVICES}")
    if not torch.cuda.is_available():
        raise ValueError(
            f"CUDA was requested (--device {text}) but torch.cuda.is_available() "
            f"is False; use --device cpu or auto"
        )
    if match.group(1) is None:
        return torch.device("cuda")
    index, count = int(match.group(1)), torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"--device {text}: only {count} CUDA device(s) are visible, so the "
            f"valid indices are 0..{count - 1}"
        )
    return torch.device("cuda", index)


def amp_dtype(device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype the training engine uses on ``device``.

    bfloat16 where the GPU supports it natively (compute capability 8.0 or newer; it
    needs no loss scaling), float16 on older GPUs (the engine then adds a
    ``GradScaler``), None on CPUs, which train in float32. Native support is checked
    by capability because ``torch.cuda.is_bf16_supported()`` also answers True for the
    slow emulated bfloat16 of older cards.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU).

    Args:
        seed: a non-negative integer.
        deterministic: ask PyTorch for deterministic kernels (warning, not failing, where
            an op has none) and turn off cuDNN autotuning. Otherwise cuDNN may pick the
            fastest kernel, as the DARTS code does (``cudnn.benchmark = True``), and
            repeated GPU runs can differ slightly (nas-pitfalls §3, item 1).

    Raises:
        ValueError: a negative or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # NumPy's legacy seeder takes 32 bits only
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; it is read when the
        # first cuBLAS handle is created, so it must be set before any GPU matmul.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def rng_state() -> dict[str, Any]:
    """Every global random state (Python, NumPy, PyTorch CPU and CUDA) as tensors and
    numbers, so that it can be checkpointed and loaded with ``weights_only=True``."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    _, python_state, _ = random.getstate()
    state: dict[str, Any] = {
        "python": torch.tensor(
            python_state, dtype=torch.int64
        ),  # (625,) Mersenne twister
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured. CUDA states are restored for as many
    devices as both the saved state and this machine have."""
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None))
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
