"""DARTS: Differentiable Architecture Search (Liu, Simonyan & Yang, ICLR 2019,
arXiv:1806.09055; chapter *DARTS*).

Implemented: the continuous relaxation of the cell (§2.2, Eq. 1-2) on the supernet of
``nasedu.strategies.gradient``; the bilevel optimisation (Eq. 3-4) by alternating
steps (Alg. 1) with the architecture gradient in its first-order (ξ = 0) and
second-order form (Eq. 6-8: one unrolled SGD step, a Hessian-vector product by central
finite differences); the discrete cell (§2.4); the search set-up of App. A.1.1. The
recurrent cell is in ``nasedu.papers.rnn_cells``.

What each budget changes is in ``BUDGETS``; ``smoke`` shrinks the network (5 cells,
4 channels), the data (scikit-learn's 8×8 digits) and the number of steps, and raises
the α learning rate so that α moves visibly within seconds.

``DartsConfig`` defaults are the paper's; the comments cite the section, or
``R-DARTS`` (``quark0/darts@f276dd3``, ``cnn/train_search.py`` and ``cnn/architect.py``)
where only the code says it. Where paper and code differ, the paper wins and the
comment says what the code does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nasedu.bench import BENCHMARKS, environment, peak_memory_mb, timed
from nasedu.data import BatchLoader, search_split
from nasedu.device import amp_dtype
from nasedu.genotypes import Genotype
from nasedu.ops import DARTS_PRIMITIVES
from nasedu.search import METHODS, HistoryRecord, Method
from nasedu.strategies.gradient import (
    Alphas,
    Supernet,
    SupernetSearch,
    cosine_lr,
    derive,
    num_edges,
    upcast_logits,
)

ORDERS = (1, 2)
HESSIANS = ("finite_difference", "exact")


@dataclass(frozen=True)
class DartsConfig:
    """Settings of a DARTS search; the defaults are the paper's CIFAR-10 search."""

    # Search space and supernet (§3.1.1, App. A.1.1)
    C: int = 16  # A.1.1 "initial number of channels 16"
    layers: int = 8  # A.1.1 "a small network of 8 cells"
    steps: int = 4  # §3.1.1 N = 7 nodes: 2 inputs, 4 intermediate, 1 output
    multiplier: int = 4  # §3.1.1 output = concatenation of all intermediate nodes
    primitives: tuple[str, ...] = (
        DARTS_PRIMITIVES  # §3.1.1, R-DARTS genotypes.PRIMITIVES
    )
    # Data and schedule (App. A.1.1)
    epochs: int = 50  # A.1.1 "trained using DARTS for 50 epochs"
    batch_size: int = (
        64  # A.1.1 "batch size 64 (for both the training and validation sets)"
    )
    train_portion: float = 0.5  # A.1.1 "hold out half of the CIFAR-10 training data"
    augment: str | None = (
        "crop_flip"  # R-DARTS utils._data_transforms_cifar10 (no cutout)
    )
    train_subset: int | None = (
        None  # nasedu: use only this many training images (budgets)
    )
    steps_per_epoch: int | None = (
        None  # nasedu: cap on steps per epoch (None: a full pass)
    )
    valid_batches: int | None = (
        None  # nasedu: cap on batches of the per-epoch validation
    )
    # Weights w (App. A.1.1)
    lr: float = 0.025  # A.1.1 η_w = 0.025
    lr_min: float = (
        0.0  # A.1.1 cosine "annealed down to zero"; R-DARTS learning_rate_min=0.001
    )
    momentum: float = 0.9  # A.1.1
    weight_decay: float = 3e-4  # A.1.1
    grad_clip: float = 5.0  # R-DARTS --grad_clip 5 (not in the paper)
    # Architecture α (App. A.1.1)
    arch_lr: float = 3e-4  # A.1.1 η_α = 3e-4 (Adam)
    arch_betas: tuple[float, float] = (0.5, 0.999)  # A.1.1 "momentum β = (0.5, 0.999)"
    arch_weight_decay: float = 1e-3  # A.1.1
    alpha_init_std: float = 0.0  # A.1.1 "zero initialization"; R-DARTS: 1e-3 · randn
    # Architecture gradient (§2.3)
    order: int = 2  # §2.3: 2 = second order (Table 1's 2.76 %), 1 = first order (ξ = 0)
    fd_radius: float = 0.01  # §2.3 footnote 2: ε = 0.01 / ‖∇_w' L_val(w', α)‖₂
    hessian: str = "finite_difference"  # §2.3 Eq. 8; "exact": double backprop (nasedu)
    # Hardware (nasedu): NHWC is faster for the supernet's depthwise convs on CPU and GPU;
    # mixed precision on CUDA only, never for the second-order terms (see alpha_gradient).
    channels_last: bool = True
    amp: bool = True

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(
                f"order must be 1 (first order) or 2 (second order), got {self.order!r}"
            )
        if self.hessian not in HESSIANS:
            raise ValueError(
                f"unknown hessian {self.hessian!r}; valid choices: "
                f"{', '.join(HESSIANS)}"
            )
        if not 0 < self.train_portion < 1:
            raise ValueError(
                f"train_portion must be in (0, 1), got {self.train_portion}"
            )
        for name in ("C", "layers", "steps", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # A free Colab GPU in well under an hour (to be confirmed with `nasedu bench darts`):
    # first order on 20,000 CIFAR-10 training images (10,000 for w, 10,000 for α).
    "colab": {"order": 1, "epochs": 20, "train_subset": 20000, "lr_min": 0.001},
    # Seconds on a CPU: 5 cells of 4 channels on 8×8 digits, second order, α learning
    # rate ×100 so that α moves visibly in two dozen steps (at ×10 it barely moves).
    "smoke": {
        "C": 4,
        "layers": 5,
        "epochs": 6,
        "batch_size": 32,
        "augment": None,
        "steps_per_epoch": 4,
        "valid_batches": 4,
        "arch_lr": 3e-2,
    },
}


# --------------------------------------------------------------------------- the core
def _loss(
    net: Supernet,
    arch: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    params: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Cross-entropy of the supernet with architecture weights ``arch`` and, when given,
    the weights ``params`` instead of its own (``torch.func.functional_call``: no copy
    of the network is ever built)."""
    logits = (
        net(x, *arch) if params is None else functional_call(net, params, (x, *arch))
    )
    return F.cross_entropy(upcast_logits(logits), y)


def unrolled_weights(
    net: Supernet,
    arch: tuple[torch.Tensor, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    momentum_buffers: Sequence[torch.Tensor | None],
    momentum: float,
    weight_decay: float,
    create_graph: bool = False,
) -> list[torch.Tensor]:
    """w' = w − ξ (μ·buf + ∇_w L_train(w, α) + λ·w), the next step of momentum SGD
    with weight decay (DARTS §2.3 Eq. 6 and "when momentum is enabled ... modified
    accordingly"; R-DARTS ``architect._compute_unrolled_model``).

    With ``create_graph`` the result is a differentiable function of α (for the exact
    gradient); otherwise it is a detached tensor per parameter.
    """
    params = [p for _, p in net.named_parameters()]
    grads = torch.autograd.grad(
        _loss(net, arch, x, y), params, create_graph=create_graph
    )
    return _sgd_step(params, grads, lr, momentum_buffers, momentum, weight_decay)


def _sgd_step(params, grads, lr, buffers, momentum, weight_decay, scale=1.0):
    out = []
    for p, g, buf in zip(params, grads, buffers):
        w = p.detach()
        step = scale * g + weight_decay * w
        if buf is not None:
            step = step + momentum * buf
        out.append(w - lr * step)
    return out


def _clip_coefficient(grads: Sequence[torch.Tensor], max_norm: float | None) -> float:
    """The factor ``clip_grad_norm_`` would scale ``grads`` by (R-DARTS
    ``rnn/architect._clip``); 1 without clipping."""
    if max_norm is None:
        return 1.0
    norm = float(torch.sqrt(sum((g.detach().double() ** 2).sum() for g in grads)))
    return min(1.0, max_norm / (norm + 1e-6))


@contextlib.contextmanager
def _full_precision(device: torch.device):
    """No TF32 inside: a finite difference of gradients at weights ε apart drowns in
    TF32's 10-bit mantissa on Ampere-or-newer GPUs."""
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


LossFn = Callable[[dict[str, torch.Tensor] | None, Any], tuple[torch.Tensor, Any]]


def hypergradient(
    loss: LossFn,
    params: dict[str, torch.Tensor],
    arch_params: Sequence[torch.Tensor],
    train_batch: Any,
    valid_batch: Any,
    *,
    order: int = 2,
    lr: float = 0.0,
    momentum_buffers: Sequence[torch.Tensor | None] | None = None,
    momentum: float = 0.9,
    weight_decay: float = 3e-4,
    fd_radius: float = 0.01,
    hessian: str = "finite_difference",
    clip: float | None = None,
) -> tuple[list[torch.Tensor], Any]:
    """The architecture gradient of DARTS (§2.3) for any network: ``alpha_gradient``
    for the CNN supernet, ``rnn_cells`` for the recurrent one.

    * ``order=1`` (ξ = 0): ∇_α L_val(w, α) at the current weights.
    * ``order=2``: the gradient of the one-step-unrolled validation loss (Eq. 6),
      ∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) ∇_w' L_val(w', α)  (Eq. 7), where
      w' = w − ξ (μ·buf + ∇_w L_train(w, α) + λ·w) is the next momentum-SGD step and
      ξ = ``lr``, the current learning rate of w (footnote 1; R-DARTS passes the
      scheduled LR). The Hessian-vector product is the central difference of Eq. 8 at
      w± = w ± ε ∇_w' L_val(w', α) — the perturbation is applied to w, not w' (a bug of
      an early release, ``quark0/darts#21``) — with ε = ``fd_radius`` / ‖∇_w' L_val‖₂;
      ``hessian="exact"`` differentiates through the unrolled step instead (double
      backpropagation, the oracle of Eq. 8).

    Nothing is copied or rebuilt: w', w+ and w− are dicts of tensors that ``loss``
    passes to the one network with ``torch.func.functional_call``.

    Args:
        loss: ``loss(weights, batch) -> (scalar, aux)``; ``weights`` None means the
            network's own. Its graph must reach ``arch_params``.
        params: the network's weights by name (``dict(net.named_parameters())``).
        momentum_buffers: SGD momentum buffers in ``params`` order (None: no momentum).
        clip: clip ∇_w L_train in the unrolled step and ∇_w' L_val to this norm, with ξ
            scaled by the first clipping factor (R-DARTS ``rnn/architect.py``).

    Returns:
        The gradients for ``arch_params`` and the ``aux`` of the validation loss.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if hessian not in HESSIANS:
        raise ValueError(
            f"unknown hessian {hessian!r}; valid choices: {', '.join(HESSIANS)}"
        )
    arch_params = list(arch_params)
    if order == 1:
        value, aux = loss(None, valid_batch)
        return list(torch.autograd.grad(value, arch_params)), aux
    names, weights = list(params), list(params.values())
    buffers = momentum_buffers if momentum_buffers is not None else [None] * len(names)
    exact = hessian == "exact"
    train_loss, _ = loss(None, train_batch)
    grads = torch.autograd.grad(train_loss, weights, create_graph=exact)
    scale = _clip_coefficient(grads, clip)
    unrolled = _sgd_step(weights, grads, lr, buffers, momentum, weight_decay, scale)
    if exact:
        value, aux = loss(dict(zip(names, unrolled)), valid_batch)
        return list(torch.autograd.grad(value, arch_params)), aux

    unrolled = [w.requires_grad_() for w in unrolled]
    value, aux = loss(dict(zip(names, unrolled)), valid_batch)
    grads = torch.autograd.grad(value, [*arch_params, *unrolled])
    d_alpha, v = (
        grads[: len(arch_params)],
        grads[len(arch_params) :],
    )  # ∇_α, ∇_w' of L_val
    v_scale = _clip_coefficient(v, clip)
    v = [g * v_scale for g in v]
    eps = fd_radius / torch.sqrt(sum((g.double() ** 2).sum() for g in v)).to(v[0].dtype)
    fixed = [w.detach() for w in weights]

    def train_grad(sign: float) -> tuple[torch.Tensor, ...]:
        moved = {n: w + sign * eps * g for n, w, g in zip(names, fixed, v)}
        return torch.autograd.grad(loss(moved, train_batch)[0], arch_params)

    g_plus, g_minus = train_grad(1.0), train_grad(-1.0)
    hvp = [(gp - gm) / (2 * eps) for gp, gm in zip(g_plus, g_minus)]  # Eq. 8
    return [d - lr * scale * h for d, h in zip(d_alpha, hvp)], aux


def alpha_gradient(
    net: Supernet,
    alphas: Alphas,
    train_batch: tuple[torch.Tensor, ...],
    valid_batch: tuple[torch.Tensor, ...],
    *,
    order: int = 2,
    lr: float = 0.0,
    momentum_buffers: Sequence[torch.Tensor | None] | None = None,
    momentum: float = 0.9,
    weight_decay: float = 3e-4,
    fd_radius: float = 0.01,
    hessian: str = "finite_difference",
) -> list[torch.Tensor]:
    """DARTS's architecture gradient (§2.3, Eq. 6-8; see ``hypergradient``) for the CNN
    supernet, for ``[alphas.normal, alphas.reduce]``; batches are ``(images, labels)``.

    Args:
        momentum_buffers: the SGD momentum buffer of every parameter of ``net`` in
            ``named_parameters()`` order (None entries, or None: no momentum yet).
    """

    def loss(weights, batch):
        return _loss(net, alphas.softmax(), batch[0], batch[1], weights), None

    grads, _ = hypergradient(
        loss,
        dict(net.named_parameters()),
        [alphas.normal, alphas.reduce],
        train_batch,
        valid_batch,
        order=order,
        lr=lr,
        momentum_buffers=momentum_buffers,
        momentum=momentum,
        weight_decay=weight_decay,
        fd_radius=fd_radius,
        hessian=hessian,
    )
    return grads


# --------------------------------------------------------------------------- search
def _grad_scaler():
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()  # torch < 2.3


def _momentum_buffers(optimizer: torch.optim.Optimizer, net: nn.Module) -> list:
    return [optimizer.state.get(p, {}).get("momentum_buffer") for p in net.parameters()]


class DartsSearch(SupernetSearch):
    """A DARTS search, one epoch per ``step`` (Alg. 1 over every training batch).

    Each step draws a batch from the w half and one from the α half of the training
    set, updates α with ``alpha_gradient`` and Adam, then w with momentum SGD on the
    training batch under the new α, in that order (Alg. 1; R-DARTS ``train``).
    """

    def __init__(
        self, config: DartsConfig, data: Any, device: torch.device | str, seed: int = 0
    ):
        super().__init__(device, seed)
        self.config, self.epochs = config, config.epochs
        x, y = data.train
        if config.train_subset is not None and config.train_subset < len(y):
            (x, y), _ = search_split(x, y, config.train_subset / len(y), seed=seed)
        w_half, a_half = search_split(x, y, config.train_portion, seed=seed)
        fill = getattr(data, "fill", 0.0)
        loader = dict(
            batch_size=config.batch_size,
            device=self.device,
            augment=config.augment,
            fill=fill,
            drop_last=True,
        )
        self.train_loader = BatchLoader(*w_half, seed=seed, **loader)
        self.valid_loader = BatchLoader(*a_half, seed=seed + 1, **loader)
        self.valid_stream = self.valid_loader.forever()
        self.eval_x, self.eval_y = a_half[0].to(self.device), a_half[1].to(self.device)

        torch.manual_seed(seed)  # the supernet's initial weights
        self.supernet = Supernet(
            config.C,
            data.num_classes,
            config.layers,
            config.steps,
            config.multiplier,
            primitives=config.primitives,
            in_channels=data.in_channels,
        ).to(self.device)
        self.channels_last = config.channels_last
        if self.channels_last:
            self.supernet.to(memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(seed)
        self.alphas = Alphas(
            num_edges(config.steps),
            len(config.primitives),
            std=config.alpha_init_std,
            generator=generator,
        ).to(self.device)
        self.w_optimizer = torch.optim.SGD(
            self.supernet.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        self.arch_optimizer = torch.optim.Adam(
            self.alphas.parameters(),
            lr=config.arch_lr,
            betas=config.arch_betas,
            weight_decay=config.arch_weight_decay,
        )
        self.amp_dtype = amp_dtype(self.device) if config.amp else None
        # float16 (GPUs without bfloat16, e.g. Colab's T4) needs loss scaling.
        self.scaler = _grad_scaler() if self.amp_dtype == torch.float16 else None

    # ------------------------------------------------------------ one step
    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return (
            x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        )

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def arch_step(self, train_batch, valid_batch, lr: float) -> None:
        """Update α by Adam on ``alpha_gradient`` (Alg. 1, step 1)."""
        c = self.config
        self.arch_optimizer.zero_grad(set_to_none=True)
        if c.order == 1 and self.amp_dtype is not None:
            # First order under autocast: a plain (scaled) backward of L_val.
            with self._autocast():
                logits = self.supernet(valid_batch[0], *self.alphas.softmax())
            loss = F.cross_entropy(upcast_logits(logits), valid_batch[1])
            self._backward(loss, self.arch_optimizer, clip=None)
            return
        with _full_precision(self.device):
            grads = alpha_gradient(
                self.supernet,
                self.alphas,
                train_batch,
                valid_batch,
                order=c.order,
                lr=lr,
                momentum_buffers=_momentum_buffers(self.w_optimizer, self.supernet),
                momentum=c.momentum,
                weight_decay=c.weight_decay,
                fd_radius=c.fd_radius,
                hessian=c.hessian,
            )
        for p, g in zip((self.alphas.normal, self.alphas.reduce), grads):
            p.grad = g
        self.arch_optimizer.step()

    def _backward(self, loss, optimizer, clip: float | None) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip, foreach=True)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """Update w by momentum SGD on L_train under the current α (Alg. 1, step 2)."""
        with torch.no_grad():
            arch = self.alphas.softmax()
        self.w_optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.supernet(x, *arch)
        loss = F.cross_entropy(upcast_logits(logits), y)
        self._backward(loss, self.w_optimizer, clip=self.config.grad_clip)
        return float(loss.detach()) * len(y), int((logits.argmax(1) == y).sum())

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        c = self.config
        lr = cosine_lr(epoch, c.epochs, c.lr, c.lr_min)
        for group in self.w_optimizer.param_groups:
            group["lr"] = lr
        self.lr = lr
        loss_sum, correct, seen = 0.0, 0, 0
        for k, (x, y) in enumerate(self.train_loader):
            x_val, y_val = next(self.valid_stream)
            x, x_val = self._input(x), self._input(x_val)
            self.arch_step((x, y), (x_val, y_val), lr)
            batch_loss, batch_correct = self.weight_step(x, y)
            loss_sum, correct = loss_sum + batch_loss, correct + batch_correct
            seen += len(y)
            if c.steps_per_epoch is not None and k + 1 >= c.steps_per_epoch:
                break
        # A capped epoch still starts the next one on a fresh pass of the w half.
        if self.train_loader.batch != 0:
            self.train_loader.epoch, self.train_loader.batch = (
                self.train_loader.epoch + 1,
                0,
            )
        return loss_sum / seen, correct / seen

    # ------------------------------------------------------------ SupernetSearch
    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alphas.softmax()

    def validate(self) -> tuple[float, float]:
        with self._autocast():
            return self.evaluate(
                self._input(self.eval_x),
                self.eval_y,
                self.config.batch_size,
                self.config.valid_batches,
            )

    def genotype(self) -> Genotype:
        w_n, w_r = self.alphas.softmax()
        c = self.config
        return derive(w_n, w_r, c.primitives, c.steps, c.multiplier)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"w": self.w_optimizer, "alpha": self.arch_optimizer}

    def epoch_extra(self) -> dict[str, Any]:
        return {"lr": self.lr, "order": self.config.order}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["loaders"] = {
            "train": self.train_loader.state_dict(),
            "valid": self.valid_loader.state_dict(),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.train_loader.load_state_dict(state["loaders"]["train"])
        self.valid_loader.load_state_dict(state["loaders"]["valid"])
        self.valid_stream = self.valid_loader.forever()
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def make(
    config: DartsConfig, data: Any, device: torch.device | str, seed: int = 0
) -> DartsSearch:
    """The ``Search`` the runner drives (``nasedu search darts``)."""
    return DartsSearch(config, data, device, seed)


METHODS.register(
    "darts", Method("darts", DartsConfig, BUDGETS, make, citation="liu2019darts")
)


def search(
    config: DartsConfig, data: Any, device: torch.device | str = "cpu", seed: int = 0
) -> list[HistoryRecord]:
    """Run a whole DARTS search in memory and return one record per epoch: the derived
    cell, validation accuracy, seconds and, in ``extra``, softmax(α) per edge for both
    cells (``nasedu.search.run("darts", ...)`` adds files, checkpoints and resume)."""
    return DartsSearch(config, data, device, seed).run_all()


# --------------------------------------------------------------------------- benchmark
def benchmark(
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    C: int = 16,
    layers: int = 8,
    image_size: int = 32,
    repeats: int = 3,
    eval_step: bool = True,
) -> dict[str, Any]:
    """Time one first-order and one second-order search step and one evaluation-network
    training step at the paper's shapes (search: batch 64, C = 16, 8 cells, 32×32;
    evaluation: DARTS_V2, batch 96, C = 36, 20 cells), with peak memory.

    A search step is Alg. 1 once: the α update and the w update. On CPUs the peak
    memory is the process's maximum resident set so far (it only grows, so the
    second-order figure includes the first-order one).
    """
    device = torch.device(device)
    result: dict[str, Any] = {
        "benchmark": "darts",
        "search_batch_size": batch_size,
        "C": C,
        "layers": layers,
        "image_size": image_size,
    }
    data = _RandomImages(batch_size * 4, image_size)
    for order in ORDERS:
        config = DartsConfig(
            C=C, layers=layers, batch_size=batch_size, order=order, augment=None
        )
        run = DartsSearch(config, data, device, seed=0)
        x, y = next(iter(run.train_loader))
        x_val, y_val = next(run.valid_stream)
        x, x_val = run._input(x), run._input(x_val)

        def step(run=run, x=x, y=y, x_val=x_val, y_val=y_val):
            run.arch_step((x, y), (x_val, y_val), run.config.lr)
            run.weight_step(x, y)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result[f"order{order}_seconds_per_step"] = timed(step, device, repeats)
        result[f"order{order}_peak_memory_mb"] = peak_memory_mb(device)
        del run
    if eval_step:
        from nasedu.bench import bench_train

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train = bench_train(device, repeats=repeats)
        result["eval_seconds_per_step"] = train["seconds_per_step"]
        result["eval_peak_memory_mb"] = train["peak_memory_mb"]
    result["supernet_params"] = sum(
        p.numel() for p in Supernet(C, 10, layers).parameters()
    )
    return {**result, **environment(device)}


@dataclass(frozen=True)
class _RandomImages:
    """Random CIFAR-shaped data for the benchmark (no download needed)."""

    n: int
    image_size: int
    num_classes: int = 10
    in_channels: int = 3

    @property
    def train(self):
        g = torch.Generator().manual_seed(0)
        return (
            torch.randn(self.n, 3, self.image_size, self.image_size, generator=g),
            torch.arange(self.n) % self.num_classes,
        )


BENCHMARKS.register("darts", benchmark)
