"""Network graphs and function-preserving network morphisms (chapter *Auto-Keras*).

Jin, Song & Hu, "Auto-Keras: An Efficient Neural Architecture Search System", KDD 2019
(arXiv:1806.10282). Implemented here:

* the network graph of §3.3: layers (conv, batch-norm, ReLU, pooling, dense, dropout,
  global average pooling) plus additive and concatenative skip connections, built
  into a PyTorch module (``NetworkGraph.build``); the default architecture of App. A;
* the four graph-level morphisms of §3.3: ``deeper`` (an identity-initialised
  layer), ``wider`` (the effective area γ: the previous layers L_p output more
  units, the next layers L_n take them with zero weights), ``add_skip`` (pooling
  layers L_o and a zero-initialised layer L_c) and ``concat_skip`` (a layer L_c after
  the concatenation that reduces the width back, initialised as [I | 0]);
* the operation pool of App. B (``sample_operation``);
* the edit distance of Eqs. 4–9 and the Bourgain embedding of App. F
  (``edit_distance``, ``BourgainEmbedding``).

Every morphism keeps the network's function in eval mode (outputs equal within
float rounding), so a child starts from its parent's trained weights. App. B
initialises new weights "with zeros" plus "the largest noise possible not changing
the output"; nasedu adds noise exactly where it cannot change the output (the new
units of a widened layer, whose outgoing weights are zero) and none elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

KINDS = ("conv", "dense", "bn", "relu", "pool", "gap", "dropout", "add", "concat")
WEIGHTED = ("conv", "dense")  # L_s of §3.3
INPUT = 0  # the id of the network's input node
BN_EPS = 1e-5


@dataclass(frozen=True)
class Layer:
    """One layer of a network graph; its output is the node with the same id.

    Attributes:
        id: unique positive integer (0 is the network input).
        kind: one of ``KINDS``.
        inputs: ids of the nodes it reads (``add``/``concat``: main path first).
        width: filters (conv) or units (dense); 0 for the others.
        kernel: conv kernel size (3 on the main path, 1 for a skip's L_c).
        rate: dropout probability.
        skip: part of a skip connection (its L_o, L_c, add or concat layer); such layers
            are not in the layer sequence of the edit distance (Eq. 5).
    """

    id: int
    kind: str
    inputs: tuple[int, ...]
    width: int = 0
    kernel: int = 3
    rate: float = 0.0
    skip: bool = False


@dataclass(frozen=True)
class NetworkGraph:
    """A network as data: layers in a topological order; the last is the classifier."""

    layers: tuple[Layer, ...]
    in_channels: int
    image_size: int
    num_classes: int

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ structure
    def layer(self, layer_id: int) -> Layer:
        for layer in self.layers:
            if layer.id == layer_id:
                return layer
        raise ValueError(
            f"no layer {layer_id}; valid ids: {[x.id for x in self.layers]}"
        )

    def consumers(self, node: int) -> list[Layer]:
        return [x for x in self.layers if node in x.inputs]

    def next_id(self) -> int:
        return max(x.id for x in self.layers) + 1

    @property
    def output_id(self) -> int:
        return self.layers[-1].id

    def shapes(self) -> dict[int, tuple[int, int]]:
        """(channels or units, spatial size; 0 for flat tensors) of every node."""
        shapes = {INPUT: (self.in_channels, self.image_size)}
        for x in self.layers:
            ins = [shapes[i] for i in x.inputs]
            c, s = ins[0]
            if x.kind in WEIGHTED:
                c = x.width
            elif x.kind == "pool":
                s = s // 2
            elif x.kind == "gap":
                s = 0
            elif x.kind == "concat":
                c = sum(i[0] for i in ins)
            shapes[x.id] = (c, s)
        return shapes

    def nonnegative(self) -> dict[int, bool]:
        """Nodes whose values are never negative: where inserting a ReLU is the
        identity (Net2Net's condition for an identity-initialised deeper layer)."""
        nonneg = {INPUT: False}
        for x in self.layers:
            if x.kind == "relu":
                nonneg[x.id] = True
            elif x.kind in ("pool", "gap", "dropout", "add", "concat"):
                nonneg[x.id] = all(nonneg[i] for i in x.inputs)
            else:
                nonneg[x.id] = False
        return nonneg

    def ancestors(self, node: int) -> set[int]:
        by_id = {x.id: x for x in self.layers}
        seen, stack = set(), [node]
        while stack:
            n = stack.pop()
            for i in by_id[n].inputs if n in by_id else ():
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first problem (ids, order, kinds, shapes)."""
        if not self.layers:
            raise ValueError("a network graph needs at least one layer")
        seen = {INPUT}
        for x in self.layers:
            if x.kind not in KINDS:
                raise ValueError(
                    f"layer {x.id}: unknown kind {x.kind!r}; valid: {KINDS}"
                )
            if x.id in seen or x.id <= 0:
                raise ValueError(f"layer id {x.id} is repeated or not positive")
            missing = [i for i in x.inputs if i not in seen]
            if missing or not x.inputs:
                raise ValueError(
                    f"layer {x.id} reads {missing or 'nothing'}: inputs must "
                    "be earlier layers (topological order)"
                )
            if (len(x.inputs) == 2) != (x.kind in ("add", "concat")):
                raise ValueError(f"layer {x.id} ({x.kind}) has {len(x.inputs)} inputs")
            if x.kind in WEIGHTED and x.width < 1:
                raise ValueError(
                    f"layer {x.id} ({x.kind}) needs width >= 1, got {x.width}"
                )
            seen.add(x.id)
        shapes = {INPUT: (self.in_channels, self.image_size)}
        for x in self.layers:
            ins = [shapes[i] for i in x.inputs]
            flat = ins[0][1] == 0
            if x.kind in ("conv", "pool", "gap") and flat:
                raise ValueError(f"layer {x.id} ({x.kind}) reads a flat tensor")
            if x.kind == "dense" and not flat:
                raise ValueError(
                    f"layer {x.id} (dense) reads a spatial tensor; add a gap"
                )
            if x.kind == "pool" and ins[0][1] < 2:
                raise ValueError(f"layer {x.id} pools a {ins[0][1]}×{ins[0][1]} map")
            if x.kind == "add" and ins[0] != ins[1]:
                raise ValueError(
                    f"layer {x.id} adds tensors of shapes {ins[0]} and {ins[1]}"
                )
            if x.kind == "concat" and ins[0][1] != ins[1][1]:
                raise ValueError(
                    f"layer {x.id} concatenates sizes {ins[0][1]}, {ins[1][1]}"
                )
            c, s = ins[0]
            if x.kind in WEIGHTED:
                c = x.width
            elif x.kind == "pool":
                s //= 2
            elif x.kind == "gap":
                s = 0
            elif x.kind == "concat":
                c = ins[0][0] + ins[1][0]
            shapes[x.id] = (c, s)
        last = self.layers[-1]
        if last.kind != "dense" or last.width != self.num_classes:
            raise ValueError(
                f"the last layer must be a dense layer with {self.num_classes} "
                f"units (the classifier), got {last.kind} {last.width}"
            )

    # ------------------------------------------------------------------ data
    def to_dict(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "layers": [dataclasses.asdict(x) for x in self.layers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkGraph:
        layers = tuple(
            Layer(**{**x, "inputs": tuple(x["inputs"])}) for x in data["layers"]
        )
        return cls(layers, data["in_channels"], data["image_size"], data["num_classes"])

    def hash(self) -> str:
        return hashlib.sha256(
            json.dumps(self.to_dict(), sort_keys=True).encode()
        ).hexdigest()

    def build(self) -> GraphNet:
        return GraphNet(self)


class GraphNet(nn.Module):
    """The PyTorch module of a ``NetworkGraph``; parameters are keyed by layer id."""

    def __init__(self, graph: NetworkGraph):
        super().__init__()
        self.graph = graph
        shapes = graph.shapes()
        self.layers = nn.ModuleDict()
        for x in graph.layers:
            c_in, size = shapes[x.inputs[0]]
            if x.kind == "conv":
                module = nn.Conv2d(c_in, x.width, x.kernel, padding=x.kernel // 2)
            elif x.kind == "dense":
                module = nn.Linear(c_in, x.width)
            elif x.kind == "bn":
                module = (
                    nn.BatchNorm2d(c_in, eps=BN_EPS)
                    if size
                    else nn.BatchNorm1d(c_in, eps=BN_EPS)
                )
            elif x.kind == "relu":
                module = nn.ReLU()
            elif x.kind == "pool":
                module = nn.MaxPool2d(2)
            elif x.kind == "gap":
                module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
            elif x.kind == "dropout":
                module = nn.Dropout(x.rate)
            else:
                module = nn.Identity()  # add / concat combine in forward
            self.layers[str(x.id)] = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        values = {INPUT: x}
        for layer in self.graph.layers:
            ins = [values[i] for i in layer.inputs]
            if layer.kind == "add":
                values[layer.id] = ins[0] + ins[1]
            elif layer.kind == "concat":
                values[layer.id] = torch.cat(ins, dim=1)
            else:
                values[layer.id] = self.layers[str(layer.id)](ins[0])
        return values[self.graph.output_id]


def default_graph(
    in_channels: int,
    image_size: int,
    num_classes: int,
    n_conv: int = 3,
    filters: int = 64,
    dense_units: int = 64,
    dropout: float = 0.25,
) -> NetworkGraph:
    """App. A: ``n_conv`` blocks (ReLU, BN, conv 3×3 stride 1, pooling), global average
    pooling, dropout, dense ``dense_units``, ReLU, dense classifier (softmax in the loss).
    """
    layers, last, i = [], INPUT, 1
    for _ in range(n_conv):
        for kind, width in (("relu", 0), ("bn", 0), ("conv", filters), ("pool", 0)):
            layers.append(Layer(i, kind, (last,), width))
            last, i = i, i + 1
    for kind, width, rate in (
        ("gap", 0, 0.0),
        ("dropout", 0, dropout),
        ("dense", dense_units, 0.0),
        ("relu", 0, 0.0),
        ("dense", num_classes, 0.0),
    ):
        layers.append(Layer(i, kind, (last,), width, rate=rate))
        last, i = i, i + 1
    return NetworkGraph(tuple(layers), in_channels, image_size, num_classes)


# ====================================================================== morphisms
Weights = dict[str, torch.Tensor]


def _insert_after(
    graph: NetworkGraph,
    anchor: int,
    new: list[Layer],
    rewire_from: int,
    rewire_to: int,
    keep: set[int],
) -> NetworkGraph:
    """Insert ``new`` right after layer ``anchor`` and make the consumers of
    ``rewire_from`` (except the layers in ``keep``) read ``rewire_to`` instead."""
    layers = []
    for x in graph.layers:
        if rewire_from in x.inputs and x.id not in keep:
            x = dataclasses.replace(
                x, inputs=tuple(rewire_to if i == rewire_from else i for i in x.inputs)
            )
        layers.append(x)
        if x.id == anchor:
            layers.extend(new)
    return NetworkGraph(
        tuple(layers), graph.in_channels, graph.image_size, graph.num_classes
    )


def _check_anchor(graph: NetworkGraph, layer_id: int, what: str) -> Layer:
    layer = graph.layer(layer_id)
    if layer.id == graph.output_id or layer.skip:
        raise ValueError(
            f"{what}: layer {layer_id} is the classifier or part of a skip "
            "connection; choose a main-path layer"
        )
    return layer


def deeper(
    graph: NetworkGraph,
    weights: Weights | None,
    after: int,
    kind: str,
    rate: float = 0.25,
) -> tuple[NetworkGraph, Weights | None]:
    """§3.3 deep(G, u): insert an identity-initialised ``kind`` layer after ``after``.

    conv: 3×3 kernel with a one at the centre of each channel's own filter; dense: the
    identity matrix; bn: γ = 1, β = 0, running mean 0 and running variance 1 − ε (so
    (x − 0)/√(1 − ε + ε) = x exactly); relu only where the input is non-negative (it is
    then the identity); dropout is the identity in eval mode.
    """
    anchor = _check_anchor(graph, after, "deeper")
    if anchor.kind in ("add", "concat"):
        raise ValueError(
            "deeper: App. B forbids inserting right after a skip connection"
        )
    channels, size = graph.shapes()[after]
    allowed = {"bn", "dropout"} | ({"conv"} if size else {"dense"})
    if graph.nonnegative()[after]:
        allowed.add("relu")
    if kind not in allowed:
        raise ValueError(
            f"deeper: cannot insert {kind!r} after layer {after}; valid "
            f"choices there: {sorted(allowed)}"
        )
    new_id = graph.next_id()
    width = channels if kind in WEIGHTED else 0
    layer = Layer(
        new_id, kind, (after,), width, rate=rate if kind == "dropout" else 0.0
    )
    child = _insert_after(graph, after, [layer], after, new_id, keep={new_id})
    if weights is None:
        return child, None
    new = dict(weights)
    key = f"layers.{new_id}"
    if kind == "conv":
        w = torch.zeros(channels, channels, 3, 3)  # (out, in, kh, kw)
        w[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
        new[f"{key}.weight"], new[f"{key}.bias"] = w, torch.zeros(channels)
    elif kind == "dense":
        new[f"{key}.weight"], new[f"{key}.bias"] = (
            torch.eye(channels),
            torch.zeros(channels),
        )
    elif kind == "bn":
        new.update(
            {
                f"{key}.weight": torch.ones(channels),
                f"{key}.bias": torch.zeros(channels),
                f"{key}.running_mean": torch.zeros(channels),
                f"{key}.running_var": torch.full((channels,), 1.0 - BN_EPS),
                f"{key}.num_batches_tracked": torch.tensor(0),
            }
        )
    return child, new


def _expand(
    t: torch.Tensor, dim: int, positions: list[int], fill: torch.Tensor | float
) -> torch.Tensor:
    """``t`` with new entries at ``positions`` (indices in the result) along ``dim``."""
    new_size = t.shape[dim] + len(positions)
    is_new = torch.zeros(new_size, dtype=torch.bool)
    is_new[positions] = True
    shape = list(t.shape)
    shape[dim] = new_size
    out = torch.empty(shape, dtype=t.dtype)
    index = [slice(None)] * t.dim()
    index[dim] = ~is_new
    out[tuple(index)] = t
    index[dim] = is_new
    out[tuple(index)] = fill
    return out


def effective_area(graph: NetworkGraph, start: int) -> set[int]:
    """§3.3 γ of wide(G, u₀): u₀, then every node reached from a node of γ through a
    layer outside L_s (conv, dense), forwards and backwards. nasedu does not follow a
    concatenation backwards (the paper's rule 3 would): its inputs need no common
    width, so widening the other input too would only add units."""
    by_id = {x.id: x for x in graph.layers}
    gamma, stack = {start}, [start]
    while stack:
        node = stack.pop()
        neighbours = [c.id for c in graph.consumers(node) if c.kind not in WEIGHTED]
        producer = by_id.get(node)
        if producer and producer.kind not in WEIGHTED and producer.kind != "concat":
            neighbours += list(producer.inputs)
        for n in neighbours:
            if n == INPUT:
                raise ValueError(f"wider: widening layer {start} would widen the input")
            if n not in gamma:
                gamma.add(n)
                stack.append(n)
    return gamma


def wider(
    graph: NetworkGraph,
    weights: Weights | None,
    layer_id: int,
    n_add: int,
    rng: random.Random | None = None,
    noise: float = 1e-2,
) -> tuple[NetworkGraph, Weights | None]:
    """§3.3 wide(G, u): the layers L_p that write into the effective area γ output
    ``n_add`` more units (copies of random existing units, plus noise: Net2Net); the
    layers L_n that read from γ get zero weights for them, so the function is kept."""
    layer = _check_anchor(graph, layer_id, "wider")
    if layer.kind not in WEIGHTED:
        raise ValueError(
            f"wider: layer {layer_id} is {layer.kind!r}; valid: conv, dense"
        )
    if n_add < 1:
        raise ValueError(f"wider: n_add must be >= 1, got {n_add}")
    gamma = effective_area(graph, layer_id)
    shapes = graph.shapes()
    positions: dict[int, list[int]] = {}
    width: dict[int, int] = {}
    for x in graph.layers:  # topological: inputs are resolved first
        if x.id not in gamma:
            continue
        if x.kind in WEIGHTED:  # L_p: new units at the end
            positions[x.id] = list(range(x.width, x.width + n_add))
            width[x.id] = x.width + n_add
        elif x.kind == "add":
            a, b = (positions.get(i, []) for i in x.inputs)
            if a != b:
                raise ValueError(
                    f"wider: the inputs of add layer {x.id} would not match"
                )
            positions[x.id], width[x.id] = (
                a,
                width.get(x.inputs[0], shapes[x.inputs[0]][0]),
            )
        elif x.kind == "concat":
            a, b = x.inputs
            wa = width.get(a, shapes[a][0])
            positions[x.id] = positions.get(a, []) + [
                wa + p for p in positions.get(b, [])
            ]
            width[x.id] = wa + width.get(b, shapes[b][0])
        else:
            positions[x.id] = positions.get(x.inputs[0], [])
            width[x.id] = width.get(x.inputs[0], shapes[x.inputs[0]][0])
    layers = tuple(
        dataclasses.replace(x, width=width[x.id])
        if x.kind in WEIGHTED and x.id in gamma
        else x
        for x in graph.layers
    )
    child = NetworkGraph(layers, graph.in_channels, graph.image_size, graph.num_classes)
    if weights is None:
        return child, None
    rng = rng or random.Random(0)
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    new = dict(weights)
    for x in graph.layers:
        key = f"layers.{x.id}"
        if (
            x.kind in WEIGHTED and x.inputs[0] in gamma and positions[x.inputs[0]]
        ):  # L_n
            new[f"{key}.weight"] = _expand(
                new[f"{key}.weight"], 1, positions[x.inputs[0]], 0.0
            )
        if x.id not in gamma:
            continue
        if x.kind in WEIGHTED:  # L_p: copies of random units + noise
            w, b = new[f"{key}.weight"], new[f"{key}.bias"]
            pick = torch.randint(x.width, (n_add,), generator=gen)
            scale = noise * (w.std() if w.numel() > 1 else 1.0)
            copies = w[pick] + scale * torch.randn(w[pick].shape, generator=gen)
            new[f"{key}.weight"] = torch.cat([w, copies])
            new[f"{key}.bias"] = torch.cat([b, b[pick]])
        elif x.kind == "bn" and positions[x.id]:
            pos = positions[x.id]
            for name, fill in (
                ("weight", 1.0),
                ("bias", 0.0),
                ("running_mean", 0.0),
                ("running_var", 1.0),
            ):
                new[f"{key}.{name}"] = _expand(new[f"{key}.{name}"], 0, pos, fill)
    return child, new


def _skip_branch(
    graph: NetworkGraph, u: int, v: int, what: str
) -> tuple[list[Layer], int, int]:
    """The L_o pooling layers from ``u`` down to ``v``'s size; returns them, the id of
    the branch's end and the next free id."""
    for node in (u, v):
        layer = _check_anchor(graph, node, what)
        if layer.kind in ("add", "concat"):
            raise ValueError(f"{what}: App. B excludes skip-connection layers as ends")
    if u not in graph.ancestors(v):
        raise ValueError(f"{what}: layer {u} is not before layer {v} on a path")
    (_, su), (_, sv) = graph.shapes()[u], graph.shapes()[v]
    if (su == 0) != (sv == 0) or (su and (su % sv or (su // sv) & (su // sv - 1))):
        raise ValueError(
            f"{what}: cannot bring a size-{su} tensor to size {sv} by pooling"
        )
    pools, last, nid = [], u, graph.next_id()
    ratio = su // sv if sv else 1
    while ratio > 1:
        pools.append(Layer(nid, "pool", (last,), skip=True))
        last, nid, ratio = nid, nid + 1, ratio // 2
    return pools, last, nid


def add_skip(
    graph: NetworkGraph, weights: Weights | None, u: int, v: int
) -> tuple[NetworkGraph, Weights | None]:
    """§3.3 add(G, u, v): v ← v + L_c(L_o(u)); L_c (1×1 conv or dense to v's width) is
    zero-initialised, so the sum equals v."""
    pools, last, nid = _skip_branch(graph, u, v, "add_skip")
    shapes = graph.shapes()
    (cu, su), (cv, _) = shapes[u], shapes[v]
    kind = "conv" if su else "dense"
    lc = Layer(nid, kind, (last,), cv, kernel=1, skip=True)
    add = Layer(nid + 1, "add", (v, nid), skip=True)
    child = _insert_after(graph, v, [*pools, lc, add], v, add.id, keep={add.id})
    if weights is None:
        return child, None
    new = dict(weights)
    shape = (cv, cu, 1, 1) if su else (cv, cu)
    new[f"layers.{lc.id}.weight"], new[f"layers.{lc.id}.bias"] = (
        torch.zeros(shape),
        torch.zeros(cv),
    )
    return child, new


def concat_skip(
    graph: NetworkGraph, weights: Weights | None, u: int, v: int
) -> tuple[NetworkGraph, Weights | None]:
    """§3.3 concat(G, u, v): v ← L_c([v, L_o(u)]); L_c reduces the width back to v's
    and starts as [I | 0], so its output equals v."""
    pools, last, nid = _skip_branch(graph, u, v, "concat_skip")
    shapes = graph.shapes()
    (cu, su), (cv, _) = shapes[u], shapes[v]
    cat = Layer(nid, "concat", (v, last), skip=True)
    lc = Layer(nid + 1, "conv" if su else "dense", (nid,), cv, kernel=1, skip=True)
    child = _insert_after(graph, v, [*pools, cat, lc], v, lc.id, keep={cat.id})
    if weights is None:
        return child, None
    new = dict(weights)
    w = torch.cat([torch.eye(cv), torch.zeros(cv, cu)], dim=1)  # (cv, cv + cu)
    new[f"layers.{lc.id}.weight"] = w[:, :, None, None] if su else w
    new[f"layers.{lc.id}.bias"] = torch.zeros(cv)
    return child, new


Operation = tuple  # ("deep", after, kind) | ("wide", layer, n) | ("add"/"concat", u, v)


def apply(
    graph: NetworkGraph,
    weights: Weights | None,
    op: Operation,
    rng: random.Random | None = None,
    dropout: float = 0.25,
) -> tuple[NetworkGraph, Weights | None]:
    """Apply one operation tuple (the form ``sample_operation`` returns)."""
    name = op[0]
    if name == "deep":
        return deeper(graph, weights, op[1], op[2], rate=dropout)
    if name == "wide":
        return wider(graph, weights, op[1], op[2], rng)
    if name == "add":
        return add_skip(graph, weights, op[1], op[2])
    if name == "concat":
        return concat_skip(graph, weights, op[1], op[2])
    raise ValueError(f"unknown operation {name!r}; valid: deep, wide, add, concat")


def _main_layers(graph: NetworkGraph) -> list[Layer]:
    return [x for x in graph.layers[:-1] if not x.skip]


def sample_operation(
    graph: NetworkGraph, rng: random.Random, max_width: int = 1024, tries: int = 50
) -> Operation | None:
    """App. B: deep, wide or skip with equal probability, then their parameters
    uniformly (deep: a location not right after a skip and a layer kind among conv,
    ReLU, BN, dropout, dense; wide: a conv or dense layer, doubled; skip: a uniformly
    drawn (start, end, add/concat) tuple). Returns None if nothing valid was drawn."""
    main = _main_layers(graph)
    shapes, nonneg = graph.shapes(), graph.nonnegative()
    for _ in range(tries):
        family = rng.choice(("deep", "wide", "skip"))
        if family == "deep":
            where = rng.choice([x for x in main if x.kind not in ("add", "concat")])
            kind = rng.choice(("conv", "relu", "bn", "dropout", "dense"))
            spatial = shapes[where.id][1] > 0
            if (
                (kind == "conv" and not spatial)
                or (kind == "dense" and spatial)
                or (kind == "relu" and not nonneg[where.id])
            ):
                continue
            return ("deep", where.id, kind)
        if family == "wide":
            weighted = [
                x for x in main if x.kind in WEIGHTED and 2 * x.width <= max_width
            ]
            if not weighted:
                continue
            layer = rng.choice(weighted)
            try:
                wider(graph, None, layer.id, layer.width)
            except ValueError:
                continue
            return ("wide", layer.id, layer.width)
        pairs = skip_candidates(graph)
        if pairs:
            return rng.choice(pairs)
    return None


def skip_candidates(graph: NetworkGraph) -> list[Operation]:
    """Every valid (type, start, end) skip connection of App. B."""
    main = [x for x in _main_layers(graph) if x.kind not in ("add", "concat")]
    shapes = graph.shapes()
    out = []
    for j, v in enumerate(main):
        ancestors = graph.ancestors(v.id)
        for u in main[:j]:
            (_, su), (_, sv) = shapes[u.id], shapes[v.id]
            if u.id not in ancestors or (su == 0) != (sv == 0):
                continue
            if su and (su % sv or (su // sv) & (su // sv - 1)):
                continue
            out += [("add", u.id, v.id), ("concat", u.id, v.id)]
    return out


# ====================================================================== edit distance
@dataclass(frozen=True)
class Descriptor:
    """What Eqs. 5–9 compare: widths of the conv and dense layers in topological order,
    and each skip connection as (u = rank of its start layer, δ = layers spanned, type)."""

    conv_widths: tuple[int, ...]
    dense_widths: tuple[int, ...]
    skips: tuple[tuple[int, int, str], ...]


def describe(graph: NetworkGraph) -> Descriptor:
    main = [x for x in graph.layers if not x.skip]
    rank = {x.id: r for r, x in enumerate(main, 1)}
    by_id = {x.id: x for x in graph.layers}

    def source(node: int) -> int:  # the main-path layer a skip branch starts from
        while node in by_id and by_id[node].skip:
            node = by_id[node].inputs[0]
        return node

    skips = []
    for x in graph.layers:
        if x.kind in ("add", "concat"):
            start, end = source(x.inputs[1]), source(x.inputs[0])
            skips.append((rank[start], rank[end] - rank[start], x.kind))
    return Descriptor(
        tuple(x.width for x in main if x.kind == "conv"),
        tuple(x.width for x in main if x.kind == "dense"),
        tuple(skips),
    )


def layer_distance(a: int, b: int) -> float:
    """Eq. 6: d_l = |w_a − w_b| / max(w_a, w_b)."""
    return abs(a - b) / max(a, b)


def layers_distance(widths_a: tuple[int, ...], widths_b: tuple[int, ...]) -> float:
    """Eqs. 5 and 7: D_l by dynamic programming over the two layer sequences.

    The paper prints Eq. 7 with ``max``; the definition (Eq. 5) is a minimum over
    order-preserving matchings and the official code uses ``min`` (an edit distance
    with substitution cost d_l, insertion and deletion cost 1), so ``min`` is used.
    """
    n, m = len(widths_a), len(widths_b)
    A = np.zeros((n + 1, m + 1))
    A[:, 0], A[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            A[i, j] = min(
                A[i - 1, j] + 1,
                A[i, j - 1] + 1,
                A[i - 1, j - 1] + layer_distance(widths_a[i - 1], widths_b[j - 1]),
            )
    return float(A[n, m])


def skip_distance(a: tuple[int, int, str], b: tuple[int, int, str]) -> float:
    """Eq. 9: (|u_a − u_b| + |δ_a − δ_b|) / (max(u_a, u_b) + max(δ_a, δ_b)). A pair of
    different types (add vs concat) costs 1, as in the official code (the paper's
    Eq. 9 does not mention the type)."""
    if a[2] != b[2]:
        return 1.0
    return (abs(a[0] - b[0]) + abs(a[1] - b[1])) / (max(a[0], b[0]) + max(a[1], b[1]))


def skips_distance(skips_a, skips_b) -> float:
    """Eq. 8: D_s = min over injective matchings (Hungarian assignment) + ||S_a| − |S_b||."""
    if not skips_a or not skips_b:
        return float(abs(len(skips_a) - len(skips_b)))
    cost = np.array([[skip_distance(a, b) for b in skips_b] for a in skips_a])
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum() + abs(len(skips_a) - len(skips_b)))


def edit_distance(
    a: NetworkGraph | Descriptor, b: NetworkGraph | Descriptor, lam: float = 1.0
) -> float:
    """Eq. 4: d = D_l + λ·D_s. The layer term is summed over conv and dense layers
    separately (as the official code does: a conv layer never matches a dense one)."""
    da = a if isinstance(a, Descriptor) else describe(a)
    db = b if isinstance(b, Descriptor) else describe(b)
    return (
        layers_distance(da.conv_widths, db.conv_widths)
        + layers_distance(da.dense_widths, db.dense_widths)
        + lam * skips_distance(da.skips, db.skips)
    )


class BourgainEmbedding:
    """App. F: embed a metric into Euclidean space (Bourgain's theorem).

    Coordinates of a point are its distances to random anchor sets S_{i,t} of size 2^i
    (i < ⌈log₂ n⌉, t < ⌈ln n⌉ repeats), d(x, S) = min_{s∈S} d(x, s). Any point with
    known distances to the training points gets coordinates, so the kernel
    κ = exp(−ρ²) with ρ = ‖x_a − x_b‖ / √K (K coordinates; the official code's
    ``rbf_kernel`` uses the same 1/K scale) is a Gaussian kernel on vectors: positive
    semi-definite on any set of networks (Eq. 3, App. E).
    """

    def __init__(self, distances: np.ndarray, seed: int = 123):
        d = np.asarray(distances, dtype=float)
        n = len(d)
        rng = np.random.default_rng(seed)  # the official code seeds 123 too
        levels = max(1, math.ceil(math.log2(n))) if n > 1 else 1
        repeats = max(1, math.ceil(math.log(n))) if n > 1 else 1
        self.anchors = [
            rng.choice(n, size=min(2**i, n), replace=False)
            for i in range(levels)
            for _ in range(repeats)
        ]

    def transform(self, distances_to_train: np.ndarray) -> np.ndarray:
        """(m, n) distances to the training points -> (m, K) coordinates."""
        d = np.atleast_2d(np.asarray(distances_to_train, dtype=float))
        return np.stack([d[:, s].min(axis=1) for s in self.anchors], axis=1)

    @staticmethod
    def kernel(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
        """Eq. 3 on embedded points: exp(−‖x_a − x_b‖² / K), (m, k) × (n, k) -> (m, n)."""
        sq = ((xa[:, None, :] - xb[None, :, :]) ** 2).sum(-1)
        return np.exp(-sq / xa.shape[1])
