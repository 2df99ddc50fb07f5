"""ENAS: Efficient Neural Architecture Search via Parameter Sharing (Pham, Guan, Zoph,
Le & Dean, ICML 2018, arXiv:1802.03268; chapter *ENAS*).

NAS-RL trains every sampled child from scratch. ENAS lets all children share one set
of weights: the search space is a single directed acyclic super-graph, a child is a
sub-graph of it, and every child that uses an edge uses *the same* parameter tensors
for it (§2). The search alternates two phases (§2.2):

1. the shared weights ω are trained for one epoch, one sampled child per minibatch
   (M = 1: "update ω with the gradient of a single sampled model");
2. the controller θ (an LSTM, ``nasedu.strategies.controller``) is trained for its
   steps with REINFORCE and a moving-average baseline, the reward of a child being
   its accuracy on one validation minibatch *with the shared weights* — no training.

At the end several children are sampled and the one with the best accuracy on one
validation minibatch is retrained from scratch. This module holds one super-graph per
space of ``nasedu.spaces.enas_spaces`` — ``MicroSupernet`` (cells; its children are
``nasedu.networks.NetworkCIFAR`` s, ``MicroSupernet.child`` copies their weights
out), ``MacroSupernet`` (12 layers with skips) and ``EnasRecurrentCell`` (inside
``nasedu.papers.rnn_cells.RNNModel``, on a word corpus) — and ``EnasSearch``, the
alternating loop, with the methods ``enas`` and ``enas_random`` (uniform sampling
on the same supernet, no controller: the baseline of Li & Talwalkar 2019, who found
random cells on ENAS's supernet about as good).

The paper's text could not be read here; every setting below comes from the authors'
code, ``R-ENAS`` = ``melodyguan/enas@00787a5`` (``scripts/cifar10_micro_search.sh``,
``cifar10_macro_search.sh``, ``ptb_search.sh``, flag defaults in ``src/*/main.py``),
marked with the script or file it comes from (``/work/shared/reference``
paper-settings §3).

Deliberate differences, each small: the micro search builds no auxiliary head and
its reduction cells use NetworkCIFAR's strided edges (R-ENAS reduces the inputs
first), so that every child *is* a ``NetworkCIFAR``; the recurrent search has no
BatchNorm (R-ENAS ``_rhn_enas`` has one, its fixed child none), so search and fixed
cell compute the same function; the supernets' BatchNorms always use the batch's
statistics (R-ENAS scores children with running averages accumulated over all of
them).

``smoke`` shrinks everything to seconds on a CPU (see ``BUDGETS``).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasedu.data import BatchLoader, search_split
from nasedu.genotypes import Genotype
from nasedu.networks import NetworkCIFAR
from nasedu.ops import ENAS_PRIMITIVES, FactorizedReduce, Identity, ReLUConvBN, build
from nasedu.ops import drop_path as _drop_path
from nasedu.search import METHODS, Clock, EpochSearch, HistoryRecord, Method
from nasedu.spaces.enas_spaces import (
    MACRO_OPS,
    RNN_ACTIVATIONS,
    MacroArch,
    MacroSpace,
    MicroSpace,
    RecurrentArch,
    RecurrentSpace,
)
from nasedu.strategies.controller import Controller, Reinforce, Sample

SPACES = ("micro", "macro", "rnn")


# --------------------------------------------------------------------------- controller
def skip_penalty(skip_probs: torch.Tensor, target: float) -> torch.Tensor:
    """KL(Bernoulli(p) ‖ Bernoulli(target)) summed over every skip decision (R-ENAS
    ``general_controller``: ``skip_prob · log(skip_prob / skip_targets)`` summed)."""
    p = skip_probs.clamp(1e-6, 1 - 1e-6)
    t = torch.tensor(target, dtype=p.dtype, device=p.device)
    return (p * (p / t).log() + (1 - p) * ((1 - p) / (1 - t)).log()).sum()


class EnasReinforce(Reinforce):
    """``Reinforce`` plus ENAS's macro-space skip penalty: the loss gains
    ``skip_weight · KL(p_skip ‖ skip_target)`` per sample, which pulls the density
    of skip connections towards ``skip_target`` (R-ENAS ``general_controller.
    build_trainer``: ``loss += skip_weight * skip_penalties``)."""

    def __init__(
        self,
        controller: Controller,
        lr: float,
        *,
        skip_weight: float | None = None,
        skip_target: float = 0.4,
        **kwargs: Any,
    ):
        super().__init__(controller, lr, **kwargs)
        self.skip_weight, self.skip_target = skip_weight, skip_target

    def update(self, batch) -> dict[str, float]:
        if not batch:
            raise ValueError(
                "an update needs at least one (decisions, actions, reward)"
            )
        samples = [self.controller.evaluate(d, a) for d, a, _ in batch]
        entropies = [float(s.entropy.detach()) for s in samples]
        rewards = [
            r + self.entropy_weight * h for (_, _, r), h in zip(batch, entropies)
        ]
        b = sum(rewards) / len(rewards) if self.baseline is None else self.baseline
        loss = -torch.stack([(r - b) * s.log_prob for r, s in zip(rewards, samples)])
        loss = loss.mean()
        penalty = 0.0
        if self.skip_weight and samples[0].skip_probs.numel():
            kl = torch.stack(
                [skip_penalty(s.skip_probs, self.skip_target) for s in samples]
            )
            loss = loss + self.skip_weight * kl.mean()
            penalty = float(kl.mean().detach())
        value = self._step(loss)
        self._advance_baseline(rewards)
        return {
            "loss": value,
            "baseline": self.baseline,
            "reward": sum(r for _, _, r in batch) / len(batch),
            "entropy": sum(entropies) / len(entropies),
            "skip_penalty": penalty,
        }


# --------------------------------------------------------------------------- micro
def _batch_stats_only(module: nn.Module) -> nn.Module:
    """Every BatchNorm of a supernet normalises with the statistics of the current
    batch, in training and evaluation alike, as DARTS's supernet does: running
    averages mixed over thousands of different children describe none of them.
    (R-ENAS keeps running averages and uses them for the reward:
    ``micro_child.build_valid_rl`` calls the model with ``is_training=False``.)"""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return module


class MicroCell(nn.Module):
    """One layer of the micro super-graph: every (node, slot, input, operation) has
    its own op, shared by every child that makes that choice (R-ENAS
    ``micro_child._enas_cell`` indexes its weights by node and input the same way).

    The output has ``nodes · C`` channels: the loose ends in their places and zeros
    for the nodes that other nodes read. The next layer's 1×1 preprocessing conv then
    sees exactly what it would see in the child, where only the loose ends are
    concatenated (R-ENAS gathers the rows of that conv's weight instead).
    """

    def __init__(
        self,
        nodes: int,
        primitives: tuple[str, ...],
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction, self.nodes, self.C = reduction, nodes, C
        self.index = {p: k for k, p in enumerate(primitives)}
        self.preprocess0 = (
            FactorizedReduce(C_prev_prev, C)
            if reduction_prev
            else ReLUConvBN(C_prev_prev, C, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0)
        # ops[node][slot][input][op]; only edges from the cell inputs are strided.
        self.ops = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(
                    nn.ModuleList(
                        build(p, C, 2 if reduction and j < 2 else 1) for p in primitives
                    )
                    for j in range(i + 2)
                )
                for _slot in range(2)
            )
            for i in range(nodes)
        )

    def op(self, node: int, slot: int, source: int, name: str) -> nn.Module:
        """The shared op of one choice (what two children with that choice share)."""
        return self.ops[node][slot][source][self.index[name]]

    def forward(self, s0, s1, genotype_nodes, concat, drop_prob: float = 0.0):
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (B, C, H, W)
        for i, node in enumerate(genotype_nodes):
            total = 0
            for slot, (name, j) in enumerate(node):
                op = self.op(i, slot, j, name)
                h = op(states[j])
                if not isinstance(op, Identity):  # as nasedu's Cell: never the identity
                    h = _drop_path(h, drop_prob, self.training)
                total = total + h
            states.append(total)
        zeros = torch.zeros_like(states[-1])
        outs = [states[j] if j in concat else zeros for j in range(2, self.nodes + 2)]
        return torch.cat(outs, dim=1)  # (B, nodes·C, H', W')


class MicroSupernet(nn.Module):
    """The shared-weight network of the micro space (R-ENAS ``micro_child.py``).

    Its layout is ``NetworkCIFAR``'s: a 3×3 stem to ``stem_multiplier · C`` channels,
    ``layers`` cells with reduction cells at 1/3 and 2/3 of the depth (channels
    doubled there; R-ENAS's ``child_num_layers = 6`` normal cells plus its two
    reduction layers are ``layers = 8``, the same positions), global pooling, dropout
    and a linear classifier. ``forward(x, genotype)`` runs the child ``genotype``;
    ``child(genotype)`` builds that child as a standalone ``NetworkCIFAR`` holding
    copies of the weights it uses.
    """

    def __init__(
        self,
        C: int,
        num_classes: int,
        layers: int,
        nodes: int = 5,
        primitives: tuple[str, ...] = ENAS_PRIMITIVES,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.C, self.layers, self.nodes = C, layers, nodes
        self.num_classes, self.in_channels = num_classes, in_channels
        self.stem_multiplier, self.dropout = stem_multiplier, dropout
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )
        self.cells = nn.ModuleList()
        C_pp, C_p, C_curr, reduction_prev = C_stem, C_stem, C, False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            self.cells.append(
                MicroCell(
                    nodes, primitives, C_pp, C_p, C_curr, reduction, reduction_prev
                )
            )
            reduction_prev = reduction
            C_pp, C_p = C_p, nodes * C_curr
        self.classifier = nn.Linear(C_p, num_classes)
        _batch_stats_only(self)

    def forward(self, x: torch.Tensor, genotype: Genotype, drop_prob: float = 0.0):
        s0 = s1 = self.stem(x)  # (B, 3C, H, W)
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            s0, s1 = (
                s1,
                cell(s0, s1, genotype.nodes(kind), genotype.concat(kind), drop_prob),
            )
        out = F.adaptive_avg_pool2d(s1, 1).flatten(1)  # (B, nodes·C_last)
        out = F.dropout(out, self.dropout, self.training)  # R-ENAS --child_keep_prob
        return self.classifier(out)  # (B, num_classes)

    @torch.no_grad()
    def child(self, genotype: Genotype) -> NetworkCIFAR:
        """The child ``genotype`` as a ``NetworkCIFAR`` with the supernet's weights.

        Every op is copied from the slot it uses; the 1×1 convs that read a cell's
        output and the classifier keep the weight columns of the loose ends only (the
        columns that see zeros in the supernet). In training mode (batch statistics)
        the child computes exactly what ``self(x, genotype)`` computes.
        """
        net = NetworkCIFAR(
            genotype,
            C=self.C,
            layers=self.layers,
            num_classes=self.num_classes,
            auxiliary=False,
            in_channels=self.in_channels,
            stem_multiplier=self.stem_multiplier,
        ).to(self.classifier.weight.device, self.classifier.weight.dtype)
        _copy(net.stem, self.stem)
        live: list[torch.Tensor | None] = [None, None]  # input channels each cell reads
        for ours, theirs in zip(self.cells, net.cells):
            _copy(theirs.preprocess0, ours.preprocess0, live[0])
            _copy(theirs.preprocess1, ours.preprocess1, live[1])
            for i, node in enumerate(theirs.nodes):
                for slot, (name, j) in enumerate(node):
                    _copy(theirs.edge_ops[i][slot], ours.op(i, slot, j, name))
            channels = torch.cat(
                [
                    torch.arange((j - 2) * ours.C, (j - 1) * ours.C)
                    for j in theirs.concat
                ]
            )
            live = [live[1], channels]
        _copy(net.classifier, self.classifier, live[1])
        return net


def _copy(dst: nn.Module, src: nn.Module, columns: torch.Tensor | None = None) -> None:
    """Copy ``src``'s parameters into ``dst`` (same structure); 1×1 conv and linear
    weights whose input is wider in ``src`` keep only ``columns`` of their inputs."""
    src_params = dict(src.named_parameters())
    for name, p in dst.named_parameters():
        value = src_params[name]
        if value.shape != p.shape:
            value = value[:, columns.to(value.device)]
        p.copy_(value)


# --------------------------------------------------------------------------- macro
class _ConvBranch(nn.Module):
    """1×1 conv → BN → ReLU, then a k×k (separable) conv → BN → ReLU (R-ENAS
    ``general_child._conv_branch``)."""

    def __init__(self, C: int, k: int, separable: bool):
        super().__init__()
        self.inp = nn.Sequential(
            nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C), nn.ReLU()
        )
        conv = (
            [
                nn.Conv2d(C, C, k, padding=k // 2, groups=C, bias=False),
                nn.Conv2d(C, C, 1, bias=False),
            ]
            if separable
            else [nn.Conv2d(C, C, k, padding=k // 2, bias=False)]
        )
        self.out = nn.Sequential(*conv, nn.BatchNorm2d(C), nn.ReLU())

    def forward(self, x):
        return self.out(self.inp(x))  # (B, C, H, W)


class _PoolBranch(nn.Module):
    """1×1 conv → BN → ReLU, then a 3×3 pool (R-ENAS ``general_child._pool_branch``)."""

    def __init__(self, C: int, kind: str):
        super().__init__()
        self.inp = nn.Sequential(
            nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C), nn.ReLU()
        )
        self.pool = (
            nn.AvgPool2d(3, 1, 1, count_include_pad=False)
            if kind == "avg"
            else nn.MaxPool2d(3, 1, 1)
        )

    def forward(self, x):
        return self.pool(self.inp(x))


def _macro_branch(name: str, C: int) -> nn.Module:
    if name.endswith("pool"):
        return _PoolBranch(C, name[:3])
    return _ConvBranch(C, int(name[-1]), name.startswith("sep"))


class _Reduce(nn.Module):
    """Halve H and W: two offset stride-2 1×1 convs, concatenated, BN (R-ENAS
    ``_factorized_reduction``, which has no ReLU in front)."""

    def __init__(self, C: int):
        super().__init__()
        self.conv_1 = nn.Conv2d(C, C // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C, C - C // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C)

    def forward(self, x):
        shifted = F.pad(x[:, :, 1:, 1:], (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], 1))


class MacroSupernet(nn.Module):
    """The shared-weight network of the macro space (R-ENAS ``general_child.py``).

    Node 0 is the stem; layer i reads node i (the previous layer), applies its
    operation, adds the nodes its skip bits select, and batch-normalises the sum
    (layer 0 has no skips and no BN). After layers L/3 − 1 and 2L/3 − 1 every node is
    halved in size (``pool_layers``); the number of filters stays ``filters`` during
    the search, as in R-ENAS. With ``arch`` given, only that child's branches are
    built: the standalone network to retrain, whose parameters are the child's own.
    """

    def __init__(
        self,
        filters: int,
        num_classes: int,
        layers: int = 12,
        in_channels: int = 3,
        dropout: float = 0.0,
        arch: MacroArch | None = None,
    ):
        super().__init__()
        if arch is not None and len(arch.ops) != layers:
            raise ValueError(f"arch has {len(arch.ops)} layers, the network {layers}")
        self.arch, self.dropout = arch, dropout
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, filters, 3, padding=1, bias=False),
            nn.BatchNorm2d(filters),
        )
        ops = [MACRO_OPS if arch is None else (arch.ops[i],) for i in range(layers)]
        self.branches = nn.ModuleList(
            nn.ModuleDict({op: _macro_branch(op, filters) for op in ops[i]})
            for i in range(layers)
        )
        self.skip_bn = nn.ModuleList(nn.BatchNorm2d(filters) for _ in range(layers))
        d = layers // 3  # R-ENAS general_child: pool_distance = num_layers // 3
        self.pool_layers = tuple(p for p in (d - 1, 2 * d - 1) if p >= 0)
        self.reduce = nn.ModuleDict(
            {
                str(p): nn.ModuleList(_Reduce(filters) for _ in range(p + 2))
                for p in self.pool_layers
            }
        )
        self.classifier = nn.Linear(filters, num_classes, bias=False)  # R-ENAS "fc"
        if arch is None:
            _batch_stats_only(self)

    def forward(self, x: torch.Tensor, arch: MacroArch | None = None):
        arch = arch or self.arch
        if arch is None:
            raise ValueError("the supernet needs an architecture: forward(x, arch)")
        nodes = [self.stem(x)]  # (B, F, H, W)
        for i, (op, bits) in enumerate(zip(arch.ops, arch.skips)):
            out = self.branches[i][op](nodes[-1])
            if i > 0:
                for j, b in enumerate(bits):
                    if b:
                        out = out + nodes[j]
                out = self.skip_bn[i](out)
            nodes.append(out)
            if i in self.pool_layers:
                nodes = [r(n) for r, n in zip(self.reduce[str(i)], nodes)]
        out = F.adaptive_avg_pool2d(nodes[-1], 1).flatten(1)  # (B, F)
        out = F.dropout(out, self.dropout, self.training)
        return self.classifier(out)  # (B, num_classes)


# --------------------------------------------------------------------------- recurrent
ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}


class EnasRecurrentCell(nn.Module):
    """The shared-weight recurrent cell (R-ENAS ``ptb_enas_child._rhn_enas``).

    Node 0 computes ``[c, h] = [x_t, h_{t−1}] W⁰_f`` and node i ≥ 1
    ``[c, h] = s_j W^i_{j,f}`` from the node j it reads; both then apply highway
    gating, ``s = s_in + σ(c) ⊙ (f(h) − s_in)``, with s_in = h_{t−1} for node 0. Each
    (node, input, activation) owns its matrix, as in R-ENAS (``w_prev`` has a block
    per activation, ``w_skip[i]`` one per input and activation). The cell's output
    is the average of the loose ends. It plugs into ``rnn_cells.RNNModel`` (the
    ``weights`` argument carries the ``RecurrentArch``).
    """

    def __init__(
        self,
        ninp: int,
        nhid: int,
        nodes: int = 12,
        activations: tuple[str, ...] = RNN_ACTIVATIONS,
        init_range: float | None = None,
    ):
        super().__init__()
        if init_range is None:  # R-ENAS ptb_enas_child._build_params
            init_range = 0.1 if nhid <= 300 else 0.05 if nhid <= 400 else 0.04
        self.nhid, self.nodes, self.activations = nhid, nodes, tuple(activations)
        n = len(activations)

        def weight(*shape):
            return nn.Parameter(torch.empty(*shape).uniform_(-init_range, init_range))

        self.W0 = weight(n, ninp + nhid, 2 * nhid)
        self.Ws = nn.ParameterList(
            weight(i, n, nhid, 2 * nhid) for i in range(1, nodes)
        )

    def cell(self, x, h_prev, arch: RecurrentArch, x_mask=None, h_mask=None):
        """One time step: x (B, ninp), h_prev (B, nhid) → h_t (B, nhid)."""
        f = [self.activations.index(a) for a in arch.activations]
        xin = x if x_mask is None else x * x_mask
        hin = h_prev if h_mask is None else h_prev * h_mask
        c, h = torch.cat([xin, hin], -1).mm(self.W0[f[0]]).split(self.nhid, -1)
        states = [h_prev + c.sigmoid() * (ACTIVATIONS[arch.activations[0]](h) - h_prev)]
        for i, j in enumerate(arch.inputs, 1):
            s = states[j]
            s_in = s if h_mask is None else s * h_mask
            c, h = s_in.mm(self.Ws[i - 1][j, f[i]]).split(self.nhid, -1)
            states.append(s + c.sigmoid() * (ACTIVATIONS[arch.activations[i]](h) - s))
        return torch.stack([states[k] for k in arch.loose_ends()]).mean(0)  # (B, nhid)

    def forward(self, inputs, hidden, arch, x_mask=None, h_mask=None):
        """inputs (T, B, ninp), hidden (B, nhid) → outputs (T, B, nhid), last hidden."""
        outputs = []
        for x in inputs:
            hidden = self.cell(x, hidden, arch, x_mask, h_mask)
            outputs.append(hidden)
        outputs = torch.stack(outputs)
        return outputs, outputs[-1]


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class ControllerSettings:
    """The controller and its REINFORCE update; defaults are R-ENAS's micro search
    (``cifar10_micro_search.sh`` flags, ``main.py`` defaults, ``src/utils.py``)."""

    hidden: int = 64  # R-ENAS cifar10/main.py lstm_size=64
    lr: float = 0.0035  # --controller_lr=0.0035 (paper: 0.00035, UNVERIFIED)
    tanh_constant: float | None = 1.10  # --controller_tanh_constant=1.10
    op_tanh_reduce: float = 2.5  # --controller_op_tanh_reduce=2.5: ops use 1.10/2.5
    temperature: float | None = None  # micro search sets none (paper 5.0, UNVERIFIED)
    entropy_weight: float = 1e-4  # --controller_entropy_weight=0.0001
    baseline_decay: float = 0.99  # R-ENAS main.py --controller_bl_dec default 0.99
    train_steps: int = 30  # --controller_train_steps=30 updates per epoch
    num_aggregate: int = 10  # --controller_num_aggregate=10 samples per update
    betas: tuple[float, float] = (0.0, 0.999)  # R-ENAS src/utils.py l.217 beta1=0.0
    eps: float = 1e-3  # R-ENAS src/utils.py l.217 epsilon=1e-3
    init_range: float = 0.1  # R-ENAS micro_controller: uniform(-0.1, 0.1)
    skip_target: float = 0.4  # macro only: --controller_skip_target=0.4
    skip_weight: float | None = None  # macro only: --controller_skip_weight=0.8


@dataclass(frozen=True)
class SharedTraining:
    """How the shared weights ω are trained (R-ENAS ``cifar10_micro_search.sh``)."""

    epochs: int = 150  # --num_epochs=150
    batch_size: int = 160  # --batch_size=160
    lr_max: float = 0.05  # --child_lr_max=0.05, cosine with warm restarts
    lr_min: float = 0.0005  # --child_lr_min=0.0005
    lr_T0: int = 10  # --child_lr_T_0=10
    lr_Tmul: int = 2  # --child_lr_T_mul=2
    momentum: float = 0.9  # R-ENAS utils.get_train_ops: Nesterov momentum 0.9
    weight_decay: float = 1e-4  # --child_l2_reg=1e-4
    grad_clip: float = 5.0  # R-ENAS cifar10/main.py --child_grad_bound default 5.0
    dropout: float = 0.1  # --child_keep_prob=0.90 before the classifier
    drop_path_prob: float = 0.4  # --child_drop_path_keep_prob=0.60, ramped linearly
    augment: str | None = "crop_flip"  # R-ENAS data_utils: pad-4 crops and flips
    valid_size: int = 5000  # R-ENAS cifar10 data_utils: 5,000 training images held out


@dataclass(frozen=True)
class MicroSettings:
    """The micro search (R-ENAS ``cifar10_micro_search.sh``)."""

    C: int = 20  # --child_out_filters=20
    layers: int = 8  # --child_num_layers=6 normal cells + 2 reduction layers
    nodes: int = 5  # --child_num_cells=5
    training: SharedTraining = field(default_factory=SharedTraining)
    controller: ControllerSettings = field(default_factory=ControllerSettings)


@dataclass(frozen=True)
class MacroSettings:
    """The macro search (R-ENAS ``cifar10_macro_search.sh``)."""

    filters: int = 36  # --child_out_filters=36
    layers: int = 12  # --child_num_layers=12
    training: SharedTraining = field(
        default_factory=lambda: SharedTraining(
            epochs=310,  # --num_epochs=310
            batch_size=128,  # --batch_size=128
            weight_decay=2.5e-4,  # --child_l2_reg=0.00025
            drop_path_prob=0.0,  # drop-path acts on cells only (micro_child.py)
        )
    )
    controller: ControllerSettings = field(
        default_factory=lambda: ControllerSettings(
            lr=0.001,  # --controller_lr=0.001
            tanh_constant=1.5,  # --controller_tanh_constant=1.5 (ops 1.5/2.5)
            train_steps=50,  # --controller_train_steps=50
            num_aggregate=20,  # --controller_num_aggregate=20
            skip_weight=0.8,  # --controller_skip_weight=0.8
        )
    )


@dataclass(frozen=True)
class RecurrentSettings:
    """The recurrent-cell search on a word corpus (R-ENAS ``ptb_search.sh``)."""

    corpus: str = "embedded"  # nasedu: "embedded" or a folder with ptb.{train,...}.txt
    nhid: int = 720  # --child_lstm_hidden_size=720 (embedding tied, same size)
    nodes: int = 12  # --child_rhn_depth=12
    epochs: int = 100  # --num_epochs=100
    batch_size: int = 20  # --batch_size=20
    bptt: int = 35  # --child_bptt_steps=35
    lr: float = 0.25  # --child_lr=0.25 (SGD) on the loss summed over the 35 steps
    lr_dec_start: int = 12  # --child_lr_dec_start=12
    lr_dec_rate: float = 0.95  # --child_lr_dec_rate=0.95 per epoch
    lr_dec_min: float = 0.0005  # --child_lr_dec_min=0.0005
    grad_clip: float = 10.0  # --child_grad_bound=10.0
    weight_decay: float = 1e-7  # --child_l2_reg=1e-7
    dropout: float = 0.75  # --child_lstm_o_keep=0.25 (output)
    dropoutx: float = 0.75  # --child_lstm_x_keep=0.25 (cell input)
    dropouth: float = 0.25  # --child_lstm_h_keep=0.75 (hidden state)
    dropoute: float = 0.25  # --child_lstm_e_keep=0.75 (whole words)
    reward_c: float = 80.0  # R-ENAS ptb_enas_controller: reward = 80 / valid ppl
    controller: ControllerSettings = field(
        default_factory=lambda: ControllerSettings(
            hidden=100,  # R-ENAS ptb/main.py lstm_size=100
            lr=0.001,  # --controller_lr=0.001
            tanh_constant=2.5,  # --controller_tanh_constant=2.5
            op_tanh_reduce=1.0,  # the PTB controller has no op_tanh_reduce
            temperature=5.0,  # --controller_temperature=5.0
            entropy_weight=0.001,  # --controller_entropy_weight=0.001
            train_steps=100,  # --controller_train_steps=100
            num_aggregate=10,  # --controller_num_aggregate=10
        )
    )


@dataclass(frozen=True)
class EnasConfig:
    """An ENAS search; ``space`` picks which of the three settings is used."""

    space: str = "micro"  # §2.3 micro (the paper's best CIFAR-10 cell), macro, rnn
    micro: MicroSettings = field(default_factory=MicroSettings)
    macro: MacroSettings = field(default_factory=MacroSettings)
    rnn: RecurrentSettings = field(default_factory=RecurrentSettings)
    derive_samples: int = (
        10  # R-ENAS main.py l.308 samples 10 (paper's count UNVERIFIED)
    )
    controller: bool = (
        True  # False: uniform sampling on the same supernet (enas_random)
    )
    steps_per_epoch: int | None = None  # nasedu: cap on ω steps per epoch (budgets)
    valid_batches: int | None = None  # nasedu: cap on the derived child's validation
    train_subset: int | None = None  # nasedu: use this many training images (budgets)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(
                f"unknown ENAS space {self.space!r}; valid choices: {', '.join(SPACES)}"
            )
        if self.derive_samples < 1:
            raise ValueError(f"derive_samples must be >= 1, got {self.derive_samples}")

    @property
    def settings(self) -> MicroSettings | MacroSettings | RecurrentSettings:
        return getattr(self, self.space)


BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # A free Colab GPU well inside an hour (to be confirmed with `nasedu bench`): 10
    # epochs on 20,000 CIFAR-10 images (one cosine cycle, T0 = 10), 2,000 held out.
    "colab": {
        "micro": {"training": {"epochs": 10, "valid_size": 2000}},
        "macro": {"training": {"epochs": 10, "valid_size": 2000}},
        "rnn": {"epochs": 5, "nhid": 200},
        "train_subset": 20000,
    },
    # Seconds on one CPU core on the 8×8 digits: a 5-cell, 4-channel supernet, 8 ω
    # steps and 2 controller updates of 5 samples per epoch, for 3 epochs; larger
    # controller steps so that 3 epochs move it; the recurrent cell at 16 units.
    "smoke": {
        "micro": {
            "C": 4,
            "layers": 5,
            "training": {
                "epochs": 3,
                "batch_size": 32,
                "lr_max": 0.1,
                "lr_T0": 3,
                "augment": None,
                "drop_path_prob": 0.0,
                "dropout": 0.0,
            },
            "controller": {"train_steps": 2, "num_aggregate": 5, "lr": 0.02},
        },
        "macro": {
            "filters": 8,
            "layers": 6,
            "training": {
                "epochs": 3,
                "batch_size": 32,
                "lr_max": 0.1,
                "lr_T0": 3,
                "augment": None,
                "dropout": 0.0,
            },
            "controller": {"train_steps": 2, "num_aggregate": 5, "lr": 0.02},
        },
        "rnn": {
            "nhid": 16,
            "nodes": 6,
            "epochs": 3,
            "batch_size": 16,
            "bptt": 8,
            "lr": 0.5,
            "controller": {"train_steps": 2, "num_aggregate": 5, "lr": 0.02},
        },
        "derive_samples": 4,
        "steps_per_epoch": 8,
        "valid_batches": 4,
    },
}


def cosine_restarts(
    epoch: int, lr_max: float, lr_min: float, T0: int, Tmul: int
) -> float:
    """SGDR's learning rate of ``epoch`` (Loshchilov & Hutter 2017; R-ENAS
    ``src/utils.get_train_ops`` with ``child_lr_cosine``): cosine from lr_max to lr_min
    over T0 epochs, then over T0·Tmul, T0·Tmul², ..."""
    T, start = T0, 0
    while epoch >= start + T:
        start, T = start + T, T * Tmul
    return lr_min + 0.5 * (lr_max - lr_min) * (
        1 + math.cos(math.pi * (epoch - start) / T)
    )


def make_controller(space: Any, settings: ControllerSettings, seed: int) -> Controller:
    """The controller of a space with ``settings`` (R-ENAS's op logits get
    ``tanh_constant / op_tanh_reduce``)."""
    kinds = {"op": len(getattr(space, "primitives", getattr(space, "ops", ())))}
    if isinstance(space, RecurrentSpace):
        kinds = {"act": len(space.activations)}
    kind_tanh = {}
    if settings.tanh_constant is not None and "op" in kinds:
        kind_tanh = {"op": settings.tanh_constant / settings.op_tanh_reduce}
    with torch.random.fork_rng(devices=[]):  # seeds the weights, not the caller's RNG
        torch.manual_seed(seed)
        return Controller(
            kinds,
            hidden=settings.hidden,
            layers=1,  # R-ENAS lstm_num_layers=1
            temperature=settings.temperature,
            tanh_constant=settings.tanh_constant,
            kind_tanh=kind_tanh,
            init_range=settings.init_range,
        )


# --------------------------------------------------------------------------- search
class EnasSearch(EpochSearch):
    """ENAS's alternating search, one epoch per ``step`` (R-ENAS ``main.train``).

    Each epoch (1) trains the shared weights on one freshly sampled child per
    minibatch, (2) trains the controller for ``train_steps`` updates of
    ``num_aggregate`` children, each rewarded with its accuracy on one validation
    minibatch (PTB: 80 / perplexity), and (3) derives: samples ``derive_samples``
    children, scores each on the *same* validation minibatch and keeps the best; the
    epoch's record holds it, with its accuracy on the validation set (capped by
    ``valid_batches``) as reward. With ``config.controller = False`` children are
    sampled uniformly and phase (2) is skipped: random search on the same supernet.
    """

    def __init__(
        self, config: EnasConfig, data: Any, device: torch.device | str, seed: int = 0
    ):
        self.config, self.device, self.seed = config, torch.device(device), seed
        s = self.settings = config.settings
        self.epoch = 0
        self.epochs = s.epochs if config.space == "rnn" else s.training.epochs
        self.children_evaluated = 0
        self.uniform = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)  # controller sampling
        if config.space == "rnn":
            self._init_rnn(data)
        else:
            self._init_cnn(data)
        self.controller = make_controller(self.space, s.controller, seed).to(
            self.device
        )
        c = s.controller
        self.updater = EnasReinforce(
            self.controller,
            c.lr,
            skip_weight=c.skip_weight,
            skip_target=c.skip_target,
            baseline_decay=c.baseline_decay,
            entropy_weight=c.entropy_weight,
            betas=c.betas,
            eps=c.eps,
        )

    # ------------------------------------------------------------------ set-up
    def _init_cnn(self, data: Any) -> None:
        c, s = self.config, self.settings
        t = s.training
        x, y = data.train
        if c.train_subset is not None and c.train_subset < len(y):
            (x, y), _ = search_split(x, y, c.train_subset / len(y), seed=self.seed)
        valid = data.valid
        if valid is None:  # CIFAR-10: hold out valid_size training images (R-ENAS)
            (x, y), valid = search_split(
                x, y, 1 - t.valid_size / len(y), seed=self.seed
            )
        fill = getattr(data, "fill", 0.0)
        self.train_loader = BatchLoader(
            x,
            y,
            t.batch_size,
            self.device,
            augment=t.augment,
            fill=fill,
            seed=self.seed,
            drop_last=True,
        )
        self.valid_loader = BatchLoader(
            *valid, t.batch_size, self.device, seed=self.seed + 1, drop_last=True
        )
        self.valid = (valid[0].to(self.device), valid[1].to(self.device))
        torch.manual_seed(self.seed)
        if c.space == "micro":
            self.space = MicroSpace(nodes=s.nodes)
            self.supernet = MicroSupernet(
                s.C,
                data.num_classes,
                s.layers,
                s.nodes,
                in_channels=data.in_channels,
                dropout=t.dropout,
            )
        else:
            self.space = MacroSpace(layers=s.layers)
            self.supernet = MacroSupernet(
                s.filters, data.num_classes, s.layers, data.in_channels, t.dropout
            )
        self.supernet.to(self.device)
        self.optimizer = torch.optim.SGD(
            self.supernet.parameters(),
            lr=t.lr_max,
            momentum=t.momentum,
            nesterov=True,
            weight_decay=t.weight_decay,
        )
        self.valid_stream = self.valid_loader.forever()

    def _init_rnn(self, data: Any) -> None:
        from nasedu.papers import rnn_cells

        s = self.settings
        corpus = (
            rnn_cells.embedded_corpus()
            if s.corpus == "embedded"
            else rnn_cells.load_word_corpus(s.corpus)
        )
        self.space = RecurrentSpace(nodes=s.nodes)
        torch.manual_seed(self.seed)
        cell = EnasRecurrentCell(s.nhid, s.nhid, s.nodes)
        self.supernet = rnn_cells.RNNModel(
            len(corpus),
            s.nhid,
            cell,
            s.dropout,
            s.dropouth,
            s.dropoutx,
            0.0,
            s.dropoute,
        ).to(self.device)
        self.train_data = rnn_cells.batchify(corpus.train, s.batch_size).to(self.device)
        self.valid_data = rnn_cells.batchify(corpus.valid, s.batch_size).to(self.device)
        self.optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=s.lr, weight_decay=s.weight_decay
        )
        self.mask_rng = torch.Generator(device=self.device).manual_seed(self.seed)
        self.position = self.valid_position = 0
        self.hidden = self.supernet.init_hidden(s.batch_size)

    # ------------------------------------------------------------------ sampling
    def sample(self) -> tuple[Any, Sample | None]:
        """A child from the controller (or uniformly, for ``enas_random``)."""
        if not self.config.controller:
            return self.space.sample(self.uniform), None
        with torch.no_grad():
            s = self.controller.sample(self.space.decisions(), self.generator)
        return self.space.decode(s.actions), s

    # ------------------------------------------------------------------ phase 1
    def train_shared(self) -> dict[str, float]:
        """One epoch of ω, one sampled child per minibatch (M = 1, §2.2)."""
        if self.config.space == "rnn":
            return self._train_shared_rnn()
        c, t = self.config, self.settings.training
        lr = cosine_restarts(self.epoch, t.lr_max, t.lr_min, t.lr_T0, t.lr_Tmul)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        drop = t.drop_path_prob * self.epoch / self.epochs  # R-ENAS: linear ramp
        self.supernet.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for k, (x, y) in enumerate(self.train_loader):
            arch, _ = self.sample()
            if c.space == "micro":
                logits = self.supernet(x, arch, drop)
            else:
                logits = self.supernet(x, arch)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.supernet.parameters(), t.grad_clip)
            self.optimizer.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if c.steps_per_epoch is not None and k + 1 >= c.steps_per_epoch:
                break
        if self.train_loader.batch != 0:  # a capped epoch: the next starts a new pass
            self.train_loader.epoch, self.train_loader.batch = (
                self.train_loader.epoch + 1,
                0,
            )
        return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr}

    def _rnn_lr(self) -> float:
        s = self.settings
        if self.epoch < s.lr_dec_start:
            return s.lr
        return max(
            s.lr * s.lr_dec_rate ** (self.epoch - s.lr_dec_start + 1), s.lr_dec_min
        )

    def _train_shared_rnn(self) -> dict[str, float]:
        from nasedu.papers.rnn_cells import get_batch

        s, c = self.settings, self.config
        lr = self._rnn_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.supernet.train()
        total, words, k = 0.0, 0, 0
        while True:
            if self.position >= len(self.train_data) - 2:  # a new pass over the text
                self.position = 0
                self.hidden = self.supernet.init_hidden(s.batch_size)
            x, y = get_batch(self.train_data, self.position, s.bptt)
            arch, _ = self.sample()
            masks = self.supernet.sample_masks(s.batch_size, self.mask_rng)
            log_probs, hidden, _ = self.supernet(x, self.hidden, arch, masks)
            nll = F.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), y.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            (nll * len(x)).backward()  # R-ENAS sums the loss over the BPTT steps
            nn.utils.clip_grad_norm_(self.supernet.parameters(), s.grad_clip)
            self.optimizer.step()
            self.hidden = hidden.detach()
            total, words = total + float(nll.detach()) * len(x), words + len(x)
            self.position += len(x)
            k += 1
            at_end = self.position >= len(self.train_data) - 2
            if at_end or (c.steps_per_epoch is not None and k >= c.steps_per_epoch):
                break
        return {"train_ppl": math.exp(min(total / words, 50.0)), "lr": lr}

    # ------------------------------------------------------------------ rewards
    @torch.no_grad()
    def reward(self, arch: Any, batch: Any = None) -> float:
        """A child's reward with the shared weights: accuracy on one validation
        minibatch (R-ENAS ``valid_shuffle_acc``), or 80 / perplexity on one BPTT window
        of the validation text (``ptb_enas_controller``)."""
        self.children_evaluated += 1
        if self.config.space == "rnn":
            return self._reward_rnn(arch, batch)
        x, y = batch if batch is not None else next(self.valid_stream)
        self.supernet.eval()  # no dropout; BatchNorm uses the batch (see above)
        logits = self.supernet(x, arch)
        self.supernet.train()
        return float((logits.argmax(1) == y).float().mean())

    def _valid_window(self):
        from nasedu.papers.rnn_cells import get_batch

        s = self.settings
        if self.valid_position >= len(self.valid_data) - 2:
            self.valid_position = 0
        x, y = get_batch(self.valid_data, self.valid_position, s.bptt)
        self.valid_position += len(x)
        return x, y

    def _reward_rnn(self, arch: RecurrentArch, batch: Any) -> float:
        s = self.settings
        x, y = batch if batch is not None else self._valid_window()
        self.supernet.eval()
        hidden = self.supernet.init_hidden(s.batch_size)  # R-ENAS: should_carry=False
        log_probs, _, _ = self.supernet(x, hidden, arch)
        self.supernet.train()
        nll = F.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), y.reshape(-1))
        return s.reward_c / math.exp(min(float(nll), 50.0))

    # ------------------------------------------------------------------ phase 2
    def train_controller(self) -> list[dict[str, float]]:
        """``train_steps`` REINFORCE updates of ``num_aggregate`` children each."""
        c = self.settings.controller
        log = []
        for _ in range(c.train_steps):
            batch = []
            for _ in range(c.num_aggregate):
                arch, sample = self.sample()
                batch.append(
                    (self.space.decisions(), sample.actions, self.reward(arch))
                )
            entry = self.updater.update(batch)
            entry["rewards"] = [r for _, _, r in batch]
            log.append(entry)
        return log

    # ------------------------------------------------------------------ phase 3
    def derive(self) -> tuple[Any, list[dict[str, Any]]]:
        """Sample ``derive_samples`` children, score each on the same validation
        minibatch, return the best and all of them (§2.2, "Deriving Architectures")."""
        batch = (
            self._valid_window()
            if self.config.space == "rnn"
            else next(self.valid_stream)
        )
        scored = []
        for _ in range(self.config.derive_samples):
            arch, _ = self.sample()
            scored.append((self.reward(arch, batch), arch))
        best = max(scored, key=lambda t: t[0])[1]  # the first of equals
        return best, [
            {"architecture": self.space.to_json(a), "reward": r} for r, a in scored
        ]

    @torch.no_grad()
    def validate(self, arch: Any) -> float:
        """The derived child's shared-weight accuracy on the validation set (PTB:
        80 / perplexity over ``valid_batches`` windows), capped by ``valid_batches``."""
        limit = self.config.valid_batches
        if self.config.space == "rnn":
            from nasedu.papers.rnn_cells import get_batch

            s, total, n = self.settings, 0.0, 0
            self.supernet.eval()
            hidden = self.supernet.init_hidden(s.batch_size)
            for k, i in enumerate(range(0, len(self.valid_data) - 1, s.bptt)):
                if limit is not None and k >= limit:
                    break
                x, y = get_batch(self.valid_data, i, s.bptt)
                log_probs, hidden, _ = self.supernet(x, hidden, arch)
                total += float(
                    F.nll_loss(
                        log_probs.reshape(-1, log_probs.shape[-1]),
                        y.reshape(-1),
                        reduction="sum",
                    )
                )
                n += y.numel()
            self.supernet.train()
            return s.reward_c / math.exp(min(total / n, 50.0))
        X, Y = self.valid
        bs = self.settings.training.batch_size
        correct = seen = 0
        self.supernet.eval()
        for k, start in enumerate(range(0, len(X) - 1, bs)):
            if limit is not None and k >= limit:
                break
            xb, yb = X[start : start + bs], Y[start : start + bs]
            correct += int((self.supernet(xb, arch).argmax(1) == yb).sum())
            seen += len(yb)
        self.supernet.train()
        return correct / seen

    # ------------------------------------------------------------------ Search
    def step(self, clock: Clock) -> list[HistoryRecord]:
        start = time.perf_counter()
        evaluated_before = self.children_evaluated
        shared = self.train_shared()
        shared_seconds = time.perf_counter() - start
        log = self.train_controller() if self.config.controller else []
        controller_seconds = time.perf_counter() - start - shared_seconds
        arch, samples = self.derive()
        valid = self.validate(arch)
        seconds = time.perf_counter() - start
        record = HistoryRecord(
            step=self.epoch,
            architecture=self.space.to_json(arch),
            reward=valid,
            cost=seconds,
            wall_clock=clock.elapsed(),
            extra={
                "epoch": self.epoch,
                "space": self.config.space,
                **shared,
                "valid_reward": valid,
                "controller": log,
                "derive_samples": samples,
                "children_evaluated": self.children_evaluated - evaluated_before,
                "shared_seconds": shared_seconds,
                "controller_seconds": controller_seconds,
                "seconds": seconds,
            },
        )
        self.epoch += 1
        return [record]

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.uniform.getstate()
        state = {
            "epoch": self.epoch,
            "children_evaluated": self.children_evaluated,
            "supernet": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "controller": self.controller.state_dict(),
            "updater": self.updater.state_dict(),
            "generator": self.generator.get_state(),
            "uniform": list(internal),
        }
        if self.config.space == "rnn":
            state.update(
                mask_rng=self.mask_rng.get_state(),
                position=self.position,
                valid_position=self.valid_position,
                hidden=self.hidden,
            )
        else:
            state.update(
                train_loader=self.train_loader.state_dict(),
                valid_loader=self.valid_loader.state_dict(),
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.children_evaluated = state["children_evaluated"]
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.controller.load_state_dict(state["controller"])
        self.updater.load_state_dict(state["updater"])
        self.generator.set_state(state["generator"])
        self.uniform.setstate((3, tuple(state["uniform"]), None))
        if self.config.space == "rnn":
            self.mask_rng.set_state(state["mask_rng"])
            self.position = state["position"]
            self.valid_position = state["valid_position"]
            self.hidden = state["hidden"].to(self.device)
        else:
            self.train_loader.load_state_dict(state["train_loader"])
            self.valid_loader.load_state_dict(state["valid_loader"])
            self.valid_stream = self.valid_loader.forever()

    def run_all(self) -> list[HistoryRecord]:
        """Every remaining epoch without checkpoints (``nasedu.search.run`` adds them)."""
        clock, records = Clock(), []
        while not self.done():
            records += self.step(clock)
        return records


def make(
    config: EnasConfig, data: Any, device: torch.device | str, seed: int = 0
) -> EnasSearch:
    """The ``Search`` the runner drives (``nasedu search enas``)."""
    return EnasSearch(config, data, device, seed)


def make_random(
    config: EnasConfig, data: Any, device: torch.device | str, seed: int = 0
) -> EnasSearch:
    """``enas_random``: the same supernet and derivation, children sampled uniformly."""
    return EnasSearch(dataclasses.replace(config, controller=False), data, device, seed)


METHODS.register(
    "enas", Method("enas", EnasConfig, BUDGETS, make, citation="pham2018enas")
)
METHODS.register(
    "enas_random",
    Method("enas_random", EnasConfig, BUDGETS, make_random, citation="pham2018enas"),
)
