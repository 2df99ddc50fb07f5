"""Labs: the tag conventions of every chapter, the student and instructor notebooks made
from it, and the checks of ``nasedu.checks``.

The labs are tested without executing whole chapters: ``nasedu.labs.lab_only`` keeps the
``parameters`` cell and the cells from ``lab-start`` on, which must run by themselves in a
fresh kernel (a few seconds per notebook). The instructor's lab must pass every check; the
student's lab, before any code is written, must fail every check with ``CheckFailed``.
"""

from __future__ import annotations

import itertools
import math
import random
import re

import nbformat
import pytest
from conftest import BOOK, KERNEL_NAME, REPO, existing_chapters

from nasedu import checks, labs
from nasedu.spaces.cell import CellSpace

CHAPTERS = existing_chapters()
IDS = [c["name"] for c in CHAPTERS]
LAB_TAGS = (labs.SOLUTION, labs.STUDENT, labs.CHECK)


def _read(chapter: dict) -> nbformat.NotebookNode:
    return nbformat.read(REPO / chapter["file"], as_version=4)


# ---- every chapter follows the conventions (no kernel) ---------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_chapter_has_exercises_and_a_lab(chapter: dict) -> None:
    nb = _read(chapter)
    name = chapter["file"]
    labs.check_tags(nb)  # no solution can leak into the student notebook
    start = labs.lab_start(nb)
    found = labs.exercises(nb)
    assert len(found) >= 3, (
        f"{name}: {len(found)} exercises; every chapter ends with >= 3"
    )
    assert any(e["lab"] for e in found), (
        f"{name}: no exercise after the {labs.LAB_START!r} cell; the lab needs at least one "
        f"checked coding exercise"
    )
    solutions = "\n".join(
        c.source
        for c in nb.cells
        if c.cell_type == "markdown" and labs.SOLUTION in labs.tags(c)
    )
    for exercise in found:
        label = exercise["label"]
        assert label, f"{name}: an exercise without a :label: ({exercise['title']!r})"
        assert re.search(
            r"\{solution(-start)?\}\s+" + re.escape(label) + r"\s*$",
            solutions,
            re.MULTILINE,
        ), f"{name}: exercise {label!r} has no tagged solution"
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "{solution" in cell.source:
            assert (
                ":class: dropdown" in cell.source or "{solution-end}" in cell.source
            ), (
                f"{name}: a solution is not collapsed (add ':class: dropdown'):\n"
                f"{cell.source[:200]}"
            )

    before = [
        c
        for c in nb.cells[:start]
        if c.cell_type == "code" and set(labs.tags(c)) & set(LAB_TAGS)
    ]
    assert not before, (
        f"{name}: code cells tagged {LAB_TAGS} belong after the "
        f"{labs.LAB_START!r} cell; found {[c.source[:40] for c in before]}"
    )
    lab = nb.cells[start + 1 :]
    check_cells = [c for c in lab if labs.CHECK in labs.tags(c)]
    assert check_cells, f"{name}: the lab has no cell tagged {labs.CHECK!r}"
    since_check: set[str] = set()
    for cell in lab:
        cell_tags = set(labs.tags(cell))
        if cell.cell_type == "code" and labs.STUDENT in cell_tags:
            assert labs.STUB_MARK in cell.source or re.search(
                r"=\s*None\b", cell.source
            ), (
                f"{name}: a student stub must raise {labs.STUB_MARK} or leave a variable "
                f"None:\n{cell.source}"
            )
            assert "remove-cell" in cell_tags, (
                f"{name}: tag the student stub 'remove-cell' too, the book shows the solution"
            )
        if cell.cell_type == "code":
            since_check |= cell_tags
        if labs.CHECK in cell_tags:
            assert "checks." in cell.source and "def " not in cell.source, (
                f"{name}: a check cell calls a check of nasedu.checks, e.g. "
                f"`checks.intro.random_search(random_search)`, and defines nothing: write "
                f"the check in nasedu/checks.py (a `Checks({chapter['name']!r})` namespace "
                f"and `@{chapter['name']}.add`), where it is tested and students cannot "
                f"change it; found:\n{cell.source[:300]}"
            )
            missing = {labs.SOLUTION, labs.STUDENT} - since_check
            assert not missing, (
                f"{name}: the check {cell.source.strip()!r} needs a "
                f"{' and a '.join(sorted(missing))} code cell before it"
            )
            since_check = set()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_and_instructor_notebooks(chapter: dict) -> None:
    nb = _read(chapter)
    student, instructor = labs.make_student(nb), labs.make_instructor(nb)
    for made in (student, instructor):
        nbformat.validate(made)
        assert made.metadata["kernelspec"]["name"] == KERNEL_NAME
        ids = [c.id for c in made.cells]
        assert len(ids) == len(set(ids))
        assert all(not c.get("outputs") for c in made.cells if c.cell_type == "code")
    assert not any(labs.SOLUTION in labs.tags(c) for c in student.cells)
    assert not any("{solution" in c.source for c in student.cells)
    assert not any(labs.STUDENT in labs.tags(c) for c in instructor.cells)
    n_checks = sum(labs.CHECK in labs.tags(c) for c in nb.cells)
    for made in (student, instructor):
        assert sum(labs.CHECK in labs.tags(c) for c in made.cells) == n_checks
    stubs = [c for c in student.cells if labs.STUDENT in labs.tags(c)]
    assert stubs and not any(
        t.startswith("remove-") for c in stubs for t in labs.tags(c)
    )
    # The student's code cells are the chapter's, in order, minus the solutions.
    kept = [
        c.source
        for c in nb.cells
        if c.cell_type == "code" and labs.SOLUTION not in labs.tags(c)
    ]
    assert [c.source for c in student.cells if c.cell_type == "code"] == kept


def test_write_labs(tmp_path) -> None:
    written = labs.write_labs(tmp_path)
    assert len(written) == 2 * len(CHAPTERS)
    for chapter in CHAPTERS:
        for audience in ("student", "instructor"):
            path = tmp_path / audience / f"{chapter['name']}.ipynb"
            assert path in written
            nbformat.validate(nbformat.read(path, as_version=4))
    assert "CheckFailed" in (tmp_path / "README.md").read_text(encoding="utf8")
    assert labs.main(["labs", "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "student" / f"{CHAPTERS[0]['name']}.ipynb").is_file()


def _tiny_notebook() -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {
                "name": KERNEL_NAME,
                "display_name": "Python 3",
                "language": "python",
            }
        }
    )
    cells = [
        md("# T"),
        code('budget = "smoke"'),
        md("## Lab"),
        code("from nasedu import checks"),
        code('def f():\n    raise NotImplementedError("write your code here")'),
        md("```{solution-start} t-lab\n:class: dropdown\n```"),
        code("def f():\n    return 1"),
        md("```{solution-end}\n```"),
        code("checks.demo.f(f)"),
    ]
    for cell, cell_tags in zip(
        cells,
        [
            [],
            ["parameters"],
            ["lab-start"],
            [],
            ["student", "remove-cell"],
            ["solution"],
            ["solution"],
            ["solution"],
            ["check"],
        ],
    ):
        cell.metadata["tags"] = cell_tags
    cells[6].outputs = [nbformat.v4.new_output("stream", text="old output\n")]
    nb.cells = cells
    return nb


def test_make_student_and_instructor_on_a_small_notebook() -> None:
    nb = _tiny_notebook()
    student = labs.make_student(nb)
    assert [c.source for c in student.cells if c.cell_type == "code"] == [
        'budget = "smoke"',
        "from nasedu import checks",
        nb.cells[4].source,
        "checks.demo.f(f)",
    ]
    assert student.cells[5].metadata["tags"] == ["student"]  # shown, no longer removed
    assert labs.STUDENT_NOTE == student.cells[1].source
    instructor = labs.make_instructor(nb)
    assert "def f():\n    return 1" in [c.source for c in instructor.cells]
    assert all(c.outputs == [] for c in instructor.cells if c.cell_type == "code")
    assert nb.cells[6].outputs, "the source notebook must not be modified"
    lab = labs.lab_only(instructor)
    assert [c.source for c in lab.cells][:2] == ['budget = "smoke"', "## Lab"]


def test_leaky_or_ambiguous_tags_are_refused() -> None:
    nb = _tiny_notebook()
    nb.cells[5].metadata["tags"] = []  # a {solution-start} cell the student would get
    with pytest.raises(ValueError, match="not tagged 'solution'"):
        labs.make_student(nb)
    nb = _tiny_notebook()
    nb.cells[4].metadata["tags"] = ["student", "solution"]
    with pytest.raises(ValueError, match="both"):
        labs.make_instructor(nb)
    nb.cells[2].metadata["tags"] = []
    with pytest.raises(ValueError, match="exactly one cell tagged 'lab-start'"):
        labs.lab_start(nb)


def test_exercises_are_found_with_their_labels() -> None:
    nb = _tiny_notebook()
    nb.cells[0].source += "\n\n```{exercise} A question\n:label: t-q\nWhy?\n```"
    nb.cells[2].source += "\n\n````{exercise}\n:label: t-lab\n:class: x\nWrite f.\n````"
    assert labs.exercises(nb) == [
        {"label": "t-q", "title": "A question", "lab": False},
        {"label": "t-lab", "title": "", "lab": True},
    ]


def test_grade_needs_an_existing_notebook(tmp_path) -> None:
    with pytest.raises(SystemExit):
        labs.main(["grade", str(tmp_path / "missing.ipynb")])


# ---- the labs run: instructors pass, students fail until they write code ---------------------


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_checks_pass_for_the_instructor_and_fail_for_the_student(chapter: dict) -> None:
    student, instructor = labs.run_lab_versions(_read(chapter), cwd=BOOK, timeout=120)
    name = chapter["file"]
    assert not instructor.errors, (
        f"{name}: the instructor's lab cells failed: {instructor.errors}"
    )
    failed = [
        f"{c.source.strip()}: {c.message}" for c in instructor.checks if not c.passed
    ]
    assert instructor.checks and not failed, f"{name}: checks failed: {failed}"
    assert not student.errors, f"{name}: the student's cells must run: {student.errors}"
    assert len(student.checks) == len(instructor.checks)
    for check in student.checks:
        assert not check.passed and check.error == "CheckFailed", (
            f"{name}: {check.source.strip()!r} must fail with CheckFailed on the unchanged "
            f"stub (else it checks nothing), got: {check.message}"
        )


def test_a_reset_kernel_forgets_the_students_code(tmp_path) -> None:
    """The instructor's half of run_lab_versions cannot lean on the student's names."""
    nb = _tiny_notebook()
    nb.cells[3].source = "from nasedu import checks\nx = 1"
    nb.cells[6].source = "print(x + y)"  # a solution using a name only the stub defines
    nb.cells[4].source = "y = 2"
    nb.cells[8].source = "checks.passed('fine')"
    student, instructor = labs.run_lab_versions(nb, cwd=tmp_path, timeout=60)
    assert student.errors == [] and [c.passed for c in student.checks] == [True]
    assert len(instructor.errors) == 1 and "NameError" in instructor.errors[0]


# ---- nasedu.checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("steps,ops", [(1, 1), (1, 3), (2, 2), (3, 2), (2, 4)])
def test_distinct_cells_formula_equals_enumeration(steps: int, ops: int) -> None:
    primitives = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3")[:ops]
    space = CellSpace(steps=steps, primitives=primitives)
    assert checks.distinct_cells_formula(space) == checks.distinct_cells_brute_force(
        space
    )
    # the ordered count of one cell type, which the lab asks students to reduce
    ordered = len(
        list(
            itertools.product(
                *[
                    [(a, b) for a, b in itertools.permutations(range(n + 2), 2)]
                    for n in range(steps)
                ]
            )
        )
    ) * ops ** (2 * steps)
    assert ordered**2 == space.size()
    assert ordered == checks.distinct_cells_formula(space) * 2**steps


def _distinct(space: CellSpace) -> int:
    return math.prod(
        math.comb(i + 2, 2) * len(space.primitives) ** 2 for i in range(space.steps)
    )


def _stub(*args):
    raise NotImplementedError("write your code here")


def test_distinct_cells_check(capsys) -> None:
    checks.intro.distinct_cells(_distinct)
    assert capsys.readouterr().out.startswith(checks.PASS_MARK)
    wrong = {
        None: "still None",
        _stub: "not written yet",
        (lambda s: s.size()): "pairs",
        (lambda s: round(s.size() ** 0.5)): "ordered",
        (lambda s: float(_distinct(s))): "float",
        (lambda s: 5): "by hand",
        (lambda s: 1 / 0): "ZeroDivisionError",
        42: "should be a function",
    }
    for answer, words in wrong.items():
        with pytest.raises(checks.CheckFailed, match=words):
            checks.intro.distinct_cells(answer)


def _random_search(space, evaluate, n, rng):
    best, best_score = None, -math.inf
    for _ in range(n):
        architecture = space.sample(rng)
        score = evaluate(architecture)
        if score > best_score:
            best, best_score = architecture, score
    return best, best_score


def test_random_search_check(capsys) -> None:
    checks.intro.random_search(_random_search)
    assert capsys.readouterr().out.startswith(checks.PASS_MARK)

    def worst(space, evaluate, n, rng):
        scored = [
            (evaluate(a), i, a)
            for i, a in enumerate(space.sample(rng) for _ in range(n))
        ]
        score, _, a = min(scored)
        return a, score

    def unseeded(space, evaluate, n, rng):
        return _random_search(space, evaluate, n, random.Random())

    def twice(space, evaluate, n, rng):
        best, score = _random_search(space, evaluate, n, rng)
        evaluate(best)
        return best, score

    def other_score(space, evaluate, n, rng):
        best, score = _random_search(space, evaluate, n, rng)
        return best, score + 1

    def never_seen(space, evaluate, n, rng):
        _random_search(space, evaluate, n, rng)
        return space.sample(random.Random(123)), 2.0

    wrong = {
        _stub: "not written yet",
        worst: "keep the maximum",
        unseeded: "seed",
        twice: "called evaluate",
        other_score: "its own score",
        never_seen: "never evaluated",
        (lambda *a: None): "pair",
    }
    for answer, words in wrong.items():
        with pytest.raises(checks.CheckFailed, match=words):
            checks.intro.random_search(answer)


def test_checks_namespace() -> None:
    assert checks.intro.names == ["distinct_cells", "random_search"]
    assert issubclass(checks.CheckFailed, AssertionError)
    with pytest.raises(ValueError, match="already has a check 'distinct_cells'"):
        checks.intro.add(checks.intro.distinct_cells)


def test_darts_checks(capsys) -> None:
    gradient = pytest.importorskip("nasedu.strategies.gradient")
    import torch

    def derive_cell(weights, primitives):
        return list(gradient.derive(weights, weights, primitives).normal)

    def mixed_hvp(grad_alpha, w, v, eps=0.01):
        e = eps / v.norm()
        return (grad_alpha(w + e * v) - grad_alpha(w - e * v)) / (2 * e)

    checks.darts.derive_cell(derive_cell)
    checks.darts.mixed_hvp(mixed_hvp)
    assert capsys.readouterr().out.count(checks.PASS_MARK) == 2

    def weaker_first(weights, primitives):
        edges = derive_cell(weights, primitives)
        return [e for pair in zip(edges[1::2], edges[0::2]) for e in pair]

    def argmax_with_none(weights, primitives):
        return [
            (primitives[int(row.argmax())], j)
            for row, (_, j) in zip(weights, derive_cell(weights, primitives))
        ]

    def forward_difference(grad_alpha, w, v, eps=0.01):
        e = eps / v.norm()
        return (grad_alpha(w + e * v) - grad_alpha(w)) / e

    def precedence_bug(grad_alpha, w, v, eps=0.01):
        e = eps / v.norm()
        return (grad_alpha(w + e * v) - grad_alpha(w - e * v)) / 2 * e

    for answer, words in {
        weaker_first: "§2.4 gives",
        argmax_with_none: "'none'",
        _stub: "not written yet",
    }.items():
        with pytest.raises(checks.CheckFailed, match=words):
            checks.darts.derive_cell(answer)
    for answer, words in {
        forward_difference: "twice",
        precedence_bug: "relative error",
        (lambda *a: torch.zeros(2)): "shaped like",
    }.items():
        with pytest.raises(checks.CheckFailed, match=words):
            checks.darts.mixed_hvp(answer)


def test_a_failed_check_reads_as_one_message() -> None:
    """In Jupyter and Colab a student sees the message, not a traceback through nasedu."""
    with pytest.raises(checks.CheckFailed) as failure:
        checks.intro.random_search(_stub)
    assert (
        failure.value.__context__ is None
    )  # no "during handling of NotImplementedError"
    lines = failure.value._render_traceback_()
    assert len(lines) == 1 and "not written yet" in lines[0]
