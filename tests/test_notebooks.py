"""Every chapter notebook executed by papermill at its default ``smoke`` budget.

One test per chapter of ``book/chapters.yml`` whose notebook exists: it ran without error,
its glued results are present and in range, and it took about as long as the chapter
promises (reported, never failed: shared machines are noisy). The *source* notebooks are
checked for hygiene: no committed outputs, kernelspec ``python3``, a ``parameters`` cell.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nbformat
import pytest
from conftest import (
    KERNEL_NAME,
    REPO,
    ChapterRunner,
    cache_executed_notebook,
    existing_chapters,
    glued_values,
    parameter_names,
)

CHAPTERS = existing_chapters()
IDS = [c["name"] for c in CHAPTERS]
PARAMETERS = {"budget", "device", "dataset", "seed"}


class SlowNotebookWarning(UserWarning):
    """A chapter took longer than its ``smoke_seconds_limit``."""


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_executes(chapter: dict, chapter_runner: ChapterRunner) -> None:
    execution = chapter_runner.get(chapter["name"])
    if not execution.ok:
        pytest.fail(
            f"{chapter['file']} failed under papermill (executed copy: "
            f"{execution.output.relative_to(REPO)}):\n{execution.error}"
        )

    glued = glued_values(nbformat.read(execution.output, as_version=4))
    for item in chapter["glue"]:
        name = item["name"]
        assert name in glued, (
            f"{chapter['file']} did not glue {name!r}; glued: {sorted(glued)}"
        )
        low, high = item.get("min"), item.get("max")
        if low is None and high is None:
            continue
        value = glued[name]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (
            f"{chapter['file']}: glued {name!r} = {value!r} is not a number"
        )
        assert (low is None or value >= low) and (high is None or value <= high), (
            f"{chapter['file']}: glued {name!r} = {value} outside [{low}, {high}]"
        )

    limit = chapter["smoke_seconds_limit"]
    if execution.seconds > limit:
        warnings.warn(
            f"{chapter['name']} took {execution.seconds:.0f} s at the smoke budget, "
            f"over its {limit} s limit",
            SlowNotebookWarning,
            stacklevel=1,
        )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_source_notebook_hygiene(chapter: dict) -> None:
    path = REPO / chapter["file"]
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL_NAME, (
        f"{path.name}: kernelspec must be {KERNEL_NAME!r} (papermill and Colab need it), "
        f"got {nb.metadata.get('kernelspec')!r}"
    )
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [
        i for i, c in enumerate(code) if c.outputs or c.execution_count is not None
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have committed outputs; clear them"
    )
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, (
        f"{path.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    )
    missing = PARAMETERS - parameter_names(tagged[0].source)
    assert not missing, f"{path.name}: the parameters cell lacks {sorted(missing)}"


@pytest.mark.notebooks
def test_failing_notebook_fails_papermill(tmp_path: Path) -> None:
    """The harness's guarantee: an error in any cell fails the chapter's test."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {
                "name": KERNEL_NAME,
                "display_name": "Python 3",
                "language": "python",
            }
        }
    )
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise RuntimeError('deliberate failure')"),
    ]
    source = tmp_path / "broken.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(PapermillExecutionError, match="deliberate failure"):
        papermill.execute_notebook(
            source,
            tmp_path / "out.ipynb",
            kernel_name=KERNEL_NAME,
            cwd=tmp_path,
            progress_bar=False,
        )


# ---- the harness's own pieces (no kernel needed) ---------------------------------------------


def _glue_output(name: str, text: str, display: bool) -> dict:
    """An output as myst_nb.glue writes it (myst_nb/ext/glue/__init__.py)."""
    prefix = "" if display else "application/papermill.record/"
    return nbformat.v4.new_output(
        "display_data",
        data={prefix + "text/plain": text},
        metadata={"scrapbook": {"name": name, "mime_prefix": prefix}},
    )


def test_glued_values_reads_both_glue_forms() -> None:
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [
        _glue_output("acc", "0.5", display=False),
        _glue_output("err", "np.float64(2.76)", display=True),
        _glue_output("name", "'DARTS'", display=False),
        _glue_output("obj", "<object at 0x1>", display=False),
        nbformat.v4.new_output("stream", text="0.9\n"),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    assert glued_values(nb) == {
        "acc": 0.5,
        "err": 2.76,
        "name": "DARTS",
        "obj": "<object at 0x1>",
    }


def test_parameter_names() -> None:
    source = (
        'budget = "smoke"  # smoke | colab | paper\ndevice: str = "auto"\nx, y = 1, 2\n'
    )
    assert parameter_names(source) == {"budget", "device"}


def _notebook(code: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {
                "name": KERNEL_NAME,
                "display_name": "Python 3",
                "language": "python",
            }
        }
    )
    nb.cells = [nbformat.v4.new_markdown_cell("# t")] + [
        nbformat.v4.new_code_cell(c) for c in code
    ]
    nb.cells[1].metadata["tags"] = ["parameters"]
    return nb


def test_cached_execution_matches_the_source_key(tmp_path: Path) -> None:
    """What papermill writes is stored under the key myst-nb looks the source up by."""
    from jupyter_cache import get_cache

    source = tmp_path / "ch.ipynb"
    nbformat.write(_notebook(['budget = "smoke"', "print(1)"]), source)
    # papermill's changes: per-cell timing metadata, its own kernelspec and notebook metadata.
    executed_nb = nbformat.read(source, as_version=4)
    executed_nb.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    executed_nb.metadata["papermill"] = {"duration": 1.0}
    executed_nb.metadata["widgets"] = {"state": "kept"}
    for i, cell in enumerate(executed_nb.cells[1:], start=1):
        cell.metadata["papermill"] = {"duration": 0.1, "status": "completed"}
        cell.execution_count = i
    executed_nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    executed = tmp_path / "executed.ipynb"
    nbformat.write(executed_nb, executed)

    cache = get_cache(str(tmp_path / "cache"))
    # Caching papermill's file as it is would never be hit by the book build.
    cache.cache_notebook_file(str(executed), uri=str(source), check_validity=False)
    with pytest.raises(KeyError):
        cache.match_cache_notebook(nbformat.read(source, as_version=4))

    cache_executed_notebook(source, executed, 1.5, tmp_path / "cache")
    _, merged = cache.merge_match_into_notebook(nbformat.read(source, as_version=4))
    assert merged.cells[2].outputs[0]["text"] == "1\n"
    assert merged.metadata["widgets"] == {"state": "kept"}
    assert merged.cells[1].metadata["tags"] == ["parameters"]


def test_cache_refuses_an_injected_cell(tmp_path: Path) -> None:
    source, executed = tmp_path / "ch.ipynb", tmp_path / "executed.ipynb"
    nbformat.write(_notebook(['budget = "smoke"']), source)
    nbformat.write(_notebook(['budget = "smoke"', 'budget = "colab"']), executed)
    with pytest.raises(ValueError, match="different code cells"):
        cache_executed_notebook(source, executed, 1.0, tmp_path / "cache")
