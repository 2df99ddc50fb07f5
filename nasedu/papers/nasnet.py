"""NASNet: Learning Transferable Architectures for Scalable Image Recognition
(Zoph, Vasudevan, Shlens & Le, CVPR 2018, arXiv:1707.07012; chapter *NASNet*).

NASNet keeps NAS-RL's recipe (an RNN controller proposes, a child network is trained,
its validation accuracy is the reward) but changes *what* is searched: not a whole
network but two cells, a Normal cell and a Reduction cell, stacked into a network
whose depth (N cells between reductions) and width (F filters) are chosen afterwards
(§3, Fig. 2). This module implements

* the cell space of §3: B = 5 blocks per cell, each choosing two hidden states (the
  two cell inputs or earlier blocks), an operation for each from the 13 of §3, and a
  combination (add or concat); the unused blocks are concatenated into the output
  (``NASNetSpace``; ``decisions``/``decode``/``encode`` for the controller);
* the NASNet network as the TF-Slim code builds it (``NASNetCIFAR``: stem 3F, N
  Normal cells per stage, Reduction cells with doubled filters, auxiliary head;
  ``tensorflow/models`` ``research/slim/nets/nasnet/nasnet.py`` and
  ``nasnet_utils.py``, "R-TF"), so that NASNet-A at 6 @ 768 has the paper's
  3.3M parameters;
* ScheduledDropPath (App. A.5; the layer and step scaling of R-TF) as
  ``scheduled_drop_path``;
* the search (``nasnet``: a 1-layer, 100-unit LSTM trained with PPO, App. A.2–A.3)
  and its baseline (``nasnet_random``: the same space sampled uniformly, §4.4,
  Fig. 6), both trained per App. A.6;
* ``retrain``: a cell trained with the CIFAR protocol of R-TF (600 epochs, batch 32,
  ScheduledDropPath with keep 0.6) through ``nasedu.train``.

Budgets: ``paper`` is the paper's protocol (20,000 children of 20 epochs each);
``colab`` a few dozen short children on CIFAR-10; ``smoke`` four tiny children
(F = 4, one Normal cell per stage, one epoch) on the 8×8 digits, with controller
updates every 2 children instead of 20, so that the run shows two PPO updates.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasedu.evaluate import child_scorer, data_for_search
from nasedu.genotypes import CELLS, Genotype
from nasedu.ops import (
    NASNET_PRIMITIVES,
    OPS,
    DilConv,
    FactorizedReduce,
    Identity,
    Pool,
    ReLUConvBN,
    build,
    drop_path,
)
from nasedu.parallel import child_evaluator
from nasedu.search import METHODS, Method, RoundSearch
from nasedu.strategies.controller import PPO, Choice, Controller, ControllerStrategy
from nasedu.strategies.random_search import RandomSearch
from nasedu.train import TrainConfig, TrainResult, train

#: How a block merges its two hidden states (NASNet §3, Step 5).
COMBINES = ("add", "concat")
#: The five predictions of a block, in the controller's order (§3, Steps 1–5).
BLOCK_STEPS = ("input_a", "input_b", "op_a", "op_b", "combine")


# --------------------------------------------------------------------- ScheduledDropPath
def scheduled_drop_path(
    drop_path_prob: float, cell: int, num_cells: int, progress: float
) -> float:
    """ScheduledDropPath: the probability that one path of cell ``cell`` is dropped
    when a fraction ``progress`` of training is done (NASNet App. A.5; chapter
    *NASNet*, "ScheduledDropPath").

    The paper says only that the probability grows linearly during training. The
    TF-Slim code (``NasNetABaseCell._apply_drop_path``, version "v3") also scales it
    by depth, with ``keep_prob`` = 1 − ``drop_path_prob`` (0.6 on CIFAR)::

        keep = 1 − r · (1 − keep_prob),   r = (cell + 1) / num_cells
        keep = 1 − min(1, step / total_steps) · (1 − keep)

    so the drop probability is ``min(1, progress) · r · drop_path_prob``: zero at the
    start, ``drop_path_prob`` in the last cell at the end of training.

    Args:
        drop_path_prob: the final drop probability of the deepest cell (1 − 0.6).
        cell: 0-based index of the cell, reduction cells counted.
        num_cells: number of cells, reduction cells counted (R-TF: ``num_cells + 2``).
        progress: ``step / total_steps`` (clipped to [0, 1]).
    """
    if not 0.0 <= drop_path_prob <= 1.0:
        raise ValueError(f"drop_path_prob must be in [0, 1], got {drop_path_prob}")
    if not 0 <= cell < num_cells:
        raise ValueError(f"cell must be in 0..{num_cells - 1}, got {cell}")
    return min(1.0, max(0.0, progress)) * (cell + 1) / num_cells * drop_path_prob


# --------------------------------------------------------------------------- genotype
@dataclass(frozen=True)
class NASNetGenotype:
    """A NASNet cell pair: a ``Genotype`` (ops, inputs, concatenated states) plus the
    combination of every block (NASNet §3, Step 5).

    ``cells`` numbers states the DARTS way (0: cell k−2, 1: cell k−1, j ≥ 2: block
    j−2). A published cell gives its concatenated states explicitly (NASNet-A's come
    from R-TF's ``used_hiddenstates``, ``data/genotypes/nasnet_a.json``); a sampled
    cell concatenates the blocks that no other block uses (§3).
    """

    cells: Genotype
    normal_combine: tuple[str, ...]
    reduce_combine: tuple[str, ...]

    def __post_init__(self) -> None:
        for cell in CELLS:
            combine = tuple(str(c) for c in getattr(self, f"{cell}_combine"))
            object.__setattr__(self, f"{cell}_combine", combine)
            if len(combine) != self.cells.steps(cell):
                raise ValueError(
                    f"{cell}_combine needs one entry per block "
                    f"({self.cells.steps(cell)}), got {len(combine)}"
                )
            bad = [c for c in combine if c not in COMBINES]
            if bad:
                raise ValueError(
                    f"unknown combination {bad[0]!r}; valid choices: "
                    f"{', '.join(COMBINES)}"
                )
        if self.cells.form != "pairs":
            raise ValueError(
                "NASNet blocks have two inputs: the genotype form is 'pairs'"
            )

    @classmethod
    def from_genotype(cls, genotype: Genotype) -> NASNetGenotype:
        """A genotype whose blocks all add (NASNet-A, PNASNet-5, DARTS cells)."""
        return cls(
            genotype,
            ("add",) * genotype.steps("normal"),
            ("add",) * genotype.steps("reduce"),
        )

    def combine(self, cell: str) -> tuple[str, ...]:
        return self.normal_combine if cell == "normal" else self.reduce_combine

    def hash(self) -> str:
        """The genotype's canonical hash when every block adds (so NASNet-A hashes
        like its ``Genotype``); with concatenations the combinations are appended."""
        if set(self.normal_combine + self.reduce_combine) == {"add"}:
            return self.cells.hash()
        text = f"{self.cells.hash()}|{self.normal_combine}|{self.reduce_combine}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.cells.to_dict(),
            "normal_combine": list(self.normal_combine),
            "reduce_combine": list(self.reduce_combine),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NASNetGenotype:
        """From ``to_dict`` output, a published genotype record or a ``Genotype``
        dict (then every block adds)."""
        inner = data.get("genotype", data.get("architecture", data))
        # Genotype.from_dict refuses concatenating blocks, which only this class builds.
        cells = Genotype.from_dict(
            {k: v for k, v in inner.items() if not k.endswith("_combine")}
        )
        return cls(
            cells,
            inner.get("normal_combine", ("add",) * cells.steps("normal")),
            inner.get("reduce_combine", ("add",) * cells.steps("reduce")),
        )

    def draw(self, cell: str = "normal", **kwargs: Any):
        """Draw one cell (``nasedu.viz.draw_cell``); concatenating blocks are named
        in the title, since the drawing shows every block as a sum."""
        from nasedu.viz import draw_cell

        concat = [str(b) for b, c in enumerate(self.combine(cell)) if c == "concat"]
        title = kwargs.pop("title", f"{cell} cell")
        if concat:
            title += f" (blocks {', '.join(concat)} concatenate their two inputs)"
        return draw_cell(self.cells, cell, title=title, **kwargs)


# ------------------------------------------------------------------------------ space
@dataclass(frozen=True)
class NASNetSpace:
    """The NASNet search space (§3, Fig. 3 and App. Fig. 7), as data.

    Each of the two cells has ``blocks`` blocks; block b makes five predictions
    (Steps 1–5): two hidden states among the two cell inputs and blocks 0..b−1, an
    operation for each, and how to combine them. The controller makes the 2 × 5B
    predictions with "5 distinct softmax classifiers" per block (§3, App. A.2), so
    every prediction here is its own ``Choice`` kind: its own head and embedding.

    Args:
        primitives: the candidate operations (§3's 13, ``nasedu.ops.NASNET_PRIMITIVES``).
        blocks: B, blocks per cell (§3: "B = 5 provides good results").
        combines: the combinations (§3 Step 5: element-wise addition or concatenation).
    """

    name: str = "nasnet_cell"
    primitives: tuple[str, ...] = NASNET_PRIMITIVES
    blocks: int = 5
    combines: tuple[str, ...] = COMBINES

    def __post_init__(self) -> None:
        object.__setattr__(self, "primitives", tuple(self.primitives))
        object.__setattr__(self, "combines", tuple(self.combines))
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")
        if not self.primitives or not self.combines:
            raise ValueError("a NASNet space needs at least one op and one combination")
        unknown = [op for op in self.primitives if op not in OPS]
        if unknown:
            raise ValueError(
                f"unknown operation {unknown[0]!r}; valid choices: "
                f"{', '.join(OPS.names())}"
            )
        bad = [c for c in self.combines if c not in COMBINES]
        if bad:
            raise ValueError(
                f"unknown combination {bad[0]!r}; valid choices: {', '.join(COMBINES)}"
            )

    def _sizes(self, block: int) -> tuple[int, ...]:
        states = block + 2  # the two cell inputs and every earlier block
        ops, combines = len(self.primitives), len(self.combines)
        return (states, states, ops, ops, combines)

    def decisions(self) -> list[Choice]:
        """The 2 × 5B predictions, Normal cell first (App. A.2)."""
        return [
            Choice(f"{cell}{b}_{step}", size)
            for cell in CELLS
            for b in range(self.blocks)
            for step, size in zip(BLOCK_STEPS, self._sizes(b))
        ]

    def kinds(self) -> dict[str, int]:
        """Every prediction's kind and number of options (``Controller(kinds=...)``)."""
        return {d.kind: d.size for d in self.decisions()}

    def decode(self, actions: Sequence[int]) -> NASNetGenotype:
        """The genotype of one action per decision (inverse of ``encode``)."""
        decisions = self.decisions()
        if len(actions) != len(decisions):
            raise ValueError(
                f"{len(actions)} actions for the {len(decisions)} decisions of "
                f"{self.blocks}-block cells"
            )
        for a, d in zip(actions, decisions):
            if not isinstance(a, int) or not 0 <= a < d.size:
                raise ValueError(f"action {a!r} outside {d.kind} (0..{d.size - 1})")
        parts: dict[str, Any] = {}
        per_cell = 5 * self.blocks
        for c, cell in enumerate(CELLS):
            edges, combine = [], []
            for b in range(self.blocks):
                in_a, in_b, op_a, op_b, comb = actions[
                    c * per_cell + 5 * b : c * per_cell + 5 * b + 5
                ]
                edges += [(self.primitives[op_a], in_a), (self.primitives[op_b], in_b)]
                combine.append(self.combines[comb])
            used = {i for _, i in edges}
            parts[cell] = edges
            parts[f"{cell}_concat"] = [
                j for j in range(2, self.blocks + 2) if j not in used
            ]
            parts[f"{cell}_combine"] = combine
        cells = Genotype(
            parts["normal"],
            parts["normal_concat"],
            parts["reduce"],
            parts["reduce_concat"],
        )
        return NASNetGenotype(cells, parts["normal_combine"], parts["reduce_combine"])

    def encode(self, genotype: NASNetGenotype) -> list[int]:
        """The actions that ``decode`` turns into ``genotype``."""
        actions: list[int] = []
        for cell in CELLS:
            nodes = genotype.cells.nodes(cell)
            if len(nodes) != self.blocks:
                raise ValueError(
                    f"{cell} cell has {len(nodes)} blocks; this space has {self.blocks}"
                )
            for (op_a, _), (op_b, _) in nodes:
                for op in (op_a, op_b):
                    if op not in self.primitives:
                        raise ValueError(
                            f"operation {op!r} is not in this space; valid choices: "
                            f"{', '.join(self.primitives)}"
                        )
            for b, ((op_a, in_a), (op_b, in_b)) in enumerate(nodes):
                actions += [
                    in_a,
                    in_b,
                    self.primitives.index(op_a),
                    self.primitives.index(op_b),
                    self.combines.index(genotype.combine(cell)[b]),
                ]
        return actions

    def sample(self, rng: random.Random) -> NASNetGenotype:
        """Every prediction drawn uniformly: NASNet's random search, which "replaces
        the softmax samples of the controller with uniform samples" (§3, §4.4)."""
        return self.decode([rng.randrange(d.size) for d in self.decisions()])

    def size(self) -> int:
        """Number of distinct action sequences (ordered blocks), both cells."""
        per_cell = math.prod(math.prod(self._sizes(b)) for b in range(self.blocks))
        return per_cell**2

    def to_json(self, genotype: NASNetGenotype) -> dict[str, Any]:
        return genotype.to_dict()

    def from_json(self, data: dict[str, Any]) -> NASNetGenotype:
        return NASNetGenotype.from_dict(data)


# ----------------------------------------------------------------------------- network
def _factorized_reduction(C_in: int, C_out: int, stride: int, relu: bool) -> nn.Module:
    """R-TF ``factorized_reduction``: a 1×1 conv + BN at stride 1, two offset
    stride-2 1×1 convs concatenated + BN at stride 2 (``relu``: a ReLU first, as in
    ``_reduce_prev_layer``; ``_combine_unused_states`` has none)."""
    if stride == 2:
        reduce = FactorizedReduce(C_in, C_out)
        if not relu:
            reduce.relu = nn.Identity()
        return reduce
    return nn.Sequential(
        *([nn.ReLU(inplace=False)] if relu else []),
        nn.Conv2d(C_in, C_out, 1, bias=False),
        nn.BatchNorm2d(C_out),
    )


def nasnet_op(name: str, C_in: int, C_out: int, stride: int) -> nn.Module:
    """One operation of a block, mapping ``C_in`` to ``C_out`` channels the way R-TF's
    ``_apply_conv_operation`` does (App. A.4: "1x1 convolutions are inserted as
    necessary" to match shapes).

    * separable k×k (App. A.4, "applied twice"): ReLU–sep(C_in→C_out, stride)–BN,
      ReLU–sep(C_out→C_out)–BN;
    * identity (``skip_connect``, R-TF ``none``): itself, or ReLU–1×1 conv (stride)–BN
      when the stride or the channels differ;
    * pooling: the pool, then a 1×1 conv + BN when the channels differ;
    * the other ops of §3, which R-TF never implemented: a ReLU–1×1–BN projection to
      ``C_out`` when needed, then ``nasedu.ops``'s op.
    """
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return nn.Sequential(
            DilConv(C_in, C_out, k, stride, k // 2, 1),
            DilConv(C_out, C_out, k, 1, k // 2, 1),
        )
    if name == "skip_connect":
        if stride == 1 and C_in == C_out:
            return Identity()
        return ReLUConvBN(C_in, C_out, 1, stride, 0)
    if "pool" in name:
        k = int(name[-1])
        pool = Pool(name.split("_")[0], C_in, k, stride)
        if C_in == C_out:
            return pool
        return nn.Sequential(
            pool, nn.Conv2d(C_in, C_out, 1, bias=False), nn.BatchNorm2d(C_out)
        )
    op = build(name, C_out, stride)
    if C_in == C_out:
        return op
    return nn.Sequential(ReLUConvBN(C_in, C_out, 1, 1, 0), op)


class NASNetCell(nn.Module):
    """One Normal or Reduction cell, built as R-TF's ``NasNetABaseCell``.

    Args:
        genotype: the cell pair.
        reduction: build the Reduction cell (ops on the cell inputs get stride 2).
        C_net: channels of the previous cell's output ("h_i").
        C_prev: channels of the output two cells back ("h_{i−1}"), or None for the
            first cell, which then sees the stem twice (R-TF ``_reduce_prev_layer``).
        prev_is_larger: whether h_{i−1} has twice h_i's height (after a reduction).
        F: filters of every operation in this cell.
    """

    def __init__(
        self,
        genotype: NASNetGenotype,
        reduction: bool,
        C_net: int,
        C_prev: int | None,
        prev_is_larger: bool,
        F: int,
    ):
        super().__init__()
        cell = "reduce" if reduction else "normal"
        self.reduction, self.F = reduction, F
        # R-TF _cell_base: h_i always gets a ReLU–1×1–BN; h_{i−1} only when its shape
        # differs from the cell's (factorized reduction) or its channels from F.
        self.base = ReLUConvBN(C_net, F, 1, 1, 0)
        if C_prev is None:
            self.prev, C_prev = nn.Identity(), C_net
        elif prev_is_larger:
            self.prev, C_prev = _factorized_reduction(C_prev, F, 2, relu=True), F
        elif C_prev != F:
            self.prev, C_prev = ReLUConvBN(C_prev, F, 1, 1, 0), F
        else:
            self.prev = nn.Identity()
        self.nodes = genotype.cells.nodes(cell)
        self.combines = genotype.combine(cell)
        self.concat = genotype.cells.concat(cell)
        channels = [C_prev, F]  # DARTS order: state 0 is h_{i−1}, state 1 is h_i
        self.ops = nn.ModuleList()
        self.droppable: list[list[bool]] = []
        for node, combine in zip(self.nodes, self.combines):
            self.ops.append(
                nn.ModuleList(
                    nasnet_op(op, channels[i], F, 2 if reduction and i < 2 else 1)
                    for op, i in node
                )
            )
            # R-TF drops every path but the identity ("none"), even a 1×1 one.
            self.droppable.append([op != "skip_connect" for op, _ in node])
            channels.append(2 * F if combine == "concat" else F)
        # R-TF _combine_unused_states: states whose channels or height differ from the
        # last block's are factorized-reduced to match it, then all are concatenated.
        final = channels[-1]
        self.match = nn.ModuleDict()
        for j in self.concat:
            larger = reduction and j < 2
            if larger or channels[j] != final:
                stride = 2 if larger else 1
                self.match[str(j)] = _factorized_reduction(
                    channels[j], final, stride, relu=False
                )
        self.out_channels = len(self.concat) * final

    def forward(
        self, net: torch.Tensor, prev: torch.Tensor | None, drop_prob: float = 0.0
    ) -> torch.Tensor:
        states = [self.prev(net if prev is None else prev), self.base(net)]
        for ops, node, combine, droppable in zip(
            self.ops, self.nodes, self.combines, self.droppable
        ):
            h = []
            for op, (_, i), drop in zip(ops, node, droppable):
                out = op(states[i])  # (B, F, H', W')
                h.append(drop_path(out, drop_prob, self.training) if drop else out)
            states.append(h[0] + h[1] if combine == "add" else torch.cat(h, dim=1))
        outs = [
            self.match[str(j)](states[j]) if str(j) in self.match else states[j]
            for j in self.concat
        ]
        return torch.cat(outs, dim=1)  # (B, len(concat)·C_final, H', W')


class NASNetAuxHead(nn.Module):
    """R-TF ``_build_aux_head``: ReLU, 5×5 average pool stride 3 (VALID), 1×1 conv to
    128, BN, ReLU, a conv to 768 covering the whole remaining map, BN, ReLU, linear.
    Maps smaller than 5×5 (the 8×8 digits) are pooled to 1×1 instead."""

    def __init__(self, C: int, num_classes: int, size: int):
        super().__init__()
        self.small = size < 5
        pooled = 1 if self.small else (size - 5) // 3 + 1
        self.pool = nn.AvgPool2d(5, stride=3)
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, pooled, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1) if self.small else self.pool(x)
        return self.classifier(self.features(x).flatten(1))  # (B, num_classes)


def reduction_layers(num_cells: int, num_reductions: int = 2) -> list[int]:
    """Where the Reduction cells go (R-TF ``calc_reduction_layers``): before normal
    cells ⌊k·num_cells/(num_reductions+1)⌋, k = 1..num_reductions."""
    return [
        int(k / (num_reductions + 1) * num_cells) for k in range(1, num_reductions + 1)
    ]


class NASNetCIFAR(nn.Module):
    """The CIFAR NASNet of R-TF ``build_nasnet_cifar`` (NASNet §3, Fig. 2).

    Stem: a 3×3 conv to ``stem_multiplier · F`` filters + BN. Then 3N Normal cells with
    a Reduction cell before cells N and 2N; each Reduction doubles the filters (§3).
    The auxiliary head sits after Normal cell 2N−1 (R-TF: just before the second
    reduction). The network is named "N @ P", P the filters of the penultimate layer
    (the last cell's output channels): NASNet-A with N = 6, F = 32 is "6 @ 768".

    ``forward(x, drop_prob)`` returns ``(logits, aux_logits or None)``; ``drop_prob``
    is the engine's time-ramped value (``TrainConfig.drop_prob``) and cell i drops
    paths with ``scheduled_drop_path(drop_prob, i, num_cells, 1)`` (R-TF v3).
    """

    def __init__(
        self,
        genotype: NASNetGenotype | Genotype,
        F: int = 32,
        N: int = 6,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        auxiliary: bool = True,
        image_size: int = 32,
    ):
        super().__init__()
        if isinstance(genotype, Genotype):
            genotype = NASNetGenotype.from_genotype(genotype)
        if N < 1 or F < 2 or F % 2:
            raise ValueError(
                f"NASNet needs N >= 1 and an even F >= 2, got N={N}, F={F}"
            )
        self.genotype, self.N, self.F = genotype, N, F
        C_stem = stem_multiplier * F
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(C_stem),
        )
        reductions = reduction_layers(3 * N)
        outputs: list[int | None] = [None, C_stem]  # channels of every cell output
        self.cells = nn.ModuleList()
        self.aux_index: int | None = None
        self.auxiliary_head = None
        filters, size, prev_larger = F, image_size, False
        for i in range(3 * N):
            if i in reductions:
                filters *= 2
                cell = NASNetCell(
                    genotype, True, outputs[-1], outputs[-2], False, filters
                )
                self.cells.append(cell)
                outputs.append(cell.out_channels)
                size, prev_larger = (size + 1) // 2, True  # SAME padding, stride 2
            cell = NASNetCell(
                genotype, False, outputs[-1], outputs[-2], prev_larger, filters
            )
            self.cells.append(cell)
            outputs.append(cell.out_channels)
            prev_larger = False
            if auxiliary and i == reductions[1] - 1:
                self.aux_index = len(self.cells) - 1
                self.auxiliary_head = NASNetAuxHead(
                    cell.out_channels, num_classes, size
                )
        self.classifier = nn.Linear(outputs[-1], num_classes)

    @property
    def penultimate_filters(self) -> int:
        return self.classifier.in_features

    @property
    def name(self) -> str:
        """The network's name, "N @ P" (NASNet §4.1, Table 1)."""
        return f"{self.N} @ {self.penultimate_filters}"

    def cell_drop_probs(self, drop_prob: float) -> list[float]:
        """Each cell's ScheduledDropPath probability, given the engine's time-ramped
        ``drop_prob`` (the layer scaling of R-TF; the time scaling is the engine's)."""
        n = len(self.cells)
        return [scheduled_drop_path(drop_prob, i, n, 1.0) for i in range(n)]

    def forward(self, x: torch.Tensor, drop_prob: float = 0.0):
        net = self.stem(x)  # (B, 3F, H, W)
        prev = None
        logits_aux = None
        for i, (cell, p) in enumerate(zip(self.cells, self.cell_drop_probs(drop_prob))):
            prev, net = net, cell(net, prev, p)
            if i == self.aux_index and self.training:
                logits_aux = self.auxiliary_head(net)
        out = torch.relu(net).mean(dim=(2, 3))  # (B, P): R-TF final ReLU + global pool
        return self.classifier(out), logits_aux


# ---------------------------------------------------------------------- child training
@dataclass(frozen=True)
class NASNetChild:
    """How a sampled cell is scored during the search (NASNet App. A.1, A.6).

    "Each architecture is trained for a fixed 20 epochs" with "a single period cosine
    decay", "momentum 0.9" and "L2 weight decay", N = 2 (A.6); the reward is the
    accuracy on 5,000 training images held out for the controller (A.1). The paper
    gives neither F, the learning rate, the weight decay nor the batch size during
    the search: those fields are UNVERIFIED and take R-TF's CIFAR values.
    """

    N: int = 2  # App. A.6 "a small N = 2 during the architecture search"
    F: int = 32  # UNVERIFIED for the search: R-TF cifar_config num_conv_filters
    auxiliary: bool = False  # UNVERIFIED: App. A.6 does not mention an auxiliary head
    valid_size: int = 5000  # App. A.1 "a random subset of 5,000 images"
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=20,  # App. A.6 "a fixed 20 epochs"
            batch_size=32,  # UNVERIFIED: R-TF's CIFAR batch size
            lr=0.025,  # UNVERIFIED: R-TF's CIFAR learning rate
            momentum=0.9,  # App. A.6
            weight_decay=5e-4,  # UNVERIFIED value: R-TF nasnet_cifar_arg_scope
            lr_min=0.0,  # App. A.6 single-period cosine decay
            grad_clip=5.0,  # UNVERIFIED: R-TF's CIFAR notes
            auxiliary_weight=0.4,  # R-TF (used only with an auxiliary head)
            drop_path_prob=0.0,  # UNVERIFIED: no DropPath mentioned for the search
            augment="crop_flip",  # App. A.1 random 32×32 crops of 40×40, flips
            cutout=0,  # App. A.1 names no cutout
        )
    )

    def build(self, genotype: NASNetGenotype, data) -> NASNetCIFAR:
        return NASNetCIFAR(
            genotype,
            F=self.F,
            N=self.N,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            auxiliary=self.auxiliary,
            image_size=data.train[0].shape[-1],
        )

    def evaluator(self, data, device, seed: int):
        """The scoring function ``(genotype, step) -> Outcome``: train on the search
        split, reward = final validation accuracy. The test split is withheld, and
        without a validation split ``valid_size`` training images are held out."""
        n = len(data.train[1])
        search_data = data_for_search(data, seed, min(self.valid_size, n // 2) / n)
        return child_scorer(
            lambda genotype: self.build(genotype, data),
            self.train,
            search_data,
            device,
            seed,
        )


# ----------------------------------------------------------------------------- search
@dataclass(frozen=True)
class NASNetConfig:
    """The NASNet search (App. A.2–A.3) with its paper defaults."""

    samples: int = 20000  # App. A.3 "20,000 child models have been trained"
    space: NASNetSpace = field(default_factory=NASNetSpace)
    hidden: int = 100  # App. A.2 "one-layer LSTM with 100 hidden units"
    init_range: float = 0.1  # App. A.2 "initialized uniformly between -0.1 and 0.1"
    lr: float = 0.00035  # App. A.2 "PPO with learning rate 0.00035"
    entropy_weight: float = 1e-5  # App. A.2 "entropy penalty with a weight of 0.00001"
    baseline_decay: float = 0.95  # App. A.2 "exponential moving average ... 0.95"
    batch_size: int = 20  # App. A.3 "minibatches of 20 architectures"
    ppo_clip: float = 0.2  # UNVERIFIED: not stated; Schulman et al. 2017's ε
    ppo_epochs: int = 4  # UNVERIFIED: not stated; passes over each minibatch
    child: NASNetChild = field(default_factory=NASNetChild)
    # App. A.3 trains children on a pool of 450 GPU workers. 0 trains them one at a
    # time in this process; n > 0 in n worker processes, one per GPU of `devices`.
    workers: int = 0
    devices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.devices is not None:
            object.__setattr__(self, "devices", tuple(str(d) for d in self.devices))


BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # A few dozen short children on CIFAR-10 on one free Colab GPU (≈ 30 min, an
    # estimate): F = 16, N = 2, 2 epochs of batch 128, controller updates every 10.
    "colab": {
        "samples": 40,
        "batch_size": 10,
        "child": {
            "F": 16,
            "valid_size": 5000,
            "train": {"epochs": 2, "batch_size": 128, "lr": 0.05},
        },
    },
    # Four tiny children on the 8×8 digits, 1–2 s each on one CPU core: F = 4, N = 1
    # (5 cells), one epoch (31 steps) and no CIFAR augmentation (it would destroy 8×8
    # digits); the controller updates every 2 children.
    "smoke": {
        "samples": 4,
        "batch_size": 2,
        "child": {
            "F": 4,
            "N": 1,
            "train": {
                "epochs": 1,
                "batch_size": 32,
                "lr": 0.05,
                "augment": None,
                "cutout": 0,
                "grad_clip": 5.0,
            },
        },
    },
}


def make_controller(config: NASNetConfig) -> Controller:
    """The controller of App. A.2: one LSTM layer of 100 units, one softmax head per
    prediction, weights uniform in ±0.1."""
    return Controller(
        config.space.kinds(),
        hidden=config.hidden,
        layers=1,
        init_range=config.init_range,
    )


def make_ppo(config: NASNetConfig, controller: Controller) -> PPO:
    """PPO with the clipped objective, entropy penalty and EMA baseline (App. A.2)."""
    return PPO(
        controller,
        lr=config.lr,
        clip=config.ppo_clip,
        epochs=config.ppo_epochs,
        baseline_decay=config.baseline_decay,
        entropy_weight=config.entropy_weight,
    )


def _search(config: NASNetConfig, strategy, data, device, seed: int) -> RoundSearch:
    """Rounds of one controller minibatch (App. A.3: 20 children) trained side by side
    by ``config.workers`` workers; the controller learns after each round."""
    evaluators = functools.partial(
        child_evaluator,
        config.child,
        data,
        device,
        seed,
        config.workers,
        config.devices,
    )
    return RoundSearch(
        config.space, strategy, evaluators, config.samples, config.batch_size
    )


def make(config: NASNetConfig, data, device, seed: int) -> RoundSearch:
    """The NASNet search: controller + PPO behind ask/tell, children per App. A.6."""
    controller = make_controller(config)
    strategy = ControllerStrategy(
        config.space,
        controller,
        make_ppo(config, controller),
        batch_size=config.batch_size,
        seed=seed,
    )
    return _search(config, strategy, data, device, seed)


def make_random(config: NASNetConfig, data, device, seed: int) -> RoundSearch:
    """Random search in the same space with the same children (§4.4, Fig. 6)."""
    return _search(config, RandomSearch(config.space, seed), data, device, seed)


METHODS.register(
    "nasnet", Method("nasnet", NASNetConfig, BUDGETS, make, citation="zoph2018nasnet")
)
METHODS.register(
    "nasnet_random",
    Method(
        "nasnet_random", NASNetConfig, BUDGETS, make_random, citation="zoph2018nasnet"
    ),
)


# ---------------------------------------------------------------------------- retrain
@dataclass(frozen=True)
class NASNetRetrain:
    """Training a cell's NASNet on CIFAR-10 (R-TF ``cifar_config`` and the notes
    above it; NASNet Table 1's "6 @ 768" row)."""

    N: int = 6  # Table 1 "NASNet-A (6 @ 768)"; R-TF num_cells=18 over 3 stages
    F: int = 32  # R-TF num_conv_filters (768 = 6 blocks·4F at the last stage)
    auxiliary: bool = True  # R-TF use_aux_head=1
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=600,  # R-TF "600 epochs with a batch size of 32"
            batch_size=32,  # R-TF
            lr=0.025,  # R-TF "learning rate: 0.025"
            momentum=0.9,  # App. A.6 momentum optimizer
            weight_decay=5e-4,  # R-TF nasnet_cifar_arg_scope
            lr_min=0.0,  # R-TF "cosine (single period) learning rate decay"
            grad_clip=5.0,  # R-TF "clip global norm of all gradients by 5"
            auxiliary_weight=0.4,  # R-TF "auxiliary head loss weighting: 0.4"
            drop_path_prob=0.4,  # R-TF drop_path_keep_prob=0.6
            augment="crop_flip",  # App. A.1
            cutout=0,  # Table 1's 6 @ 768 row is without cutout
        )
    )


RETRAIN_BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "colab": {"N": 2, "F": 16, "train": {"epochs": 10, "batch_size": 128, "lr": 0.05}},
    "smoke": {
        "N": 1,
        "F": 4,
        "train": {
            "epochs": 2,
            "batch_size": 64,
            "lr": 0.05,
            "augment": None,
            "cutout": 0,
        },
    },
}


def retrain(
    genotype: NASNetGenotype | Genotype,
    data,
    config: NASNetRetrain,
    device,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train ``genotype``'s NASNet with ScheduledDropPath through ``nasedu.train``:
    the engine ramps ``drop_prob`` linearly over the epochs, each cell scales it by
    its depth (``scheduled_drop_path``). The weights are initialised from
    ``config.train.seed``, so a retrain is reproducible from its config alone."""
    from nasedu.device import seed_everything

    seed_everything(config.train.seed)
    model = NASNetCIFAR(
        genotype,
        F=config.F,
        N=config.N,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        auxiliary=config.auxiliary,
        image_size=data.train[0].shape[-1],
    )
    return train(
        model, data, config.train, device, out_dir=out, resume=resume, progress=progress
    )
