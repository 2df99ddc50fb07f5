"""The hierarchical and flat representations of Liu et al. (chapter *Hierarchical
evolution*).

Liu, Simonyan, Vinyals, Fernando & Kavukcuoglu, "Hierarchical Representations for
Efficient Architecture Search", ICLR 2018 (arXiv:1711.00436), §2.

An architecture is a **motif**: a directed acyclic graph with a single source (node 0,
the motif's input) and a single sink (node G−1, its output), whose edges carry
operations. A node's value is the **merge** of its incoming edges,
x_j = merge[o_ij(x_i)]_{i<j}, the merge being depthwise concatenation (§2.1).

* **Flat** (§2.1): one motif of G nodes whose edges carry the six primitives (or
  "none", no edge).
* **Hierarchical** (§2.2): level 1 are the primitives; each level-l motif is a DAG
  whose edges carry the motifs of level l−1 (or "none"); the single motif of the top
  level is the cell. The paper uses L = 3: M₂ = 6 level-2 motifs of G = 4 nodes and
  one level-3 motif of G = 5 nodes (``paper-settings.md`` §4: UNVERIFIED, read from a
  third-party re-implementation; the paper's text was not available to nasedu).

Storage: a motif is its upper-triangular "adjacency matrix" of op indices —
``ops[j][i]`` for i < j is 0 for none, k ≥ 1 for the k-th op of the level below
(primitive k−1 for level-2 motifs, motif k−1 of the previous level otherwise).

Choices nasedu makes where the text it could read is silent (each pinned by a test):

* channels: every node keeps C channels. A node with one live input is that input's
  op output; a node with k > 1 inputs concatenates them depthwise (k·C channels) and a
  1×1 convolution + BN + ReLU maps them back to C. (Without it the channel count of a
  3-level cell grows geometrically with identity edges.)
* a node that no live path reaches from the source, or that reaches no sink, is dead
  (left out of the network, as ``none``); a genotype whose sink is disconnected from
  its source is invalid (``validate``), and mutation redraws such a change.

The paper's CIFAR skeleton (its Fig. 2; ``paper-settings.md`` §4, UNVERIFIED): a
3×3 conv stem of C channels, then three stages of N cells, a separable 3×3 conv of
stride 2 doubling the channels between stages (stride 1 between cells of a stage), a
final separable 3×3 conv, global average pooling and a linear classifier; C = 16,
N = 1 during the search, C = 64, N = 2 for the final evaluation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

REPRESENTATIONS = ("flat", "hierarchical")
NONE = "none"
# §2.3 level-1 primitives, paper-settings.md §4 (UNVERIFIED list, in this order).
PRIMITIVES = (
    "conv_1x1",  # 1×1 convolution of C channels
    "dw_conv_3x3",  # 3×3 depthwise convolution
    "sep_conv_3x3",  # 3×3 depthwise-separable convolution of C channels
    "max_pool_3x3",  # 3×3 max-pooling
    "avg_pool_3x3",  # 3×3 average-pooling
    "identity",
)
# §2.2 / §4.1 sizes (paper-settings.md §4: UNVERIFIED): motifs per level and nodes per
# motif, from level 2 up.
HIERARCHICAL_MOTIFS = (6, 1)
HIERARCHICAL_NODES = (4, 5)
# The flat DAG's node count: 11 nodes give 55 edges, about as many primitive edges as
# the hierarchical cell's 10 × 6 = 60 (UNVERIFIED: nasedu's reading of §4.1).
FLAT_NODES = 11


@dataclass(frozen=True)
class Motif:
    """One DAG: ``ops[j]`` holds the op index from each earlier node i < j to node j
    (0 = none); node 0 is the source and node ``len(ops) - 1`` the sink."""

    ops: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "ops", tuple(tuple(int(o) for o in r) for r in self.ops)
        )

    @property
    def nodes(self) -> int:
        return len(self.ops)

    def edges(self) -> list[tuple[int, int, int]]:
        """``(i, j, op)`` for every edge that is not none."""
        return [
            (i, j, o) for j, row in enumerate(self.ops) for i, o in enumerate(row) if o
        ]

    def live_nodes(self) -> set[int]:
        """Nodes on some source-to-sink path (only they contribute to the output)."""
        forward = {0}
        for j in range(1, self.nodes):
            if any(o and i in forward for i, o in enumerate(self.ops[j])):
                forward.add(j)
        backward = {self.nodes - 1}
        for j in range(self.nodes - 1, -1, -1):
            if j in backward:
                backward |= {i for i, o in enumerate(self.ops[j]) if o}
        return forward & backward

    def with_op(self, i: int, j: int, op: int) -> Motif:
        rows = [list(r) for r in self.ops]
        rows[j][i] = op
        return Motif(tuple(tuple(r) for r in rows))

    @classmethod
    def chain(cls, nodes: int, op: int) -> Motif:
        """The trivial motif: node i feeds node i+1 through ``op``, nothing else."""
        return cls(
            tuple(
                tuple(op if i == j - 1 else 0 for i in range(j)) for j in range(nodes)
            )
        )


@dataclass(frozen=True)
class HierarchicalGenotype:
    """An architecture of the flat or the hierarchical representation (§2).

    Attributes:
        levels: ``levels[0]`` are the level-2 motifs (edges carry primitives),
            ``levels[l]`` the level-(l+2) motifs (edges carry level-(l+1) motifs);
            the last level holds exactly one motif, the cell. One level = the flat
            representation.
        primitives: the level-1 operations.
    """

    levels: tuple[tuple[Motif, ...], ...]
    primitives: tuple[str, ...] = PRIMITIVES

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "levels",
            tuple(
                tuple(m if isinstance(m, Motif) else Motif(m) for m in lv)
                for lv in self.levels
            ),
        )
        object.__setattr__(self, "primitives", tuple(self.primitives))

    # ------------------------------------------------------------------ structure
    @property
    def representation(self) -> str:
        return "flat" if len(self.levels) == 1 else "hierarchical"

    @property
    def cell(self) -> Motif:
        return self.levels[-1][0]

    def op_count(self, level: int) -> int:
        """Number of non-none ops an edge of a ``levels[level]`` motif can carry."""
        return len(self.primitives) if level == 0 else len(self.levels[level - 1])

    def op_name(self, level: int, op: int) -> str:
        """A readable name for op index ``op`` of a ``levels[level]`` motif's edge."""
        if op == 0:
            return NONE
        if level == 0:
            return self.primitives[op - 1]
        return f"motif {level + 1}.{op}"  # motif k (1-based) of level level+1

    def validate(self) -> HierarchicalGenotype:
        """Check the structure; raises ``ValueError`` naming the bad value."""
        if not self.levels or len(self.levels[-1]) != 1:
            raise ValueError(
                f"the top level must hold exactly one motif (the cell), got "
                f"{len(self.levels[-1]) if self.levels else 'no levels'}"
            )
        bad = [p for p in self.primitives if p not in PRIMITIVES]
        if bad:
            raise ValueError(
                f"unknown primitive(s) {bad}; valid: {', '.join(PRIMITIVES)}"
            )
        for lv, motifs in enumerate(self.levels):
            if not motifs:
                raise ValueError(f"level {lv + 2} has no motifs")
            n_ops = self.op_count(lv)
            for m, motif in enumerate(motifs):
                where = f"motif {lv + 2}.{m + 1}"
                if motif.nodes < 2:
                    raise ValueError(
                        f"{where} has {motif.nodes} nodes; at least 2 needed"
                    )
                for j, row in enumerate(motif.ops):
                    if len(row) != j:
                        raise ValueError(
                            f"{where}: node {j} must list {j} incoming ops, got {len(row)}"
                        )
                    for i, o in enumerate(row):
                        if not 0 <= o <= n_ops:
                            raise ValueError(
                                f"{where}: op {o} on edge {i}->{j}; valid: 0 (none) to "
                                f"{n_ops}"
                            )
                if motif.nodes - 1 not in motif.live_nodes():
                    raise ValueError(
                        f"{where}: the sink (node {motif.nodes - 1}) is not connected "
                        f"to the source"
                    )
        return self

    # ------------------------------------------------------------------ identity
    def hash(self) -> str:
        """Canonical hash: equal for genotypes that differ only by a relabelling of
        motif nodes (another topological order), the numbering of motifs within a
        level, unused motifs, none edges and dead nodes (Merkle hash of the sink)."""
        motif_hash: list[list[str]] = []
        for lv, motifs in enumerate(self.levels):
            hashes = []
            for motif in motifs:
                live = motif.live_nodes()
                node: dict[int, str] = {0: "in"}
                for j in range(1, motif.nodes):
                    if j not in live:
                        continue
                    terms = sorted(
                        f"{self.primitives[o - 1] if lv == 0 else motif_hash[lv - 1][o - 1]}"
                        f"({node[i]})"
                        for i, o in enumerate(motif.ops[j])
                        if o and i in live
                    )
                    node[j] = hashlib.sha256("+".join(terms).encode()).hexdigest()
                hashes.append(node[motif.nodes - 1])
            motif_hash.append(hashes)
        return hashlib.sha256(motif_hash[-1][0].encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "representation": self.representation,
            "primitives": list(self.primitives),
            "levels": [[[list(r) for r in m.ops] for m in lv] for lv in self.levels],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HierarchicalGenotype:
        if not isinstance(data, dict):
            raise ValueError(
                f"a genotype must be a JSON object, got {type(data).__name__}"
            )
        data = data.get("architecture", data)  # a search's result.json
        if "levels" not in data:
            raise ValueError("hierarchical genotype JSON lacks 'levels'")
        levels = tuple(
            tuple(Motif(tuple(tuple(r) for r in m)) for m in lv)
            for lv in data["levels"]
        )
        return cls(levels, tuple(data.get("primitives", PRIMITIVES))).validate()

    @classmethod
    def from_json(cls, text: str) -> HierarchicalGenotype:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed genotype JSON: {e}") from None

    # ------------------------------------------------------------------ flattening
    def flatten(self) -> HierarchicalGenotype:
        """The same network as one flat DAG over primitives (§2.2: "assembling" the
        hierarchy). Each motif on an edge i→j is replaced by a copy of its graph whose
        source is node i; the copy's sink feeds node j by an identity edge, so every
        merge keeps its inputs and the network computes the same function (and has
        the same parameters) as the hierarchical one."""
        if len(self.levels) == 1:
            return self
        identity = (
            self.primitives.index("identity") + 1
            if "identity" in self.primitives
            else None
        )
        if identity is None:
            raise ValueError("flattening needs the 'identity' primitive")
        nodes: list[list[tuple[int, int]]] = [[]]  # node -> [(pred, primitive op)]

        def expand(level: int, index: int, source: int) -> int:
            motif = self.levels[level][index]
            live = motif.live_nodes()
            ids = {0: source}
            for j in range(1, motif.nodes):
                if j not in live:
                    continue
                inputs = []
                for i, o in enumerate(motif.ops[j]):
                    if not o or i not in live:
                        continue
                    if level == 0:
                        inputs.append((ids[i], o))
                    else:
                        inputs.append((expand(level - 1, o - 1, ids[i]), identity))
                nodes.append(inputs)
                ids[j] = len(nodes) - 1
            return ids[motif.nodes - 1]

        expand(len(self.levels) - 1, 0, 0)
        ops = []
        for j, inputs in enumerate(nodes):
            row = [0] * j
            for i, o in inputs:
                row[i] = o
            ops.append(tuple(row))
        return HierarchicalGenotype(((Motif(tuple(ops)),),), self.primitives)

    def draw(self, level: int | None = None, index: int = 0, title: str | None = None):
        """One motif as a graphviz drawing (see ``draw_motif``)."""
        return draw_motif(self, level, index, title)


# ---------------------------------------------------------------------- genotypes
def trivial(
    representation: str = "hierarchical", primitives=PRIMITIVES
) -> HierarchicalGenotype:
    """The trivial genotype the population starts from (§3.1): every motif a chain of
    identities (hierarchical: level-2 chains of the identity primitive, the cell a
    chain of level-2 motif 1, itself an identity chain)."""
    if representation not in REPRESENTATIONS:
        raise ValueError(
            f"unknown representation {representation!r}; valid: {', '.join(REPRESENTATIONS)}"
        )
    identity = tuple(primitives).index("identity") + 1
    if representation == "flat":
        return HierarchicalGenotype(((Motif.chain(FLAT_NODES, identity),),), primitives)
    level2 = tuple(
        Motif.chain(HIERARCHICAL_NODES[0], identity)
        for _ in range(HIERARCHICAL_MOTIFS[0])
    )
    return HierarchicalGenotype(
        (level2, (Motif.chain(HIERARCHICAL_NODES[1], 1),)), primitives
    )


# ---------------------------------------------------------------------- modules
class ConvBNReLU(nn.Sequential):
    """A convolution followed by BN and ReLU (§2.3: "all convolutional operations are
    followed by batch normalisation and ReLU")."""

    def __init__(self, C_in: int, C_out: int, kernel: int, groups: int = 1):
        super().__init__(
            nn.Conv2d(
                C_in, C_out, kernel, padding=kernel // 2, groups=groups, bias=False
            ),
            nn.BatchNorm2d(C_out),
            nn.ReLU(inplace=False),
        )


class SepConv(nn.Sequential):
    """Depthwise k×k then pointwise 1×1 convolution, BN, ReLU (a "separable conv")."""

    def __init__(self, C_in: int, C_out: int, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(C_in, C_in, kernel, stride, kernel // 2, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out),
            nn.ReLU(inplace=False),
        )


def primitive(name: str, C: int) -> nn.Module:
    """A level-1 operation on C channels, stride 1, resolution kept (§2.3)."""
    if name == "conv_1x1":
        return ConvBNReLU(C, C, 1)
    if name == "dw_conv_3x3":
        return ConvBNReLU(C, C, 3, groups=C)
    if name == "sep_conv_3x3":
        return SepConv(C, C, 3)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown primitive {name!r}; valid: {', '.join(PRIMITIVES)}")


class MotifModule(nn.Module):
    """A motif "assembled" into a module (§2.1): x_j = merge[o_ij(x_i)]_{i<j}, each
    edge a primitive or a fresh copy (own weights) of a lower-level motif; C channels
    in and out."""

    def __init__(self, genotype: HierarchicalGenotype, level: int, index: int, C: int):
        super().__init__()
        motif = genotype.levels[level][index]
        live = motif.live_nodes()
        self.order = [j for j in range(1, motif.nodes) if j in live]
        self.inputs: dict[int, list[int]] = {}
        self.edges = nn.ModuleDict()
        self.merges = nn.ModuleDict()
        for j in self.order:
            preds = [i for i, o in enumerate(motif.ops[j]) if o and i in live]
            self.inputs[j] = preds
            for i in preds:
                o = motif.ops[j][i]
                self.edges[f"{i}_{j}"] = (
                    primitive(genotype.primitives[o - 1], C)
                    if level == 0
                    else MotifModule(genotype, level - 1, o - 1, C)
                )
            # Depthwise concatenation, then back to C channels (module docstring).
            self.merges[str(j)] = (
                ConvBNReLU(len(preds) * C, C, 1) if len(preds) > 1 else nn.Identity()
            )
        self.sink = motif.nodes - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same
        states = {0: x}
        for j in self.order:
            outs = [self.edges[f"{i}_{j}"](states[i]) for i in self.inputs[j]]
            states[j] = self.merges[str(j)](torch.cat(outs, dim=1))  # (B, k·C, H, W) in
        return states[self.sink]


class HierarchicalNetwork(nn.Module):
    """The paper's CIFAR skeleton around a cell (module docstring; Fig. 2)."""

    def __init__(
        self,
        genotype: HierarchicalGenotype,
        C: int = 16,
        cells_per_stage: int = 1,
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        genotype.validate()
        top = len(genotype.levels) - 1
        layers: list[nn.Module] = [ConvBNReLU(in_channels, C, 3)]
        channels = C
        for stage in range(3):
            if stage > 0:
                layers.append(SepConv(channels, 2 * channels, 3, stride=2))
                channels *= 2
            for n in range(cells_per_stage):
                if n > 0:
                    layers.append(SepConv(channels, channels, 3, stride=1))
                layers.append(MotifModule(genotype, top, 0, channels))
        layers.append(SepConv(channels, channels, 3, stride=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, 4C, H/4, W/4)
        return self.classifier(h.mean(dim=(2, 3)))  # (B, K)


# ---------------------------------------------------------------------- drawing
def draw_motif(
    genotype: HierarchicalGenotype,
    level: int | None = None,
    index: int = 0,
    title: str | None = None,
):
    """A motif as a ``graphviz.Digraph`` (SVG in Jupyter): nodes left to right,
    edges labelled with their primitive or lower-level motif; dead nodes and none
    edges left out. ``level`` indexes ``genotype.levels`` (default: the cell)."""
    import graphviz

    level = len(genotype.levels) - 1 if level is None else level
    if not 0 <= level < len(genotype.levels):
        raise ValueError(f"level must be in 0..{len(genotype.levels) - 1}, got {level}")
    if not 0 <= index < len(genotype.levels[level]):
        raise ValueError(
            f"index must be in 0..{len(genotype.levels[level]) - 1}, got {index}"
        )
    motif = genotype.levels[level][index]
    live = motif.live_nodes()
    dot = graphviz.Digraph(graph_attr={"rankdir": "LR", "bgcolor": "white"})
    if title:
        dot.attr(label=title, labelloc="t")
    dot.attr(
        "node", style="filled", shape="circle", fontname="Helvetica", fontsize="11"
    )
    dot.attr("edge", fontname="Helvetica", fontsize="10")
    for j in sorted(live):
        fill = "#C8E6C9" if j == 0 else "#FFF3B0" if j == motif.nodes - 1 else "#BBDEFB"
        dot.node(
            str(j),
            "in" if j == 0 else "out" if j == motif.nodes - 1 else str(j),
            fillcolor=fill,
        )
    palette = ("#00808A", "#7B3294", "#0072B2", "#D55E00", "#A87900", "#009E73")
    for i, j, o in motif.edges():
        if i in live and j in live:
            color = palette[(o - 1) % len(palette)]
            dot.edge(
                str(i),
                str(j),
                label=genotype.op_name(level, o),
                color=color,
                fontcolor=color,
            )
    return dot
