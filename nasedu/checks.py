"""Checks for the labs: a student's answer in, a plain-language verdict out.

Every chapter ends with a lab (see ``nasedu.labs``): a coding exercise whose solution
cells are removed from the student notebook and replaced by a stub. A ``check`` cell
then calls one function of this module, e.g. ``checks.intro.distinct_cells(fn)``.
The function prints one line starting with ``✔`` when the answer is right and raises
``CheckFailed`` with a message a student understands when it is not, including when
the stub has not been replaced yet. The checks need nothing but ``nasedu`` itself, so
they run in Colab as they run here.

Each chapter's checks live in a ``Checks`` namespace named after the chapter
(``book/chapters.yml``): ``intro`` and ``darts`` below; a new chapter adds its own the
same way (``mychapter = Checks("mychapter")``, then ``@mychapter.add`` on each check),
with a test in ``tests/test_labs.py`` that the right answer passes and typical wrong
ones fail with the intended message.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

from nasedu.genotypes import Genotype
from nasedu.spaces.cell import CellSpace

PASS_MARK = "✔"  # the test suite looks for it in the output of every check cell


class CheckFailed(AssertionError):
    """A lab answer is wrong, or not written yet; the message says what to fix."""

    def _render_traceback_(self) -> list[str]:
        """How IPython (Jupyter, Colab) shows it: the message, without a traceback
        through nasedu that would only hide it."""
        return [f"\x1b[1;31mCheckFailed:\x1b[0m {self}"]


class Checks:
    """The checks of one chapter, reachable as attributes (``checks.intro.name``)."""

    def __init__(self, chapter: str):
        self.chapter = chapter
        self.names: list[str] = []

    def add(self, check: Callable[..., None]) -> Callable[..., None]:
        """Decorator: register ``check`` under its function name."""
        if check.__name__ in self.names:
            raise ValueError(f"chapter {self.chapter!r} already has a check "
                             f"{check.__name__!r}; checks: {', '.join(self.names)}")
        self.names.append(check.__name__)
        setattr(self, check.__name__, check)
        return check

    def __repr__(self) -> str:
        return f"<checks of chapter {self.chapter!r}: {', '.join(self.names)}>"


def fail(message: str) -> None:
    """Raise ``CheckFailed``; IPython hides the frames of the checks themselves."""
    __tracebackhide__ = True  # noqa: F841 (read by IPython and pytest)
    raise CheckFailed(message)


def passed(message: str) -> None:
    print(f"{PASS_MARK} {message}")


def call_student(function: Any, name: str, *args: Any) -> Any:
    """Call the student's ``function``; a stub or a crash becomes a ``CheckFailed``."""
    __tracebackhide__ = True  # noqa: F841
    if function is None:
        fail(f"`{name}` is still None: write the function in the cell above, run it, "
             f"then run this check again.")
    if not callable(function):
        fail(f"`{name}` should be a function, but it is a {type(function).__name__}.")
    try:
        return function(*args)
    except NotImplementedError:
        problem = (f"`{name}` is not written yet: replace the line "
                   f"`raise NotImplementedError(...)` with your code, run that cell, then "
                   f"run this check again.")
    except CheckFailed:
        raise
    except Exception as error:  # any crash of the student's code is reported in words
        problem = (f"`{name}` raised {type(error).__name__}: {error}. Run your function on "
                   f"a small example to find out where.")
    fail(problem)  # outside the except block: no "during handling..." chain to read


def _describe(space: CellSpace) -> str:
    return f"CellSpace(steps={space.steps}, primitives={list(space.primitives)})"


intro = Checks("intro")


# ---- intro, lab 1: the size of the cell space ------------------------------------------------

def distinct_cells_formula(space: CellSpace) -> int:
    """Distinct cells of one type when the two edges of a node are unordered.

    Node i (0-based) picks an unordered pair of distinct inputs among its i + 2
    predecessors and an operation for each edge; swapping the two edges gives the same
    cell because they are summed (chapter *Introduction*, lab 1).
    """
    if not space.distinct_inputs:
        raise ValueError("the lab counts spaces whose two node inputs differ "
                         "(distinct_inputs=True)")
    ops = len(space.primitives)
    return math.prod(math.comb(i + 2, 2) * ops ** 2 for i in range(space.steps))


def distinct_cells_brute_force(space: CellSpace) -> int:
    """The same count by enumerating every ordered cell (only for tiny spaces)."""
    per_node = []
    for node in range(space.steps):
        edges = itertools.product(space.primitives, range(node + 2))
        per_node.append([(a, b) for a, b in itertools.product(edges, repeat=2)
                         if a[1] != b[1]])
    if math.prod(len(choices) for choices in per_node) > 10**6:
        raise ValueError(f"{_describe(space)} is too large to enumerate")
    return len({tuple(tuple(sorted(pair)) for pair in cell)
                for cell in itertools.product(*per_node)})


LAB1_SPACES = (CellSpace(steps=2, primitives=("skip_connect", "max_pool_3x3")),
               CellSpace(),  # the DARTS space of the chapter
               CellSpace(steps=5, primitives=("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3",
                                              "max_pool_3x3", "skip_connect")))


@intro.add
def distinct_cells(count_distinct_cells: Callable[[CellSpace], int]) -> None:
    """Lab 1: ``count_distinct_cells(space)`` counts the distinct normal cells of a
    ``CellSpace`` once the order of a node's two edges no longer matters."""
    __tracebackhide__ = True  # noqa: F841
    for space in LAB1_SPACES:
        answer = call_student(count_distinct_cells, "count_distinct_cells", space)
        if isinstance(answer, bool) or not isinstance(answer, int):
            if isinstance(answer, float) and answer.is_integer():
                fail(f"count_distinct_cells returned the float {answer!r}: counts are "
                     f"whole numbers, return an int (use // and math.comb, not /).")
            fail(f"count_distinct_cells should return an int, got {answer!r}.")
        right = distinct_cells_formula(space)
        if answer == right:
            continue
        ordered = math.prod(math.perm(i + 2, 2) * len(space.primitives) ** 2
                            for i in range(space.steps))  # space.size() ** 0.5, exactly
        if answer == space.size() or answer == right ** 2:
            fail(f"For {_describe(space)} you count (normal, reduction) pairs of cells. "
                 f"The question asks for the normal cells alone.")
        if answer == ordered:
            fail(f"For {_describe(space)} you return the ordered count, "
                 f"space.size() ** 0.5: swapping the two edges of a node is still counted "
                 f"as a different cell. How many ordered pairs of inputs give the same "
                 f"unordered pair?")
        tiny = LAB1_SPACES[0]
        fail(f"For {_describe(space)} count_distinct_cells returns {answer:,}, which is "
             f"not the number of distinct cells. Work the tiny space "
             f"{_describe(tiny)} out by hand: enumerating all its cells gives "
             f"{distinct_cells_brute_force(tiny)} distinct ones. Node i chooses two of its "
             f"i + 2 possible inputs, and an operation for each of the two edges.")
    passed(f"count_distinct_cells is right on {len(LAB1_SPACES)} spaces, the DARTS cell "
           f"space among them.")


# ---- intro, lab 2: random search -------------------------------------------------------------

def _toy_score(genotype: Genotype) -> float:
    """A stand-in for training a child: the share of separable convs in the normal cell."""
    ops = [op for op, _ in genotype.normal]
    return sum(op.startswith("sep_conv") for op in ops) / len(ops)


def _run_random_search(random_search: Callable, space: CellSpace, n: int,
                       seed: int) -> tuple[Any, Any, list[tuple[Genotype, float]]]:
    __tracebackhide__ = True  # noqa: F841
    seen: list[tuple[Genotype, float]] = []

    def evaluate(genotype: Genotype) -> float:
        if not isinstance(genotype, Genotype):
            fail(f"random_search passed {genotype!r} to evaluate; it should pass the "
                 f"architectures that space.sample(rng) returns.")
        score = _toy_score(genotype)
        seen.append((genotype, score))
        return score

    result = call_student(random_search, "random_search", space, evaluate, n,
                          random.Random(seed))
    if not (isinstance(result, tuple) and len(result) == 2):
        fail(f"random_search should return a pair (best_architecture, best_score), got "
             f"{result!r}.")
    return result[0], result[1], seen


@intro.add
def random_search(random_search: Callable) -> None:
    """Lab 2: ``random_search(space, evaluate, n, rng)`` samples ``n`` architectures with
    ``space.sample(rng)``, scores each once with ``evaluate`` and returns the best
    ``(architecture, score)`` (chapter *Introduction*, the search strategy)."""
    __tracebackhide__ = True  # noqa: F841
    space = CellSpace()
    for n in (1, 30):
        best, score, seen = _run_random_search(random_search, space, n, seed=n)
        if len(seen) != n:
            fail(f"With n = {n}, random_search called evaluate {len(seen)} times; it "
                 f"should score exactly n sampled architectures, each once.")
        if not any(best is g or best == g for g, _ in seen):
            fail(f"With n = {n}, random_search returned {best!r}, which it never "
                 f"evaluated: return the best of the architectures you scored.")
        if score != _toy_score(best):
            fail(f"With n = {n}, random_search returned the score {score!r}, but "
                 f"evaluate gives {_toy_score(best)!r} for the architecture it returned: "
                 f"return the architecture together with its own score.")
        top = max(s for _, s in seen)
        if score != top:
            fail(f"With n = {n}, random_search returned the score {score!r}, but the "
                 f"best architecture it evaluated scored {top!r}: keep the maximum.")
    first, _, _ = _run_random_search(random_search, space, 30, seed=7)
    again, _, _ = _run_random_search(random_search, space, 30, seed=7)
    if first != again:
        fail("Two calls with random.Random(7) returned different architectures: draw "
             "every architecture with space.sample(rng), not from the global `random`, "
             "so that a seed reproduces the search.")
    passed("random_search scores n sampled architectures once each and returns the best "
           "with its score, reproducibly for a seeded rng.")


darts = Checks("darts")


# ---- darts, lab 1: derive the discrete cell (DARTS §2.4) -------------------------------------

@darts.add
def derive_cell(derive_cell: Callable) -> None:
    """Lab 1 of chapter *DARTS*: ``derive_cell(weights, primitives)`` reads the 8 edges
    (operation, input) of a 4-node cell off softmax weights of shape (14, ops), as §2.4
    does; compared with ``nasedu.strategies.gradient.derive`` on random weights and on a
    cell where ``none`` wins everywhere."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    from nasedu.ops import DARTS_PRIMITIVES
    from nasedu.strategies.gradient import derive

    g = torch.Generator().manual_seed(1)
    cases = [torch.softmax(3 * torch.randn(14, 8, generator=g), -1) for _ in range(20)]
    none_heavy = torch.full((14, 8), 0.01)
    none_heavy[:, 0] = 0.9  # `none` dominates everywhere
    none_heavy[3, 5] = 0.05  # ... but node 1's edge from state 1 prefers sep_conv_5x5
    cases.append(none_heavy)
    for k, w in enumerate(cases):
        got = call_student(derive_cell, "derive_cell", w.clone(), DARTS_PRIMITIVES)
        try:
            got = [(str(op), int(j)) for op, j in got]
        except (TypeError, ValueError):
            fail(f"derive_cell should return a list of (operation, input) pairs, got {got!r}")
        want = [tuple(e) for e in derive(w, w, DARTS_PRIMITIVES).normal]
        if got != want:
            if any(op == "none" for op, _ in got):
                fail("your cell contains 'none': §2.4 never selects it; leave the 'none' "
                     "column out when you rank edges and choose operations.")
            if len(got) != 8:
                fail(f"a cell of 4 nodes has 8 edges, two per node; you returned {len(got)}.")
            fail(f"on test weights #{k} you return {got}, but §2.4 gives {want}. Check the "
                 f"row ranges of each node, the ranking by the strongest non-none weight, "
                 f"and the order (stronger edge first).")
    passed(f"derive_cell agrees with nasedu's derive on {len(cases)} cells, including one "
           f"where 'none' has the largest weight on every edge.")


# ---- darts, lab 2: the finite-difference Hessian-vector product (Eq. 8) ----------------------

@darts.add
def mixed_hvp(mixed_hvp: Callable) -> None:
    """Lab 2 of chapter *DARTS*: ``mixed_hvp(grad_alpha, w, v, eps)`` approximates
    ∇²_{α,w} L · v by Eq. 8's central difference. Tested on
    L(w, α) = sum(sin(A w) * α) + (α·α)(w·w), whose mixed Hessian is known in closed
    form; a smooth function makes the difference accurate to O(ε²)."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    g = torch.Generator().manual_seed(2)
    A = torch.randn(3, 5, generator=g, dtype=torch.float64)
    alpha = torch.randn(3, generator=g, dtype=torch.float64)
    w = torch.randn(5, generator=g, dtype=torch.float64)
    v = 10 * torch.randn(5, generator=g, dtype=torch.float64)
    queries = []

    def grad_alpha(weights):  # ∇_α L = sin(A w) + 2 α (w·w), recording where it is asked
        queries.append(float((weights - w).norm()))
        return torch.sin(A @ weights) + 2 * alpha * (weights @ weights)

    # ∇²_{α,w} L · v = cos(A w) ⊙ (A v) + 4 α (w·v)
    want = torch.cos(A @ w) * (A @ v) + 4 * alpha * (w @ v)
    got = call_student(mixed_hvp, "mixed_hvp", grad_alpha, w, v, 1e-4)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        fail(f"mixed_hvp should return a tensor shaped like ∇_α L {tuple(want.shape)}, "
             f"got {got!r}")
    if len(queries) != 2 or any(abs(d - 1e-4) > 1e-9 for d in queries):
        fail(f"Eq. 8 evaluates the gradient twice, at w ± ε v with ε = eps / ‖v‖, that "
             f"is at distance eps = 1e-4 from w; your function evaluated it "
             f"{len(queries)} time(s), at distances {[f'{d:.2e}' for d in queries]}.")
    error = float((got - want).norm() / want.norm())
    if error > 1e-6:
        fail(f"relative error {error:.1e} against the exact product; expected below 1e-6. "
             f"Check the sign of the difference and the division by 2ε (not `/ 2 * eps`).")
    passed(f"mixed_hvp matches the exact mixed Hessian-vector product (relative error "
           f"{error:.1e}).")
