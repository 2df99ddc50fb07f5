"""Every chapter runs in Google Colab as it is committed.

Checked per chapter notebook: the install cell (installs nasedu from the repository of
``_config.yml`` when it is missing, never pins or upgrades Colab's torch, numpy or
ipywidgets), the ``parameters`` cell, kernelspec ``python3``, the metadata that asks Colab
for a GPU, no committed outputs, the budget switch explained before the parameters cell,
and the section on Google Drive and resuming after a disconnect. And the installed
package is the version the book is written against: ``nasedu_version`` in
``book/chapters.yml`` equals ``nasedu.__version__`` and the installed distribution's.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re

import nbformat
import pytest
import yaml
from conftest import CHAPTERS_YML, KERNEL_NAME, REPO, existing_chapters, parameter_names

import nasedu

CONFIG = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf8"))
REPOSITORY = CONFIG["repository"]
CHAPTERS = existing_chapters()
IDS = [c["name"] for c in CHAPTERS]
COLAB_KEPT = (
    "torch",
    "torchvision",
    "numpy",
    "ipywidgets",
)  # Colab's own; never touched
PIP_FORBIDDEN = (
    "-U",
    "--upgrade",
    "--force-reinstall",
    "--upgrade-strategy",
    "-I",
    "--ignore-installed",
    "--no-deps",
)


def _read(chapter: dict) -> nbformat.NotebookNode:
    return nbformat.read(REPO / chapter["file"], as_version=4)


def _code(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _strings(source: str) -> list[str]:
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def install_problems(source: str, repository_url: str, branch: str) -> list[str]:
    """What is wrong with an install cell (empty: nothing)."""
    problems = []
    if not re.search(r"find_spec\(\s*[\"']nasedu[\"']\s*\)\s+is\s+None", source):
        problems.append(
            "it must install only when nasedu is missing: "
            '`if importlib.util.find_spec("nasedu") is None:`'
        )
    if "sys.executable" not in source or "pip" not in _strings(source):
        problems.append(
            "install with [sys.executable, '-m', 'pip', ...] (the kernel's Python)"
        )
    strings = _strings(source)
    allowed = {
        f"nasedu @ git+{repository_url}{tail}"
        for tail in ("", ".git", f"@{branch}", f".git@{branch}")
    }
    requirements = [
        s
        for s in strings
        if "git+" in s
        or s.startswith("nasedu ")
        or s.startswith("nasedu@")
        or s.startswith("nasedu=")
    ]
    if len(requirements) != 1 or requirements[0] not in allowed:
        problems.append(
            f"install exactly 'nasedu @ git+{repository_url}' (repository.url "
            f"of _config.yml, optionally @{branch}); found {requirements}"
        )
    for s in strings:
        name = re.split(r"[\s<>=!~\[;@]", s.strip(), maxsplit=1)[0].lower()
        if name in COLAB_KEPT:
            problems.append(f"it names {s!r}: Colab's preinstalled {name} must be kept")
        if s in PIP_FORBIDDEN:
            problems.append(f"pip option {s!r} would replace Colab's packages")
        if "==" in s:
            problems.append(f"{s!r} pins a version; declare ranges in pyproject.toml")
    return problems


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_install_cell(chapter: dict) -> None:
    first = _code(_read(chapter))[0]
    problems = install_problems(first.source, REPOSITORY["url"], REPOSITORY["branch"])
    assert not problems, (
        f"{chapter['file']}: the first code cell must be the install cell; "
        + "; ".join(problems)
        + f"\n{first.source}"
    )


def test_install_cell_checker_catches_mistakes() -> None:
    url, good = (
        "https://github.com/o/r",
        (
            'import importlib.util, subprocess, sys\nif importlib.util.find_spec("nasedu") is None:'
            '\n    subprocess.run([sys.executable, "-m", "pip", "install", "-q", '
            '"nasedu @ git+https://github.com/o/r"], check=True)\n'
        ),
    )
    assert install_problems(good, url, "main") == []
    assert install_problems(good.replace("o/r", "o/fork"), url, "main")
    assert install_problems(good.replace('"-q", ', '"-q", "-U", '), url, "main")
    assert install_problems(good.replace('"-q", ', '"torch==2.1", '), url, "main")
    assert install_problems(good.replace('"-q", ', '"numpy", '), url, "main")
    assert install_problems(good.replace(" is None", ""), url, "main")
    assert install_problems(good.replace('o/r"', 'o/r@main"'), url, "main") == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_parameters_cell(chapter: dict) -> None:
    nb = _read(chapter)
    tagged = [
        i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])
    ]
    assert len(tagged) == 1, (
        f"{chapter['file']}: one cell tagged 'parameters', not {tagged}"
    )
    cell = nb.cells[tagged[0]]
    assert cell.cell_type == "code"
    missing = {"budget", "device", "dataset", "seed"} - parameter_names(cell.source)
    assert not missing, (
        f"{chapter['file']}: the parameters cell lacks {sorted(missing)}"
    )
    defaults = {
        node.targets[0].id: node.value.value
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    }
    assert defaults.get("budget") == "smoke" and defaults.get("device") == "auto", (
        f"{chapter['file']}: the book runs the defaults: budget 'smoke', device 'auto'"
    )
    # The budget switch is explained above it, where a Colab user starts reading.
    above = " ".join(
        c.source for c in nb.cells[: tagged[0]] if c.cell_type == "markdown"
    )
    for word in ("smoke", "colab", "paper", "parameters"):
        assert word in above, (
            f"{chapter['file']}: explain the budget switch ({word!r}) "
            f"before the parameters cell"
        )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_colab_metadata_and_no_outputs(chapter: dict) -> None:
    nb = _read(chapter)
    assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME
    assert nb.metadata.get("accelerator") == "GPU", (
        f"{chapter['file']}: notebook metadata accelerator: GPU makes Colab offer a GPU"
    )
    assert nb.metadata.get("colab", {}).get("gpuType"), (
        f"{chapter['file']}: set metadata.colab.gpuType (e.g. 'T4', the free GPU)"
    )
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{chapter['file']}: cells {dirty} have committed outputs"


@pytest.mark.parametrize(
    "chapter",
    [c for c in CHAPTERS if c["method"]],
    ids=[c["name"] for c in CHAPTERS if c["method"]],
)
def test_drive_and_resume_explained(chapter: dict) -> None:
    text = " ".join(c.source for c in _read(chapter).cells if c.cell_type == "markdown")
    assert "drive.mount(" in text and "MyDrive" in text, (
        f"{chapter['file']}: show how to put the search's output folder on Google Drive "
        f"(see the section 'Long runs in Colab' of book/intro.ipynb)"
    )
    assert "resume=" in text and "--resume" in text, (
        f"{chapter['file']}: show resuming after a disconnect, with resume= and --resume"
    )


def test_installed_version_is_the_books() -> None:
    book = str(
        yaml.safe_load(CHAPTERS_YML.read_text(encoding="utf8"))["nasedu_version"]
    )
    installed = importlib.metadata.version("nasedu")
    assert nasedu.__version__ == book, (
        f"nasedu.__version__ is {nasedu.__version__} but book/chapters.yml says the book is "
        f"written against {book}; bump both together"
    )
    assert installed == book, (
        f"the installed nasedu is {installed}, the book's is {book}: reinstall "
        f"(pip install -e '.[book,test]')"
    )
