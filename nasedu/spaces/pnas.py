"""The PNAS cell space, as data (chapter *PNAS*; Liu et al., ECCV 2018, §3.1).

A PNAS cell is a list of B blocks. Block b takes two inputs from the cell's two inputs
(the outputs of the previous two cells) and the blocks before it, applies one of the
paper's 8 operations to each, and adds the two results (§3.1: addition is the only
combination). The cell's output concatenates all its blocks, and one cell type serves
both roles: the reduction cell is the same cell run with stride 2.

Inputs are numbered as everywhere in nasedu (the DARTS convention): 0 is the output of
cell c−2, 1 of cell c−1, and j ≥ 2 is block j − 2 of this cell. A ``PNASCell`` turns
into a ``nasedu.genotypes.Genotype`` (``to_genotype``), so the networks of
``nasedu.networks`` build it and ``Genotype.draw`` draws it.

Symmetry pruning: addition is commutative, so the blocks (I1, O1, I2, O2) and
(I2, O2, I1, O1) compute the same thing. A block is stored with its two (input, op)
pairs sorted, and enumerating the unordered pairs of the 2·8 (input, op) choices of a
1-block cell gives 16·17/2 = 136 cells instead of the 2·2·8·8 = 256 ordered ones.

The paper's text was not available to nasedu: the section numbers cited here and the
values B = 5 and "addition only" are UNVERIFIED (``paper-settings.md`` §5); the 8
operations agree with the official PNASNet-5 model (TF-Slim ``pnasnet.py``).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

from nasedu.genotypes import Genotype
from nasedu.ops import OPS, PNAS_PRIMITIVES

#: One block: (input 1, operation 1, input 2, operation 2).
Block = tuple[int, str, int, str]


def canonical_block(in1: int, op1: str, in2: int, op2: str) -> Block:
    """The block with its two (input, op) pairs in sorted order: addition commutes, so
    both orders are one block (PNAS §3.1, the symmetry behind the 136 1-block cells)."""
    (a, x), (b, y) = sorted([(int(in1), str(op1)), (int(in2), str(op2))])
    return (a, x, b, y)


@dataclass(frozen=True)
class PNASCell:
    """A cell of ``len(cell)`` blocks, each ``(in1, op1, in2, op2)`` in canonical order.

    Example:
        >>> cell = PNASCell([(1, "sep_conv_3x3", 0, "max_pool_3x3")])
        >>> cell.blocks
        ((0, 'max_pool_3x3', 1, 'sep_conv_3x3'),)
    """

    blocks: tuple[Block, ...]

    def __post_init__(self) -> None:
        try:
            blocks = tuple(canonical_block(*b) for b in self.blocks)
        except (TypeError, ValueError):
            raise ValueError(
                f"a PNAS cell is a list of [in1, op1, in2, op2] blocks, got "
                f"{self.blocks!r}"
            ) from None
        if not blocks:
            raise ValueError("a PNAS cell needs at least one block")
        for b, (in1, op1, in2, op2) in enumerate(blocks):
            for i in (in1, in2):
                if not 0 <= i < b + 2:
                    raise ValueError(
                        f"block {b}: input {i} is invalid; valid inputs are "
                        f"0..{b + 1} (the two cell inputs and earlier blocks)"
                    )
            for op in (op1, op2):
                if op not in OPS:
                    raise ValueError(
                        f"block {b}: unknown operation {op!r}; valid choices: "
                        f"{', '.join(OPS.names())}"
                    )
        object.__setattr__(self, "blocks", blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def extend(self, block: Block) -> PNASCell:
        """This cell with ``block`` appended (the children of §3.2 are these)."""
        return PNASCell(self.blocks + (block,))

    def to_genotype(self) -> Genotype:
        """The cell as a genotype: every block is a node of two edges, all blocks are
        concatenated, and the reduction cell is the same cell (run with stride 2)."""
        edges = [
            (op, i)
            for in1, op1, in2, op2 in self.blocks
            for op, i in ((op1, in1), (op2, in2))
        ]
        concat = list(range(2, len(self) + 2))
        return Genotype(edges, concat, edges, concat)

    @classmethod
    def from_genotype(cls, genotype: Genotype) -> PNASCell:
        """The normal cell of a pairs-form genotype whose blocks are all concatenated."""
        nodes = genotype.nodes("normal")
        if genotype.form != "pairs" or list(genotype.normal_concat) != list(
            range(2, len(nodes) + 2)
        ):
            raise ValueError(
                "only a pairs-form genotype that concatenates every block is a PNAS "
                f"cell; got form {genotype.form!r}, concat {list(genotype.normal_concat)}"
            )
        return cls([(i1, o1, i2, o2) for (o1, i1), (o2, i2) in nodes])

    def to_list(self) -> list[list[Any]]:
        return [list(b) for b in self.blocks]

    @classmethod
    def from_list(cls, data: list[list[Any]]) -> PNASCell:
        return cls([tuple(b) for b in data])

    def key(self) -> str:
        """A string key (JSON-safe) naming this cell."""
        return ";".join(",".join(map(str, b)) for b in self.blocks)


@dataclass(frozen=True)
class PNASSpace:
    """Cells of up to ``blocks`` blocks over ``primitives`` (PNAS §3.1).

    Args:
        primitives: the operations (PNAS §3.1: the 8 of ``ops.PNAS_PRIMITIVES``).
        blocks: B, the number of blocks of a full cell (B = 5 in PNAS).

    Enumeration always prunes the symmetric blocks; ``size(pruned=False)`` gives the
    paper's unpruned counts, |B_b| = (b + 1)²·8² ordered blocks at 1-based position b.
    """

    name: str = "pnas_cell"
    primitives: tuple[str, ...] = PNAS_PRIMITIVES
    blocks: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "primitives", tuple(self.primitives))
        unknown = [p for p in self.primitives if p not in OPS]
        if unknown or not self.primitives:
            raise ValueError(
                f"unknown operation {(unknown or [None])[0]!r}; valid choices: "
                f"{', '.join(OPS.names())}"
            )
        if len(set(self.primitives)) != len(self.primitives):
            raise ValueError(f"primitives repeat an operation: {self.primitives}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {self.blocks}")

    # ---------------------------------------------------------------- enumeration
    def block_choices(self, position: int) -> list[Block]:
        """Every block that can be block ``position`` (0-based) of a cell.

        The (input, op) choices are the ``position + 2`` earlier states times the
        operations; a block is an unordered pair of them, with repetition (the same
        input and op twice is a block too).
        """
        pairs = itertools.product(range(position + 2), self.primitives)
        chosen = itertools.combinations_with_replacement(list(pairs), 2)
        return [canonical_block(a, x, b, y) for (a, x), (b, y) in chosen]

    def initial(self) -> list[PNASCell]:
        """All 1-block cells: the first set PNAS trains (§3.2, Algorithm 1 line 1)."""
        return [PNASCell((block,)) for block in self.block_choices(0)]

    def expand(self, cell: PNASCell) -> list[PNASCell]:
        """The children of ``cell``: it with one more block appended (§3.2)."""
        if len(cell) >= self.blocks:
            raise ValueError(
                f"a {len(cell)}-block cell cannot grow past blocks={self.blocks}"
            )
        self.check(cell)
        return [cell.extend(b) for b in self.block_choices(len(cell))]

    def check(self, cell: PNASCell) -> PNASCell:
        """Raise ``ValueError`` if ``cell`` uses an operation outside this space."""
        for b, block in enumerate(cell.blocks):
            for op in (block[1], block[3]):
                if op not in self.primitives:
                    raise ValueError(
                        f"block {b}: operation {op!r} is not in this space; valid "
                        f"choices: {', '.join(self.primitives)}"
                    )
        if len(cell) > self.blocks:
            raise ValueError(f"{len(cell)} blocks exceed blocks={self.blocks}")
        return cell

    def size(self, blocks: int | None = None, pruned: bool = True) -> int:
        """Number of ``blocks``-block cells (default B). ``pruned=False`` counts both
        orders of every block, as the paper does: B = 5 and 8 ops give the
        ≈5.6·10¹⁴ that DARTS App. C quotes for PNAS's space."""
        total = 1
        for position in range(self.blocks if blocks is None else blocks):
            n = (position + 2) * len(self.primitives)  # (input, op) choices
            total *= n * (n + 1) // 2 if pruned else n * n
        return total

    # ---------------------------------------------------------------- sampling
    def sample_cell(self, rng: random.Random, blocks: int | None = None) -> PNASCell:
        """A random cell: every input and op drawn uniformly, block by block."""
        blocks = self.blocks if blocks is None else blocks
        drawn = []
        for position in range(blocks):
            drawn.append(
                (
                    rng.randrange(position + 2),
                    rng.choice(self.primitives),
                    rng.randrange(position + 2),
                    rng.choice(self.primitives),
                )
            )
        return PNASCell(drawn)

    def sample(self, rng: random.Random) -> Genotype:
        """A random B-block cell as a genotype (the random-search baseline's draw)."""
        return self.sample_cell(rng).to_genotype()

    # ---------------------------------------------------------------- encoding
    def vocabulary(self) -> int:
        """Token count: B + 1 input indices, then the operations."""
        return self.blocks + 1 + len(self.primitives)

    def tokens(self, cell: PNASCell) -> list[int]:
        """The cell as the predictor reads it (§3.3): per block I1, I2, O1, O2, with
        inputs as tokens 0..B and operation k as token B + 1 + k."""
        op = {name: self.blocks + 1 + k for k, name in enumerate(self.primitives)}
        out = []
        for in1, op1, in2, op2 in self.check(cell).blocks:
            out += [in1, in2, op[op1], op[op2]]
        return out

    def to_json(self, genotype: Genotype) -> dict[str, Any]:
        return genotype.to_dict()

    def from_json(self, data: dict[str, Any]) -> Genotype:
        return Genotype.from_dict(data)
