"""Differentiable architecture search: the pieces DARTS and SNAS share (chapters DARTS, SNAS).

Both papers relax the choice of one operation per edge of a cell into a weighted sum
over all candidates (DARTS §2.2 Eq. 2; SNAS §2.2), train one over-parameterised
*supernet* that holds every candidate, and read a discrete cell off the learned
architecture parameters α at the end (DARTS §2.4). This module holds:

* ``MixedOp`` — Eq. 2 of DARTS as it reads, ``Σ_o w_o · o(x)``, one module per
  candidate. It is what the chapters show, and the oracle the fast cell is tested on;
* ``SearchCell`` — the same computation batched: every mixed op leaving one state is
  computed together (one ReLU and one pooling per state, grouped convolutions across
  the edges, each op's last BatchNorm fused with its weight w_o), ``none`` skipped as
  it adds exactly zero. A forward and backward pass of a 5-cell supernet makes 12.5k
  ATen calls instead of 27k, and at the paper's shapes it is ~1.5× faster than the
  official code on a CPU with ~⅓ less memory. Tests check that its outputs and
  gradients equal those of a cell of ``MixedOp``\\ s;
* ``Supernet`` — stem, cells, classifier (DARTS ``cnn/model_search.py``); its
  ``forward(x, weights_normal, weights_reduce)`` takes the architecture weights
  explicitly, so the same network serves DARTS (softmax of α) and SNAS (Gumbel
  samples), and α stays outside ``supernet.parameters()`` (``Alphas`` holds it);
* ``derive`` — the discrete cell: top-2 incoming edges per node by their strongest
  non-``none`` operation (DARTS §2.4), or every edge's argmax (SNAS's 14-edge form);
* ``SupernetSearch`` — the epoch loop both searches share: the data, the cosine
  schedule of the weights, per-epoch records of α and the derived cell, checkpoints.

BatchNorm in the supernet always uses the statistics of the current batch and has no
learnable affine parameters in the cells (DARTS App. A.1.1), so there are no running
buffers at all and the supernet's output never depends on train/eval mode.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasedu.genotypes import Genotype
from nasedu.ops import DARTS_PRIMITIVES, FactorizedReduce, ReLUConvBN, build
from nasedu.search import Clock, EpochSearch, HistoryRecord

POOLS = ("max_pool_3x3", "avg_pool_3x3")
#: Convolutions the fused cell batches: name → (kernel size, dilation, separable twice).
CONVS = {
    "sep_conv_3x3": (3, 1, True),
    "sep_conv_5x5": (5, 1, True),
    "dil_conv_3x3": (3, 2, False),
    "dil_conv_5x5": (5, 2, False),
}
FUSABLE = ("none", "skip_connect", *POOLS, *CONVS)


# --------------------------------------------------------------------------- edges
def num_edges(steps: int = 4) -> int:
    """Edges of a cell of ``steps`` nodes: node i has one from each of its i + 2
    predecessors (14 for DARTS' 4 nodes, §3.1.1)."""
    return sum(2 + i for i in range(steps))


def edge_index(node: int, source: int) -> int:
    """Row of α for the edge from state ``source`` into intermediate node ``node``
    (0-based), in the official order: node by node, sources in increasing order."""
    return 2 * node + node * (node - 1) // 2 + source


def _batch_stats_only(module: nn.Module) -> nn.Module:
    """Make every BatchNorm in ``module`` use batch statistics, always (DARTS A.1.1:
    "we always use batch-specific statistics for batch normalization")."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return module


def _bn(x: torch.Tensor) -> torch.Tensor:
    """BatchNorm without affine parameters, on batch statistics (DARTS A.1.1)."""
    return F.batch_norm(x, None, None, training=True, eps=1e-5)


def upcast_logits(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) as float32 for the loss; others unchanged."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def drop_mask(
    batch: int,
    paths: int,
    drop_prob: float,
    like: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A (batch, paths) 0/(1/keep) mask dropping whole paths per sample (drop-path,
    applied to every edge's mixed output in SNAS's search, ``SNAS/model_search.py``)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(batch, paths, device=like.device, dtype=like.dtype)
    return mask.bernoulli_(keep, generator=generator) / keep


# --------------------------------------------------------------------------- reference
class MixedOp(nn.Module):
    """One edge of the relaxed cell, exactly DARTS Eq. 2: ``ō(x) = Σ_o w_o · o(x)``.

    Each candidate is built by ``nasedu.ops`` with ``affine=False`` (pools then carry a
    non-affine BatchNorm, as in DARTS ``model_search.MixedOp``). Readable and slow:
    ``SearchCell`` computes the same thing with far fewer kernels.
    """

    def __init__(
        self, C: int, stride: int, primitives: Sequence[str] = DARTS_PRIMITIVES
    ):
        super().__init__()
        self.ops = nn.ModuleList(build(p, C, stride, affine=False) for p in primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))  # (B, C, H', W')


class MixedCell(nn.Module):
    """A search cell of ``MixedOp``\\ s, as ``quark0/darts`` writes it (the oracle)."""

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
    ):
        super().__init__()
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = (
            FactorizedReduce(C_prev_prev, C, affine=False)
            if reduction_prev
            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(C, 2 if reduction and j < 2 else 1, primitives)
            for i in range(steps)
            for j in range(2 + i)
        )
        _batch_stats_only(self)

    def forward(self, s0, s1, weights, drop_prob: float = 0.0, generator=None):
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (B, C, H, W)
        for i in range(self.steps):
            total = 0
            for j, h in enumerate(states):
                e = edge_index(i, j)
                out = self.edges[e](h, weights[e])
                if self.training and drop_prob > 0:
                    out = (
                        out
                        * drop_mask(out.shape[0], 1, drop_prob, out, generator)[
                            :, :, None, None
                        ]
                    )
                total = total + out
            states.append(total)
        return torch.cat(states[-self.multiplier :], dim=1)  # (B, multiplier·C, H', W')


# --------------------------------------------------------------------------- fused
class _SepConvs(nn.Module):
    """``m`` separable convolutions applied twice (one per edge), on ``m`` copies of
    the same ReLU'd input: depthwise convs with one group per channel, pointwise convs
    with one group per edge. Returns the output before its final (non-affine) BN."""

    def __init__(self, C: int, m: int, k: int, stride: int):
        super().__init__()
        mC = m * C
        self.dw1 = nn.Conv2d(mC, mC, k, stride, k // 2, groups=mC, bias=False)
        self.pw1 = nn.Conv2d(mC, mC, 1, groups=m, bias=False)
        self.dw2 = nn.Conv2d(mC, mC, k, 1, k // 2, groups=mC, bias=False)
        self.pw2 = nn.Conv2d(mC, mC, 1, groups=m, bias=False)

    def forward(self, r):  # r: (B, m·C, H, W), already ReLU'd
        h = torch.relu(_bn(self.pw1(self.dw1(r))))
        return self.pw2(self.dw2(h))  # (B, m·C, H', W')


class _DilConvs(nn.Module):
    """``m`` dilated separable convolutions (ReLU → dilated depthwise → 1×1 → BN)."""

    def __init__(self, C: int, m: int, k: int, stride: int, dilation: int):
        super().__init__()
        mC = m * C
        pad = dilation * (k - 1) // 2
        self.dw = nn.Conv2d(
            mC, mC, k, stride, pad, dilation=dilation, groups=mC, bias=False
        )
        self.pw = nn.Conv2d(mC, mC, 1, groups=m, bias=False)

    def forward(self, r):
        return self.pw(self.dw(r))  # (B, m·C, H', W')


class _FactorizedReduces(nn.Module):
    """``m`` strided skip connections (``FactorizedReduce``) reading one input: both
    1×1 convolutions of all edges run as one convolution each."""

    def __init__(self, C: int, m: int):
        super().__init__()
        if C % 2:
            raise ValueError(f"a strided skip_connect needs an even C, got {C}")
        self.m, self.C = m, C
        self.conv_1 = nn.Conv2d(C, m * C // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C, m * C // 2, 1, stride=2, bias=False)

    def forward(self, r):  # r: (B, C, H, W), already ReLU'd
        shifted = F.pad(r[:, :, 1:, 1:], (0, r.shape[3] % 2, 0, r.shape[2] % 2))
        a, b = self.conv_1(r), self.conv_2(shifted)  # each (B, m·C/2, H/2, W/2)
        B, _, H, W = a.shape
        half = (B, self.m, self.C // 2, H, W)
        # Each edge's output is [its conv_1 half, its conv_2 half], as FactorizedReduce.
        out = torch.cat([a.view(half), b.view(half)], dim=2).view(B, -1, H, W)
        return out.contiguous(memory_format=_memory_format(r))  # (B, m·C, H/2, W/2)


class _EdgeBundle(nn.Module):
    """All mixed ops leaving one state of a cell, computed together.

    For each of the ``m`` edges, the output is DARTS Eq. 2 over ``primitives``. What
    the edges share is computed once: the ReLU in front of every convolution, and the
    poolings, which have no weights and read the same input (their non-affine,
    batch-statistics BatchNorm gives the same map on every edge). The convolutions of
    the m edges run as grouped convolutions; each op's final BatchNorm takes the edge
    weights w[e, op] as its per-channel scale. ``none`` adds exactly zero: skipped.
    """

    def __init__(self, C: int, m: int, stride: int, primitives: Sequence[str]):
        super().__init__()
        self.m, self.C, self.stride = m, C, stride
        names = list(primitives)
        self.convs = nn.ModuleList()
        self.conv_cols = []
        for col, name in enumerate(names):
            if name in CONVS:
                k, d, twice = CONVS[name]
                self.convs.append(
                    _SepConvs(C, m, k, stride)
                    if twice
                    else _DilConvs(C, m, k, stride, d)
                )
                self.conv_cols.append(col)
        self.pools = [name for name in names if name in POOLS]
        self.pool_cols = [names.index(name) for name in self.pools]
        has_skip = "skip_connect" in names
        self.skip_col = names.index("skip_connect") if has_skip else None
        self.identity = has_skip and stride == 1
        # A strided skip is a FactorizedReduce with weights of its own on every edge.
        self.reduce_skip = _FactorizedReduces(C, m) if has_skip and stride > 1 else None

    def forward(self, x, w, drop_prob: float = 0.0, generator=None):
        """x: (B, C, H, W) the source state; w: (m, len(primitives)) edge weights.
        Returns the m edges' outputs side by side, (B, m·C, H', W'), in x's memory
        format: channels [e·C, (e+1)·C) are edge e's mixed op."""
        m, C = self.m, self.C
        terms = []
        if self.convs or self.reduce_skip is not None:
            r = torch.relu(x)
            if self.convs:
                r_edges = _repeat_channels(r, m)  # (B, m·C, H, W): one copy per edge
                terms += [
                    (conv(r_edges), col)
                    for conv, col in zip(self.convs, self.conv_cols)
                ]
            if self.reduce_skip is not None:
                terms.append((self.reduce_skip(r), self.skip_col))
        for pool, col in zip(self.pools, self.pool_cols):
            pooled = (
                F.max_pool2d(x, 3, self.stride, 1)
                if pool == "max_pool_3x3"
                else F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
            )
            # Every edge sees the same pooled map; its BN statistics are the same on each.
            terms.append((_repeat_channels(pooled, m), col))
        out = None
        for h, col in terms:  # h: (B, m·C, H', W') before the op's final BN
            # The op's non-affine BN times w[e, op] is a BN whose per-channel scale is
            # w[e, op]: one kernel for the op's last layer and its term of Eq. 2.
            scale = w[:, col].repeat_interleave(C)  # (m·C,)
            h = F.batch_norm(h, None, None, weight=scale, training=True, eps=1e-5)
            out = h if out is None else out + h
        if self.identity:
            scale = w[:, self.skip_col].repeat_interleave(C).view(1, m * C, 1, 1)
            h = _repeat_channels(x, m) * scale
            out = h if out is None else out + h
        if out is None:  # only `none`: the edges carry nothing
            B, _, H, W = x.shape
            out = x.new_zeros(
                B,
                m * C,
                (H + self.stride - 1) // self.stride,
                (W + self.stride - 1) // self.stride,
            )
        if self.training and drop_prob > 0:
            mask = drop_mask(x.shape[0], m, drop_prob, out, generator)  # (B, m)
            out = out * mask.repeat_interleave(C, dim=1)[:, :, None, None]
        return out  # (B, m·C, H', W')


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if _channels_last(x) else torch.contiguous_format


def _repeat_channels(r: torch.Tensor, m: int) -> torch.Tensor:
    """``m`` copies of ``r`` along channels, keeping its memory format (channels-last
    depthwise convolutions are several times faster, on CPUs as on GPUs)."""
    if m == 1:
        return r
    if _channels_last(r):
        return r.permute(0, 2, 3, 1).repeat(1, 1, 1, m).permute(0, 3, 1, 2)
    return r.repeat(1, m, 1, 1)


class SearchCell(nn.Module):
    """A DARTS search cell (§3.1.1: 2 inputs, ``steps`` nodes, output the concatenation
    of the last ``multiplier`` nodes) whose edges are mixed ops, computed state by state.

    When a state is ready, its ``_EdgeBundle`` computes the mixed ops of all edges that
    leave it; a running sum then completes the next node. Same function, weights and
    parameter count as a ``MixedCell`` (checked in the tests), half the kernels.
    """

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
    ):
        super().__init__()
        unknown = [p for p in primitives if p not in FUSABLE]
        if unknown:
            raise ValueError(
                f"the fused search cell cannot batch {unknown[0]!r}; it supports "
                f"{', '.join(FUSABLE)} (use fused=False for other operations)"
            )
        self.reduction, self.steps, self.multiplier = reduction, steps, multiplier
        self.preprocess0 = (
            FactorizedReduce(C_prev_prev, C, affine=False)
            if reduction_prev
            else ReLUConvBN(C_prev_prev, C, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(C_prev, C, 1, 1, 0, affine=False)
        _batch_stats_only(self)
        self.bundles = nn.ModuleList()
        for j in range(steps + 1):
            first = max(0, j - 1)  # the first node that state j feeds
            self.bundles.append(
                _EdgeBundle(
                    C, steps - first, 2 if reduction and j < 2 else 1, primitives
                )
            )
            ids = torch.tensor([edge_index(i, j) for i in range(first, steps)])
            self.register_buffer(f"edges_{j}", ids, persistent=False)

    def forward(self, s0, s1, weights, drop_prob: float = 0.0, generator=None):
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each (B, C, H, W)
        fmt = _memory_format(states[1])
        C = states[1].shape[1]
        pending = None  # partial sums of the n nodes not yet complete, (B, n·C, H', W')
        for j, bundle in enumerate(self.bundles):
            out = bundle(
                states[j], weights[getattr(self, f"edges_{j}")], drop_prob, generator
            )
            if j == 0:
                pending = out
            else:
                # After state j ≥ 1 the first pending node has all its inputs.
                pending = (pending if j == 1 else pending[:, C:]) + out
                states.append(pending[:, :C].contiguous(memory_format=fmt))
        return torch.cat(states[-self.multiplier :], dim=1)  # (B, multiplier·C, H', W')


# --------------------------------------------------------------------------- network
class Supernet(nn.Module):
    """The search network of DARTS (A.1.1: 8 cells, C = 16, reductions at 1/3 and 2/3).

    ``forward(x, weights_normal, weights_reduce)`` → logits, where each weights tensor
    is (num_edges, num_ops): a softmax of α (DARTS Eq. 2) or a Gumbel sample (SNAS).
    The architecture parameters are not among ``parameters()``.

    Args:
        fused: compute each cell with ``SearchCell`` (fast) rather than ``MixedCell``
            (readable); both give the same function with the same parameter count.
    """

    def __init__(
        self,
        C: int = 16,
        num_classes: int = 10,
        layers: int = 8,
        steps: int = 4,
        multiplier: int = 4,
        stem_multiplier: int = 3,
        primitives: Sequence[str] = DARTS_PRIMITIVES,
        in_channels: int = 3,
        fused: bool = True,
    ):
        super().__init__()
        if layers < 3:
            raise ValueError(
                f"layers must be >= 3 (two reduction cells and a normal one), "
                f"got {layers}"
            )
        if not 1 <= multiplier <= steps:
            raise ValueError(
                f"multiplier must be in 1..steps={steps}, got {multiplier}"
            )
        self.C, self.num_classes, self.layers = C, num_classes, layers
        self.steps, self.multiplier = steps, multiplier
        self.primitives = tuple(primitives)
        C_curr = stem_multiplier * C
        self.stem = _batch_stats_only(
            nn.Sequential(
                nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
                nn.BatchNorm2d(C_curr),
            )
        )
        cell_cls = SearchCell if fused else MixedCell
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            self.cells.append(
                cell_cls(
                    steps,
                    multiplier,
                    C_prev_prev,
                    C_prev,
                    C_curr,
                    reduction,
                    reduction_prev,
                    self.primitives,
                )
            )
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, multiplier * C_curr
        self.classifier = nn.Linear(C_prev, num_classes)

    @property
    def num_edges(self) -> int:
        return num_edges(self.steps)

    def forward(
        self,
        x,
        weights_normal,
        weights_reduce,
        drop_prob: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        s0 = s1 = self.stem(x)  # (B, 3C, H, W)
        for cell in self.cells:
            weights = weights_reduce if cell.reduction else weights_normal
            s0, s1 = s1, cell(s0, s1, weights, drop_prob, generator)
        return self.classifier(s1.mean(dim=(2, 3)))  # (B, num_classes)

    def cell_shapes(self, input_hw: int) -> list[tuple[bool, int, int]]:
        """(reduction, C, input height) of every cell for ``input_hw``×``input_hw``
        images: the shapes the SNAS resource costs are computed from."""
        shapes, hw = [], input_hw
        for cell in self.cells:
            C = cell.preprocess1[1].out_channels
            shapes.append((cell.reduction, C, hw))
            if cell.reduction:
                hw = (hw + 1) // 2
        return shapes


class Alphas(nn.Module):
    """Architecture parameters α of the normal and the reduction cell (DARTS §3.1.1:
    α_normal is shared by all normal cells, α_reduce by all reduction cells), one row
    per edge and one column per candidate, kept apart from the supernet's weights.

    Initialised to ``mean + std · N(0, 1)``: zeros in the DARTS paper (A.1.1),
    ``1e-3 · N(0, 1)`` in its code, N(1, 0.01) in SNAS's code.
    """

    def __init__(
        self,
        num_edges: int,
        num_ops: int,
        mean: float = 0.0,
        std: float = 0.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()

        def init():
            return mean + std * torch.randn(num_edges, num_ops, generator=generator)

        self.normal = nn.Parameter(init())
        self.reduce = nn.Parameter(init())

    def softmax(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mixing weights of DARTS Eq. 2, (num_edges, num_ops) per cell type."""
        return F.softmax(self.normal, dim=-1), F.softmax(self.reduce, dim=-1)


# --------------------------------------------------------------------------- derive
def _derive_cell(
    W: torch.Tensor, primitives: Sequence[str], steps: int, form: str
) -> list[tuple[str, int]]:
    ops = list(primitives)
    none = ops.index("none") if "none" in ops else None
    keep = [k for k in range(len(ops)) if k != none]
    gene = []
    for i in range(steps):
        rows = W[edge_index(i, 0) : edge_index(i, 0) + i + 2]  # (i + 2, num_ops)
        if form == "all":
            gene += [(ops[int(rows[j].argmax())], j) for j in range(i + 2)]
            continue
        if not keep:
            raise ValueError(
                "deriving a cell needs at least one operation besides 'none'"
            )
        strength = rows[:, keep].max(dim=1).values  # (i + 2,)
        # Stable sort: on ties the lower input wins, as sorted() in model_search.py.
        best = sorted(range(i + 2), key=lambda j: -float(strength[j]))[:2]
        gene += [(ops[keep[int(rows[j, keep].argmax())]], j) for j in best]
    return gene


def derive(
    weights_normal: torch.Tensor,
    weights_reduce: torch.Tensor,
    primitives: Sequence[str] = DARTS_PRIMITIVES,
    steps: int = 4,
    multiplier: int = 4,
    form: str = "pairs",
) -> Genotype:
    """The discrete cell read off the architecture weights (DARTS §2.4).

    ``form="pairs"``: each node keeps its two strongest incoming edges from distinct
    predecessors, an edge's strength being its strongest non-``none`` weight, and the
    edge's op is that strongest non-``none`` one; ``none`` is never selected (§2.4: the
    strength of ``none`` is underdetermined under BatchNorm). ``form="all"``: every
    edge keeps its argmax, ``none`` included, meaning "no edge" (SNAS's 14-edge cells,
    ``genotype_edge_all``). Weights are (num_edges, len(primitives)) per cell type.
    """
    if form not in ("pairs", "all"):
        raise ValueError(f"unknown genotype form {form!r}; valid choices: pairs, all")
    expected = (num_edges(steps), len(primitives))
    for name, W in (
        ("weights_normal", weights_normal),
        ("weights_reduce", weights_reduce),
    ):
        if tuple(W.shape) != expected:
            raise ValueError(
                f"{name} has shape {tuple(W.shape)}; {steps} nodes over "
                f"{len(primitives)} operations need {expected}"
            )
    W_n, W_r = weights_normal.detach().cpu(), weights_reduce.detach().cpu()
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(
        _derive_cell(W_n, primitives, steps, form),
        concat,
        _derive_cell(W_r, primitives, steps, form),
        concat,
        form=form,
    )


# --------------------------------------------------------------------------- search loop
def cosine_lr(epoch: int, epochs: int, lr: float, lr_min: float) -> float:
    """Learning rate of ``epoch`` (0-based) under cosine annealing without restart
    (SGDR; DARTS A.1.1), as ``CosineAnnealingLR`` stepped at each epoch's start."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


class SupernetSearch(EpochSearch):
    """One epoch of a supernet search per ``step`` (the unit ``nasedu.search.run``
    checkpoints), shared by DARTS and SNAS.

    Subclasses set ``self.supernet``, ``self.alphas``, the optimisers and implement
    ``train_epoch(epoch) -> (train_loss, train_acc)``, ``arch_weights()`` and
    ``genotype()``. Each epoch yields one ``HistoryRecord``: the derived cell, the
    validation accuracy as reward, the epoch's seconds as cost and, in ``extra``, α as
    a softmax per edge for both cell types plus the epoch's losses and accuracies.
    """

    epochs: int
    supernet: Supernet
    alphas: Alphas

    def __init__(self, device: torch.device, seed: int):
        self.device = torch.device(device)
        self.seed = seed
        self.epoch = 0
        # Data order and noise come from generators the search owns, so that a resumed
        # search continues exactly (the state is in state_dict).
        self.data_rng = torch.Generator().manual_seed(seed)
        self.noise_rng = torch.Generator(device=self.device).manual_seed(seed + 1)

    # ------------------------------------------------------------ each paper's part
    @abc.abstractmethod
    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """Train weights and α for one epoch; return (train loss, train accuracy)."""

    @abc.abstractmethod
    def arch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The operation weights of the normal and reduction cells the supernet uses."""

    @abc.abstractmethod
    def genotype(self) -> Genotype:
        """The discrete cell derived from the current α."""

    @abc.abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers whose state a checkpoint must hold, by name."""

    # ------------------------------------------------------------ shared
    @torch.no_grad()
    def evaluate(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        limit: int | None = None,
    ) -> tuple[float, float]:
        """Mean loss and accuracy of the supernet on (X, y) under the current α."""
        w_n, w_r = self.arch_weights()
        loss = correct = seen = 0.0
        for k, start in enumerate(range(0, len(X), batch_size)):
            if limit is not None and k >= limit:
                break
            xb, yb = X[start : start + batch_size], y[start : start + batch_size]
            if len(xb) < 2:
                continue
            logits = self.supernet(xb, w_n, w_r)
            loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += float((logits.argmax(1) == yb).sum())
            seen += len(xb)
        return (loss / seen, correct / seen) if seen else (float("nan"), float("nan"))

    @abc.abstractmethod
    def validate(self) -> tuple[float | None, float]:
        """Validation loss and accuracy of the epoch's record (subclasses choose the data)."""

    def alpha_softmax(self) -> dict[str, list[list[float]]]:
        """softmax(α) per edge for both cells, as JSON-ready lists (the chapters' heatmaps)."""
        w_n, w_r = self.alphas.softmax()
        return {
            "normal": w_n.detach().cpu().tolist(),
            "reduce": w_r.detach().cpu().tolist(),
        }

    def step(self, clock: Clock) -> list[HistoryRecord]:
        start = time.perf_counter()
        self.supernet.train()
        train_loss, train_acc = self.train_epoch(self.epoch)
        valid_loss, valid_acc = self.validate()
        genotype = self.genotype()
        seconds = time.perf_counter() - start
        record = HistoryRecord(
            step=self.epoch,
            architecture=genotype.to_dict(),
            reward=valid_acc,
            cost=seconds,
            wall_clock=clock.elapsed(),
            extra={
                "epoch": self.epoch,
                "alphas": self.alpha_softmax(),
                "train_loss": train_loss,
                "train_acc": train_acc,
                "valid_loss": valid_loss,
                "valid_acc": valid_acc,
                "seconds": seconds,
                **self.epoch_extra(),
            },
        )
        self.epoch += 1
        return [record]

    def epoch_extra(self) -> dict[str, Any]:
        """Method-specific numbers for the epoch's record (learning rate, temperature)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "supernet": self.supernet.state_dict(),
            "alphas": self.alphas.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "data_rng": self.data_rng.get_state(),
            "noise_rng": self.noise_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.supernet.load_state_dict(state["supernet"])
        self.alphas.load_state_dict(state["alphas"])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        self.data_rng.set_state(state["data_rng"])
        self.noise_rng.set_state(state["noise_rng"])

    def run_all(self) -> list[HistoryRecord]:
        """Every remaining epoch without checkpoints (``nasedu.search.run`` adds them)."""
        clock, records = Clock(), []
        while not self.done():
            records += self.step(clock)
        return records
