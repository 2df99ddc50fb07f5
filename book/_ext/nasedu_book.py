"""Sphinx extension of the nasedu book: compute badges, the instructors' table, and
hidden gated solutions.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``. Everything it shows comes
from ``book/chapters.yml`` (the metadata the tests use), ``data/papers/*.json`` (sourced
paper costs) and the execution times myst-nb records while building: the time a chapter
took at the ``smoke`` budget is the papermill run of ``make test`` (stored with the
execution cache) or myst-nb's own run in ``make book``. Nothing here is typed by hand.

* Every chapter page gets a **compute badge** under its title: ``smoke`` on a CPU (the
  time measured for this build), ``colab`` on a free GPU (``measured.colab`` in
  chapters.yml, else "not measured yet"), ``paper`` on the paper's hardware (the search
  cost reported in ``data/papers``, named by the chapter's ``paper_cost``).
* ``{nasedu-chapter-table}`` renders the table of the page *For instructors*: measured
  times, whether a chapter fits a 90-minute lab, and what its lab asks.
* sphinx-exercise 1.2.1 crashes on gated solutions (``{solution-start}`` /
  ``{solution-end}``, which wrap code cells) when ``hide_solutions`` is set: the start
  directive returns nothing while the end node stays, and the HTML writer cannot visit
  it. Here the start leaves a marker instead, and everything from it to the end node is
  dropped, so the student edition has neither the text nor the code of a solution; the
  outputs of ``check`` cells go too.
"""

from __future__ import annotations

import html
import os
import platform
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)
LAB_MINUTES = 90
RUN_SHARE = 1 / 3  # a chapter fits a lab when running it takes at most a third of it
TABLE_KEY = "nasedu_chapter_table"


# ---- the metadata ----------------------------------------------------------------------------


def _chapters(app: Sphinx) -> list[dict[str, Any]]:
    """The chapters of this build (written and in the table of contents); none for a book
    without ``book/chapters.yml`` (a test's)."""
    from nasedu.labs import load_chapters

    if not (Path(app.srcdir) / "book" / "chapters.yml").is_file():
        return []
    return [
        c for c in load_chapters(Path(app.srcdir)) if _docname(c) in app.env.found_docs
    ]


def _docname(chapter: dict[str, Any]) -> str:
    return Path(chapter["file"]).with_suffix("").as_posix()


def _smoke_seconds(env: Any, docname: str) -> float | None:
    """The execution time myst-nb recorded for a page (papermill's, on a cache hit)."""
    from myst_nb.sphinx_ import NbMetadataCollector

    data = NbMetadataCollector.get_doc_data(env).get(docname, {}).get("exec_data") or {}
    return data.get("runtime") if data.get("succeeded", True) else None


def _cpu() -> str:
    """This machine's CPU in words: the smoke times are measured on it."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _paper_cost(chapter: dict[str, Any]) -> dict[str, str] | None:
    """The paper's search cost with its source, from ``data/papers`` (None: not sourced)."""
    from nasedu import reported

    ref = chapter.get("paper_cost")
    if not ref:
        return None
    row = reported.result(ref["paper"], ref["result"])  # raises on an unknown name
    if "search_cost_gpu_days" not in row:
        return None
    return {
        "cost": f"{row['search_cost_gpu_days']:g} GPU-days",
        "source": f"{row['paper'].split(' (')[0]}, {row['source'].split(' (')[0]}",
        "hardware": row.get("hardware", ""),
    }


def chapter_costs(env: Any, chapter: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per budget: ``where`` (the hardware), ``cost`` (measured time or sourced cost,
    None when there is none), ``seconds`` (a measured run time) and ``note`` (where the
    number comes from)."""
    smoke = _smoke_seconds(env, _docname(chapter))
    colab = (chapter.get("measured") or {}).get("colab")
    paper = _paper_cost(chapter)
    return {
        "smoke": {
            "where": "CPU",
            "seconds": smoke,
            "cost": None if smoke is None else _duration(smoke),
            "note": (
                f"measured when this page was built, on {_cpu()}"
                if smoke is not None
                else "not executed by this build"
            ),
        },
        "colab": {
            "where": colab["hardware"] if colab else "free GPU",
            "seconds": colab["seconds"] if colab else None,
            "cost": _duration(colab["seconds"]) if colab else None,
            "note": (
                f"measured {colab['date']} on {colab['hardware']}"
                if colab
                else "no run at this budget has been measured yet"
            ),
        },
        "paper": {
            "where": paper["hardware"] if paper else "the paper's hardware",
            "seconds": None,
            "cost": paper["cost"] if paper else None,
            "note": (
                paper["source"] if paper else chapter["budgets"]["paper"]["describe"]
            ),
        },
    }


def _cost_text(budget: str, cost: dict[str, Any]) -> str:
    if cost["cost"] is None:
        return "not sourced yet" if budget == "paper" else "not measured yet"
    return cost["cost"]


# ---- compute badges --------------------------------------------------------------------------

BADGE_COLORS = {"smoke": "#2e7d32", "colab": "#b34700", "paper": "#1565c0"}
BADGE_LABELS = {"smoke": "smoke · CPU", "colab": "colab · free GPU", "paper": "paper"}


def badge_html(costs: dict[str, dict[str, Any]]) -> str:
    """Three two-part badges, budget | time or cost; the tooltip says where from."""
    parts = []
    for budget, cost in costs.items():
        tip = f"{budget} budget on {cost['where']}: {cost['note']}"
        parts.append(
            f'<span class="nasedu-badge nasedu-badge-{budget}" title="{html.escape(tip)}">'
            f'<span class="nasedu-badge-budget" style="background:{BADGE_COLORS[budget]}">'
            f'{BADGE_LABELS[budget]}</span><span class="nasedu-badge-cost">'
            f"{html.escape(_cost_text(budget, cost))}</span></span>"
        )
    return (
        '<div class="nasedu-badges" role="note" aria-label="compute budget">'
        '<span class="nasedu-badges-label">compute</span>' + "".join(parts) + "</div>"
    )


class InsertBadges(SphinxPostTransform):
    """Put the compute badge under the title of every chapter page."""

    default_priority = 8
    formats = ("html",)

    def run(self, **kwargs: Any) -> None:
        chapter = {_docname(c): c for c in _chapters(self.app)}.get(self.env.docname)
        if chapter is None:
            return
        section = next(iter(self.document.findall(nodes.section)), None)
        if section is None or not isinstance(section[0], nodes.title):
            return
        raw = nodes.raw("", badge_html(chapter_costs(self.env, chapter)), format="html")
        section.insert(1, raw)


# ---- the instructors' table -----------------------------------------------------------------


class ChapterTableNode(nodes.General, nodes.Element):
    """Placeholder for the chapter table, filled once every page has been executed."""


class ChapterTable(SphinxDirective):
    """``{nasedu-chapter-table}``: one row per written chapter (page *For instructors*)."""

    def run(self) -> list[nodes.Node]:
        from myst_nb.sphinx_ import NbMetadataCollector

        NbMetadataCollector.set_doc_data(self.env, self.env.docname, TABLE_KEY, True)
        return [ChapterTableNode()]


def _fits(budget: str, cost: dict[str, Any]) -> str:
    if cost["seconds"] is None:
        return _cost_text(budget, cost)
    fits = cost["seconds"] <= LAB_MINUTES * 60 * RUN_SHARE
    return (
        f"{cost['cost']}: {'fits' if fits else 'too long for'} a {LAB_MINUTES}-min lab"
    )


def _para(*children: nodes.Node | str) -> nodes.paragraph:
    para = nodes.paragraph()
    for child in children:
        para += nodes.Text(child) if isinstance(child, str) else child
    return para


def _link(fromdoc: str, todoc: str, text: str, label: str | None = None) -> nodes.Node:
    ref = pending_xref(
        "",
        refdomain="std",
        reftype="ref" if label else "doc",
        reftarget=label or "/" + todoc,
        refdoc=fromdoc,
        refexplicit=True,
        refwarn=True,
    )
    ref += nodes.inline(text=text)
    return ref


def chapter_table(app: Sphinx, env: Any, fromdoc: str) -> nodes.table:
    import nbformat

    from nasedu.labs import exercises

    header = [
        "chapter",
        "smoke, on a CPU",
        "colab, on Colab's free GPU",
        "paper",
        "what the lab asks",
    ]
    rows = []
    for chapter in _chapters(app):
        costs = chapter_costs(env, chapter)
        nb = nbformat.read(Path(app.srcdir) / chapter["file"], as_version=4)
        found = exercises(nb)
        asks = _para()
        for i, ex in enumerate(e for e in found if e["lab"]):
            if i:
                asks += nodes.Text("; ")
            asks += _link(
                fromdoc, _docname(chapter), ex["title"] or ex["label"], ex["label"]
            )
        asks += nodes.Text(
            f" (checked), plus {sum(not e['lab'] for e in found)} questions"
        )
        paper = costs["paper"]
        rows.append(
            [
                _para(
                    _link(fromdoc, _docname(chapter), chapter["title"].split(":")[0])
                ),
                _para(_fits("smoke", costs["smoke"])),
                _para(_fits("colab", costs["colab"])),
                _para(
                    _cost_text("paper", paper)
                    + (f" ({paper['note']})" if paper["cost"] is not None else "")
                ),
                asks,
            ]
        )
    table = nodes.table(classes=["colwidths-auto", "nasedu-chapter-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)
    head, body = nodes.thead(), nodes.tbody()
    group += head
    group += body
    head += nodes.row("", *(nodes.entry("", _para(h)) for h in header))
    for cells in rows:
        body += nodes.row("", *(nodes.entry("", cell) for cell in cells))
    return table


class FillChapterTable(SphinxPostTransform):
    default_priority = 8  # before the references are resolved (10)

    def run(self, **kwargs: Any) -> None:
        for node in list(self.document.findall(ChapterTableNode)):
            caption = _para(
                f"The smoke times were measured while this book was built, on {_cpu()}."
            )
            node.replace_self(
                [chapter_table(self.app, self.env, self.env.docname), caption]
            )


def _pages_with_table(app: Sphinx, env: Any) -> list[str]:
    """Rewrite the table's page on every build: the times may have changed."""
    from myst_nb.sphinx_ import NbMetadataCollector

    return [
        d
        for d, data in NbMetadataCollector.get_doc_data(env).items()
        if data.get(TABLE_KEY)
    ]


# ---- gated solutions under hide_solutions ----------------------------------------------------


class HiddenSolutionStart(nodes.General, nodes.Element):
    """Where a gated solution began; removed with everything up to its end."""


def _solution_start_directive():
    from sphinx_exercise.directive import SolutionStartDirective

    class SolutionStart(SolutionStartDirective):
        def run(self) -> list[nodes.Node]:
            result = super().run()  # registers the gate, so the structure checks pass
            return [HiddenSolutionStart()] if self.config.hide_solutions else result

    return SolutionStart


class DropHiddenGatedSolutions(SphinxTransform):
    """In the student edition, drop gated solutions, and the outputs of ``check`` cells
    (the instructor's ✔ would tell the answer)."""

    default_priority = 9  # before sphinx-exercise merges gated solutions (10)

    def apply(self, **kwargs: Any) -> None:
        from sphinx_exercise.nodes import solution_end_node

        if not self.config.hide_solutions:
            return
        for cell in list(self.document.findall(nodes.container)):
            if "tag_check" in cell["classes"]:
                for child in list(cell.children):
                    if "cell_output" in child.get("classes", []):
                        cell.remove(child)
        for start in list(self.document.findall(HiddenSolutionStart)):
            parent = start.parent
            siblings = list(parent.children)
            first = siblings.index(start)
            last = next(
                (
                    i
                    for i in range(first, len(siblings))
                    if isinstance(siblings[i], solution_end_node)
                ),
                None,
            )
            if last is None:
                LOGGER.warning(
                    "solution-start without a solution-end in the same section",
                    location=start,
                )
                parent.remove(start)
                continue
            for child in siblings[first : last + 1]:
                parent.remove(child)


# ---- setup -----------------------------------------------------------------------------------


def _add_static(app: Sphinx, config: Any) -> None:
    config.html_static_path.append(str(Path(__file__).parent / "static"))


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension(
        "sphinx_exercise"
    )  # its directives first: one is replaced below
    app.setup_extension("myst_nb")
    app.add_directive("solution-start", _solution_start_directive(), override=True)
    app.add_node(HiddenSolutionStart)
    app.add_transform(DropHiddenGatedSolutions)
    app.add_node(ChapterTableNode)
    app.add_directive("nasedu-chapter-table", ChapterTable)
    app.add_post_transform(FillChapterTable)
    app.add_post_transform(InsertBadges)
    app.connect("env-updated", _pages_with_table)
    app.connect("config-inited", _add_static)
    app.add_css_file("nasedu-book.css")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
