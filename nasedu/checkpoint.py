"""Checkpoints and result files written atomically (chapter *Introduction*, "Resuming").

A long run (600 epochs of retraining, a day of search) is interrupted sooner or later:
a Colab session ends, a job is pre-empted, someone presses Ctrl-C while a checkpoint
is being written. Every file here is therefore written to a temporary file in the
same directory, flushed to disk, and renamed over the old one (``os.replace`` is
atomic on POSIX and Windows), so the previous checkpoint survives a crash mid-write.

Checkpoints are read with ``torch.load(..., weights_only=True)``, which refuses to run
code from the file: a state holds only tensors, numbers, strings, lists, tuples and
dicts (random states included, as tensors). :func:`save_checkpoint` checks that
before writing, so a state that could not be loaded back is refused when it is made,
not when the run is resumed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

# What torch.load(weights_only=True) accepts besides containers of them.
_LEAF_TYPES = (
    torch.Tensor,
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    type(None),
    torch.dtype,
    torch.device,
    torch.Size,
)


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(
                f.fileno()
            )  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except (
        BaseException
    ):  # also KeyboardInterrupt: never leave the temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _check_loadable(obj: Any, where: str) -> None:
    """Raise if ``obj`` holds something ``torch.load(weights_only=True)`` rejects."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise ValueError(
                    f"checkpoint key {where}[{key!r}] is a {type(key).__name__}; "
                    "keys must be str or int"
                )
            _check_loadable(value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple, set)) and not isinstance(obj, torch.Size):
        for i, value in enumerate(obj):
            _check_loadable(value, f"{where}[{i}]")
    elif not isinstance(obj, _LEAF_TYPES):
        raise ValueError(
            f"checkpoint value {where} is a {type(obj).__module__}."
            f"{type(obj).__name__}, which torch.load(weights_only=True) cannot "
            "read; store tensors, numbers, strings, lists or dicts instead"
        )


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically; the old file stays intact on failure.

    Args:
        path: the checkpoint file (its directory is created if needed).
        state: a dict of tensors, numbers, strings, lists, tuples and dicts, e.g.
            ``{"model": model.state_dict(), "epoch": 3}``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: ``state`` is not a dict or holds a value that
            ``torch.load(weights_only=True)`` could not read back (e.g. a NumPy array).
    """
    if not isinstance(state, dict):
        raise ValueError(
            f"a checkpoint state must be a dict, got {type(state).__name__}"
        )
    _check_loadable(state, "state")
    return _atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the checkpoint file.
        map_location: where tensors go (``torch.load``'s argument); the default, CPU,
            works for checkpoints saved on any device.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, corrupt or not a checkpoint (its message names
            the file; the unpickling error is summarised, not raised).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with open(path, "rb") as f:
            state = torch.load(f, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (
        Exception
    ) as e:  # torch reports a bad file in many ways (zip, pickle, EOF, OS)
        lines = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
        raise ValueError(
            f"checkpoint {path} is corrupt or not a nasedu checkpoint ({reason}); "
            "delete it to start over"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(
            f"checkpoint {path} is corrupt or not a nasedu checkpoint (it holds "
            f"a {type(state).__name__}, not a dict); delete it to start over"
        )
    return state


def write_json_atomic(path: str | Path, obj: Any, indent: int = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (configs, results, histories).

    Raises:
        TypeError: ``obj`` holds something JSON cannot represent (raised before the
            file is touched).
    """
    text = json.dumps(obj, indent=indent) + "\n"
    return _atomic_write(path, lambda f: f.write(text.encode("utf8")))
