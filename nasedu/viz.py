"""Figures of the book: cell drawings, search histories, training curves, α heatmaps.

Cells are drawn as in the DARTS paper's figures (Liu et al., ICLR 2019, Fig. 4-5;
``quark0/darts`` ``cnn/visualize.py``): left to right, the two cell inputs
``c_{k-2}``/``c_{k-1}`` in green, intermediate nodes ``0..n-1`` in blue, the output
``c_{k}`` in yellow, every edge labelled with its operation. Edges are coloured by op
family (convolutions in blues, pools in warm colours, skips in green) so that the
same colour means the same kind of op in every chapter.

Graphviz's ``dot`` draws the cells when it is installed; without it a matplotlib
drawing of the same layered layout is returned, so every chapter runs on a bare
machine and in Colab. Both display in Jupyter and leave a static image (SVG or PNG)
in the executed notebook, which is what the rendered book shows (chapter
*Introduction*, gallery of published cells).
"""

from __future__ import annotations

import io
import re
import shutil
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from nasedu.genotypes import CELLS, Genotype

ENGINES = ("auto", "graphviz", "matplotlib")
HISTORY_AXES = ("step", "wall_clock", "cost")

# Colour-blind-safe hues (after Okabe & Ito), darkened where the text sits on white.
FAMILY_COLORS: dict[str, str] = {
    "separable conv": "#0072B2",
    "dilated conv": "#7B3294",
    "conv": "#00808A",
    "max pool": "#D55E00",
    "avg pool": "#A87900",
    "skip": "#009E73",
    "other": "#555555",
}
INPUT_FILL, NODE_FILL, OUTPUT_FILL = "#C8E6C9", "#BBDEFB", "#FFF3B0"
IDLE_FILL = "#ECEFF1"  # nodes that do nothing: unused, or fed only by ``none``
CONCAT_COLOR = "#9E9E9E"
INSTALL_HINT = (
    "install Graphviz's `dot` for the DARTS-style drawings: "
    "`sudo apt-get install graphviz` (Debian/Ubuntu, Colab: `!apt-get install "
    "graphviz`), `brew install graphviz` (macOS) or `conda install -c conda-forge "
    "graphviz`"
)

_warned_no_dot = False


def op_family(op: str) -> str:
    """The family an operation belongs to (a key of ``FAMILY_COLORS``)."""
    if op.startswith("sep_conv"):
        return "separable conv"
    if op.startswith("dil_conv"):
        return "dilated conv"
    if op.startswith("conv"):
        return "conv"
    if op.startswith("max_pool"):
        return "max pool"
    if op.startswith("avg_pool"):
        return "avg pool"
    if op in ("skip_connect", "identity"):
        return "skip"
    return "other"


def op_color(op: str) -> str:
    """The colour of an operation's family, shared by every figure of the book."""
    return FAMILY_COLORS[op_family(op)]


def has_dot() -> bool:
    """Whether Graphviz's ``dot`` executable is on the PATH."""
    return shutil.which("dot") is not None


# ---------------------------------------------------------------------- cell structure
def _state_name(j: int) -> str:
    """Node name of state j: the inputs are cells k-2 and k-1, state j ≥ 2 is node j-2."""
    return ("c_{k-2}", "c_{k-1}")[j] if j < 2 else str(j - 2)


def _cell_edges(genotype: Genotype, cell: str) -> list[tuple[str, int, int]]:
    """Live edges ``(op, src_state, dst_state)`` of ``cell``; ``none`` edges are dropped."""
    if not isinstance(genotype, Genotype):
        raise ValueError(
            f"draw_cell needs a nasedu.genotypes.Genotype, got "
            f"{type(genotype).__name__}; use nasedu.genotypes.load(name)"
        )
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; valid choices: {', '.join(CELLS)}")
    return [
        (op, src, i + 2)
        for i, node in enumerate(genotype.nodes(cell))
        for op, src in node
        if op != "none"
    ]


def _idle_states(genotype: Genotype, cell: str, edges) -> set[int]:
    """Intermediate states that do nothing: unused by the output and by every other
    node, or fed only by ``none`` edges (constant zero)."""
    used = set(genotype.concat(cell)) | {src for _, src, _ in edges}
    fed = {dst for _, _, dst in edges}
    return {
        j for j in range(2, genotype.steps(cell) + 2) if j not in used or j not in fed
    }


def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(
            f"unknown drawing engine {engine!r}; valid choices: {', '.join(ENGINES)}"
        )
    if engine == "auto":
        if has_dot():
            return "graphviz"
        _note_missing_dot()
        return "matplotlib"
    if engine == "graphviz" and not has_dot():
        raise RuntimeError(
            f"engine='graphviz' needs Graphviz's `dot`, which is not on the "
            f"PATH; {INSTALL_HINT}, or pass engine='matplotlib'"
        )
    return engine


def _note_missing_dot() -> None:
    global _warned_no_dot
    if not _warned_no_dot:
        _warned_no_dot = True
        warnings.warn(
            f"Graphviz's `dot` was not found, so cells are drawn with matplotlib; "
            f"{INSTALL_HINT}.",
            UserWarning,
            stacklevel=4,
        )


# ---------------------------------------------------------------------- graphviz
def _graphviz_cell(genotype: Genotype, cell: str, title: str | None):
    import graphviz

    edges = _cell_edges(genotype, cell)
    idle = _idle_states(genotype, cell, edges)
    font = "Helvetica,Arial,sans-serif"
    g = graphviz.Digraph(
        format="svg",
        graph_attr=dict(
            rankdir="LR",
            nodesep="0.35",
            ranksep="0.9",
            fontname=font,
            fontsize="16",
            bgcolor="white",
            pad="0.15",
        ),
        node_attr=dict(
            shape="box",
            style="rounded,filled",
            fontname=font,
            fontsize="16",
            height="0.45",
            width="0.6",
            penwidth="1.6",
            color="#37474F",
        ),
        edge_attr=dict(fontname=font, fontsize="13", penwidth="1.6", arrowsize="0.8"),
    )
    if title:
        g.attr(label=title, labelloc="t", fontsize="18")
    with g.subgraph() as inputs:  # c_{k-2} above c_{k-1} in the first rank, as in DARTS
        inputs.attr(rank="same")
        for j in (0, 1):
            inputs.node(_state_name(j), fillcolor=INPUT_FILL)
        inputs.edge(_state_name(0), _state_name(1), style="invis")
    for j in range(2, genotype.steps(cell) + 2):
        if j in idle:  # a wasted node is worth seeing, not worth hiding
            g.node(
                _state_name(j),
                fillcolor=IDLE_FILL,
                style="rounded,filled,dashed",
                tooltip="unused, or fed only by 'none' edges",
            )
        else:
            g.node(_state_name(j), fillcolor=NODE_FILL)
    g.node("c_{k}", fillcolor=OUTPUT_FILL)
    for op, src, dst in edges:
        color = op_color(op)
        g.edge(
            _state_name(src), _state_name(dst), label=op, color=color, fontcolor=color
        )
    for j in genotype.concat(cell):
        g.edge(
            _state_name(j),
            "c_{k}",
            color=CONCAT_COLOR,
            style="dashed" if j < 2 else "solid",
        )
    return g


# ---------------------------------------------------------------------- matplotlib
# All lengths in inches: one data unit is one inch, so font sizes and boxes agree.
_DX, _DY = 3.1, 0.95  # between node columns / rows
_BOX_W, _BOX_H = 0.62, 0.36  # node boxes
_LABEL_PT = 10.5  # op labels
_OP_H, _OP_GAP = 0.27, 0.07  # op boxes and the gap between two of them
_ARROW_IN = 0.3  # length of the arrow from an op box into its node


def _label_width(op: str) -> float:
    return (
        0.6 * _LABEL_PT / 72 * len(op) + 0.16
    )  # DejaVu Sans averages ~0.6 em per char


def _layered_layout(
    genotype: Genotype, cell: str, edges
) -> dict[int, tuple[float, float]]:
    """Positions of states, DARTS-style: column = longest path from the inputs.

    The output node is state ``-1``. Within a column nodes are ordered by the mean
    height of their inputs (one barycenter pass), which removes most crossings.
    """
    steps = genotype.steps(cell)
    preds: dict[int, list[int]] = {j: [] for j in range(2, steps + 2)}
    for _, src, dst in edges:
        preds[dst].append(src)
    depth = {0: 0, 1: 0}
    for j in range(2, steps + 2):
        depth[j] = 1 + max((depth[i] for i in preds[j]), default=0)
    depth[-1] = 1 + max(depth.values())
    tallest = max(
        sum(1 for j in depth if j >= 2 and depth[j] == d) for d in range(1, depth[-1])
    )
    # The inputs span most of the tallest column, so their fans of edges do not bunch up.
    spread = max(_DY, (tallest - 1) * _DY * 0.75) / 2
    pos: dict[int, tuple[float, float]] = {0: (0.0, spread), 1: (0.0, -spread)}
    for d in range(1, depth[-1]):
        column = [j for j in range(2, steps + 2) if depth[j] == d]
        column.sort(
            key=lambda j: (
                -np.mean([pos[i][1] for i in preds[j]]) if preds[j] else 0.0,
                j,
            )
        )
        top = (len(column) - 1) * _DY / 2
        for row, j in enumerate(column):
            pos[j] = (d * _DX, top - row * _DY)
    pos[-1] = (depth[-1] * _DX, 0.0)
    return pos


def _spread(wanted: list[float], gap: float) -> list[float]:
    """Heights as close to ``wanted`` (sorted high to low) as a minimum ``gap`` allows."""
    ys = list(wanted)
    for i in range(1, len(ys)):
        ys[i] = min(ys[i], ys[i - 1] - gap)
    shift = float(np.mean(np.subtract(wanted, ys)))  # re-centre the pushed-down block
    return [y + shift for y in ys]


def _op_layout(edges, pos) -> list[tuple[float, float]]:
    """Centre of each op box: in a column just left of its target, grouped by target."""
    centres: list[tuple[float, float]] = [(0.0, 0.0)] * len(edges)
    columns: dict[float, list[int]] = {}
    for k, (_, _, dst) in enumerate(edges):
        columns.setdefault(pos[dst][0], []).append(k)
    for x_target, ks in columns.items():
        x = (
            x_target
            - _BOX_W / 2
            - _ARROW_IN
            - max(_label_width(edges[k][0]) for k in ks) / 2
        )
        wanted = {}
        for dst in {edges[k][2] for k in ks}:
            mine = sorted(
                (k for k in ks if edges[k][2] == dst),
                key=lambda k: -pos[edges[k][1]][1],
            )
            for i, k in enumerate(mine):
                wanted[k] = pos[dst][1] + ((len(mine) - 1) / 2 - i) * (_OP_H + _OP_GAP)
        order = sorted(ks, key=lambda k: -wanted[k])
        ys = _spread([wanted[k] for k in order], _OP_H + _OP_GAP)
        for k, y in zip(order, ys, strict=True):
            centres[k] = (x, y)
    return centres


def _bezier(p0, ctrl, p2, t: np.ndarray) -> np.ndarray:
    t = t[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p2


def _bow(a, b, obstacles: list[tuple[float, float, float, float]]):
    """The arc3 ``rad`` whose curve from ``a`` to ``b`` crosses the fewest boxes, and
    points along that curve.

    matplotlib's arc3 puts the control point at ``mid + rad * (dy, -dx)``; with one
    data unit per inch on both axes that is also where it lands on the page.
    """
    p0, p2 = np.asarray(a, float), np.asarray(b, float)
    d = p2 - p0
    t = np.linspace(0.04, 0.96, 40)
    best = (np.inf, 0.0, None)
    for rad in (0.0, -0.12, 0.12, -0.24, 0.24, -0.36, 0.36, -0.5, 0.5):
        pts = _bezier(p0, (p0 + p2) / 2 + rad * np.array([d[1], -d[0]]), p2, t)
        hits = sum(
            int(
                (
                    (pts[:, 0] > x0)
                    & (pts[:, 0] < x1)
                    & (pts[:, 1] > y0)
                    & (pts[:, 1] < y1)
                ).sum()
            )
            for x0, y0, x1, y1 in obstacles
        )
        score = hits + abs(rad)  # one box crossed costs more than any bend
        if score < best[0]:
            best = (score, rad, pts)
    return best[1], best[2]


def _tint(color: str, amount: float = 0.12) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return tuple(1 - amount + amount * c for c in to_rgb(color))


def _matplotlib_cell(genotype: Genotype, cell: str, title: str | None):
    """The same cell as ``_graphviz_cell``, with each op as a labelled box on its edge."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    edges = _cell_edges(genotype, cell)
    idle = _idle_states(genotype, cell, edges)
    pos = _layered_layout(genotype, cell, edges)
    ops = _op_layout(edges, pos)
    widths = [_label_width(op) for op, _, _ in edges]

    # Node and op boxes, slightly inflated: what the curves bow around.
    rects = {
        ("node", j): (
            x - _BOX_W / 2 - 0.04,
            y - _BOX_H / 2 - 0.04,
            x + _BOX_W / 2 + 0.04,
            y + _BOX_H / 2 + 0.04,
        )
        for j, (x, y) in pos.items()
    }
    for k, ((x, y), w) in enumerate(zip(ops, widths, strict=True)):
        rects[("op", k)] = (
            x - w / 2 - 0.04,
            y - _OP_H / 2 - 0.02,
            x + w / 2 + 0.04,
            y + _OP_H / 2 + 0.02,
        )
    # (start, end, node at start, node at end, colour, arrow head, dashed, rad)
    links = []

    def plan(a, b, ends, node_a, node_b, color, arrow, dashed=False):
        rad, points = _bow(a, b, [r for key, r in rects.items() if key not in ends])
        links.append((a, b, node_a, node_b, color, arrow, dashed, rad))
        return points

    curves = []
    for k, ((op, src, dst), (x, y), w) in enumerate(
        zip(edges, ops, widths, strict=True)
    ):
        # Enter the op box on its left and leave on its right, like text on a wire.
        curves.append(
            plan(
                pos[src],
                (x - w / 2, y),
                (("node", src), ("op", k)),
                src,
                None,
                op_color(op),
                arrow=False,
            )
        )
        curves.append(
            plan(
                (x + w / 2, y),
                pos[dst],
                (("node", dst), ("op", k)),
                None,
                dst,
                op_color(op),
                arrow=True,
            )
        )
    for j in genotype.concat(cell):
        curves.append(
            plan(
                pos[j],
                pos[-1],
                (("node", j), ("node", -1)),
                j,
                -1,
                CONCAT_COLOR,
                arrow=True,
                dashed=j < 2,
            )
        )

    corners = np.array(
        [c for r in rects.values() for c in (r[:2], r[2:])]
        + [p for c in curves for p in c]
    )
    (x0, y0), (x1, y1) = corners.min(0) - 0.12, corners.max(0) + 0.12
    head = 0.45 if title else 0.0
    fig = plt.figure(figsize=(x1 - x0, y1 - y0 + head))
    ax = fig.add_axes((0, 0, 1, (y1 - y0) / (y1 - y0 + head)))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.axis("off")

    boxes = {}
    for j, (x, y) in pos.items():
        if j in (0, 1):
            text, fill, style = f"$c_{{k-{2 - j}}}$", INPUT_FILL, "-"
        elif j == -1:
            text, fill, style = "$c_{k}$", OUTPUT_FILL, "-"
        else:
            text = str(j - 2)
            fill, style = (IDLE_FILL, "--") if j in idle else (NODE_FILL, "-")
        boxes[j] = FancyBboxPatch(
            (x - _BOX_W / 2, y - _BOX_H / 2),
            _BOX_W,
            _BOX_H,
            boxstyle="round,pad=0,rounding_size=0.08",
            facecolor=fill,
            edgecolor="#37474F",
            linewidth=1.4,
            linestyle=style,
            zorder=3,
        )
        ax.add_patch(boxes[j])
        ax.text(x, y, text, ha="center", va="center", fontsize=13, zorder=4)
    for (op, _, _), (x, y), w in zip(edges, ops, widths, strict=True):
        color = op_color(op)
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - _OP_H / 2),
                w,
                _OP_H,
                boxstyle="round,pad=0,rounding_size=0.06",
                facecolor=_tint(color),
                edgecolor=color,
                linewidth=1.1,
                zorder=3,
            )
        )
        ax.text(
            x,
            y,
            op,
            ha="center",
            va="center",
            fontsize=_LABEL_PT,
            color=color,
            zorder=4,
        )
    for a, b, node_a, node_b, color, arrow, dashed, rad in links:
        ax.add_patch(
            FancyArrowPatch(
                a,
                b,
                patchA=boxes.get(node_a),
                patchB=boxes.get(node_b),
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>" if arrow else "-",
                mutation_scale=13,
                color=color,
                linewidth=1.5,
                linestyle="--" if dashed else "-",
                zorder=2,
            )
        )
    if title:
        fig.text(
            0.5,
            1 - head / 2 / (y1 - y0 + head),
            title,
            ha="center",
            va="center",
            fontsize=14,
        )
    # Closed so Jupyter shows it once, through the returned Figure's own display.
    plt.close(fig)
    return fig


# ---------------------------------------------------------------------- public drawing
def draw_cell(
    genotype: Genotype,
    cell: str = "normal",
    engine: str = "auto",
    title: str | None = None,
):
    """Draw one cell of a genotype, DARTS-figure style (chapter *Introduction*).

    Inputs are ``c_{k-2}``, ``c_{k-1}`` (outputs of the two previous cells),
    intermediate nodes ``0..n-1`` (state j ≥ 2 is node j-2), and ``c_{k}`` the
    concatenation of the ``concat`` states. Edges carry the op name and its family's
    colour; ``none`` edges are not drawn; a dashed grey node does nothing (unused,
    or fed only by ``none`` edges).

    Args:
        genotype: the cell pair, e.g. ``nasedu.genotypes.load("DARTS_V2")``.
        cell: ``"normal"`` or ``"reduce"``.
        engine: ``"auto"`` (Graphviz when ``dot`` is installed, else matplotlib, with
            a one-time warning saying how to install Graphviz), ``"graphviz"`` or
            ``"matplotlib"``.
        title: optional caption drawn above the cell.

    Returns:
        A ``graphviz.Digraph`` (shown as SVG in Jupyter) or a matplotlib ``Figure``
        (shown as PNG); make it the last expression of a cell or ``display`` it.

    Raises:
        ValueError: for an unknown cell or engine.
        RuntimeError: for ``engine="graphviz"`` without ``dot``.
    """
    _cell_edges(genotype, cell)  # validates genotype and cell before anything is drawn
    if _check_engine(engine) == "graphviz":
        return _graphviz_cell(genotype, cell, title)
    return _matplotlib_cell(genotype, cell, title)


def _bare_svg(text: str) -> str:
    """Drop the XML prolog and DOCTYPE so the SVG can sit inline in HTML."""
    return text[text.index("<svg") :].strip()


def cell_svg(
    genotype: Genotype,
    cell: str = "normal",
    engine: str = "auto",
    title: str | None = None,
) -> str:
    """One cell as an inline SVG string (``<svg ...>...</svg>``), for precomputed views.

    Uses Graphviz when ``dot`` exists, else matplotlib with text kept as text, so the
    op names stay searchable in the page. See ``draw_cell`` for the arguments.
    """
    drawing = draw_cell(genotype, cell, engine=engine, title=title)
    if hasattr(drawing, "pipe"):
        return _bare_svg(drawing.pipe(format="svg", encoding="utf-8"))
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        drawing.savefig(buffer, format="svg", facecolor="white")
    return _bare_svg(buffer.getvalue())


def responsive_svg(svg: str, max_width: str = "100%") -> str:
    """Let an SVG shrink to its container (keeps its viewBox, drops fixed height)."""
    return re.sub(
        r"<svg\b", f'<svg style="max-width:{max_width};height:auto"', svg, count=1
    )


# ---------------------------------------------------------------------- histories
def _field(record: Any, name: str) -> Any:
    if isinstance(record, dict):
        if name in record:
            return record[name]
        extra = record.get("extra") or {}
    else:
        if hasattr(record, name):
            return getattr(record, name)
        extra = getattr(record, "extra", None) or {}
    if name in extra:
        return extra[name]
    raise ValueError(
        f"history record has no field {name!r}; records carry step, reward, "
        f"cost, wall_clock, architecture (and method-specific 'extra')"
    )


def plot_history(
    records: Iterable[Any],
    x: str = "step",
    y: str = "reward",
    ax=None,
    label: str | None = None,
    best_so_far: bool = True,
):
    """Plot a search history: one point per evaluation plus the best-so-far curve.

    Every method returns the same ``HistoryRecord`` (``nasedu.search``), so calling
    this once per method on one ``ax`` compares them (chapter *Introduction*, and the
    closing comparison chapter).

    Args:
        records: ``HistoryRecord`` objects or their dicts (``history.jsonl`` lines).
        x: ``"step"`` (evaluations), ``"wall_clock"`` (seconds since the search
            started) or ``"cost"`` (cumulative compute seconds of the evaluations,
            which exceeds wall-clock when workers run in parallel).
        y: the field to plot, ``"reward"`` by default (a key of ``extra`` works too).
        ax: Axes to draw on; a new figure when ``None``.
        label: legend label of this method.
        best_so_far: also draw the running maximum of ``y`` as a step line.

    Returns:
        The matplotlib Axes.
    """
    if x not in HISTORY_AXES:
        raise ValueError(
            f"unknown x axis {x!r}; valid choices: {', '.join(HISTORY_AXES)}"
        )
    records = list(records)
    if not records:
        raise ValueError("plot_history got no records; run a search first")
    import matplotlib.pyplot as plt

    order = sorted(range(len(records)), key=lambda i: float(_field(records[i], "step")))
    records = [records[i] for i in order]
    ys = np.array([float(_field(r, y)) for r in records])
    if x == "cost":
        xs = np.cumsum([float(_field(r, "cost")) for r in records])
    else:
        xs = np.array([float(_field(r, x)) for r in records])
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    points = ax.scatter(xs, ys, s=18, alpha=0.45, label=None if best_so_far else label)
    if best_so_far:
        ax.plot(
            xs,
            np.maximum.accumulate(ys),
            drawstyle="steps-post",
            linewidth=2,
            color=points.get_facecolor()[0][:3],
            label=label,
        )
    ax.set_xlabel(
        {
            "step": "evaluations",
            "wall_clock": "wall-clock (s)",
            "cost": "cumulative compute cost (s)",
        }[x]
    )
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(True, alpha=0.3)
    if label is not None:
        ax.legend(frameon=False)
    return ax


def plot_training(history: Sequence[dict[str, Any]]):
    """Loss and accuracy per epoch from the training engine's history.

    Args:
        history: one dict per epoch with ``epoch`` and any of ``train_loss``,
            ``valid_loss``, ``test_loss``, ``train_acc``, ``valid_acc``, ``test_acc``
            (missing or ``None`` values are skipped).

    Returns:
        The matplotlib Figure (loss on the left, accuracy on the right).
    """
    history = list(history)
    if not history:
        raise ValueError("plot_training got an empty history")
    if not all(isinstance(h, dict) and "epoch" in h for h in history):
        raise ValueError(
            "plot_training needs a list of dicts that each have an 'epoch' key"
        )
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.array([h["epoch"] for h in history], dtype=float)
    styles = {
        "train": dict(color="#0072B2"),
        "valid": dict(color="#D55E00"),
        "test": dict(color="#009E73", linestyle="--"),
    }
    drawn = {ax_loss: 0, ax_acc: 0}
    for ax, kind in ((ax_loss, "loss"), (ax_acc, "acc")):
        for split, style in styles.items():
            values = np.array(
                [
                    np.nan
                    if h.get(f"{split}_{kind}") is None
                    else float(h[f"{split}_{kind}"])
                    for h in history
                ]
            )
            if np.isnan(values).all():
                continue
            ax.plot(
                epochs,
                values,
                marker="o" if len(epochs) <= 30 else None,
                markersize=3,
                label=split,
                **style,
            )
            drawn[ax] += 1
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss" if kind == "loss" else "accuracy")
        ax.grid(True, alpha=0.3)
        if drawn[ax]:
            ax.legend(frameon=False)
    if not any(drawn.values()):
        plt.close(fig)
        raise ValueError(
            "plot_training found no train/valid/test loss or accuracy values; "
            "keys must look like 'train_loss', 'valid_acc', ..."
        )
    fig.tight_layout()
    plt.close(fig)  # displayed once, through the returned Figure
    return fig


def plot_alpha_heatmap(
    weights,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    ax=None,
    title: str | None = None,
):
    """A labelled heatmap, e.g. softmax(α) per edge (rows) × op (columns) in DARTS §2.2.

    Args:
        weights: a 2-D array or tensor of shape ``(len(row_labels), len(col_labels))``.
        row_labels: one label per row (e.g. ``"c_{k-1} → 0"``).
        col_labels: one label per column (e.g. op names).
        ax: Axes to draw on; a new figure when ``None``.
        title: optional title.

    Returns:
        The matplotlib Axes.
    """
    if hasattr(weights, "detach"):
        weights = weights.detach().cpu().numpy()
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (rows × columns), got shape {w.shape}")
    if w.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"weights have shape {w.shape} but there are {len(row_labels)} "
            f"row labels and {len(col_labels)} column labels"
        )
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(0.75 * w.shape[1] + 2.5, 0.38 * w.shape[0] + 1.6))
    image = ax.imshow(w, cmap="viridis", aspect="auto")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(w.shape[1]), labels=list(col_labels), rotation=40, ha="right")
    ax.set_yticks(range(w.shape[0]), labels=list(row_labels))
    if w.size <= 400:  # values stay readable only on small grids
        middle = (np.nanmin(w) + np.nanmax(w)) / 2
        for (i, j), v in np.ndenumerate(w):
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="black" if v > middle else "white",
            )
    if title:
        ax.set_title(title)
    return ax
