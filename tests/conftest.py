"""Shared test machinery: every chapter executed once per session, then reused.

The chapters listed in ``book/chapters.yml`` (those whose notebook exists) are executed by
papermill at their default ``smoke`` budget, once per test session, whichever test asks first:
``tests/test_notebooks.py`` checks each executed notebook, ``tests/test_book.py`` builds the
book from the same executions. Each executed notebook is written to
``_build/executed/<name>.ipynb`` and stored in the Jupyter Book execution cache
(``.jupyter_cache``) under the key myst-nb computes for the *source* notebook, so the book
build that follows does not execute the chapters a second time.

At the end of the run a table of per-notebook execution times is printed.
"""

from __future__ import annotations

import ast
import copy
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
CHAPTERS_YML = BOOK / "chapters.yml"
EXECUTED_DIR = REPO / "_build" / "executed"
CACHE_DIR = REPO / ".jupyter_cache"  # must match `execute.cache` in _config.yml
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600  # same as `execute.timeout` in _config.yml
BUDGET_NAMES = ("smoke", "colab", "paper")
REQUIRED_KEYS = (
    "name",
    "file",
    "title",
    "paper",
    "method",
    "smoke_seconds_limit",
    "budgets",
    "glue",
)


# ---- chapter metadata ------------------------------------------------------------------------


def load_chapters(path: Path = CHAPTERS_YML) -> list[dict[str, Any]]:
    """All chapters of ``book/chapters.yml`` in book order, checked for the fields the
    harness and the compute badges rely on.

    Raises:
        ValueError: a missing field, a duplicate name, an unknown budget or a bad glue range.
    """
    chapters = yaml.safe_load(path.read_text(encoding="utf8"))["chapters"]
    seen: set[str] = set()
    for chapter in chapters:
        missing = [key for key in REQUIRED_KEYS if key not in chapter]
        if missing:
            raise ValueError(
                f"{path.name}: chapter {chapter.get('name')!r} lacks {missing}; "
                f"required fields: {', '.join(REQUIRED_KEYS)}"
            )
        if chapter["name"] in seen:
            raise ValueError(f"{path.name}: duplicate chapter name {chapter['name']!r}")
        seen.add(chapter["name"])
        if set(chapter["budgets"]) != set(BUDGET_NAMES):
            raise ValueError(
                f"{path.name}: chapter {chapter['name']!r} has budgets "
                f"{sorted(chapter['budgets'])}; expected {list(BUDGET_NAMES)}"
            )
        for item in chapter["glue"]:
            low, high = item.get("min"), item.get("max")
            if "name" not in item or (
                low is not None and high is not None and low > high
            ):
                raise ValueError(
                    f"{path.name}: chapter {chapter['name']!r} has a bad glue "
                    f"entry {item!r}; expected {{name, min?, max?}}, min <= max"
                )
    return chapters


def existing_chapters(path: Path = CHAPTERS_YML) -> list[dict[str, Any]]:
    """The chapters whose notebook has been written (the others are the plan)."""
    return [c for c in load_chapters(path) if (REPO / c["file"]).is_file()]


# ---- reading notebooks -----------------------------------------------------------------------


def _parse_repr(text: str) -> Any:
    """A glued value back from its ``text/plain`` repr, without ``eval``.

    Literals parse directly; numpy scalars print as ``np.float64(0.5)`` under numpy 2, so a
    single-argument call wrapping a literal is unwrapped. Anything else stays a string.
    """
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    match = re.fullmatch(r"[\w.]+\((.*)\)", text, flags=re.DOTALL)
    if match:
        try:
            return ast.literal_eval(match.group(1))
        except (ValueError, SyntaxError):
            pass
    return text


def glued_values(nb: Any) -> dict[str, Any]:
    """Every value glued by myst-nb's ``glue`` (also through ``nasedu.notebook.glue``).

    Glue outputs carry ``metadata.scrapbook = {name, mime_prefix}`` and data under
    ``mime_prefix + mime`` (prefix ``application/papermill.record/`` when ``display=False``).
    The value is read back from its ``text/plain`` form.
    """
    values: dict[str, Any] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            if not scrap or output.get("output_type") not in (
                "display_data",
                "execute_result",
            ):
                continue
            text = output["data"].get(scrap.get("mime_prefix", "") + "text/plain")
            values[scrap["name"]] = None if text is None else _parse_repr(text)
    return values


def parameter_names(source: str) -> set[str]:
    """Names assigned at the top level of a ``parameters`` cell."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else ([node.target] if isinstance(node, ast.AnnAssign) else [])
        )
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


# ---- the execution cache ---------------------------------------------------------------------


def cache_executed_notebook(
    source: Path, executed: Path, seconds: float, cache_dir: Path = CACHE_DIR
) -> int:
    """Store a papermill-executed notebook in the jupyter-cache the book build reads.

    myst-nb looks a page up by the hash of its *source* notebook: the code cells' source and
    metadata and the notebook's ``kernelspec`` (``jupyter_cache.cache.main.
    create_hashed_notebook``). papermill adds its own cell metadata and may rewrite the
    kernelspec, so caching the executed file as is would never match. Instead the source
    notebook is stored with the executed outputs and execution counts moved into its code
    cells, and with the executed run's ``language_info`` and ``widgets`` metadata (the keys
    myst-nb merges back into the page).

    Returns:
        The cache record's primary key.

    Raises:
        ValueError: the executed notebook's code cells do not line up with the source's
            (papermill injected or dropped a cell), or the stored notebook does not match the
            source (the book build would execute it again).
    """
    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    src = nbformat.read(source, as_version=4)
    run = nbformat.read(executed, as_version=4)
    src_code = [c for c in src.cells if c.cell_type == "code"]
    run_code = [c for c in run.cells if c.cell_type == "code"]
    if [c.source for c in src_code] != [c.source for c in run_code]:
        raise ValueError(
            f"{executed} has different code cells from {source}; papermill must "
            f"run without parameters so that no cell is injected"
        )
    bundle_nb = copy.deepcopy(src)
    for key in ("language_info", "widgets"):
        if key in run.metadata:
            bundle_nb.metadata[key] = run.metadata[key]
    for cell, ran in zip(
        (c for c in bundle_nb.cells if c.cell_type == "code"), run_code, strict=True
    ):
        cell.outputs = ran.outputs
        cell.execution_count = ran.execution_count
    cache = get_cache(str(cache_dir))
    record = cache.cache_notebook_bundle(
        CacheBundleIn(bundle_nb, str(source), data={"execution_seconds": seconds}),
        check_validity=False,
        overwrite=True,
    )
    try:
        matched = cache.match_cache_notebook(src)
    except KeyError:
        matched = None
    if matched is None or matched.pk != record.pk:
        raise ValueError(f"cached {executed} does not match the key of {source}")
    return record.pk


# ---- executing the chapters ------------------------------------------------------------------


@dataclass
class Execution:
    """One chapter executed by papermill at its default (``smoke``) parameters."""

    chapter: dict[str, Any]
    source: Path
    output: Path
    seconds: float
    error: str | None = None  # the papermill error, None when every cell ran
    cache_pk: int | None = None  # jupyter-cache record, None when not cached

    @property
    def ok(self) -> bool:
        return self.error is None


class ChapterRunner:
    """Executes each chapter at most once per session and remembers the result."""

    def __init__(self, chapters: list[dict[str, Any]]):
        self.chapters = {c["name"]: c for c in chapters}
        self.executions: dict[str, Execution] = {}

    def get(self, name: str) -> Execution:
        if name not in self.executions:
            self.executions[name] = self._execute(self.chapters[name])
        return self.executions[name]

    def all(self) -> list[Execution]:
        return [self.get(name) for name in self.chapters]

    def _execute(self, chapter: dict[str, Any]) -> Execution:
        import papermill

        source = REPO / chapter["file"]
        output = EXECUTED_DIR / f"{chapter['name']}.ipynb"
        output.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        error = None
        try:
            # No parameters: the notebook runs at the defaults of its parameters cell (smoke),
            # exactly as the book build would, so the execution can be cached for it.
            papermill.execute_notebook(
                source,
                output,
                kernel_name=KERNEL_NAME,
                cwd=source.parent,
                execution_timeout=CELL_TIMEOUT_S,
                progress_bar=False,
            )
        except Exception as exc:  # any failure: reported by the chapter's test
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            error = re.sub(
                r"\x1b\[[0-9;]*m", "", error
            )  # the kernel's traceback colours
        seconds = time.perf_counter() - start
        execution = Execution(chapter, source, output, seconds, error)
        if execution.ok:
            execution.cache_pk = cache_executed_notebook(source, output, seconds)
        return execution


_RUNNER = pytest.StashKey[ChapterRunner]()


@pytest.fixture(scope="session")
def chapter_runner(request: pytest.FixtureRequest) -> ChapterRunner:
    """The session's runner; ``runner.get(name)`` executes a chapter on first use."""
    stash = request.config.stash
    if _RUNNER not in stash:
        stash[_RUNNER] = ChapterRunner(existing_chapters())
    return stash[_RUNNER]


@pytest.fixture(scope="session")
def executed_notebooks(chapter_runner: ChapterRunner) -> dict[str, Execution]:
    """Every existing chapter executed (and cached for the book build), by name."""
    return {e.chapter["name"]: e for e in chapter_runner.all()}


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Print the per-notebook execution times of this run."""
    runner = config.stash.get(_RUNNER, None)
    if runner is None or not runner.executions:
        return
    tr = terminalreporter
    tr.section("notebook execution times (papermill, smoke budget)")
    tr.write_line(f"{'notebook':<16} {'seconds':>8} {'limit':>6}  status")
    total = 0.0
    for name, e in runner.executions.items():
        limit = e.chapter["smoke_seconds_limit"]
        status = "ok" if e.ok else "FAILED"
        if e.ok and e.seconds > limit:
            status = "ok, over the smoke limit"
        total += e.seconds
        tr.write_line(f"{name:<16} {e.seconds:>8.1f} {limit:>6}  {status}")
    tr.write_line(f"{'total':<16} {total:>8.1f}")
