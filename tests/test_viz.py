"""Tests for ``nasedu.viz`` and ``nasedu.widgets`` (figures of every chapter).

Every published cell is drawn by both engines: Graphviz (skipped when ``dot`` is not
installed) and the matplotlib fallback (``dot`` hidden by monkeypatching
``shutil.which``). The oracle for a drawing is the genotype itself: every live op
label must appear in it, and no ``none`` edge may. Widgets must carry their SVGs in
their own state, since that is all the static book keeps.
"""

from __future__ import annotations

import json
import shutil
import warnings
import xml.etree.ElementTree as ET

import matplotlib
import pytest

matplotlib.use("Agg")

import graphviz  # noqa: E402
import ipywidgets as W  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nasedu import genotypes as G  # noqa: E402
from nasedu import viz, widgets  # noqa: E402

NAMES = G.names()
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(
    not HAS_DOT,
    reason="Graphviz `dot` is not installed "
    "(apt-get install graphviz); the matplotlib fallback is tested",
)

TINY = G.Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("none", 0), ("max_pool_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("avg_pool_3x3", 1)],
    reduce_concat=[2],
)


@pytest.fixture
def no_dot(monkeypatch):
    """Hide Graphviz, as on a machine without it."""
    real = shutil.which
    monkeypatch.setattr(
        viz.shutil,
        "which",
        lambda name, *a, **k: None if name == "dot" else real(name, *a, **k),
    )
    monkeypatch.setattr(viz, "_warned_no_dot", False)


def live_ops(genotype, cell):
    return {op for node in genotype.nodes(cell) for op, _ in node if op != "none"}


def figure_texts(fig: Figure) -> list[str]:
    texts = [t for ax in fig.axes for t in ax.texts] + list(fig.texts)
    return [t.get_text() for t in texts]


def svg_texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)  # raises on malformed XML
    assert root.tag.endswith("svg")
    return [
        "".join(el.itertext())
        for el in root.iter()
        if el.tag.endswith(("text", "title"))
    ]


# ------------------------------------------------------------------ drawing cells
@needs_dot
@pytest.mark.parametrize("name", NAMES)
def test_graphviz_drawing_has_every_live_op(name):
    genotype = G.load(name)
    for cell in ("normal", "reduce"):
        g = viz.draw_cell(genotype, cell)
        assert isinstance(g, graphviz.Digraph)
        assert "rankdir=LR" in g.source
        labels = [
            line.split("label=")[1].split()[0].strip("]")
            for line in g.source.splitlines()
            if "->" in line and "label=" in line
        ]
        expected = [
            op for node in genotype.nodes(cell) for op, _ in node if op != "none"
        ]
        assert sorted(labels) == sorted(
            expected
        )  # one labelled edge per live op, no none
        assert "none" not in labels
        # c_{k} is fed by exactly the concat states
        assert sum('-> "c_{k}"' in line for line in g.source.splitlines()) == len(
            genotype.concat(cell)
        )


@pytest.mark.parametrize("name", NAMES)
def test_matplotlib_fallback_has_every_live_op(name, no_dot):
    genotype = G.load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figs = {cell: viz.draw_cell(genotype, cell) for cell in ("normal", "reduce")}
    for cell, fig in figs.items():
        assert isinstance(fig, Figure)
        texts = figure_texts(fig)
        nodes = {
            "$c_{k-2}$",
            "$c_{k-1}$",
            "$c_{k}$",
            *map(str, range(genotype.steps(cell))),
        }
        assert sorted(t for t in texts if t in nodes) == sorted(nodes)
        expected = [
            op for node in genotype.nodes(cell) for op, _ in node if op != "none"
        ]
        assert sorted(t for t in texts if t not in nodes) == sorted(expected)


def test_missing_dot_warns_once_with_install_hint(no_dot):
    with pytest.warns(UserWarning, match="apt-get install graphviz"):
        viz.draw_cell(TINY, "normal")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second drawing must stay quiet
        assert isinstance(viz.draw_cell(TINY, "reduce"), Figure)


def test_engine_graphviz_without_dot_says_how_to_install(no_dot):
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        viz.draw_cell(TINY, engine="graphviz")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cell="middle"), "valid choices: normal, reduce"),
        (dict(engine="tikz"), "valid choices: auto, graphviz, matplotlib"),
    ],
)
def test_bad_cell_or_engine_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.draw_cell(TINY, **kwargs)


def test_draw_cell_refuses_a_non_genotype():
    with pytest.raises(ValueError, match="Genotype"):
        viz.draw_cell({"normal": []})


def test_idle_nodes_are_the_unused_and_the_zero_ones():
    g = G.Genotype(
        normal=[
            ("sep_conv_3x3", 0),
            ("none", 1),
            ("none", 0),
            ("none", 1),
            ("skip_connect", 0),
            ("max_pool_3x3", 1),
        ],
        normal_concat=[2, 3],
        reduce=TINY.reduce,
        reduce_concat=[2],
    )
    edges = viz._cell_edges(g, "normal")
    # state 3 is in the concat but only fed by none; state 4 is fed but never used
    assert viz._idle_states(g, "normal", edges) == {3, 4}


def test_op_families_have_distinct_colours():
    assert viz.op_family("sep_conv_5x5") == "separable conv"
    assert viz.op_family("dil_conv_3x3") == "dilated conv"
    assert viz.op_family("conv_7x1_1x7") == "conv"
    assert viz.op_family("max_pool_3x3") == "max pool"
    assert viz.op_family("avg_pool_3x3") == "avg pool"
    assert viz.op_family("skip_connect") == "skip"
    assert len(set(viz.FAMILY_COLORS.values())) == len(viz.FAMILY_COLORS)


def test_fallback_layout_keeps_columns_in_dependency_order():
    edges = viz._cell_edges(TINY, "normal")
    pos = viz._layered_layout(TINY, "normal", edges)
    assert pos[0][0] == pos[1][0] < pos[2][0] < pos[3][0] < pos[-1][0]
    assert pos[0][1] > pos[1][1]  # c_{k-2} above c_{k-1}, as in the DARTS figures


def test_fallback_op_boxes_never_overlap():
    genotype = G.load("NASNet_A")  # five nodes in one column: the most crowded cell
    edges = viz._cell_edges(genotype, "normal")
    boxes = viz._op_layout(edges, viz._layered_layout(genotype, "normal", edges))
    by_column: dict[float, list[float]] = {}
    for x, y in boxes:
        by_column.setdefault(x, []).append(y)
    for ys in by_column.values():
        gaps = np.diff(sorted(ys))
        assert (gaps >= viz._OP_H + viz._OP_GAP - 1e-9).all()


# ------------------------------------------------------------------ SVG strings
@needs_dot
@pytest.mark.parametrize("name", ["DARTS_V2", "NASNet_A", "SNAS_mild_edge_all"])
def test_graphviz_svg_parses_and_names_nodes_and_ops(name):
    genotype = G.load(name)
    svg = viz.cell_svg(genotype, "reduce")
    assert svg.startswith("<svg")
    texts = svg_texts(svg)
    for label in [
        "c_{k-2}",
        "c_{k-1}",
        "c_{k}",
        *map(str, range(genotype.steps("reduce"))),
    ]:
        assert label in texts
    assert live_ops(genotype, "reduce") <= set(texts)


def test_matplotlib_svg_parses_and_names_nodes_and_ops(no_dot):
    genotype = G.load("DARTS_V2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svg = viz.cell_svg(genotype, "normal")
    assert svg.startswith("<svg")
    texts = svg_texts(svg)
    assert live_ops(genotype, "normal") <= set(texts)
    assert {"0", "1", "2", "3"} <= set(texts)


def test_responsive_svg_adds_a_max_width():
    out = viz.responsive_svg('<svg width="10pt"><g/></svg>')
    assert out.startswith('<svg style="max-width:100%;height:auto" width="10pt"')
    ET.fromstring(out)


# ------------------------------------------------------------------ histories, curves
def fake_history(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "step": i,
            "reward": float(r),
            "cost": 2.0,
            "wall_clock": 1.5 * (i + 1),
            "architecture": {},
        }
        for i, r in enumerate(rng.uniform(0.2, 0.9, n))
    ]


def test_plot_history_draws_points_and_best_so_far():
    records = fake_history()
    ax = viz.plot_history(records, label="random")
    assert isinstance(ax, Axes)
    (line,) = ax.lines
    rewards = [r["reward"] for r in records]
    np.testing.assert_allclose(line.get_ydata(), np.maximum.accumulate(rewards))
    assert ax.collections[0].get_offsets().shape == (len(records), 2)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random"]


def test_plot_history_cost_axis_is_cumulative_and_methods_share_an_axes():
    ax = viz.plot_history(fake_history(seed=0), x="cost", label="a")
    viz.plot_history(fake_history(seed=1), x="cost", ax=ax, label="b")
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_xdata(), 2.0 * np.arange(1, 13))
    assert "cumulative" in ax.get_xlabel()


def test_plot_history_accepts_history_records():
    from nasedu.search import HistoryRecord

    records = [HistoryRecord(**r) for r in fake_history()]
    ax = viz.plot_history(records, x="wall_clock", best_so_far=False)
    np.testing.assert_allclose(
        ax.collections[0].get_offsets()[:, 0], [r.wall_clock for r in records]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x="epoch"), "valid choices: step, wall_clock, cost"),
        (dict(y="loss"), "no field 'loss'"),
    ],
)
def test_plot_history_bad_axis(kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.plot_history(fake_history(), **kwargs)


def test_plot_history_refuses_empty():
    with pytest.raises(ValueError, match="no records"):
        viz.plot_history([])


def test_plot_training_draws_what_the_history_has():
    history = [
        {
            "epoch": e,
            "train_loss": 2.0 / (e + 1),
            "train_acc": 0.5 + 0.1 * e,
            "valid_acc": 0.45 + 0.1 * e,
            "test_acc": None,
        }
        for e in range(4)
    ]
    fig = viz.plot_training(history)
    loss_ax, acc_ax = fig.axes
    assert [l.get_label() for l in loss_ax.lines] == ["train"]
    assert [l.get_label() for l in acc_ax.lines] == ["train", "valid"]
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), [0.45, 0.55, 0.65, 0.75])


def test_plot_training_refuses_histories_without_curves():
    with pytest.raises(ValueError, match="epoch"):
        viz.plot_training([{"loss": 1.0}])
    with pytest.raises(ValueError, match="no train/valid/test"):
        viz.plot_training([{"epoch": 0, "lr": 0.1}])


def test_alpha_heatmap_labels_and_values():
    import torch

    weights = torch.softmax(torch.randn(3, 4), dim=-1)
    ax = viz.plot_alpha_heatmap(
        weights, ["e0", "e1", "e2"], ["a", "b", "c", "d"], title="softmax(α)"
    )
    assert [t.get_text() for t in ax.get_yticklabels()] == ["e0", "e1", "e2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    np.testing.assert_allclose(ax.images[0].get_array(), weights.numpy(), rtol=1e-6)
    assert len(ax.texts) == 12 and ax.get_title() == "softmax(α)"


def test_alpha_heatmap_shape_mismatch():
    with pytest.raises(ValueError, match="3 row labels"):
        viz.plot_alpha_heatmap(np.ones((2, 4)), ["a", "b", "c"], list("wxyz"))


# ------------------------------------------------------------------ widgets
def test_cell_explorer_has_one_tab_of_two_svgs_per_genotype():
    chosen = {n: G.load(n) for n in ("DARTS_V2", "ENAS")}
    tab = widgets.cell_explorer(
        chosen, counts={"DARTS_V2": 3_349_342}, count_note="C=36"
    )
    assert isinstance(tab, W.Tab) and len(tab.children) == 2
    assert [tab.get_title(i) for i in range(2)] == ["DARTS_V2", "ENAS"]
    for page, genotype in zip(tab.children, chosen.values(), strict=True):
        caption, pair = page.children
        assert isinstance(pair, W.HBox) and len(pair.children) == 2
        for view, cell in zip(pair.children, ("normal", "reduce"), strict=True):
            assert isinstance(view, W.HTML) and "<svg" in view.value
            assert all(op in view.value for op in live_ops(genotype, cell))
    assert "3.35 M parameters" in tab.children[0].children[0].value
    assert "parameters" not in tab.children[1].children[0].value


def test_cell_explorer_state_holds_the_svgs():
    # The static book keeps only the saved widget state: the SVGs must be in it.
    tab = widgets.cell_explorer({"DARTS_V2": G.load("DARTS_V2")})
    html_state = tab.children[0].children[1].children[0].get_state()
    assert "<svg" in html_state["value"]


def test_cell_explorer_bad_inputs():
    with pytest.raises(ValueError, match="non-empty dict"):
        widgets.cell_explorer({})
    with pytest.raises(ValueError, match="not a nasedu.genotypes.Genotype"):
        widgets.cell_explorer({"x": "DARTS_V2"})
    with pytest.raises(ValueError, match="unknown genotype 'ENAS'"):
        widgets.cell_explorer({"DARTS_V2": G.load("DARTS_V2")}, counts={"ENAS": 1})


def test_live_cell_explorer_redraws_on_change():
    box = widgets.live_cell_explorer({"DARTS_V2": G.load("DARTS_V2"), "TINY": TINY})
    choose, out = box.children
    assert isinstance(choose, W.Dropdown) and isinstance(out, W.Output)
    first = out.outputs[0]["data"]["text/html"]
    assert "DARTS_V2" in first and "<svg" in first and "dil_conv_3x3" in first
    choose.value = "TINY"
    (only,) = out.outputs
    page = only["data"]["text/html"]
    assert "TINY" in page and "dil_conv_3x3" not in page


def test_precomputed_slider_links_slider_and_tabs():
    frames = [f"<p>epoch {i}</p>" for i in range(3)]
    box = widgets.precomputed_slider(frames, ["e0", "e1", "e2"], "cell per epoch")
    header, slider, tab = box.children
    assert [c.value for c in tab.children] == frames
    assert [tab.get_title(i) for i in range(3)] == ["e0", "e1", "e2"]
    # Live widgets are registered in _instances (8.x) or Widget.widgets (7.x).
    registry = getattr(W.widgets.widget, "_instances", None) or W.Widget.widgets
    assert any(
        type(w).__name__ == "Link"
        and w.source == (slider, "index")
        and w.target == (tab, "selected_index")
        for w in registry.values()
    )
    assert "cell per epoch" in header.value


@pytest.mark.parametrize(
    "frames, labels, match",
    [
        ([], [], "at least one frame"),
        (["a", "b"], ["x"], "2 frames but 1 labels"),
        (["a", "b"], ["x", "x"], "distinct"),
    ],
)
def test_precomputed_slider_bad_inputs(frames, labels, match):
    with pytest.raises(ValueError, match=match):
        widgets.precomputed_slider(frames, labels)


# ------------------------------------------------------------------ in a real kernel
@pytest.mark.notebooks
def test_drawings_and_widgets_leave_static_outputs_in_an_executed_notebook(tmp_path):
    """What the book keeps: SVG for Graphviz, PNG for the fallback, widget state."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = [
        "import shutil\nfrom nasedu import genotypes as G, viz, widgets\n"
        "g = G.load('DARTS_V2')",
        "viz.draw_cell(g, 'normal', engine='matplotlib')",
        "widgets.cell_explorer({'DARTS_V2': g})",
    ]
    if HAS_DOT:
        code.append("viz.draw_cell(g, 'reduce', engine='graphviz')")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in code])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [cell.outputs for cell in nb.cells]
    fallback = [o for o in outputs[1] if o.get("output_type") == "execute_result"]
    assert (
        len(outputs[1]) == 1 and "image/png" in fallback[0]["data"]
    )  # shown exactly once
    assert "application/vnd.jupyter.widget-view+json" in outputs[2][0]["data"]
    state = json.dumps(
        nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    )
    assert "<svg" in state and "sep_conv_3x3" in state
    if HAS_DOT:
        assert "image/svg+xml" in outputs[3][0]["data"]
