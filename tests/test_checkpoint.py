"""Checkpoints: atomic writes, weights_only loading, clear errors for bad files."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from nasedu.checkpoint import load_checkpoint, save_checkpoint, write_json_atomic
from nasedu.device import rng_state, set_rng_state


def _state(value: float = 1.0) -> dict:
    """A state like the training engine's: a model, an optimizer, nested Python values."""
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()  # creates the momentum buffers
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": 3,
        "lr": 0.025,
        "name": "darts_v2",
        "history": [{"acc": 0.5, "valid": None}],
        "pair": (1, 2.5),
        "rng": rng_state(),
    }


def _assert_equal(a, b) -> None:
    """Deep equality of nested states with tensors."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict))
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


def test_round_trip_with_weights_only(tmp_path: Path, monkeypatch):
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    state = _state()
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", state)
    assert path == tmp_path / "sub" / "ckpt.pt"
    _assert_equal(load_checkpoint(path), state)
    assert seen["weights_only"] is True
    assert [p.name for p in path.parent.iterdir()] == [
        "ckpt.pt"
    ]  # no temporary file left


def test_failed_write_leaves_old_checkpoint_intact(tmp_path: Path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    old = _state(1.0)
    save_checkpoint(path, old)
    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        f.write(
            b"PK\x03\x04 half a checkpoint"
        )  # some bytes reach the file, then it dies
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(2.0))
    monkeypatch.setattr(torch, "save", real_save)
    _assert_equal(load_checkpoint(path), old)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_interrupt_during_write_leaves_old_checkpoint_intact(
    tmp_path: Path, monkeypatch
):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"epoch": 1})

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"\x80\x04partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def _truncated(path: Path, fraction: float) -> None:
    save_checkpoint(path, _state())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.mark.parametrize(
    "make_bad",
    [
        pytest.param(lambda p: _truncated(p, 0.5), id="truncated-half"),
        pytest.param(lambda p: _truncated(p, 0.99), id="truncated-tail"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_bytes(b"\x80\x04 not a pickle"), id="garbage"),
        pytest.param(lambda p: p.write_text(json.dumps({"epoch": 1})), id="json"),
    ],
)
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_file_is_a_value_error_naming_it(tmp_path: Path, make_bad):
    path = tmp_path / "checkpoint.pt"
    make_bad(path)
    with pytest.raises(ValueError, match="corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)  # one line, fit for the CLI


@dataclass
class NotAllowed:
    """A class torch.load(weights_only=True) must refuse to construct."""

    x: int = 1


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": NotAllowed()}, path)  # bypasses save_checkpoint's own check
    with pytest.raises(ValueError, match="corrupt or not a nasedu checkpoint"):
        load_checkpoint(path)


def test_non_dict_checkpoint_is_refused(tmp_path: Path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="holds a list"):
        load_checkpoint(path)


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")


@pytest.mark.parametrize(
    "state, where",
    [
        ({"rng": {"numpy": np.zeros(3)}}, "state['rng']['numpy']"),
        ({"items": [1, object()]}, "state['items'][1]"),
    ],
)
def test_save_refuses_what_weights_only_cannot_load(tmp_path: Path, state, where):
    with pytest.raises(ValueError, match="weights_only") as info:
        save_checkpoint(tmp_path / "c.pt", state)
    assert where in str(info.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_save_refuses_non_dict(tmp_path: Path):
    with pytest.raises(ValueError, match="must be a dict"):
        save_checkpoint(tmp_path / "c.pt", [1, 2])


def test_write_json_atomic(tmp_path: Path):
    path = write_json_atomic(
        tmp_path / "a" / "result.json", {"acc": 0.5, "ops": ["skip"]}
    )
    assert json.loads(path.read_text()) == {"acc": 0.5, "ops": ["skip"]}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"acc": 0.5, "ops": ["skip"]}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_rng_state_round_trip_through_a_checkpoint(tmp_path: Path):
    def draw():
        return (
            random.random(),
            np.random.rand(),
            np.random.randn(),
            torch.rand(3).tolist(),
        )

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.randn()  # leaves a cached Gaussian in NumPy's state
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = draw()
    draw()  # move every generator on
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert draw() == expected
