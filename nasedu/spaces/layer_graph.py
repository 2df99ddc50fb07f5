"""NASBOT's labelled layer graphs, the OTMANN distance and the modifiers (chapter *NASBOT*).

Kandasamy, Neiswanger, Schneider, Póczos & Xing, "Neural Architecture Search with
Bayesian Optimisation and Optimal Transport", NeurIPS 2018 (arXiv:1802.07191).
Implemented: CNNs as layer graphs (§2: layers labelled conv3/5/7, max-pool, avg-pool,
fc, softmax, ip, op, with unit counts, conv strides and directed edges) and MLPs
(hidden layers labelled by their activation — relu, crelu, leaky-relu, softplus, elu,
logistic, tanh — with unit counts, and a softmax or linear decision layer); layer
masses; the label-mismatch cost matrices of both; the structural penalty from path
lengths (shortest, longest, random-walk; all/conv/pool/fc layers for CNNs,
all/rectifier/sigmoid layers for MLPs; from the input and to the output);
the non-assignment penalty; OTMANN as an optimal-transport program solved with POT
(``ot.emd``) on the cost matrix augmented with a dummy row and column, and its
normalised version (§3); the modifier operations of the evolutionary acquisition
optimiser (§4). The paper's text was not available to nasedu: every constant below
is the official code's (``kirthevasank/nasbot``), marked "code".

nasedu's builder (``LayerGraph.build``) concatenates the inputs of a layer along
channels, follows each conv with batch-norm and ReLU, flattens before an fc layer and
averages the logits of the softmax layers; an MLP reads the flattened image and each
hidden layer is a linear map followed by its activation.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

CONVS = ("conv3", "conv5", "conv7")
POOLS = ("max-pool", "avg-pool")
LABELS = ("ip", "op", *CONVS, *POOLS, "fc", "softmax")
GROUPS = ("all", "conv", "pool", "fc")  # code CNN_STRUCTURAL_PENALTY_GROUPS
RECTIFIERS = ("relu", "crelu", "leaky-relu", "softplus", "elu")  # code MLP_RECTIFIERS
SIGMOIDS = ("logistic", "tanh")  # code MLP_SIGMOIDS
ACTIVATIONS = RECTIFIERS + SIGMOIDS
DECISIONS = ("softmax", "linear")  # classification / regression output layers
MLP_LABELS = ("ip", "op", *ACTIVATIONS, *DECISIONS)
MLP_GROUPS = ("all", "rectifier", "sigmoid")  # code MLP_STRUCTURAL_PENALTY_GROUPS
PATH_TYPES = ("shortest", "longest", "rw")  # code PATH_LENGTH_TYPES
FC_MASS_COEFF = 0.1  # code _FC_LAYER_MASS_COEFF
NON_PROC_MASS_FRAC = 0.1  # code _NON_PROC_LAYERY_MASS_FRAC
INF_COST = 7.65432e5  # code REPLACE_COST_INF_WITH


def group(label: str) -> str | None:
    """The structural-penalty group of a label (code ``_get_layer_group_for_layer_label``)."""
    if label in CONVS:
        return "conv"
    if label in POOLS:
        return "pool"
    if label in RECTIFIERS:
        return "rectifier"
    if label in SIGMOIDS:
        return "sigmoid"
    return "fc" if label == "fc" else None


@dataclass(frozen=True)
class LayerGraph:
    """A network as NASBOT describes it: layer i has ``labels[i]``, ``units[i]`` (0
    where a layer has none), ``strides[i]`` (1 or 2 for conv layers, 0 otherwise) and
    edges (i, j) with i < j (a topological numbering); layer 0 is ``ip``, the last
    ``op``. A graph whose labels include an activation (``ACTIVATIONS``) or ``linear``
    is an MLP (``kind == "mlp"``), otherwise a CNN."""

    labels: tuple[str, ...]
    units: tuple[int, ...]
    strides: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]

    def __post_init__(self):
        self.validate()

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def kind(self) -> str:
        """ "mlp" or "cnn" (MLP and CNN labels never mix; ``validate`` checks it)."""
        return (
            "mlp"
            if any(lab in ACTIVATIONS or lab == "linear" for lab in self.labels)
            else "cnn"
        )

    @property
    def groups(self) -> tuple[str, ...]:
        return MLP_GROUPS if self.kind == "mlp" else GROUPS

    def units_labels(self) -> tuple[str, ...]:
        """Labels of the layers that have units (the processing layers)."""
        return ACTIVATIONS if self.kind == "mlp" else (*CONVS, "fc")

    def parents(self, j: int) -> list[int]:
        return [a for a, b in self.edges if b == j]

    def children(self, i: int) -> list[int]:
        return [b for a, b in self.edges if a == i]

    def sizes(self) -> list[int | None]:
        """Downsampling factor of each layer's output (None: flat, after fc/softmax;
        an MLP is flat everywhere)."""
        if self.kind == "mlp":
            return [None] * self.n
        out: list[int | None] = [1]
        for j in range(1, self.n):
            parent = out[self.parents(j)[0]]
            lab = self.labels[j]
            if lab in POOLS or (lab in CONVS and self.strides[j] == 2):
                out.append(parent * 2)
            elif lab in CONVS:
                out.append(parent)
            else:
                out.append(None)
        return out

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first violation (the code's checks:
        ``nn_constraint_checkers``, ``_check_image_size_consistency``)."""
        n = self.n
        if not (len(self.units) == len(self.strides) == n) or n < 3:
            raise ValueError(
                f"labels, units, strides need equal lengths >= 3, got "
                f"{len(self.labels)}, {len(self.units)}, {len(self.strides)}"
            )
        valid = MLP_LABELS if self.kind == "mlp" else LABELS
        bad = [lab for lab in self.labels if lab not in valid]
        if bad:
            raise ValueError(
                f"unknown label {bad[0]!r} in a {self.kind.upper()}; valid labels: "
                f"{', '.join(valid)}"
            )
        if (
            self.labels[0] != "ip"
            or self.labels[-1] != "op"
            or self.labels.count("ip") + self.labels.count("op") != 2
        ):
            raise ValueError("layer 0 must be the only 'ip' and the last the only 'op'")
        if len(set(self.edges)) != len(self.edges) or any(
            not (0 <= a < b < n) for a, b in self.edges
        ):
            raise ValueError(f"edges must be distinct (i, j) with 0 <= i < j < {n}")
        for j, lab in enumerate(self.labels):
            if j > 0 and not self.parents(j):
                raise ValueError(f"layer {j} ({lab}) has no input")
            if j < n - 1 and not self.children(j):
                raise ValueError(f"layer {j} ({lab}) feeds nothing")
            has_units = lab in self.units_labels()
            if has_units != (self.units[j] > 0):
                raise ValueError(f"layer {j} ({lab}) has units {self.units[j]}")
            if (lab in CONVS) != (self.strides[j] in (1, 2)) or (
                lab not in CONVS and self.strides[j] != 0
            ):
                raise ValueError(f"layer {j} ({lab}) has stride {self.strides[j]}")
        decisions = {self.labels[p] for p in self.parents(n - 1)}
        if self.kind == "mlp":
            if len(decisions) != 1 or not decisions <= set(DECISIONS):
                raise ValueError(
                    "the layers before 'op' must all be softmax or all linear layers"
                )
        elif decisions != {"softmax"}:
            raise ValueError("the layers before 'op' must all be softmax layers")
        if any(
            self.labels[c] != "op"
            for j in range(n)
            if self.labels[j] in DECISIONS
            for c in self.children(j)
        ):
            raise ValueError("a softmax (or linear) layer may only feed 'op'")
        if self.kind == "mlp":
            return
        if any(self.labels[c] not in CONVS for c in self.children(0)):
            raise ValueError("the children of 'ip' must be conv layers (code check)")
        sizes: list[int | None] = [1]
        for j in range(1, n):
            parents = [sizes[p] for p in self.parents(j)]
            if any(s != parents[0] for s in parents):
                raise ValueError(
                    f"layer {j} ({self.labels[j]}) mixes input sizes {parents}"
                )
            if self.labels[j] in CONVS + POOLS and parents[0] is None:
                raise ValueError(f"layer {j} ({self.labels[j]}) reads a flat tensor")
            lab = self.labels[j]
            if lab in POOLS or (lab in CONVS and self.strides[j] == 2):
                sizes.append(parents[0] * 2)
            elif lab in CONVS:
                sizes.append(parents[0])
            else:
                sizes.append(None)

    def fits(self, image_size: int) -> bool:
        """Whether every downsampling leaves at least one pixel."""
        return all(s is None or s <= image_size for s in self.sizes())

    # ------------------------------------------------------------------ masses
    def channels(self) -> tuple[list[int], list[int]]:
        """Channels into and out of every layer (code ``compute_num_channels_at_each_layer``:
        the input counts as one channel)."""
        c_in, c_out = [0], [1]
        for j in range(1, self.n):
            cin = sum(c_out[p] for p in self.parents(j))
            lab = self.labels[j]
            c_in.append(cin)
            c_out.append(cin if lab in POOLS else self.units[j])
        return c_in, c_out

    def masses(self) -> np.ndarray:
        """Layer masses (code ``compute_layer_masses``): conv and MLP hidden layers
        ch_in·ch_out, fc 0.1·ch_in·ch_out, pool ch_in; ip and op max(0.1·Σ processing
        mass, 100); each decision layer (softmax, linear) that amount divided by their
        number."""
        c_in, c_out = self.channels()
        m = np.zeros(self.n)
        for j, lab in enumerate(self.labels):
            if lab in POOLS:
                m[j] = c_in[j]
            elif lab in CONVS or lab in ACTIVATIONS:
                m[j] = c_in[j] * c_out[j]
            elif lab == "fc":
                m[j] = FC_MASS_COEFF * c_in[j] * c_out[j]
        non_proc = max(NON_PROC_MASS_FRAC * m.sum(), 100.0)
        n_decision = sum(lab in DECISIONS for lab in self.labels)
        for j, lab in enumerate(self.labels):
            if lab in ("ip", "op"):
                m[j] = non_proc
            elif lab in DECISIONS:
                m[j] = non_proc / n_decision
        return m

    # ------------------------------------------------------------------ path lengths
    def path_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3·G) lengths from ``ip`` and (n, 3·G) lengths to ``op``, for every
        (group, path type), G = 4 groups for a CNN and 3 for an MLP: an edge a → b has
        length 1 if b is in the group ('all': always)."""
        n = self.n
        cols = [(g, t) for g in self.groups for t in PATH_TYPES]
        bkwd, fwd = np.zeros((n, len(cols))), np.zeros((n, len(cols)))
        for c, (g, t) in enumerate(cols):
            w = [1.0 if g == "all" or group(lab) == g else 0.0 for lab in self.labels]
            for j in range(1, n):
                vals = [bkwd[p, c] + w[j] for p in self.parents(j)]
                bkwd[j, c] = (
                    min(vals)
                    if t == "shortest"
                    else (max(vals) if t == "longest" else float(np.mean(vals)))
                )
            for i in range(n - 2, -1, -1):
                vals = [fwd[k, c] + w[k] for k in self.children(i)]
                fwd[i, c] = (
                    min(vals)
                    if t == "shortest"
                    else (max(vals) if t == "longest" else float(np.mean(vals)))
                )
        return bkwd, fwd

    # ------------------------------------------------------------------ data
    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "units": list(self.units),
            "strides": list(self.strides),
            "edges": [list(e) for e in self.edges],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerGraph:
        return cls(
            tuple(data["labels"]),
            tuple(data["units"]),
            tuple(data["strides"]),
            tuple(tuple(e) for e in data["edges"]),
        )

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict()).encode()).hexdigest()

    def build(
        self, in_channels: int, image_size: int, num_classes: int
    ) -> LayerGraphNet:
        return LayerGraphNet(self, in_channels, image_size, num_classes)


def make_graph(labels, units, strides, edges) -> LayerGraph:
    """A ``LayerGraph`` with its edges sorted (a canonical order for hashing)."""
    return LayerGraph(
        tuple(labels),
        tuple(units),
        tuple(strides),
        tuple(sorted({(int(a), int(b)) for a, b in edges})),
    )


def chain(
    labels: list[str], units: list[int], strides: list[int] | None = None
) -> LayerGraph:
    """A feed-forward chain ip → layers → op (a blocked CNN of the initial pool)."""
    labels = ["ip", *labels, "op"]
    units = [0, *units, 0]
    strides = [0, *(strides or [1 if lab in CONVS else 0 for lab in labels[1:-1]]), 0]
    return make_graph(
        labels, units, strides, [(i, i + 1) for i in range(len(labels) - 1)]
    )


class LayerGraphNet(nn.Module):
    """The PyTorch module of a ``LayerGraph`` (builder choices in the module docstring)."""

    def __init__(
        self, graph: LayerGraph, in_channels: int, image_size: int, num_classes: int
    ):
        super().__init__()
        if graph.kind == "mlp":
            self._build_mlp(graph, in_channels * image_size**2, num_classes)
            return
        if not graph.fits(image_size):
            raise ValueError(
                f"the graph downsamples a {image_size}×{image_size} input "
                "below one pixel"
            )
        self.graph = graph
        c_out, size = [in_channels], [image_size]
        self.layers = nn.ModuleList([nn.Identity()])
        for j in range(1, graph.n):
            lab, parents = graph.labels[j], graph.parents(j)
            cin, s = sum(c_out[p] for p in parents), size[parents[0]]
            if lab in CONVS:
                k = int(lab[-1])
                module = nn.Sequential(
                    nn.Conv2d(
                        cin, graph.units[j], k, graph.strides[j], k // 2, bias=False
                    ),
                    nn.BatchNorm2d(graph.units[j]),
                    nn.ReLU(),
                )
                c, s = graph.units[j], -(-s // graph.strides[j])
            elif lab in POOLS:
                pool = nn.MaxPool2d if lab == "max-pool" else nn.AvgPool2d
                module = pool(2, ceil_mode=True)
                c, s = cin, -(-s // 2)
            elif lab in ("fc", "softmax"):
                width = graph.units[j] if lab == "fc" else num_classes
                flat_in = sum(c_out[p] * max(size[p], 1) ** 2 for p in parents)
                layers = [nn.Flatten(), nn.Linear(flat_in, width)]
                module = (
                    nn.Sequential(*layers, nn.ReLU())
                    if lab == "fc"
                    else nn.Sequential(*layers)
                )
                c, s = width, 0
            else:
                module, c, s = nn.Identity(), num_classes, 0
            self.layers.append(module)
            c_out.append(c)
            size.append(s)

    def _build_mlp(self, graph: LayerGraph, features: int, num_classes: int) -> None:
        self.graph = graph
        c_out = [features]
        self.layers = nn.ModuleList([nn.Flatten()])  # (B, C, H, W) -> (B, C·H·W)
        for j in range(1, graph.n):
            lab, cin = graph.labels[j], sum(c_out[p] for p in graph.parents(j))
            if lab in ACTIVATIONS:
                width = graph.units[j]
                module = nn.Sequential(
                    nn.Linear(cin, (width + 1) // 2 if lab == "crelu" else width),
                    _activation(lab, width),
                )
            elif lab in DECISIONS:
                width, module = num_classes, nn.Linear(cin, num_classes)
            else:
                width, module = num_classes, nn.Identity()
            self.layers.append(module)
            c_out.append(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        g = self.graph
        values = [self.layers[0](x)]
        for j in range(1, g.n):
            ins = [values[p] for p in g.parents(j)]
            if g.labels[j] == "op":  # the decision layers' outputs, averaged
                values.append(torch.stack(ins).mean(0))
                continue
            if g.labels[j] in ("fc", "softmax"):
                ins = [t.flatten(1) for t in ins]
            values.append(self.layers[j](torch.cat(ins, dim=1)))
        return values[-1]


class _CReLU(nn.Module):
    """Concatenated ReLU, [relu(x), relu(−x)], cut to ``width`` units."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ⌈w/2⌉) -> (B, w)
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)[:, : self.width]


def _activation(label: str, width: int) -> nn.Module:
    if label == "crelu":
        return _CReLU(width)
    return {
        "relu": nn.ReLU,
        "leaky-relu": nn.LeakyReLU,
        "softplus": nn.Softplus,
        "elu": nn.ELU,
        "logistic": nn.Sigmoid,
        "tanh": nn.Tanh,
    }[label]()


# ====================================================================== OTMANN
def label_mismatch(
    labels_a, labels_b, non_assignment_penalty: float = 1.0
) -> np.ndarray:
    """The label-mismatch matrix M, times the non-assignment penalty.

    CNNs (code ``get_cnn_layer_label_mismatch_penalties``): 0 for equal labels,
    (√2/10)·√|k_a − k_b| between conv sizes, 0.5 between pools. MLPs (code
    ``get_mlp_layer_label_mismatch_penalties``): 0.1 between two rectifiers or two
    sigmoids, 0.25 between a rectifier and a sigmoid. ∞ for any other pair.
    """

    def cost(a: str, b: str) -> float:
        if a == b:
            return 0.0
        if a in CONVS and b in CONVS:
            return np.sqrt(2) / 10 * np.sqrt(abs(int(a[-1]) - int(b[-1])))
        if a in POOLS and b in POOLS:
            return 0.5
        if (a in RECTIFIERS and b in RECTIFIERS) or (a in SIGMOIDS and b in SIGMOIDS):
            return 0.1
        if a in ACTIVATIONS and b in ACTIVATIONS:
            return 0.25
        return np.inf

    return non_assignment_penalty * np.array(
        [[cost(a, b) for b in labels_b] for a in labels_a]
    )


@lru_cache(maxsize=4096)
def _summary(g: LayerGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masses and path lengths of ``g``, cached: a search compares each graph often."""
    return (g.masses(), *g.path_lengths())


def structural_penalty(a: LayerGraph, b: LayerGraph) -> np.ndarray:
    """S: mean absolute difference of the path lengths from ip and, separately, to op
    (12 + 12 for CNNs, 9 + 9 for MLPs), averaged."""
    if a.kind != b.kind:
        raise ValueError(
            f"OTMANN compares networks of one kind; got a {a.kind} and a {b.kind}"
        )
    (_, ba, fa), (_, bb, fb) = _summary(a), _summary(b)
    bk = np.abs(ba[:, None, :] - bb[None, :, :]).mean(-1)
    fw = np.abs(fa[:, None, :] - fb[None, :, :]).mean(-1)
    return (bk + fw) / 2


def ot_problem(
    a: LayerGraph,
    b: LayerGraph,
    mislabel_coeff: float = 1.0,
    struct_coeff: float = 0.1,
    non_assignment_penalty: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Supplies, demands and the augmented cost matrix of the OTMANN program: C =
    [[ν_mis·M + ν_str·S, ν_nas], [ν_nas, 0]], the dummy row/column absorbing unassigned
    mass (supplies: masses of a, then Σ masses of b; demands: the reverse)."""
    ma, mb = _summary(a)[0], _summary(b)[0]
    cost = mislabel_coeff * label_mismatch(
        a.labels, b.labels, non_assignment_penalty
    ) + struct_coeff * structural_penalty(a, b)
    cost = np.vstack([cost, np.full((1, b.n), non_assignment_penalty)])
    cost = np.hstack([cost, np.full((a.n + 1, 1), non_assignment_penalty)])
    cost[-1, -1] = 0.0
    cost[~np.isfinite(cost)] = INF_COST
    return np.append(ma, mb.sum()), np.append(mb, ma.sum()), cost


def otmann(
    a: LayerGraph,
    b: LayerGraph,
    mislabel_coeff: float = 1.0,
    struct_coeff: float = 0.1,
    non_assignment_penalty: float = 1.0,
) -> tuple[float, float, np.ndarray]:
    """OTMANN distance: (d, d̄, plan). d is the optimal transport cost (``ot.emd``),
    d̄ = d / (Σ mass_a + Σ mass_b) the normalised distance (in [0, ν_nas])."""
    import ot

    supply, demand, cost = ot_problem(
        a, b, mislabel_coeff, struct_coeff, non_assignment_penalty
    )
    plan = ot.emd(supply, demand, cost)
    d = float((plan * cost).sum())
    return d, d / float(supply.sum()), plan


MISLABEL_COEFFS = (1.0, 1.0, 1.0, 1.0)  # code nn_gp.py 'mislabel_coeffs'
STRUCT_COEFFS = (0.1, 0.25, 0.61, 1.5)  # code nn_gp.py 'struct_coeffs'


def otmann_features(a: LayerGraph, b: LayerGraph) -> tuple[np.ndarray, np.ndarray]:
    """(d, d̄) for each of the code's four (mislabel, struct) coefficient pairs."""
    import ot

    ma, mb = _summary(a)[0], _summary(b)[0]
    supply, demand = np.append(ma, mb.sum()), np.append(mb, ma.sum())
    mis, struct = label_mismatch(a.labels, b.labels), structural_penalty(a, b)
    d = []
    for m, s in zip(MISLABEL_COEFFS, STRUCT_COEFFS, strict=True):
        cost = np.full(
            (a.n + 1, b.n + 1), 1.0
        )  # ν_nas = 1 (code non_assignment_penalty)
        cost[:-1, :-1] = m * mis + s * struct
        cost[-1, -1] = 0.0
        cost[~np.isfinite(cost)] = INF_COST
        d.append(float((ot.emd(supply, demand, cost) * cost).sum()))
    d = np.array(d)
    return d, d / float(supply.sum())


# ====================================================================== modifiers
MODIFIERS = {  # code nn_modifiers.py probability masses (normalised when sampling)
    "inc_single": 0.1,
    "dec_single": 0.1,
    "inc_en_masse": 0.1,
    "dec_en_masse": 0.1,
    "swap_label": 0.2,
    "wedge_layer": 0.1,
    "remove_layer": 0.1,
    "branch": 0.2,
    "skip": 0.2,
}
CHANGE_FRAC = 0.125  # code: units change by 1/8


def _processing(g: LayerGraph) -> list[int]:
    return [j for j, lab in enumerate(g.labels) if lab in g.units_labels()]


def _scaled(u: int, up: bool, lo: int, hi: int) -> int:
    step = max(1, round(CHANGE_FRAC * u))
    return int(min(hi, max(lo, u + step if up else u - step)))


def _renumber(labels, units, strides, edges, order) -> LayerGraph:
    pos = {old: new for new, old in enumerate(order)}
    return make_graph(
        [labels[i] for i in order],
        [units[i] for i in order],
        [strides[i] for i in order],
        [(pos[a], pos[b]) for a, b in edges],
    )


def modify(
    g: LayerGraph,
    name: str,
    rng: random.Random,
    min_units: int = 8,
    max_units: int = 1024,
) -> LayerGraph:
    """One modifier of §4 (raises ``ValueError`` when it cannot apply to ``g``)."""
    labels, units, strides, edges = (
        list(g.labels),
        list(g.units),
        list(g.strides),
        list(g.edges),
    )
    proc = _processing(g)
    if name in ("inc_single", "dec_single", "inc_en_masse", "dec_en_masse"):
        if not proc:
            raise ValueError("no layer with units")
        up = name.startswith("inc")
        if name.endswith("single"):
            chosen = [rng.choice(proc)]
        else:  # a contiguous run of the topological order (a block of layers)
            k = rng.randint(1, len(proc))
            start = rng.randint(0, len(proc) - k)
            chosen = proc[start : start + k]
        for j in chosen:
            units[j] = _scaled(units[j], up, min_units, max_units)
        if units == list(g.units):
            raise ValueError("units already at their bound")
        return make_graph(labels, units, strides, edges)
    if name == "swap_label":
        families = (ACTIVATIONS,) if g.kind == "mlp" else (CONVS, POOLS)
        options = [j for j, lab in enumerate(labels) if any(lab in f for f in families)]
        if not options:
            raise ValueError("no layer whose label can be swapped")
        j = rng.choice(options)
        pool = next(f for f in families if labels[j] in f)
        labels[j] = rng.choice([x for x in pool if x != labels[j]])
        return make_graph(labels, units, strides, edges)
    if name == "wedge_layer":
        a, b = rng.choice(edges)
        if labels[b] in (*DECISIONS, "op"):
            raise ValueError("wedging before a decision layer")
        flat = g.sizes()[a] is None
        if g.kind == "mlp":
            label, flat = rng.choice(ACTIVATIONS), True
        else:
            label = "fc" if flat else rng.choice(CONVS)
        width = units[a] if units[a] else (units[b] or min_units)
        new = g.n  # appended, then renumbered after a
        labels.append(label)
        units.append(width)
        strides.append(0 if flat else 1)
        edges = [e for e in edges if e != (a, b)] + [(a, new), (new, b)]
        order = list(range(a + 1)) + [new] + list(range(a + 1, g.n))
        return _renumber(labels, units, strides, edges, order)
    if name == "remove_layer":
        options = [j for j, lab in enumerate(labels) if lab in (*CONVS, *POOLS, "fc")]
        options += _processing(g) if g.kind == "mlp" else []
        if not options:
            raise ValueError("nothing to remove")
        j = rng.choice(options)
        ps, cs = g.parents(j), g.children(j)
        edges = [e for e in edges if j not in e] + [(p, c) for p in ps for c in cs]
        order = [i for i in range(g.n) if i != j]
        return _renumber(labels, units, strides, set(edges), order)
    if name == "branch":  # duplicate a path a → x₁ → … → x_k → b (k ≥ 1)
        a = rng.choice([j for j in range(g.n) if labels[j] not in (*DECISIONS, "op")])
        path = [a]
        while True:
            nxt = rng.choice(g.children(path[-1]))
            path.append(nxt)
            if labels[nxt] in (*DECISIONS, "op") or (
                len(path) > 2 and rng.random() < 0.5
            ):
                break
        if labels[path[-1]] == "op" or len(path) < 3:
            raise ValueError("no path with an inner layer")
        inner = path[1:-1]
        copies = {x: g.n + i for i, x in enumerate(inner)}
        for x in inner:
            labels.append(labels[x])
            units.append(units[x])
            strides.append(strides[x])
        chain_ = [a] + [copies[x] for x in inner] + [path[-1]]
        edges += list(zip(chain_[:-1], chain_[1:], strict=True))
        order = (
            list(range(inner[-1] + 1))
            + [copies[x] for x in inner]
            + list(range(inner[-1] + 1, g.n))
        )
        return _renumber(labels, units, strides, edges, order)
    if name == "skip":
        sizes = g.sizes()
        pairs = [
            (a, b)
            for a in range(g.n)
            for b in range(a + 2, g.n)
            if (a, b) not in g.edges
            and labels[b] not in (*DECISIONS, "op")
            and labels[a] not in DECISIONS
            and sizes[a] == sizes[g.parents(b)[0]]
        ]
        if not pairs:
            raise ValueError("no valid skip connection")
        edges.append(rng.choice(pairs))
        return make_graph(labels, units, strides, edges)
    raise ValueError(f"unknown modifier {name!r}; valid: {', '.join(MODIFIERS)}")


def mutate(
    g: LayerGraph,
    rng: random.Random,
    steps: int = 1,
    image_size: int | None = None,
    min_units: int = 8,
    max_units: int = 1024,
    max_layers: int = 60,
    tries: int = 30,
) -> LayerGraph:
    """``steps`` random modifiers (drawn by the code's probability masses); each
    intermediate graph is valid (modifiers that would break validity are redrawn)."""
    names, weights = list(MODIFIERS), list(MODIFIERS.values())
    for _ in range(steps):
        for _ in range(tries):
            name = rng.choices(names, weights)[0]
            try:
                child = modify(g, name, rng, min_units, max_units)
            except ValueError:
                continue
            if (
                child.n <= max_layers
                and (image_size is None or child.fits(image_size))
                and child != g
            ):
                g = child
                break
    return g


def initial_pool(n_conv_blocks: int = 2, units: int = 16) -> list[LayerGraph]:
    """A small initial pool in the spirit of the code's CNN pool (VGG-like and blocked
    CNNs, a ResNet-like skip, a multi-branch net), scaled by ``units``."""
    u = units
    vgg = chain(
        [*["conv3", "max-pool"] * n_conv_blocks, "fc", "softmax"],
        [*[u, 0] * n_conv_blocks, 2 * u, 0],
    )
    blocked = chain(
        [*["conv3", "conv3", "avg-pool"] * n_conv_blocks, "fc", "softmax"],
        [*[u, u, 0] * n_conv_blocks, 2 * u, 0],
    )
    wide5 = chain(
        ["conv5", "max-pool", "conv3", "fc", "fc", "softmax"],
        [u, 0, 2 * u, 2 * u, u, 0],
    )
    resnet = make_graph(
        ["ip", "conv3", "conv3", "conv3", "max-pool", "fc", "softmax", "op"],
        [0, u, u, u, 0, 2 * u, 0, 0],
        [0, 1, 1, 1, 0, 0, 0, 0],
        [(0, 1), (1, 2), (2, 3), (1, 4), (3, 4), (4, 5), (5, 6), (6, 7)],
    )
    branches = make_graph(
        ["ip", "conv3", "conv5", "max-pool", "fc", "softmax", "op"],
        [0, u, u, 0, u, 0, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (4, 5), (5, 6)],
    )
    return [vgg, blocked, wide5, resnet, branches]


def initial_pool_mlp(units: int = 16) -> list[LayerGraph]:
    """A small initial pool of MLPs in the spirit of the code's (blocked MLPs of
    rectifiers and sigmoids), plus a skip and a two-branch net, scaled by ``units``."""
    u = units
    return [
        chain(["relu", "relu", "softmax"], [2 * u, u, 0]),
        chain(["tanh", "tanh", "softmax"], [2 * u, u, 0]),
        chain(["elu", "logistic", "relu", "softmax"], [2 * u, u, u, 0]),
        make_graph(
            ["ip", "relu", "leaky-relu", "relu", "softmax", "op"],
            [0, 2 * u, 2 * u, u, 0, 0],
            [0] * 6,
            [(0, 1), (1, 2), (2, 3), (1, 3), (3, 4), (4, 5)],
        ),
        make_graph(
            ["ip", "relu", "tanh", "softplus", "softmax", "op"],
            [0, u, u, u, 0, 0],
            [0] * 6,
            [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (4, 5)],
        ),
    ]


def random_graph(
    rng: random.Random, image_size: int = 8, steps: int = 6, network: str = "cnn"
) -> LayerGraph:
    """A valid random graph: an initial-pool network (CNN or MLP) after ``steps``
    random modifiers."""
    pool = initial_pool_mlp() if network == "mlp" else initial_pool()
    return mutate(rng.choice(pool), rng, steps, image_size=image_size)
