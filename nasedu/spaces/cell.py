"""The cell search space of NASNet, ENAS, PNAS, DARTS and SNAS, as data (chapter
*Introduction*; NASNet §3).

A cell has two inputs (the outputs of the two previous cells) and ``steps`` nodes;
each node applies one operation to each of two earlier states and adds the results.
The space is described, never mutated: ``sample`` draws a ``Genotype`` uniformly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from nasedu.genotypes import CELLS, Genotype
from nasedu.ops import DARTS_PRIMITIVES, OPS


@dataclass(frozen=True)
class CellSpace:
    """Normal and reduction cells of ``steps`` two-input nodes over ``primitives``.

    Args:
        primitives: candidate operations (names from ``nasedu.ops.OPS``).
        steps: intermediate nodes per cell (4 in DARTS §3.1.1, B = 5 in NASNet §3).
        distinct_inputs: whether a node's two inputs must differ (DARTS derives cells
            with inputs from distinct nodes, §2.4; NASNet allows the same input twice).
        concat: "all" concatenates every intermediate node (DARTS); "unused"
            concatenates the nodes no other node consumes (NASNet, ENAS).
    """

    name: str = "darts_cell"
    primitives: tuple[str, ...] = tuple(p for p in DARTS_PRIMITIVES if p != "none")
    steps: int = 4
    distinct_inputs: bool = True
    concat: str = "all"

    def __post_init__(self) -> None:
        unknown = [p for p in self.primitives if p not in OPS]
        if unknown:
            raise ValueError(
                f"unknown operation {unknown[0]!r}; valid choices: "
                f"{', '.join(OPS.names())}"
            )
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.concat not in ("all", "unused"):
            raise ValueError(f"concat must be 'all' or 'unused', got {self.concat!r}")

    def _sample_cell(
        self, rng: random.Random
    ) -> tuple[list[tuple[str, int]], list[int]]:
        edges = []
        for node in range(self.steps):
            states = node + 2
            inputs = (
                rng.sample(range(states), 2)
                if self.distinct_inputs
                else [rng.randrange(states), rng.randrange(states)]
            )
            edges += [(rng.choice(self.primitives), i) for i in inputs]
        nodes = range(2, self.steps + 2)
        if self.concat == "all":
            return edges, list(nodes)
        used = {i for _, i in edges}
        return edges, [j for j in nodes if j not in used]

    def sample(self, rng: random.Random) -> Genotype:
        """A uniformly random genotype (every op and input drawn independently)."""
        normal, normal_concat = self._sample_cell(rng)
        reduce, reduce_concat = self._sample_cell(rng)
        return Genotype(normal, normal_concat, reduce, reduce_concat)

    def size(self) -> int:
        """Number of distinct (ordered) genotypes, normal × reduction cells."""
        per_cell = 1
        for node in range(self.steps):
            states = node + 2
            pairs = math.perm(states, 2) if self.distinct_inputs else states**2
            per_cell *= pairs * len(self.primitives) ** 2
        return per_cell ** len(CELLS)

    def to_json(self, genotype: Genotype) -> dict[str, Any]:
        return genotype.to_dict()

    def from_json(self, data: dict[str, Any]) -> Genotype:
        return Genotype.from_dict(data)
