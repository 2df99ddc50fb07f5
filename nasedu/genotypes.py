"""Cell genotypes: the one architecture type of the cell-based chapters.

A genotype names, for a normal and a reduction cell, the operation and input of
every edge, and which states the cell concatenates into its output. Inputs 0 and 1
are the outputs of cells k−2 and k−1; input j ≥ 2 is intermediate node j (the DARTS
convention, ``quark0/darts`` ``cnn/model.py``; chapter *Introduction*).

Two edge layouts exist in the published code:

* ``form="pairs"`` — every node adds exactly two edges (NASNet, AmoebaNet, ENAS,
  PNAS, DARTS and the 8-edge SNAS cells);
* ``form="all"`` — node i receives one edge from each of its i + 2 predecessors,
  ``none`` where there is no edge (SNAS ``model_edge_all.py``, the "14-edge" form).

Published genotypes live in ``data/genotypes/*.json`` with their sources;
``load(name)`` reads them. Nothing here evaluates user text: JSON only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nasedu.ops import OPS

Edge = tuple[str, int]
FORMS = ("pairs", "all")
CELLS = ("normal", "reduce")


def _edges(value: Any, cell: str) -> tuple[Edge, ...]:
    try:
        return tuple((str(op), int(index)) for op, index in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"genotype {cell!r} must be a list of [op, input] pairs, got {value!r}"
        ) from None


@dataclass(frozen=True)
class Genotype:
    """A normal and a reduction cell (DARTS' ``Genotype`` namedtuple, made checkable).

    Example:
        >>> g = Genotype(normal=[("sep_conv_3x3", 0), ("skip_connect", 1)],
        ...              normal_concat=[2], reduce=[("max_pool_3x3", 0),
        ...              ("max_pool_3x3", 1)], reduce_concat=[2])
        >>> g.steps("normal")
        1
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]
    form: str = "pairs"
    _nodes: dict = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "normal", _edges(self.normal, "normal"))
        set_(self, "reduce", _edges(self.reduce, "reduce"))
        set_(self, "normal_concat", tuple(int(i) for i in self.normal_concat))
        set_(self, "reduce_concat", tuple(int(i) for i in self.reduce_concat))
        self.validate()
        set_(self, "_nodes", {c: self._split(getattr(self, c)) for c in CELLS})

    # ------------------------------------------------------------------ structure
    def _split(self, edges: tuple[Edge, ...]) -> tuple[tuple[Edge, ...], ...]:
        nodes, start, i = [], 0, 0
        while start < len(edges):
            width = 2 if self.form == "pairs" else i + 2
            nodes.append(edges[start : start + width])
            start, i = start + width, i + 1
        return tuple(nodes)

    def nodes(self, cell: str = "normal") -> tuple[tuple[Edge, ...], ...]:
        """The incoming edges of each intermediate node of ``cell``."""
        if cell not in CELLS:
            raise ValueError(
                f"unknown cell {cell!r}; valid choices: {', '.join(CELLS)}"
            )
        return self._nodes[cell]

    def steps(self, cell: str = "normal") -> int:
        """Number of intermediate nodes (blocks) of ``cell``."""
        return len(self.nodes(cell))

    def concat(self, cell: str = "normal") -> tuple[int, ...]:
        return self.normal_concat if cell == "normal" else self.reduce_concat

    def validate(self) -> Genotype:
        """Check every op name, input index and concat index; raise ``ValueError``."""
        if self.form not in FORMS:
            raise ValueError(
                f"unknown genotype form {self.form!r}; valid choices: "
                f"{', '.join(FORMS)}"
            )
        for cell in CELLS:
            edges, concat = getattr(self, cell), getattr(self, f"{cell}_concat")
            if not edges:
                raise ValueError(f"genotype {cell!r} cell has no edges")
            node, start = 0, 0
            while start < len(edges):
                width = 2 if self.form == "pairs" else node + 2
                group = edges[start : start + width]
                if len(group) != width:
                    raise ValueError(
                        f"{cell} cell: {len(edges)} edges do not split into nodes of "
                        f"the {self.form!r} form (node {node + 2} needs {width} edges)"
                    )
                for op, index in group:
                    if op not in OPS:
                        raise ValueError(
                            f"{cell} cell, node {node + 2}: unknown operation "
                            f"{op!r}; valid choices: {', '.join(OPS.names())}"
                        )
                    if not 0 <= index < node + 2:
                        raise ValueError(
                            f"{cell} cell, node {node + 2}: input {index} is invalid; valid "
                            f"inputs are 0..{node + 1} (cell inputs and earlier nodes)"
                        )
                if self.form == "all" and sorted(i for _, i in group) != list(
                    range(width)
                ):
                    raise ValueError(
                        f"{cell} cell, node {node + 2}: the 'all' form needs one "
                        f"edge from each of inputs 0..{node + 1}"
                    )
                start, node = start + width, node + 1
            states = node + 2
            if not concat or len(set(concat)) != len(concat):
                raise ValueError(
                    f"{cell}_concat must list distinct states, got {list(concat)}"
                )
            bad = [i for i in concat if not 0 <= i < states]
            if bad:
                raise ValueError(
                    f"{cell}_concat index {bad[0]} is invalid; valid states "
                    f"are 0..{states - 1}"
                )
            if cell == "reduce" and min(concat) < 2:
                raise ValueError(
                    "reduce_concat may not list the cell inputs 0 or 1: they "
                    "have twice the spatial size of the reduced nodes"
                )
        return self

    # ------------------------------------------------------------------ identity
    def _cell_hash(self, cell: str) -> str:
        """Merkle hash of the cell's function: invariant to the order of edges within
        a node (they are summed), to relabelling intermediate nodes, to ``none`` edges
        and to dead nodes; concat order is ignored (a channel permutation)."""
        memo: dict[int, str] = {0: "input0", 1: "input1"}

        def node_hash(j: int) -> str:
            if j not in memo:
                terms = sorted(
                    f"{op}({node_hash(i)})"
                    for op, i in self.nodes(cell)[j - 2]
                    if op != "none"
                )
                memo[j] = hashlib.sha256("+".join(terms).encode()).hexdigest()
            return memo[j]

        return "|".join(sorted(node_hash(j) for j in self.concat(cell)))

    def hash(self) -> str:
        """A canonical hash: equal for genotypes that compute the same cells."""
        text = f"normal[{self._cell_hash('normal')}]reduce[{self._cell_hash('reduce')}]"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
            "form": self.form,
        }

    def to_json(self, path: str | Path | None = None, indent: int | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        if not isinstance(data, dict):
            raise ValueError(
                f"a genotype must be a JSON object, got {type(data).__name__}"
            )
        # Published files wrap the genotype with its source; a search's result.json
        # holds it under "architecture": both unwrap, so either file can be passed.
        data = data.get("genotype", data.get("architecture", data))
        required = ("normal", "normal_concat", "reduce", "reduce_concat")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(
                f"genotype JSON lacks {', '.join(missing)}; it needs "
                f"{', '.join(required)} (and optionally 'form')"
            )
        combines = [*data.get("normal_combine", ()), *data.get("reduce_combine", ())]
        if "concat" in combines:
            raise ValueError(
                "this cell concatenates block outputs (a NASNet cell with "
                "'normal_combine'/'reduce_combine'); a Genotype's blocks add, so it "
                "would be built wrongly: train it with nasedu.papers.nasnet.retrain"
            )
        return cls(*(data[k] for k in required), form=data.get("form", "pairs"))

    @classmethod
    def from_json(cls, path_or_str: str | Path) -> Genotype:
        """Read a genotype from a JSON file or a JSON string."""
        text = str(path_or_str)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise ValueError(f"{text!r} is neither JSON text nor an existing file")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"malformed genotype JSON: {e}") from None
        return cls.from_dict(data)

    def draw(self, cell: str = "normal", **kwargs):
        """Draw one cell (see ``nasedu.viz.draw_cell``)."""
        from nasedu.viz import draw_cell

        return draw_cell(self, cell, **kwargs)


# ---------------------------------------------------------------------- published
def _published_dir():
    return resources.files("nasedu._data") / "genotypes"


def published() -> dict[str, dict[str, Any]]:
    """All published genotype records (name → JSON record with its source)."""
    records = {}
    for entry in sorted(_published_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            record = json.loads(entry.read_text())
            records[record["name"].lower()] = record
    return records


def names() -> list[str]:
    """Names of the published genotypes, for ``load``."""
    return [r["name"] for r in published().values()]


def load(name: str) -> Genotype:
    """A published genotype by name, case-insensitively (``load("darts_v2")``)."""
    records = published()
    record = records.get(str(name).lower())
    if record is None:
        raise ValueError(
            f"unknown genotype {name!r}; valid choices: {', '.join(names())}"
        )
    return Genotype.from_dict(record)


def resolve(name_or_json: str | Path | Genotype) -> Genotype:
    """A genotype from a published name, a JSON file path or JSON text."""
    if isinstance(name_or_json, Genotype):
        return name_or_json
    text = str(name_or_json)
    if text.lower() in published():
        return load(text)
    if text.lstrip().startswith("{") or Path(text).is_file():
        return Genotype.from_json(text)
    raise ValueError(
        f"{text!r} is not a published genotype, a JSON file or JSON text; "
        f"published names: {', '.join(names())}"
    )
