"""The training engine: device choice, seeds, TrainConfig, one step, the loop, resume."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasedu.checkpoint import load_checkpoint
from nasedu.data import ImageData
from nasedu.device import amp_dtype, resolve_device, seed_everything
from nasedu.genotypes import load as load_genotype
from nasedu.networks import NetworkCIFAR
from nasedu.train import TrainConfig, evaluate, train, train_step

# ---- fixtures --------------------------------------------------------------------------------


def toy_data(
    n_train: int = 64, classes: int = 4, valid: bool = True, seed: int = 0
) -> ImageData:
    """A learnable toy problem: 1×8×8 noise, the quadrant of the label brightened."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int):
        y = torch.randint(0, classes, (n,), generator=g)
        x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)  # (N, 1, 8, 8)
        for c in range(classes):
            r, col = divmod(c, 2)
            x[y == c, :, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 1.0
        return x, y

    return ImageData(
        "toy",
        split(n_train),
        split(32) if valid else None,
        split(32),
        num_classes=classes,
        in_channels=1,
        image_size=8,
        mean=(0.0,),
        std=(1.0,),
    )


class Tiny(nn.Module):
    """Conv → linear, an optional auxiliary head; remembers the drop_prob it was given."""

    def __init__(self, classes: int = 4, aux: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, classes)
        self.aux_head = nn.Linear(4 * 8 * 8, classes) if aux else None
        self.drop_probs: list[float] = []

    def forward(self, x, drop_prob: float = 0.0):
        if self.training:
            self.drop_probs.append(drop_prob)
        h = torch.relu(self.conv(x)).flatten(1)  # (B, 256)
        aux = self.aux_head(h) if self.aux_head is not None and self.training else None
        return self.fc(h), aux


class PlainLogits(nn.Module):
    """A model whose forward takes no drop_prob and returns a bare tensor."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


FAST = TrainConfig(epochs=3, batch_size=16, augment=None, cutout=0, drop_path_prob=0.0)


@pytest.fixture
def restore_determinism():
    yield
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False


# ---- device ----------------------------------------------------------------------------------


def test_resolve_device_cpu_and_auto(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_clear_error(monkeypatch, spec):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError) as info:
        resolve_device(spec)
    assert str(info.value) == (
        f"CUDA was requested (--device {spec}) but "
        "torch.cuda.is_available() is False; use --device cpu or auto"
    )


def test_cuda_index_beyond_device_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"only 2 CUDA device\(s\).*0\.\.1"):
        resolve_device("cuda:2")


@pytest.mark.parametrize(
    "spec", ["gpu", "mps", "", "cuda0", "cuda:x", "cuda:-1", "cpu:0"]
)
def test_bad_device_lists_valid_forms(spec):
    with pytest.raises(ValueError, match="valid forms: auto, cpu, cuda, cuda:N"):
        resolve_device(spec)


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((7, 5), torch.float16),  # T4 (Colab's free GPU): no native bfloat16
        ((8, 0), torch.bfloat16),  # A100
        ((9, 0), torch.bfloat16),  # H100
    ],
)
def test_amp_dtype(monkeypatch, capability, expected):
    assert amp_dtype("cpu") is None
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda device=None: capability
    )
    assert amp_dtype(torch.device("cuda", 0)) == expected


def test_seed_everything_reproduces_every_generator(restore_determinism):
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(2).tolist()

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first
    seed_everything(3, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    seed_everything(3)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_seed_everything_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)


# ---- TrainConfig -----------------------------------------------------------------------------


def test_defaults_are_the_darts_evaluation_protocol():
    # DARTS App. A.2.1 and quark0/darts cnn/train.py (reference/published-results.md §3).
    darts = {
        "epochs": 600,
        "batch_size": 96,
        "lr": 0.025,
        "momentum": 0.9,
        "weight_decay": 3e-4,
        "lr_min": 0.0,
        "grad_clip": 5.0,
        "auxiliary_weight": 0.4,
        "drop_path_prob": 0.2,
        "cutout": 16,
        "augment": "crop_flip",
        "seed": 0,
        "label_smoothing": 0.0,
    }
    config = dataclasses.asdict(TrainConfig())
    assert {k: config[k] for k in darts} == darts


def test_replace_and_frozen():
    config = TrainConfig().replace(epochs=5, cutout=0)
    assert (config.epochs, config.cutout, config.batch_size) == (5, 0, 96)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 7
    with pytest.raises(ValueError, match="unknown TrainConfig setting 'epoch'.*epochs"):
        TrainConfig().replace(epoch=5)


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", 2.5),
        ("batch_size", -1),
        ("lr", 0.0),
        ("lr", -0.1),
        ("momentum", 1.0),
        ("weight_decay", -1e-4),
        ("lr_min", 0.1),
        ("grad_clip", 0.0),
        ("auxiliary_weight", -0.4),
        ("drop_path_prob", 1.0),
        ("drop_path_prob", -0.2),
        ("cutout", -16),
        ("augment", "rotate"),
        ("amp", "yes"),
        ("seed", -1),
        ("label_smoothing", 1.0),
    ],
)
def test_bad_values_are_refused(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig().replace(**{field: value})


def test_drop_prob_is_a_linear_ramp_from_zero():
    config = TrainConfig()
    assert config.drop_prob(0) == 0.0
    assert config.drop_prob(300) == pytest.approx(0.1)
    assert config.drop_prob(599) == pytest.approx(0.2 * 599 / 600)


# ---- one step --------------------------------------------------------------------------------


def test_step_loss_includes_the_weighted_auxiliary_loss():
    torch.manual_seed(0)
    data = toy_data()
    x, y = data.train[0][:16], data.train[1][:16]
    for weight in (0.4, 0.0):
        model = Tiny(aux=True)
        with torch.no_grad():
            logits, aux = model(x)
            expected = F.cross_entropy(logits, y) + weight * F.cross_entropy(aux, y)
        aux_before = model.aux_head.weight.detach().clone()
        step = train_step(model, FAST.replace(auxiliary_weight=weight), "cpu")
        loss, _ = step(x, y, 0.0)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        # Without weight the auxiliary head gets no gradient, so SGD leaves it alone.
        assert torch.equal(model.aux_head.weight, aux_before) == (weight == 0.0)


def test_step_clips_the_gradient_norm():
    torch.manual_seed(0)
    data = toy_data()
    x, y = data.train[0][:16], data.train[1][:16]
    model = Tiny()
    before = [p.detach().clone() for p in model.parameters()]
    config = FAST.replace(lr=0.1, momentum=0.0, weight_decay=0.0, grad_clip=1e-3)
    train_step(model, config, "cpu")(x, y, 0.0)
    update = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]
    )
    # Plain SGD moves by lr · g, and g was rescaled to norm grad_clip.
    assert update.norm().item() == pytest.approx(0.1 * 1e-3, rel=1e-4)


def test_evaluate_matches_a_direct_computation():
    torch.manual_seed(0)
    data = toy_data()
    x, y = data.test
    model = Tiny()
    model.train()
    with torch.no_grad():
        logits, _ = model.eval()(x)
    model.train()
    expected_loss = F.cross_entropy(logits, y).item()
    expected_acc = (logits.argmax(1) == y).float().mean().item()
    for batch_size in (7, 64):
        loss, acc = evaluate(model, x, y, batch_size, "cpu")
        assert loss == pytest.approx(expected_loss, rel=1e-5)
        assert acc == pytest.approx(expected_acc)
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="0 inputs"):
        evaluate(model, x[:0], y[:0], 8, "cpu")


# ---- the loop --------------------------------------------------------------------------------


def test_loss_decreases_on_a_learnable_problem():
    torch.manual_seed(0)
    result = train(
        Tiny(), toy_data(), FAST.replace(epochs=6, lr=0.05), "cpu", progress=False
    )
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.final_test_acc >= 0.9  # chance is 0.25
    assert result.final_test_acc == result.history[-1]["test_acc"]
    assert result.best_valid_acc == max(h["valid_acc"] for h in result.history)
    assert result.params == sum(p.numel() for p in Tiny().parameters())
    assert result.device == "cpu" and result.seconds > 0


def test_engine_drives_drop_path_and_cosine_schedules():
    model = Tiny()
    config = FAST.replace(epochs=4, batch_size=32, drop_path_prob=0.4, lr_min=0.001)
    result = train(model, toy_data(), config, "cpu", progress=False)
    expected_drop = [
        0.4 * e / 4 for e in range(4)
    ]  # DARTS train.py: 0.4 · epoch / epochs
    assert [h["drop_prob"] for h in result.history] == pytest.approx(expected_drop)
    # 64 examples in batches of 32: the model saw each epoch's value in both steps.
    assert model.drop_probs == pytest.approx(
        [p for p in expected_drop for _ in range(2)]
    )
    cosine = [
        0.001 + (0.025 - 0.001) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)
    ]
    assert [h["lr"] for h in result.history] == pytest.approx(cosine)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]


def test_plain_models_and_missing_splits():
    data = dataclasses.replace(toy_data(valid=False))
    result = train(PlainLogits(), data, FAST.replace(epochs=1), "cpu", progress=False)
    assert result.history[0]["valid_acc"] is None and result.final_valid_acc is None
    assert result.final_test_acc is not None
    with pytest.raises(ValueError, match="no drop_prob argument"):
        train(
            PlainLogits(), data, FAST.replace(drop_path_prob=0.2), "cpu", progress=False
        )


# ---- checkpoints and resume ------------------------------------------------------------------

RESUME = TrainConfig(epochs=3, batch_size=16, cutout=4, augment="crop_flip", seed=3)


def darts_model(seed: int) -> NetworkCIFAR:
    """The DARTS_V2 evaluation network at toy size, with its auxiliary head."""
    torch.manual_seed(seed)
    return NetworkCIFAR(
        load_genotype("darts_v2"), C=4, layers=3, in_channels=1, num_classes=10
    )


def _without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    model = darts_model(0)
    result = train(model, toy_data(), RESUME, "cpu", out_dir=out, progress=False)
    return out, result, {k: v.clone() for k, v in model.state_dict().items()}


class Stop(Exception):
    pass


@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_gives_the_uninterrupted_result(
    tmp_path: Path, uninterrupted, stop_after
):
    _, full, full_state = uninterrupted

    def interrupt(record):
        if record["epoch"] + 1 == stop_after:
            raise Stop

    with pytest.raises(Stop):
        train(
            darts_model(0),
            toy_data(),
            RESUME,
            "cpu",
            out_dir=tmp_path,
            progress=False,
            on_epoch=interrupt,
        )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == stop_after
    # Another process would build the model afresh: its initial weights must not matter.
    model = darts_model(123)
    resumed = train(
        model, toy_data(), RESUME, "cpu", out_dir=tmp_path, resume=True, progress=False
    )
    assert _without_seconds(resumed.history) == _without_seconds(full.history)
    for name, value in model.state_dict().items():
        assert torch.equal(value, full_state[name]), name
    saved = json.loads((tmp_path / "train_history.json").read_text())
    assert _without_seconds(saved) == _without_seconds(full.history)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.pt",
        "train_history.json",
    ]


def test_resuming_a_finished_run_trains_no_more(uninterrupted):
    out, full, full_state = uninterrupted
    calls = []
    model = darts_model(5)
    again = train(
        model,
        toy_data(),
        RESUME,
        "cpu",
        out_dir=out,
        resume=True,
        progress=False,
        on_epoch=calls.append,
    )
    assert calls == [] and again.history == full.history
    assert all(torch.equal(v, full_state[k]) for k, v in model.state_dict().items())


def test_resume_errors(tmp_path: Path, uninterrupted):
    out = uninterrupted[0]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(
            darts_model(0),
            toy_data(),
            RESUME,
            "cpu",
            out_dir=tmp_path,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="out_dir"):
        train(darts_model(0), toy_data(), RESUME, "cpu", resume=True, progress=False)
    with pytest.raises(ValueError, match="lr=0.025.*lr=0.05"):
        train(
            darts_model(0),
            toy_data(),
            RESUME.replace(lr=0.05),
            "cpu",
            out_dir=out,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="another model"):
        train(
            NetworkCIFAR(load_genotype("darts_v2"), C=6, layers=3, in_channels=1),
            toy_data(),
            RESUME,
            "cpu",
            out_dir=out,
            resume=True,
            progress=False,
        )


# ---- GPU -------------------------------------------------------------------------------------


@pytest.mark.parametrize("force_fp16", [False, True])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_and_channels_last(tmp_path: Path, monkeypatch, force_fp16):
    import nasedu.train

    device = resolve_device("cuda")
    if force_fp16:  # exercise the float16 + GradScaler path on a bfloat16 GPU too
        monkeypatch.setattr(nasedu.train, "amp_dtype", lambda d: torch.float16)
    expected = torch.float16 if force_fp16 else amp_dtype(device)
    model = darts_model(0)
    seen = []
    model.stem[0].register_forward_hook(lambda m, i, o: seen.append((o.dtype, i[0])))
    result = train(
        model,
        toy_data(),
        RESUME.replace(epochs=2),
        device,
        out_dir=tmp_path,
        progress=False,
    )
    dtype, first_input = seen[0]
    assert dtype == expected
    assert first_input.is_contiguous(memory_format=torch.channels_last)
    weight = model.stem[0].weight
    assert weight.device.type == "cuda"
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert weight.dtype == torch.float32  # autocast, not a half-precision model
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert result.final_test_acc is not None and result.device.startswith("cuda")
    scaler = load_checkpoint(tmp_path / "checkpoint.pt")["scaler"]
    assert (scaler is not None) == force_fp16
    loss, acc = evaluate(model, *toy_data().test, 8, device)
    assert math.isfinite(loss) and 0.0 <= acc <= 1.0
