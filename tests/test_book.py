"""The book: table of contents in step with ``book/chapters.yml``, and the build itself.

The build test runs after every chapter has been executed by papermill (the
``executed_notebooks`` fixture), so it reads the executions from the jupyter-cache instead
of running the chapters again; it checks that from myst-nb's own log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import CHAPTERS_YML, REPO, existing_chapters, load_chapters

BUILD_CMD = ["build", ".", "--all", "-W", "--keep-going"]  # the same as `make book`


def _jupyter_book() -> str:
    beside = Path(sys.executable).parent / "jupyter-book"
    found = str(beside) if beside.exists() else shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed (pip install -e '.[book]')")
    return found


def _toc_files(node: dict | list) -> list[str]:
    """Every ``file`` (and the ``root``) named anywhere in a sphinx-external-toc tree."""
    found: list[str] = []
    if isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file"):
                found.append(value)
            elif isinstance(value, (list, dict)):
                found += _toc_files(value)
    return found


def _no_suffix(path: str) -> str:
    return str(Path(path).with_suffix(""))


def test_toc_and_chapters_yml_agree() -> None:
    """Every written chapter is in the book, and every notebook in the book is a chapter
    (Markdown pages, e.g. a page for instructors, need no chapters.yml entry)."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf8"))
    in_toc = [_no_suffix(f) for f in _toc_files(toc)]
    assert len(in_toc) == len(set(in_toc)), f"_toc.yml lists a file twice: {in_toc}"
    missing = [
        f
        for f in in_toc
        if not any((REPO / f).with_suffix(s).is_file() for s in (".ipynb", ".md"))
    ]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"
    notebooks = [f for f in in_toc if (REPO / f).with_suffix(".ipynb").is_file()]
    existing = [_no_suffix(c["file"]) for c in existing_chapters()]
    assert sorted(notebooks) == sorted(existing), (
        f"the notebooks of _toc.yml {notebooks} and the existing chapters of "
        f"{CHAPTERS_YML.name} {existing} must be the same"
    )
    assert notebooks == existing, (
        "_toc.yml must list the chapters in chapters.yml's order"
    )


def test_chapters_yml_is_complete() -> None:
    chapters = load_chapters()  # raises on a missing field or a bad glue range
    bib = (REPO / "book" / "references.bib").read_text(encoding="utf8")
    for chapter in chapters:
        assert f"{{{chapter['paper']}," in bib, (
            f"{chapter['name']}: paper key {chapter['paper']!r} not in book/references.bib"
        )
        assert chapter["file"].startswith("book/") and chapter["file"].endswith(
            ".ipynb"
        )
        assert chapter["budgets"]["smoke"]["needs_gpu"] is False, (
            f"{chapter['name']}: the smoke budget must run on a CPU"
        )
        assert chapter["smoke_seconds_limit"] > 0


def test_config_makes_failures_fail() -> None:
    """The settings without which a failing notebook only warns (JB1's default)."""
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
    execute = config["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert execute["raise_on_error"] is True and execute["allow_errors"] is False
    assert (
        execute["stderr_output"] == "remove"
    )  # remove-warn would fail -W on any stderr
    assert Path(execute["cache"]) == Path(".jupyter_cache")
    assert config["only_build_toc_files"] is True
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"


@pytest.mark.book
@pytest.mark.slow
def test_book_builds_from_the_cache(executed_notebooks: dict) -> None:
    failed = [name for name, e in executed_notebooks.items() if not e.ok]
    jb = _jupyter_book()
    result = subprocess.run(
        [jb, *BUILD_CMD],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"jupyter-book build failed:\n{log[-6000:]}"
    assert not failed, f"the book built although {failed} failed under papermill"
    for execution in executed_notebooks.values():
        page = (
            REPO
            / "_build"
            / "html"
            / Path(execution.chapter["file"]).with_suffix(".html")
        )
        assert page.is_file(), f"{page} was not built"
    # Proof that papermill's executions were reused: myst-nb logs every cache hit and never
    # started a kernel of its own.
    assert log.count("Using cached notebook") == len(executed_notebooks), log[-6000:]
    assert "Executing notebook using" not in log, log[-6000:]


@pytest.mark.book
@pytest.mark.slow
def test_failing_notebook_fails_the_build(tmp_path: Path) -> None:
    """The repository's own _config.yml turns a failing cell into a failed build."""
    (tmp_path / "book").mkdir()
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    shutil.copy(REPO / "book" / "references.bib", tmp_path / "book" / "references.bib")
    shutil.copytree(
        REPO / "book" / "_ext", tmp_path / "book" / "_ext"
    )  # _config.yml loads it
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/broken\n", encoding="utf8"
    )
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3",
                "language": "python",
            }
        }
    )
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell("raise RuntimeError('deliberate failure')"),
    ]
    nbformat.write(nb, tmp_path / "book" / "broken.ipynb")
    result = subprocess.run(
        [_jupyter_book(), *BUILD_CMD],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode != 0, (
        f"a failing notebook built without error:\n{log[-4000:]}"
    )
    assert "deliberate failure" in log
