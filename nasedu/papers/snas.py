"""SNAS: Stochastic Neural Architecture Search (Xie, Zheng, Liu & Lin, ICLR 2019,
arXiv:1812.09926; chapter *SNAS*).

SNAS keeps DARTS's cell and supernet but treats the architecture as a random variable:
every edge carries a one-hot choice Z drawn from a categorical distribution with
logits α, relaxed with the Gumbel-softmax (concrete) distribution so that the loss is
differentiable in α (§2.2). The weights θ and α then minimise *the same* training loss
(single-level, unlike DARTS's bilevel problem), the temperature is annealed towards
zero so that samples approach one-hot, and a resource constraint charges each sampled
cell for its parameters, FLOPs and memory access (§3.2). The child is the argmax of α
per edge.

The paper's text could not be consulted here; every setting below comes from the
authors' code, ``R-SNAS`` = ``SNAS-Series/SNAS-Series@9a43adb`` ``SNAS/`` (README search
command, ``train_search.py``, ``model_search.py``, ``operations.py``, ``utils.py``),
and only Table 2's numbers come from the paper (``data/papers/snas.json``).

What each budget changes is in ``BUDGETS``; ``smoke`` shrinks the network and data as
for DARTS, anneals the temperature over its few epochs and raises the α learning rate.

The mild / moderate / aggressive cells of Table 2 come from different strengths λ of
the resource constraint; the values are given neither in the code nor in the README,
whose one command uses λ = 1.5e-3 with the log penalty (``SnasConfig`` defaults).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
    edge_index,
    num_edges,
    upcast_logits,
)

RESOURCE_METHODS = ("reparametrization", "policy_gradient", "discrete")
SEPARATIONS = ("all", "size", "flops", "mac")
ARCH_OPTIMIZERS = ("adam", "sgd")
COSTS = ("size", "flops", "mac")


@dataclass(frozen=True)
class SnasConfig:
    """Settings of an SNAS search; defaults are the authors' 8-cell CIFAR-10 search
    (R-SNAS README command and ``train_search.py`` defaults)."""

    # Search space and supernet: DARTS's (R-SNAS genotypes.PRIMITIVES, model_search.py)
    C: int = 16  # README --init_channels 16
    layers: int = 8  # README --layer 8
    steps: int = 4  # model_search.Network steps=4
    multiplier: int = 4  # model_search.Network multiplier=4
    primitives: tuple[str, ...] = DARTS_PRIMITIVES  # R-SNAS genotypes.PRIMITIVES
    drop_path_prob: float = 0.3  # README --drop_path_prob 3e-1, on every edge's output
    # Data and schedule
    epochs: int = 150  # README --epochs 150
    batch_size: int = 64  # train_search.py --batch_size 64
    augment: str | None = (
        "crop_flip"  # R-SNAS utils._data_transforms_cifar10 (no cutout)
    )
    valid_portion: float = (
        0.0  # nasedu: 0 = train on every training image as R-SNAS does
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
    # Weights θ: train_search.py
    lr: float = 0.025  # --learning_rate
    lr_min: float = 0.001  # --learning_rate_min, cosine
    momentum: float = 0.9  # --momentum
    weight_decay: float = 3e-4  # --weight_decay
    grad_clip: float = 5.0  # --grad_clip
    # Architecture α: train_search.py init_optimizer; model_search.py l.160
    arch_optimizer: str = (
        "adam"  # Adam in the multi-GPU branch; "sgd": the 1-GPU branch
    )
    arch_lr: float = 3e-4  # --arch_learning_rate (both branches)
    arch_betas: tuple[float, float] = (0.5, 0.999)  # Adam branch
    arch_weight_decay: float = 1e-3  # --arch_weight_decay (Adam branch; SGD has none)
    arch_grad_clip: float = 10.0  # clip_grad_norm_(arch_parameters(), 10.)
    alpha_init_mean: float = 1.0  # --loc_mean 1: α ~ N(1, 0.01²)
    alpha_init_std: float = 0.01  # --loc_std 0.01
    # Gumbel-softmax relaxation and its temperature: README, utils.Temp_Scheduler
    temperature: float = 1.0  # README --temp 1
    temperature_min: float = 0.03  # README --temp_min 0.03
    temperature_epochs: int = 150  # Temp_Scheduler hard-codes total_epochs = 150
    hard: bool = False  # model_search._get_categ_mask: soft samples; True: one-hot (ST)
    # Resource constraint: README --resource_efficient --method reparametrization
    # --resource_lambda 1.5e-3 --log_penalty --loss; model_search.py l.430-520
    resource_constraint: bool = True  # README --resource_efficient
    resource_method: str = (
        "reparametrization"  # README --method; code default policy_gradient
    )
    resource_lambda: float = 1.5e-3  # README --resource_lambda 1.5e-3
    log_penalty: bool = True  # README --log_penalty
    separation: str = (
        "all"  # train_search.py --separation: size, FLOPs and MAC together
    )
    reduce_ratio: float = (
        1.0  # train_search.py --ratio: weight of reduction cells' cost
    )
    genotype_form: str = "all"  # the 14-edge child the authors evaluate (README)
    # Hardware (nasedu), as for DARTS
    channels_last: bool = True
    amp: bool = True

    def __post_init__(self) -> None:
        choices = {
            "resource_method": RESOURCE_METHODS,
            "separation": SEPARATIONS,
            "arch_optimizer": ARCH_OPTIMIZERS,
            "genotype_form": ("all", "pairs"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; valid choices: "
                    f"{', '.join(valid)}"
                )
        if not 0 <= self.valid_portion < 1:
            raise ValueError(
                f"valid_portion must be in [0, 1), got {self.valid_portion}"
            )
        if not 0 < self.temperature_min <= self.temperature:
            raise ValueError(
                f"need 0 < temperature_min <= temperature, got "
                f"{self.temperature_min} and {self.temperature}"
            )


BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # A free Colab GPU in well under an hour (to be confirmed with `nasedu bench`): 20
    # epochs on 20,000 CIFAR-10 images, 2,000 of them held out to report accuracy.
    "colab": {
        "epochs": 20,
        "temperature_epochs": 20,
        "train_subset": 20000,
        "valid_portion": 0.1,
    },
    # Seconds on a CPU on 8×8 digits: the temperature reaches its minimum in 6 epochs.
    "smoke": {
        "C": 4,
        "layers": 5,
        "epochs": 6,
        "temperature_epochs": 6,
        "batch_size": 32,
        "augment": None,
        "steps_per_epoch": 8,
        "valid_batches": 4,
        "arch_lr": 3e-3,
        "drop_path_prob": 0.0,
    },
}


# --------------------------------------------------------------------------- sampling
def temperature(
    epoch: int, initial: float = 1.0, minimum: float = 0.03, total: int = 150
) -> float:
    """Gumbel-softmax temperature of ``epoch`` (0-based): linear from ``initial`` to
    ``minimum`` (R-SNAS ``utils.Temp_Scheduler``, stepped at each epoch's start, so
    epoch 0 already uses the first decayed value and epoch ``total - 1`` the minimum)."""
    value = (1 - (epoch + 1) / total) * (initial - minimum) + minimum
    return max(value, minimum)


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A relaxed one-hot sample per row: softmax((α + g) / τ), g ~ Gumbel(0, 1) (SNAS §2.2,
    Eq. 2-4; ``torch.nn.functional.gumbel_softmax`` with a generator of our own).

    With ``hard`` the forward value is the one-hot argmax and the gradient that of the
    soft sample (straight-through), so α still receives it.
    """
    gumbels = (
        -torch.empty_like(logits).exponential_(generator=generator).log()
    )  # Gumbel(0,1)
    soft = ((logits + gumbels) / tau).softmax(dim=-1)
    if not hard:
        return soft
    one_hot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return one_hot - soft.detach() + soft


def concrete_log_prob(
    logits: torch.Tensor, z: torch.Tensor, tau: float, floor: float = 1e-4
) -> torch.Tensor:
    """log-density of a concrete sample ``z`` (one row per edge) under logits ``α`` and
    temperature τ (Maddison et al. 2017, Eq. 6; R-SNAS ``Network.logp``, whose floors at
    1e-4 are kept): log (n−1)! + (n−1) log τ + Σ α_k − (τ+1) Σ log z_k
    − n log Σ exp(α_k) z_k^(−τ)."""
    n = logits.shape[-1]
    z = z.clamp_min(floor)
    mix = (z ** (-tau) * logits.exp()).clamp_min(floor).sum(-1)
    return (
        math.lgamma(n)
        + (n - 1) * math.log(tau)
        + logits.sum(-1)
        - (tau + 1) * z.log().sum(-1)
        - n * mix.log()
    )


# --------------------------------------------------------------------------- resources
def op_costs(name: str, C: int, h: int, stride: int) -> tuple[int, int, int]:
    """(parameter size, FLOPs, memory access cost) of one candidate on a ``C``-channel,
    ``h``×``h`` input, as R-SNAS ``operations.py`` counts them (FLOPs = multiply-adds
    of the convolutions, 9 per output for a 3×3 pool; MAC = feature-map reads and
    writes plus the weights). ``y`` is the output side."""
    y = h if stride == 1 else h // 2
    if name == "none":
        return 0, 0, 0
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return 0, 9 * y * y * C, (2 if stride == 1 else 5) * y * y * C
    if name == "skip_connect":
        if stride == 1:
            return 0, 0, 2 * C * h * h
        size = 2 * C * (C // 2)  # FactorizedReduce: two 1×1 convs to C/2 channels
        return size, size * y * y, 2 * y * y * (4 * C + C // 2) + size
    if name.startswith(("sep_conv_", "dil_conv_")):
        k = int(name[-1])
        if name.startswith("sep"):  # applied twice: two depthwise k×k, two 1×1
            size = 2 * C * k * k + 2 * C * C
            reads = 7 * C if stride == 1 else 10 * C
        else:
            size = C * k * k + C * C
            reads = 3 * C if stride == 1 else 6 * C
        return size, size * y * y, y * y * (reads + C) + size
    raise ValueError(
        f"no SNAS cost for operation {name!r}; valid choices: none, "
        f"max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3/5x5, "
        f"dil_conv_3x3/5x5"
    )


def cell_costs(
    reduction: bool,
    C: int,
    h: int,
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    steps: int = 4,
) -> torch.Tensor:
    """Costs of every candidate on every edge of one cell, (num_edges, num_ops, 3) for
    (size, FLOPs, MAC); ``h`` is the side of the cell's (preprocessed) inputs. In a
    reduction cell only edges from the two inputs are strided; the others see h/2."""
    table = torch.zeros(num_edges(steps), len(primitives), 3, dtype=torch.float64)
    for node in range(steps):
        for source in range(node + 2):
            strided = reduction and source < 2
            side = h if not reduction or strided else h // 2
            for k, name in enumerate(primitives):
                table[edge_index(node, source), k] = torch.tensor(
                    op_costs(name, C, side, 2 if strided else 1), dtype=torch.float64
                )
    return table


def edge_penalty(
    costs: torch.Tensor, z: torch.Tensor, separation: str = "all", log: bool = True
) -> torch.Tensor:
    """The resource penalty of each edge for (relaxed) choices ``z`` (num_edges, num_ops)
    (R-SNAS ``model_search.py``): the costs under ``z``, R = Σ_k cost_k z_k for size,
    FLOPs and MAC; ``all`` combines them as 0.43·(2·size + FLOPs/4000 + MAC/100), or,
    with ``log``, as the mean of their logarithms (values below 1 count as 1)."""
    R = torch.einsum("eko,ek->eo", costs.to(z.dtype), z)  # (num_edges, 3)
    if log:
        clean = torch.where(R.abs() < 1, torch.ones_like(R), R)
        logs = clean.abs().log()  # (num_edges, 3)
        return (
            logs.mean(-1) if separation == "all" else logs[:, COSTS.index(separation)]
        )
    if separation == "all":
        return 0.43 * (2 * R[:, 0] + R[:, 1] / 4000 + R[:, 2] / 100)
    return R[:, COSTS.index(separation)]


def resource_penalty(
    cells: Sequence[tuple[bool, torch.Tensor]],
    z_normal: torch.Tensor,
    z_reduce: torch.Tensor,
    *,
    method: str = "reparametrization",
    separation: str = "all",
    log: bool = True,
    reduce_ratio: float = 1.0,
    alphas: Alphas | None = None,
    tau: float = 1.0,
) -> torch.Tensor:
    """The resource term of SNAS's loss, a scalar (R-SNAS ``train_search.py``: the
    normal cells' sum over their count plus ``reduce_ratio`` times the reduction cells'
    sum over theirs — the code divides by 6 and 2, the counts of its 8-cell network).

    The cost of a sampled cell is not a differentiable function of θ, and of α only
    through the sample. ``method`` picks how α gets its gradient (R-SNAS ``--method``):

    * ``reparametrization`` — through the Gumbel-softmax sample z (the README's choice);
    * ``discrete`` — the expected cost under softmax(α) instead of a sample;
    * ``policy_gradient`` — the score function Σ_e log p(z_e) · C_e(z), the cost held
      constant (the code's default); z is held constant in log p too, as a score-function
      estimator requires (the code also differentiates log p through z).

    Args:
        cells: ``(reduction, costs)`` per cell, costs from ``cell_costs``.
        alphas: needed by ``discrete`` and ``policy_gradient``; tau by the latter.
    """
    if method not in RESOURCE_METHODS:
        raise ValueError(
            f"unknown resource method {method!r}; valid choices: "
            f"{', '.join(RESOURCE_METHODS)}"
        )
    if method != "reparametrization" and alphas is None:
        raise ValueError(f"resource method {method!r} needs the alphas")
    totals = {False: [], True: []}
    for reduction, costs in cells:
        logits = (
            None if alphas is None else (alphas.reduce if reduction else alphas.normal)
        )
        z = z_reduce if reduction else z_normal
        if method == "discrete":
            z = logits.softmax(-1)
        penalty = edge_penalty(costs, z, separation, log)  # (num_edges,)
        if method == "policy_gradient":
            penalty = concrete_log_prob(logits, z.detach(), tau) * penalty.detach()
        totals[reduction].append(penalty.sum())
    total = 0
    for reduction, weight in ((False, 1.0), (True, reduce_ratio)):
        if totals[reduction]:
            cells_of_type = torch.stack(totals[reduction])
            total = total + weight * cells_of_type.sum() / len(cells_of_type)
    return total


def child_costs(
    cells: Sequence[tuple[bool, torch.Tensor]],
    genotype_weights: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, float]:
    """Total parameter size, FLOPs and MAC of the cells of a child given as one-hot
    weights per edge (normal, reduce): what the constraint pushes down."""
    total = torch.zeros(3, dtype=torch.float64)
    for reduction, costs in cells:
        z = genotype_weights[1] if reduction else genotype_weights[0]
        total += torch.einsum(
            "eko,ek->o",
            costs.detach().cpu().to(torch.float64),
            z.detach().cpu().to(torch.float64),
        )
    return dict(zip(COSTS, total.tolist()))


# --------------------------------------------------------------------------- search
class SnasSearch(SupernetSearch):
    """An SNAS search, one epoch per ``step``.

    Each step samples one relaxed architecture per cell type (shared by all cells of
    that type), computes the training loss plus λ·resource penalty and updates θ and α
    together from that one loss (single-level optimisation; R-SNAS ``train``).
    """

    def __init__(
        self, config: SnasConfig, data: Any, device: torch.device | str, seed: int = 0
    ):
        super().__init__(device, seed)
        self.config, self.epochs = config, config.epochs
        x, y = data.train
        if config.train_subset is not None and config.train_subset < len(y):
            (x, y), _ = search_split(x, y, config.train_subset / len(y), seed=seed)
        valid = data.valid
        if config.valid_portion > 0:
            (x, y), valid = search_split(x, y, 1 - config.valid_portion, seed=seed)
        self.train_loader = BatchLoader(
            x,
            y,
            config.batch_size,
            self.device,
            augment=config.augment,
            fill=getattr(data, "fill", 0.0),
            seed=seed,
            drop_last=True,
        )
        self.valid = (
            None
            if valid is None
            else (valid[0].to(self.device), valid[1].to(self.device))
        )
        torch.manual_seed(seed)
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
        self.alphas = Alphas(
            num_edges(config.steps),
            len(config.primitives),
            mean=config.alpha_init_mean,
            std=config.alpha_init_std,
            generator=torch.Generator().manual_seed(seed),
        ).to(self.device)
        self.cells = [
            (r, cell_costs(r, C, h, config.primitives, config.steps).to(self.device))
            for r, C, h in self.supernet.cell_shapes(x.shape[-1])
        ]
        self.w_optimizer = torch.optim.SGD(
            self.supernet.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        if config.arch_optimizer == "adam":
            self.arch_optimizer = torch.optim.Adam(
                self.alphas.parameters(),
                lr=config.arch_lr,
                betas=config.arch_betas,
                weight_decay=config.arch_weight_decay,
            )
        else:
            self.arch_optimizer = torch.optim.SGD(
                self.alphas.parameters(), lr=config.arch_lr
            )
        self.amp_dtype = amp_dtype(self.device) if config.amp else None
        self.scaler = None
        if self.amp_dtype == torch.float16:
            self.scaler = (
                torch.amp.GradScaler("cuda")
                if hasattr(torch.amp, "GradScaler")
                else torch.cuda.amp.GradScaler()
            )
        self.tau = temperature(
            0, config.temperature, config.temperature_min, config.temperature_epochs
        )
        self.lr = config.lr
        self.last_penalty = 0.0

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One relaxed architecture: a Gumbel-softmax sample per edge, per cell type."""
        c = self.config
        return (
            gumbel_softmax(self.alphas.normal, self.tau, c.hard, self.noise_rng),
            gumbel_softmax(self.alphas.reduce, self.tau, c.hard, self.noise_rng),
        )

    def loss(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(total loss, training loss, logits) for one batch and one fresh sample."""
        c = self.config
        z_n, z_r = self.sample()
        ctx = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype
            else contextlib.nullcontext()
        )
        with ctx:
            logits = self.supernet(x, z_n, z_r, c.drop_path_prob, self.noise_rng)
        error = F.cross_entropy(upcast_logits(logits), y)
        if not c.resource_constraint:
            return error, error, logits
        penalty = resource_penalty(
            self.cells,
            z_n,
            z_r,
            method=c.resource_method,
            separation=c.separation,
            log=c.log_penalty,
            reduce_ratio=c.reduce_ratio,
            alphas=self.alphas,
            tau=self.tau,
        )
        self.last_penalty = float(penalty.detach())
        return error + c.resource_lambda * penalty, error, logits

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        c = self.config
        self.tau = temperature(
            epoch, c.temperature, c.temperature_min, c.temperature_epochs
        )
        self.lr = cosine_lr(epoch, c.epochs, c.lr, c.lr_min)
        for group in self.w_optimizer.param_groups:
            group["lr"] = self.lr
        loss_sum, correct, seen = 0.0, 0, 0
        for k, (x, y) in enumerate(self.train_loader):
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            total, error, logits = self.loss(x, y)
            self.w_optimizer.zero_grad(set_to_none=True)
            self.arch_optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(total).backward()
                self.scaler.unscale_(self.w_optimizer)
                self.scaler.unscale_(self.arch_optimizer)
            else:
                total.backward()
            nn.utils.clip_grad_norm_(
                self.supernet.parameters(), c.grad_clip, foreach=True
            )
            nn.utils.clip_grad_norm_(self.alphas.parameters(), c.arch_grad_clip)
            for optimizer in (self.w_optimizer, self.arch_optimizer):
                if self.scaler is not None:
                    self.scaler.step(optimizer)
                else:
                    optimizer.step()
            if self.scaler is not None:
                self.scaler.update()
            loss_sum += float(error.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if c.steps_per_epoch is not None and k + 1 >= c.steps_per_epoch:
                break
        if (
            self.train_loader.batch != 0
        ):  # a capped epoch: the next one starts a fresh pass
            self.train_loader.epoch, self.train_loader.batch = (
                self.train_loader.epoch + 1,
                0,
            )
        self.train_acc = correct / seen
        return loss_sum / seen, correct / seen

    # ------------------------------------------------------------ SupernetSearch
    def child_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot argmax of α per edge: the child network (R-SNAS ``gen_max_child``)."""

        def one_hot(a):
            return F.one_hot(a.argmax(-1), a.shape[-1]).to(a.dtype)

        return one_hot(self.alphas.normal.detach()), one_hot(
            self.alphas.reduce.detach()
        )

    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.child_weights()

    def validate(self) -> tuple[float, float]:
        """The child's loss and accuracy with the supernet's weights, no retraining (the
        property SNAS claims over DARTS); the training accuracy when there is no
        validation split (R-SNAS trains on the whole CIFAR-10 training set)."""
        if self.valid is None:
            return None, self.train_acc
        x, y = self.valid
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.evaluate(x, y, self.config.batch_size, self.config.valid_batches)

    def genotype(self, form: str | None = None) -> Genotype:
        c = self.config
        w_n, w_r = self.alphas.softmax()
        return derive(
            w_n, w_r, c.primitives, c.steps, c.multiplier, form=form or c.genotype_form
        )

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"w": self.w_optimizer, "alpha": self.arch_optimizer}

    def epoch_extra(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "temperature": self.tau,
            "resource_penalty": self.last_penalty,
            "child_costs": child_costs(self.cells, self.child_weights()),
            "genotype_pairs": self.genotype("pairs").to_dict(),
        }

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["loader"] = self.train_loader.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.train_loader.load_state_dict(state["loader"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def make(
    config: SnasConfig, data: Any, device: torch.device | str, seed: int = 0
) -> SnasSearch:
    """The ``Search`` the runner drives (``nasedu search snas``)."""
    return SnasSearch(config, data, device, seed)


METHODS.register(
    "snas", Method("snas", SnasConfig, BUDGETS, make, citation="xie2019snas")
)


def search(
    config: SnasConfig, data: Any, device: torch.device | str = "cpu", seed: int = 0
) -> list[HistoryRecord]:
    """Run a whole SNAS search in memory; one record per epoch (see ``darts.search``)."""
    return SnasSearch(config, data, device, seed).run_all()
