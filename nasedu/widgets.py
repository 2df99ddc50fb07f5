"""Widgets of the book: a cell explorer and a frame scrubber.

The rendered book has no kernel, so widget callbacks never run there (Jupyter Book
docs, "Widgets often need a kernel"). What it does show is the widget *state* saved
in the executed notebook. Hence two kinds of widget here:

* **static-safe** (``cell_explorer``, ``precomputed_slider``): every view is computed
  in Python up front and stored as HTML/SVG inside ``Tab`` children, so switching tabs
  (and the linked slider) is pure front-end work that also happens in the book;
* **live** (``live_cell_explorer``): a ``Dropdown`` whose ``observe`` callback draws
  the chosen genotype; Jupyter and Colab only — the book shows its first view.

Only core ipywidgets APIs that exist in both 7.7 (Colab) and 8.x are used:
``Tab(children=...)`` with ``set_title``, ``HTML``, ``HBox``/``VBox``, ``Layout``,
``Dropdown``, ``SelectionSlider``, ``jslink``, ``Output`` with ``outputs``/
``append_display_data``. Chapter *Introduction* shows the published-cell gallery.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import ipywidgets as W

from nasedu.genotypes import Genotype
from nasedu.viz import cell_svg, responsive_svg

CELL_NAMES = {"normal": "normal cell", "reduce": "reduction cell"}


def _caption(name: str, count: int | None, count_note: str) -> str:
    text = f"<b>{html.escape(name)}</b>"
    if count is not None:
        text += f" &middot; {count / 1e6:.2f} M parameters"
        if count_note:
            text += f" <span style='color:#666'>({html.escape(count_note)})</span>"
    return f"<div style='font-size:15px;margin:4px 0 6px'>{text}</div>"


def _cell_html(genotype: Genotype, cell: str) -> str:
    svg = responsive_svg(cell_svg(genotype, cell))
    return (
        f"<div style='text-align:center'><div style='font-size:13px;color:#444'>"
        f"{CELL_NAMES[cell]}</div>{svg}</div>"
    )


def _cell_pair(genotype: Genotype) -> W.HBox:
    """Normal and reduction cell side by side, wrapping onto two rows when narrow."""
    views = [
        W.HTML(
            value=_cell_html(genotype, cell),
            layout=W.Layout(flex="1 1 420px", min_width="320px", margin="0 6px"),
        )
        for cell in ("normal", "reduce")
    ]
    return W.HBox(
        views, layout=W.Layout(flex_flow="row wrap", align_items="center", width="100%")
    )


def _check_genotypes(genotypes: Mapping[str, Genotype]) -> None:
    if not isinstance(genotypes, Mapping) or not genotypes:
        raise ValueError(
            "the explorer needs a non-empty dict {name: Genotype}, e.g. "
            "{n: nasedu.genotypes.load(n) for n in nasedu.genotypes.names()}"
        )
    bad = [name for name, g in genotypes.items() if not isinstance(g, Genotype)]
    if bad:
        raise ValueError(
            f"{bad[0]!r} is not a nasedu.genotypes.Genotype; load it with "
            f"nasedu.genotypes.load or Genotype.from_json"
        )


def _titled_tab(children: Sequence[W.Widget], titles: Sequence[str]) -> W.Tab:
    tab = W.Tab(children=list(children))
    for i, title in enumerate(titles):
        tab.set_title(i, title)  # on both 7.x (_titles) and 8.x (titles)
    tab.selected_index = 0
    return tab


def cell_explorer(
    genotypes: Mapping[str, Genotype],
    counts: Mapping[str, int] | None = None,
    count_note: str = "",
) -> W.Tab:
    """A gallery of cells: one tab per genotype, normal and reduction cell side by side.

    **Works in the static book**: every drawing is precomputed SVG held in ``HTML``
    widgets, so the saved widget state shows all cells and the tabs switch without a
    kernel (chapter *Introduction*, gallery of published cells).

    Args:
        genotypes: ``{name: Genotype}``, shown in this order.
        counts: optional ``{name: parameter count}`` shown in each caption.
        count_note: what the counts are, e.g. ``"CIFAR-10, C=36, 20 cells"``.

    Returns:
        An ``ipywidgets.Tab``; each child is a ``VBox`` of a caption ``HTML`` and an
        ``HBox`` of two ``HTML`` widgets (normal and reduction cell SVGs).
    """
    _check_genotypes(genotypes)
    counts = dict(counts or {})
    unknown = sorted(set(counts) - set(genotypes))
    if unknown:
        raise ValueError(
            f"counts given for unknown genotype {unknown[0]!r}; valid names: "
            f"{', '.join(genotypes)}"
        )
    pages = [
        W.VBox(
            [
                W.HTML(value=_caption(name, counts.get(name), count_note)),
                _cell_pair(genotype),
            ]
        )
        for name, genotype in genotypes.items()
    ]
    return _titled_tab(pages, list(genotypes))


def live_cell_explorer(
    genotypes: Mapping[str, Genotype],
    counts: Mapping[str, int] | None = None,
    count_note: str = "",
) -> W.VBox:
    """A ``Dropdown`` that draws the chosen genotype on demand (``observe`` callback).

    **Live only** (Jupyter, Colab): in the static book the callback cannot run, so
    only the first genotype appears; use ``cell_explorer`` for pages of the book.
    Drawing on demand keeps it quick with many genotypes (e.g. a search's history).

    Args:
        genotypes: ``{name: Genotype}``; the first one is drawn at once.
        counts: optional ``{name: parameter count}`` for the caption.
        count_note: what the counts are.

    Returns:
        A ``VBox`` of the ``Dropdown`` and an ``Output`` holding the drawing.
    """
    _check_genotypes(genotypes)
    counts = dict(counts or {})
    names = list(genotypes)
    choose = W.Dropdown(options=names, value=names[0], description="genotype")
    out = W.Output()

    def show(name: str) -> None:
        from IPython.display import HTML

        page = _caption(name, counts.get(name), count_note) + "".join(
            f"<div style='display:inline-block;vertical-align:middle;max-width:49%'>"
            f"{_cell_html(genotypes[name], cell)}</div>"
            for cell in ("normal", "reduce")
        )
        # Replacing ``outputs`` needs no kernel context, unlike ``clear_output``/``with out``.
        out.outputs = ()
        out.append_display_data(HTML(page))

    choose.observe(lambda change: show(change["new"]), names="value")
    show(names[0])
    return W.VBox([choose, out])


def precomputed_slider(
    frames: Sequence[str], labels: Sequence[str], description: str = ""
) -> W.VBox:
    """Scrub through precomputed HTML/SVG frames, e.g. a cell at each search epoch.

    **Works in the static book**: the frames are ``Tab`` children, and a
    ``SelectionSlider`` is ``jslink``-ed to the tab's ``selected_index`` — both are
    front-end only, so the tabs and the slider move in the rendered HTML too.

    Args:
        frames: HTML strings (``cell_svg`` output, ``<img>`` tags, tables, ...).
        labels: one short label per frame (tab titles and slider readout).
        description: a line of text shown above the frames.

    Returns:
        A ``VBox`` of the description, the slider and the ``Tab`` of frames.
    """
    frames, labels = list(frames), [str(label) for label in labels]
    if not frames:
        raise ValueError("precomputed_slider needs at least one frame")
    if len(frames) != len(labels):
        raise ValueError(
            f"got {len(frames)} frames but {len(labels)} labels; give one label "
            f"per frame"
        )
    if len(set(labels)) != len(labels):
        raise ValueError(
            "precomputed_slider labels must be distinct (the slider selects by label)"
        )
    tab = _titled_tab([W.HTML(value=frame) for frame in frames], labels)
    slider = W.SelectionSlider(
        options=labels,
        value=labels[0],
        description="",
        continuous_update=True,
        layout=W.Layout(width="60%"),
    )
    W.jslink((slider, "index"), (tab, "selected_index"))
    header = W.HTML(
        value=f"<div style='font-size:14px'>{html.escape(description)}</div>"
    )
    return W.VBox([header, slider, tab])
