"""ENAS's three search spaces, as data (Pham et al., ICML 2018, arXiv:1802.03268, §2;
chapter *ENAS*).

Each space says which decisions the controller makes (``decisions()``, in the shared
vocabulary of ``nasedu.strategies.controller``), turns a sequence of actions into an
architecture (``decode``) and back (``encode``), samples uniformly (``sample``, the
random-search baseline) and round-trips through JSON. The shared-weight networks
that run these architectures are in ``nasedu.papers.enas``.

* ``MicroSpace`` — the convolutional cell (§2.3; R-ENAS ``micro_controller.py``): two
  cell inputs and five nodes; each node picks two earlier states and an operation for
  each, and adds the results; the nodes no other node reads are concatenated. A normal
  and a reduction cell are sampled, one after the other. The architecture is a
  ``nasedu.genotypes.Genotype``.
* ``MacroSpace`` — a whole network of 12 layers (§2.2; R-ENAS
  ``general_controller.py``, ``general_child.py``): each layer picks one of six
  operations and a skip bit for each earlier node. ``MacroArch``.
* ``RecurrentSpace`` — the recurrent cell of 12 nodes (§2.1; R-ENAS
  ``ptb_enas_controller.py``, ``ptb_enas_child.py``): node 0 reads x_t and h_{t−1},
  each later node one earlier node; every node picks an activation; the output is
  the average of the loose ends. ``RecurrentArch``.

``R-ENAS`` is the authors' code, ``melodyguan/enas@00787a5``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from nasedu.genotypes import Genotype
from nasedu.ops import ENAS_PRIMITIVES
from nasedu.strategies.controller import Anchor, Choice, NewCell, Pick, Skips


# --------------------------------------------------------------------------- micro
def loose_ends(inputs: list[int], nodes: int) -> tuple[int, ...]:
    """States 2..nodes+1 that no node reads: what a cell concatenates (R-ENAS
    ``micro_child._enas_layer``: ``used`` counts every index a node reads). The cell
    inputs are never concatenated (nasedu's ``Cell``: a reduction cell's inputs have
    twice the output's size; see ``data/genotypes/enas.json``)."""
    used = set(inputs)
    return tuple(j for j in range(2, nodes + 2) if j not in used)


@dataclass(frozen=True)
class MicroSpace:
    """The ENAS micro (cell) space; architectures are ``Genotype``\\ s in pairs form.

    Attributes:
        nodes: intermediate nodes per cell (R-ENAS ``--child_num_cells=5``).
        primitives: the operations, in R-ENAS's id order (0 sep 3×3, 1 sep 5×5,
            2 avg pool, 3 max pool, 4 identity; ``micro_child._enas_cell``).
    """

    nodes: int = 5  # R-ENAS cifar10_micro_search.sh --child_num_cells=5
    primitives: tuple[str, ...] = ENAS_PRIMITIVES  # R-ENAS README / micro_child.py
    name: str = "enas_micro"

    def __post_init__(self) -> None:
        if self.nodes < 1 or not self.primitives:
            raise ValueError(
                f"a micro space needs nodes >= 1 and operations, got {self.nodes}"
            )

    def cell_decisions(self) -> list[Any]:
        """One cell, in R-ENAS's order (``micro_controller._build_sampler``): an
        anchor per cell input, then per node: two inputs by attention, two
        operations, and an anchor for the finished node."""
        out: list[Any] = [Anchor(), Anchor()]
        for i in range(self.nodes):
            out += [Pick(i + 2), Pick(i + 2)]
            out += [Choice("op", len(self.primitives))] * 2
            out.append(Anchor())
        return out

    def decisions(self) -> list[Any]:
        """The normal cell, then the reduction cell (R-ENAS samples them in turn)."""
        return [*self.cell_decisions(), NewCell(), *self.cell_decisions()]

    def _decode_cell(self, actions: list[Any]) -> tuple[list, tuple[int, ...]]:
        edges, inputs, k = [], [], 2  # skip the two input anchors
        for _ in range(self.nodes):
            x, y, op_x, op_y = actions[k : k + 4]
            edges += [(self.primitives[op_x], x), (self.primitives[op_y], y)]
            inputs += [x, y]
            k += 5
        return edges, loose_ends(inputs, self.nodes)

    def decode(self, actions: list[Any]) -> Genotype:
        n = len(self.cell_decisions())
        if len(actions) != 2 * n + 1:
            raise ValueError(f"{len(actions)} actions for {2 * n + 1} decisions")
        normal, normal_concat = self._decode_cell(list(actions[:n]))
        reduce, reduce_concat = self._decode_cell(list(actions[n + 1 :]))
        return Genotype(normal, normal_concat, reduce, reduce_concat)

    def encode(self, genotype: Genotype) -> list[Any]:
        """The actions that ``decode`` turns into ``genotype`` (its inverse)."""
        out: list[Any] = []
        for cell in ("normal", "reduce"):
            nodes = genotype.nodes(cell)
            if genotype.form != "pairs" or len(nodes) != self.nodes:
                raise ValueError(
                    f"{cell} cell has {len(nodes)} nodes in form {genotype.form!r}; "
                    f"the ENAS micro space has {self.nodes} nodes in pairs form"
                )
            inputs = [i for node in nodes for _, i in node]
            if tuple(genotype.concat(cell)) != loose_ends(inputs, self.nodes):
                raise ValueError(
                    f"{cell}_concat {list(genotype.concat(cell))} is not the loose "
                    f"ends {list(loose_ends(inputs, self.nodes))} of the cell"
                )
            if cell == "reduce":
                out.append(None)
            out += [None, None]
            for (op_x, x), (op_y, y) in nodes:
                for op in (op_x, op_y):
                    if op not in self.primitives:
                        raise ValueError(
                            f"operation {op!r} is not in the ENAS micro space; "
                            f"valid choices: {', '.join(self.primitives)}"
                        )
                out += [
                    x,
                    y,
                    self.primitives.index(op_x),
                    self.primitives.index(op_y),
                    None,
                ]
        return out

    def sample(self, rng: random.Random) -> Genotype:
        """A uniformly random normal and reduction cell."""
        actions: list[Any] = []
        for d in self.decisions():
            if isinstance(d, Pick):
                actions.append(rng.randrange(d.count))
            elif isinstance(d, Choice):
                actions.append(rng.randrange(d.size))
            else:
                actions.append(None)
        return self.decode(actions)

    def to_json(self, genotype: Genotype) -> dict[str, Any]:
        return genotype.to_dict()

    def from_json(self, data: dict[str, Any]) -> Genotype:
        return Genotype.from_dict(data)


def genotype_from_arc(arc: str, space: MicroSpace | None = None) -> Genotype:
    """A genotype from R-ENAS's ``fixed_arc`` string: the normal then the reduction
    cell, four integers per node, ``index_1 op_1 index_2 op_2``
    (``scripts/cifar10_micro_final.sh``)."""
    space = space or MicroSpace()
    numbers = [int(t) for t in arc.split()]
    if len(numbers) != 8 * space.nodes:
        raise ValueError(
            f"an ENAS micro arc has {8 * space.nodes} integers, got {len(numbers)}"
        )
    actions: list[Any] = []
    for c in range(2):
        cell = numbers[4 * space.nodes * c : 4 * space.nodes * (c + 1)]
        if c:
            actions.append(None)
        actions += [None, None]
        for k in range(space.nodes):
            x, op_x, y, op_y = cell[4 * k : 4 * k + 4]
            actions += [x, y, op_x, op_y, None]
    return space.decode(actions)


# --------------------------------------------------------------------------- macro
#: R-ENAS ``general_child._enas_layer`` branches 0-5, in id order.
MACRO_OPS = (
    "conv_3x3",
    "sep_conv_3x3",
    "conv_5x5",
    "sep_conv_5x5",
    "avg_pool",
    "max_pool",
)


@dataclass(frozen=True)
class MacroArch:
    """A macro network: ``ops[i]`` names layer i's operation; ``skips[i]`` has one bit
    per earlier *node* j < i, node 0 being the stem and node j ≥ 1 layer j − 1; a set
    bit adds that node's output to layer i's (R-ENAS ``general_child._enas_layer``:
    ``prev_layers[i]`` with the stem first). Layer i always reads node i."""

    ops: tuple[str, ...]
    skips: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(str(o) for o in self.ops))
        object.__setattr__(
            self, "skips", tuple(tuple(int(b) for b in s) for s in self.skips)
        )
        for i, op in enumerate(self.ops):
            if op not in MACRO_OPS:
                raise ValueError(
                    f"layer {i}: unknown operation {op!r}; valid choices: "
                    f"{', '.join(MACRO_OPS)}"
                )
        if len(self.skips) != len(self.ops):
            raise ValueError(f"{len(self.skips)} skip lists for {len(self.ops)} layers")
        for i, bits in enumerate(self.skips):
            if len(bits) != i or set(bits) - {0, 1}:
                raise ValueError(f"layer {i} needs {i} skip bits of 0/1, got {bits}")

    def to_dict(self) -> dict[str, Any]:
        return {"ops": list(self.ops), "skips": [list(s) for s in self.skips]}


@dataclass(frozen=True)
class MacroSpace:
    """The ENAS macro space (R-ENAS ``cifar10_macro_search.sh``)."""

    layers: int = 12  # --child_num_layers=12
    ops: tuple[str, ...] = MACRO_OPS  # --child_num_branches=6
    name: str = "enas_macro"

    def decisions(self) -> list[Any]:
        """Per layer: the operation, then a skip bit per earlier anchor (R-ENAS
        ``general_controller._build_sampler``)."""
        out: list[Any] = []
        for i in range(self.layers):
            out += [Choice("op", len(self.ops)), Skips(i)]
        return out

    def decode(self, actions: list[Any]) -> MacroArch:
        return MacroArch(
            tuple(self.ops[a] for a in actions[0::2]),
            tuple(tuple(a) for a in actions[1::2]),
        )

    def encode(self, arch: MacroArch) -> list[Any]:
        out: list[Any] = []
        for op, bits in zip(arch.ops, arch.skips):
            out += [self.ops.index(op), tuple(bits)]
        return out

    def sample(self, rng: random.Random) -> MacroArch:
        """Uniform: every operation equally likely, every skip bit a fair coin."""
        return MacroArch(
            tuple(rng.choice(self.ops) for _ in range(self.layers)),
            tuple(
                tuple(rng.randrange(2) for _ in range(i)) for i in range(self.layers)
            ),
        )

    def to_json(self, arch: MacroArch) -> dict[str, Any]:
        return arch.to_dict()

    def from_json(self, data: dict[str, Any]) -> MacroArch:
        return MacroArch(data["ops"], data["skips"])


# --------------------------------------------------------------------------- recurrent
#: R-ENAS ``ptb_enas_child._rhn_enas`` activation ids 0-3.
RNN_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")


@dataclass(frozen=True)
class RecurrentArch:
    """An ENAS recurrent cell: ``activations[i]`` of node i; ``inputs[i - 1]`` is the
    earlier node that node i ≥ 1 reads (node 0 reads x_t and h_{t−1}). The output is
    the average of the nodes no node reads (R-ENAS ``ptb_enas_child._rhn_fixed``)."""

    activations: tuple[str, ...]
    inputs: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "activations", tuple(map(str, self.activations)))
        object.__setattr__(self, "inputs", tuple(int(j) for j in self.inputs))
        for i, act in enumerate(self.activations):
            if act not in RNN_ACTIVATIONS:
                raise ValueError(
                    f"node {i}: unknown activation {act!r}; valid choices: "
                    f"{', '.join(RNN_ACTIVATIONS)}"
                )
        if len(self.inputs) != len(self.activations) - 1:
            raise ValueError(
                f"{len(self.activations)} nodes need {len(self.activations) - 1} "
                f"inputs, got {len(self.inputs)}"
            )
        for i, j in enumerate(self.inputs, 1):
            if not 0 <= j < i:
                raise ValueError(f"node {i}: input {j} is invalid; valid: 0..{i - 1}")

    def loose_ends(self) -> tuple[int, ...]:
        used = set(self.inputs)
        return tuple(i for i in range(len(self.activations)) if i not in used)

    def to_dict(self) -> dict[str, Any]:
        return {"activations": list(self.activations), "inputs": list(self.inputs)}


@dataclass(frozen=True)
class RecurrentSpace:
    """The ENAS recurrent-cell space (R-ENAS ``ptb_search.sh --child_rhn_depth=12``)."""

    nodes: int = 12  # --child_rhn_depth=12
    activations: tuple[str, ...] = RNN_ACTIVATIONS  # ptb_enas_child.py
    name: str = "enas_rnn"

    def decisions(self) -> list[Any]:
        """Per node (R-ENAS ``ptb_enas_controller._build_sampler``): an anchor, the
        input among the earlier nodes (not for node 0), the activation."""
        out: list[Any] = []
        for i in range(self.nodes):
            out.append(Anchor())
            if i:
                out.append(Pick(i))
            out.append(Choice("act", len(self.activations)))
        return out

    def decode(self, actions: list[Any]) -> RecurrentArch:
        acts, inputs, k = [], [], 0
        for i in range(self.nodes):
            k += 1  # the anchor
            if i:
                inputs.append(actions[k])
                k += 1
            acts.append(self.activations[actions[k]])
            k += 1
        return RecurrentArch(tuple(acts), tuple(inputs))

    def encode(self, arch: RecurrentArch) -> list[Any]:
        out: list[Any] = []
        for i, act in enumerate(arch.activations):
            out.append(None)
            if i:
                out.append(arch.inputs[i - 1])
            out.append(self.activations.index(act))
        return out

    def sample(self, rng: random.Random) -> RecurrentArch:
        return RecurrentArch(
            tuple(rng.choice(self.activations) for _ in range(self.nodes)),
            tuple(rng.randrange(i) for i in range(1, self.nodes)),
        )

    def to_json(self, arch: RecurrentArch) -> dict[str, Any]:
        return arch.to_dict()

    def from_json(self, data: dict[str, Any]) -> RecurrentArch:
        return RecurrentArch(data["activations"], data["inputs"])


def recurrent_arch_from_arc(arc: str) -> RecurrentArch:
    """A recurrent cell from R-ENAS's ``fixed_arc`` string: node 0's activation, then
    ``input activation`` per later node (``scripts/ptb_final.sh``,
    ``ptb_enas_child._rhn_fixed``)."""
    numbers = [int(t) for t in arc.split()]
    if len(numbers) % 2 != 1:
        raise ValueError(
            f"an ENAS recurrent arc has an odd number of integers, got {len(numbers)}"
        )
    acts = [RNN_ACTIVATIONS[numbers[0]]]
    acts += [RNN_ACTIVATIONS[f] for f in numbers[2::2]]
    return RecurrentArch(tuple(acts), tuple(numbers[1::2]))
