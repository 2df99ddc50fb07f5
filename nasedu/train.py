"""The training engine every chapter uses (chapter *Introduction*, "Performance estimation").

``train(model, data, config, device)`` trains a network the way the DARTS evaluation
does (DARTS App. A.2.1; ``quark0/darts`` ``cnn/train.py``): SGD with momentum and
weight decay, a cosine learning rate stepped once per epoch, gradient-norm clipping,
an auxiliary-head loss, and ScheduledDropPath whose probability grows linearly over
the epochs. The engine owns that schedule and passes the current probability into
``model(x, drop_prob=p)``; nothing sets it on the model from outside.

On a GPU the engine, and only the engine, switches on mixed precision (bfloat16, or
float16 with a gradient scaler on older cards; see ``nasedu.device.amp_dtype``) and
the ``channels_last`` memory format; models never do. On a CPU it trains in float32.

With ``out_dir`` it writes ``train_history.json`` and ``checkpoint.pt`` after every
epoch, atomically; ``resume=True`` continues from the checkpoint and ends with the same
weights and history as a run that was never interrupted (on CPU, same seed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasedu.checkpoint import load_checkpoint, save_checkpoint, write_json_atomic
from nasedu.data import AUGMENTATIONS, BatchLoader
from nasedu.device import (
    amp_dtype,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
)
from nasedu.networks import count_parameters

CHECKPOINT = "checkpoint.pt"
HISTORY = "train_history.json"


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters; the defaults are the DARTS CIFAR-10 evaluation protocol.

    ``R-DARTS`` below is ``quark0/darts`` ``cnn/train.py`` (its argparse defaults).
    """

    epochs: int = 600  # DARTS App. A.2.1 "trained for 600 epochs"; R-DARTS --epochs
    batch_size: int = 96  # DARTS App. A.2.1 "batch size 96"; R-DARTS --batch_size
    lr: float = (
        0.025  # DARTS App. A.2.1 "same as search" (A.1.1 η_w); R-DARTS --learning_rate
    )
    momentum: float = 0.9  # DARTS App. A.1.1; R-DARTS --momentum
    weight_decay: float = 3e-4  # DARTS App. A.1.1; R-DARTS --weight_decay
    lr_min: float = (
        0.0  # DARTS App. A.1.1 cosine "annealed down to zero"; R-DARTS eta_min=0
    )
    grad_clip: float | None = 5.0  # R-DARTS --grad_clip 5 (not in the paper); None: off
    auxiliary_weight: float = 0.4  # DARTS App. A.2.1 "auxiliary towers with weight 0.4"
    drop_path_prob: float = 0.2  # DARTS App. A.2.1 "path dropout of probability 0.2";
    # R-DARTS ramps it linearly: drop_path_prob * epoch / epochs (train.py l.100)
    augment: str | None = (
        "crop_flip"  # R-DARTS utils.py: RandomCrop(32, padding=4) + flip
    )
    cutout: int = (
        16  # DARTS App. A.2.1 "cutout with length 16"; R-DARTS --cutout_length
    )
    amp: bool = True  # nasedu: mixed precision on CUDA only (DARTS trained in fp32)
    channels_last: bool = True  # nasedu: NHWC memory format on CUDA only
    seed: int = 0  # R-DARTS --seed 0
    deterministic: bool = (
        False  # nasedu: deterministic kernels (R-DARTS: cudnn.benchmark)
    )
    label_smoothing: float = 0.0  # R-DARTS CIFAR: none (train_imagenet.py uses 0.1)

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ValueError(
                    f"TrainConfig.{name} must be {expected}, "
                    f"got {getattr(self, name)!r}"
                )

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_num(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        check("epochs", is_int(self.epochs) and self.epochs >= 1, "an integer >= 1")
        check(
            "batch_size",
            is_int(self.batch_size) and self.batch_size >= 1,
            "an integer >= 1",
        )
        check("lr", is_num(self.lr) and self.lr > 0, "a number > 0")
        check("momentum", is_num(self.momentum) and 0 <= self.momentum < 1, "in [0, 1)")
        check(
            "weight_decay", is_num(self.weight_decay) and self.weight_decay >= 0, ">= 0"
        )
        check(
            "lr_min",
            is_num(self.lr_min) and 0 <= self.lr_min <= self.lr,
            f"in [0, lr={self.lr}]",
        )
        check(
            "grad_clip",
            self.grad_clip is None or (is_num(self.grad_clip) and self.grad_clip > 0),
            "a number > 0 or None (no clipping)",
        )
        check(
            "auxiliary_weight",
            is_num(self.auxiliary_weight) and self.auxiliary_weight >= 0,
            ">= 0",
        )
        check(
            "drop_path_prob",
            is_num(self.drop_path_prob) and 0 <= self.drop_path_prob < 1,
            "in [0, 1)",
        )
        check(
            "augment",
            self.augment in AUGMENTATIONS,
            f"one of {', '.join(map(str, AUGMENTATIONS))}",
        )
        check(
            "cutout",
            is_int(self.cutout) and self.cutout >= 0,
            "an integer >= 0 (0: off)",
        )
        for name in ("amp", "channels_last", "deterministic"):
            check(name, isinstance(getattr(self, name), bool), "True or False")
        check("seed", is_int(self.seed) and self.seed >= 0, "an integer >= 0")
        check(
            "label_smoothing",
            is_num(self.label_smoothing) and 0 <= self.label_smoothing < 1,
            "in [0, 1)",
        )

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with ``overrides`` applied (and validated).

        Raises:
            ValueError: an unknown field (the message lists the valid ones) or a bad value.
        """
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown TrainConfig setting {unknown[0]!r}; valid settings: "
                f"{', '.join(fields)}"
            )
        return dataclasses.replace(self, **overrides)

    def drop_prob(self, epoch: int) -> float:
        """ScheduledDropPath probability of ``epoch`` (0-based): a linear ramp from 0
        (NASNet §4.1; DARTS ``train.py``: ``drop_path_prob * epoch / epochs``)."""
        return self.drop_path_prob * epoch / self.epochs


@dataclass
class TrainResult:
    """What ``train`` returns. Accuracies are fractions in [0, 1]; None where the data
    has no such split. ``final_test_acc`` is the number the papers' tables report (the
    last epoch, DARTS ``train.py``); ``best_*`` are maxima over epochs, and a best
    *test* accuracy is an optimistic number that must never be used for selection."""

    history: list[dict[str, Any]]
    final_valid_acc: float | None
    best_valid_acc: float | None
    final_test_acc: float | None
    best_test_acc: float | None
    params: int  # nasedu.count_parameters: without the auxiliary head
    seconds: float  # wall-clock of the whole run, resumed parts included
    device: str


# ----------------------------------------------------------------------------- one step
def _device_settings(
    amp: bool, channels_last: bool, device: torch.device
) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, channels_last?) on ``device``: both are CUDA-only."""
    on_cuda = device.type == "cuda"
    return amp_dtype(device) if amp and on_cuda else None, channels_last and on_cuda


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_input(
    x: torch.Tensor, device: torch.device, channels_last: bool
) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(
            memory_format=torch.channels_last
        )  # (B, C, H, W), NHWC in memory
    return x


def _outputs(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logits, aux_logits)`` from a model that returns that pair or just logits."""
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


def _takes_drop_prob(model: nn.Module) -> bool:
    return "drop_prob" in inspect.signature(model.forward).parameters


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay (DARTS App. A.1.1, used again in A.2.1)."""
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def _make_scaler(dtype: torch.dtype | None):
    """A gradient scaler for float16 autocast only: bfloat16 has float32's exponent range
    and needs none, float32 on CPUs neither."""
    if dtype != torch.float16:
        return None
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()  # torch < 2.3


def prepare_model(
    model: nn.Module, config: TrainConfig, device: torch.device
) -> nn.Module:
    """Move ``model`` to ``device`` and, on CUDA with ``config.channels_last``, to the
    NHWC memory format (in place; returns the model)."""
    _, channels_last = _device_settings(config.amp, config.channels_last, device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def train_step(
    model: nn.Module,
    config: TrainConfig,
    device: str | torch.device,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
) -> Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]:
    """One training step as a function ``step(x, y, drop_prob) -> (loss, logits)``.

    The step runs the forward pass (autocast on CUDA), the loss
    ``CE(logits) + auxiliary_weight · CE(aux_logits)`` (DARTS ``train.py``; the auxiliary
    term only while the model returns auxiliary logits, i.e. in training mode), the
    backward pass, gradient-norm clipping and the SGD update. Both returned tensors are
    detached and stay on the device, so a loop can accumulate them without a host sync
    per step.

    Args:
        model: returns ``logits`` or ``(logits, aux_logits_or_None)``; it receives
            ``drop_prob=`` when its ``forward`` takes that argument.
        config: the training settings.
        device: where to train; the model is moved there (``prepare_model``).
        optimizer: defaults to ``make_optimizer(model, config)``.
        scaler: a float16 ``GradScaler``; created when autocast uses float16.
    """
    device = resolve_device(device)
    prepare_model(model, config, device)
    dtype, channels_last = _device_settings(config.amp, config.channels_last, device)
    optimizer = optimizer if optimizer is not None else make_optimizer(model, config)
    scaler = scaler if scaler is not None else _make_scaler(dtype)
    pass_drop_prob = _takes_drop_prob(model)

    def step(x: torch.Tensor, y: torch.Tensor, drop_prob: float = 0.0):
        x = _to_input(x, device, channels_last)  # (B, C, H, W)
        y = y.to(device, non_blocking=True)  # (B,)
        with _autocast(device, dtype):
            out = model(x, drop_prob=drop_prob) if pass_drop_prob else model(x)
        logits, aux = _outputs(out)  # (B, K), (B, K) or None
        # The loss in float32: reduced-precision logits make log-softmax lossy.
        loss = F.cross_entropy(
            logits.float(), y, label_smoothing=config.label_smoothing
        )
        if aux is not None and config.auxiliary_weight > 0:
            loss = loss + config.auxiliary_weight * F.cross_entropy(
                aux.float(), y, label_smoothing=config.label_smoothing
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        else:
            loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)  # skipped when the scaled gradients overflowed
            scaler.update()
        else:
            optimizer.step()
        return loss.detach(), logits.detach()

    return step


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    device: str | torch.device,
    *,
    amp: bool = True,
    channels_last: bool = True,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in eval mode.

    ``x`` is used as given (already normalised, as the datasets of ``nasedu.data``
    store it); batches go to ``device``, under autocast and in ``channels_last`` on
    CUDA unless switched off. The model's train/eval mode is restored afterwards.

    Raises:
        ValueError: an empty split, mismatched lengths or a batch size below 1.
    """
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"evaluate needs N > 0 inputs and N labels, got {len(x)} inputs "
            f"and {len(y)} labels"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = resolve_device(device)
    dtype, use_channels_last = _device_settings(amp, channels_last, device)
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for i in range(0, len(x), batch_size):
        xb = _to_input(x[i : i + batch_size], device, use_channels_last)  # (B, C, H, W)
        yb = y[i : i + batch_size].to(device, non_blocking=True)  # (B,)
        with _autocast(device, dtype):
            logits, _ = _outputs(model(xb))  # (B, K)
        total_loss += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(dim=1) == yb).sum()
    model.train(was_training)
    return total_loss.item() / len(x), correct.item() / len(x)


# ----------------------------------------------------------------------------- the loop
def _best(history: list[dict[str, Any]], key: str) -> tuple[float | None, float | None]:
    values = [h[key] for h in history if h[key] is not None]
    return (values[-1], max(values)) if values else (None, None)


def _split(
    data: Any, name: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    split = getattr(data, name, None)
    return None if split is None else (split[0].to(device), split[1].to(device))


def train(
    model: nn.Module,
    data: Any,
    config: TrainConfig,
    device: str | torch.device,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``; evaluate on ``data.valid`` and ``data.test``
    (those that are not None) after every epoch.

    The protocol is ``config``'s (by default DARTS App. A.2.1): SGD, cosine LR stepped
    per epoch, gradient clipping, auxiliary loss, ScheduledDropPath (epoch ``e`` of
    ``E`` uses ``drop_path_prob · e / E``), augmentation and cutout by
    ``nasedu.data.BatchLoader`` (padded crops filled with ``data.fill``, black).
    Seeds everything with ``config.seed`` first.

    Args:
        model: see ``train_step`` for what it may return and receive.
        data: a ``nasedu.data.ImageData`` (``train``, ``valid``, ``test`` as ``(x, y)``
            pairs or None).
        config: the training settings.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        out_dir: where ``checkpoint.pt`` and ``train_history.json`` are written after
            every epoch; None writes nothing.
        resume: continue from ``out_dir/checkpoint.pt`` (a finished run returns at once).
        progress: show tqdm progress bars (notebook widgets in Jupyter).
        on_epoch: called with each epoch's history record after it was saved.

    Returns:
        The history (one dict per epoch: ``epoch`` (0-based), ``train_loss``,
        ``train_acc``, ``valid_acc``, ``test_acc``, ``lr``, ``drop_prob``, ``seconds``)
        and the summary in a ``TrainResult``.

    Raises:
        ValueError: ``resume`` without ``out_dir``, a checkpoint made with another
            config or model, a model that cannot take the drop-path probability.
        FileNotFoundError: ``resume`` but no checkpoint in ``out_dir``.
    """
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    device = resolve_device(device)
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ValueError("resume=True needs the out_dir that holds the checkpoint")
    if config.drop_path_prob > 0 and not _takes_drop_prob(model):
        raise ValueError(
            f"{type(model).__name__}.forward has no drop_prob argument; add one "
            f"or train with drop_path_prob=0 (got {config.drop_path_prob})"
        )
    if data.train is None:
        raise ValueError("data.train is None: there is nothing to train on")
    # Moved once: evaluation then needs no host transfer per batch.
    valid, test = _split(data, "valid", device), _split(data, "test", device)

    seed_everything(config.seed, config.deterministic)
    prepare_model(model, config, device)
    optimizer = make_optimizer(model, config)
    scaler = _make_scaler(_device_settings(config.amp, config.channels_last, device)[0])
    # Stepped once per epoch, after it, so epoch e trains with the cosine value at e
    # (R-DARTS steps it at the epoch's start under PyTorch 0.3 semantics: same values).
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs, eta_min=config.lr_min
    )
    step = train_step(model, config, device, optimizer=optimizer, scaler=scaler)
    x_train, y_train = data.train
    loader = BatchLoader(
        x_train,
        y_train,
        config.batch_size,
        device,
        shuffle=True,
        augment=config.augment,
        cutout=config.cutout,
        fill=getattr(data, "fill", 0.0),
        seed=config.seed,
        # a last batch of one example breaks BatchNorm in training mode
        drop_last=len(y_train) % config.batch_size == 1,
    )
    history: list[dict[str, Any]] = []
    seconds_before = 0.0
    config_dict = dataclasses.asdict(config)

    if resume:
        state = load_checkpoint(out / CHECKPOINT, map_location="cpu")
        saved = state["config"]
        changed = [k for k in config_dict if saved.get(k) != config_dict[k]]
        if changed:
            was = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
            now = ", ".join(f"{k}={config_dict[k]!r}" for k in changed)
            raise ValueError(
                f"cannot resume {out / CHECKPOINT}: it was made with {was}, "
                f"this run has {now}"
            )
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ValueError(
                f"cannot resume {out / CHECKPOINT}: it holds another model "
                f"({str(e).splitlines()[0]})"
            ) from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        loader.load_state_dict(state["loader"])
        set_rng_state(state["rng"])
        history = list(state["history"])
        seconds_before = state["seconds"]

    epochs_bar = tqdm(
        total=config.epochs,
        initial=len(history),
        desc="epochs",
        unit="epoch",
        disable=not progress,
    )
    for epoch in range(len(history), config.epochs):
        epoch_start = time.perf_counter()
        drop_prob = config.drop_prob(epoch)
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        batches = tqdm(
            loader,
            desc=f"epoch {epoch}",
            leave=False,
            disable=not progress,
            total=len(loader) if hasattr(loader, "__len__") else None,
        )
        for xb, yb in batches:
            loss, logits = step(xb, yb, drop_prob)  # scalar, (B, K)
            total_loss += loss * len(yb)
            correct += (logits.argmax(dim=1) == yb).sum()
            seen += len(yb)
        scheduler.step()
        record = {
            "epoch": epoch,
            "train_loss": total_loss.item() / max(seen, 1),
            "train_acc": correct.item() / max(seen, 1),
            "valid_acc": None,
            "test_acc": None,
            "lr": lr,
            "drop_prob": drop_prob,
        }
        for name, split in (("valid_acc", valid), ("test_acc", test)):
            if split is not None:
                record[name] = evaluate(
                    model,
                    *split,
                    config.batch_size,
                    device,
                    amp=config.amp,
                    channels_last=config.channels_last,
                )[1]
        record["seconds"] = time.perf_counter() - epoch_start
        history.append(record)
        if out is not None:
            save_checkpoint(
                out / CHECKPOINT,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "loader": loader.state_dict(),
                    "rng": rng_state(),
                    "epoch": epoch + 1,
                    "history": history,
                    "config": config_dict,
                    "seconds": seconds_before + time.perf_counter() - start_time,
                },
            )
            write_json_atomic(out / HISTORY, history)
        epochs_bar.update(1)
        epochs_bar.set_postfix(
            {
                k: f"{v:.4f}"
                for k, v in record.items()
                if k in ("train_loss", "train_acc", "valid_acc", "test_acc")
                and v is not None
            }
        )
        if on_epoch is not None:
            on_epoch(record)
    epochs_bar.close()

    final_valid, best_valid = _best(history, "valid_acc")
    final_test, best_test = _best(history, "test_acc")
    return TrainResult(
        history=history,
        final_valid_acc=final_valid,
        best_valid_acc=best_valid,
        final_test_acc=final_test,
        best_test_acc=best_test,
        params=count_parameters(model),
        seconds=seconds_before + time.perf_counter() - start_time,
        device=str(device),
    )
