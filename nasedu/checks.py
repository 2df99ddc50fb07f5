"""Checks for the labs: a student's answer in, a plain-language verdict out.

Every chapter ends with a lab (see ``nasedu.labs``): a coding exercise whose solution
cells are removed from the student notebook and replaced by a stub. A ``check`` cell
then calls one function of this module, e.g. ``checks.intro.distinct_cells(fn)``.
The function prints one line starting with ``✔`` when the answer is right and raises
``CheckFailed`` with a message a student understands when it is not, including when
the stub has not been replaced yet. The checks need nothing but ``nasedu`` itself, so
they run in Colab as they run here.

Each chapter's checks live in a ``Checks`` namespace named after the chapter
(``book/chapters.yml``): ``intro``, ``darts``, ``autokeras``, ``nasbot`` and
``snas`` below; a new chapter adds its own the
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
            raise ValueError(
                f"chapter {self.chapter!r} already has a check "
                f"{check.__name__!r}; checks: {', '.join(self.names)}"
            )
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
        fail(
            f"`{name}` is still None: write the function in the cell above, run it, "
            f"then run this check again."
        )
    if not callable(function):
        fail(f"`{name}` should be a function, but it is a {type(function).__name__}.")
    try:
        return function(*args)
    except NotImplementedError:
        problem = (
            f"`{name}` is not written yet: replace the line "
            f"`raise NotImplementedError(...)` with your code, run that cell, then "
            f"run this check again."
        )
    except CheckFailed:
        raise
    except Exception as error:  # any crash of the student's code is reported in words
        problem = (
            f"`{name}` raised {type(error).__name__}: {error}. Run your function on "
            f"a small example to find out where."
        )
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
        raise ValueError(
            "the lab counts spaces whose two node inputs differ (distinct_inputs=True)"
        )
    ops = len(space.primitives)
    return math.prod(math.comb(i + 2, 2) * ops**2 for i in range(space.steps))


def distinct_cells_brute_force(space: CellSpace) -> int:
    """The same count by enumerating every ordered cell (only for tiny spaces)."""
    per_node = []
    for node in range(space.steps):
        edges = itertools.product(space.primitives, range(node + 2))
        per_node.append(
            [(a, b) for a, b in itertools.product(edges, repeat=2) if a[1] != b[1]]
        )
    if math.prod(len(choices) for choices in per_node) > 10**6:
        raise ValueError(f"{_describe(space)} is too large to enumerate")
    return len(
        {
            tuple(tuple(sorted(pair)) for pair in cell)
            for cell in itertools.product(*per_node)
        }
    )


LAB1_SPACES = (
    CellSpace(steps=2, primitives=("skip_connect", "max_pool_3x3")),
    CellSpace(),  # the DARTS space of the chapter
    CellSpace(
        steps=5,
        primitives=(
            "sep_conv_3x3",
            "sep_conv_5x5",
            "avg_pool_3x3",
            "max_pool_3x3",
            "skip_connect",
        ),
    ),
)


@intro.add
def distinct_cells(count_distinct_cells: Callable[[CellSpace], int]) -> None:
    """Lab 1: ``count_distinct_cells(space)`` counts the distinct normal cells of a
    ``CellSpace`` once the order of a node's two edges no longer matters."""
    __tracebackhide__ = True  # noqa: F841
    for space in LAB1_SPACES:
        answer = call_student(count_distinct_cells, "count_distinct_cells", space)
        if isinstance(answer, bool) or not isinstance(answer, int):
            if isinstance(answer, float) and answer.is_integer():
                fail(
                    f"count_distinct_cells returned the float {answer!r}: counts are "
                    f"whole numbers, return an int (use // and math.comb, not /)."
                )
            fail(f"count_distinct_cells should return an int, got {answer!r}.")
        right = distinct_cells_formula(space)
        if answer == right:
            continue
        ordered = math.prod(
            math.perm(i + 2, 2) * len(space.primitives) ** 2 for i in range(space.steps)
        )  # space.size() ** 0.5, exactly
        if answer == space.size() or answer == right**2:
            fail(
                f"For {_describe(space)} you count (normal, reduction) pairs of cells. "
                f"The question asks for the normal cells alone."
            )
        if answer == ordered:
            fail(
                f"For {_describe(space)} you return the ordered count, "
                f"space.size() ** 0.5: swapping the two edges of a node is still counted "
                f"as a different cell. How many ordered pairs of inputs give the same "
                f"unordered pair?"
            )
        tiny = LAB1_SPACES[0]
        fail(
            f"For {_describe(space)} count_distinct_cells returns {answer:,}, which is "
            f"not the number of distinct cells. Work the tiny space "
            f"{_describe(tiny)} out by hand: enumerating all its cells gives "
            f"{distinct_cells_brute_force(tiny)} distinct ones. Node i chooses two of its "
            f"i + 2 possible inputs, and an operation for each of the two edges."
        )
    passed(
        f"count_distinct_cells is right on {len(LAB1_SPACES)} spaces, the DARTS cell "
        f"space among them."
    )


# ---- intro, lab 2: random search -------------------------------------------------------------


def _toy_score(genotype: Genotype) -> float:
    """A stand-in for training a child: the share of separable convs in the normal cell."""
    ops = [op for op, _ in genotype.normal]
    return sum(op.startswith("sep_conv") for op in ops) / len(ops)


def _run_random_search(
    random_search: Callable, space: CellSpace, n: int, seed: int
) -> tuple[Any, Any, list[tuple[Genotype, float]]]:
    __tracebackhide__ = True  # noqa: F841
    seen: list[tuple[Genotype, float]] = []

    def evaluate(genotype: Genotype) -> float:
        if not isinstance(genotype, Genotype):
            fail(
                f"random_search passed {genotype!r} to evaluate; it should pass the "
                f"architectures that space.sample(rng) returns."
            )
        score = _toy_score(genotype)
        seen.append((genotype, score))
        return score

    result = call_student(
        random_search, "random_search", space, evaluate, n, random.Random(seed)
    )
    if not (isinstance(result, tuple) and len(result) == 2):
        fail(
            f"random_search should return a pair (best_architecture, best_score), got "
            f"{result!r}."
        )
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
            fail(
                f"With n = {n}, random_search called evaluate {len(seen)} times; it "
                f"should score exactly n sampled architectures, each once."
            )
        if not any(best is g or best == g for g, _ in seen):
            fail(
                f"With n = {n}, random_search returned {best!r}, which it never "
                f"evaluated: return the best of the architectures you scored."
            )
        if score != _toy_score(best):
            fail(
                f"With n = {n}, random_search returned the score {score!r}, but "
                f"evaluate gives {_toy_score(best)!r} for the architecture it returned: "
                f"return the architecture together with its own score."
            )
        top = max(s for _, s in seen)
        if score != top:
            fail(
                f"With n = {n}, random_search returned the score {score!r}, but the "
                f"best architecture it evaluated scored {top!r}: keep the maximum."
            )
    first, _, _ = _run_random_search(random_search, space, 30, seed=7)
    again, _, _ = _run_random_search(random_search, space, 30, seed=7)
    if first != again:
        fail(
            "Two calls with random.Random(7) returned different architectures: draw "
            "every architecture with space.sample(rng), not from the global `random`, "
            "so that a seed reproduces the search."
        )
    passed(
        "random_search scores n sampled architectures once each and returns the best "
        "with its score, reproducibly for a seeded rng."
    )


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
            fail(
                f"derive_cell should return a list of (operation, input) pairs, got {got!r}"
            )
        want = [tuple(e) for e in derive(w, w, DARTS_PRIMITIVES).normal]
        if got != want:
            if any(op == "none" for op, _ in got):
                fail(
                    "your cell contains 'none': §2.4 never selects it; leave the 'none' "
                    "column out when you rank edges and choose operations."
                )
            if len(got) != 8:
                fail(
                    f"a cell of 4 nodes has 8 edges, two per node; you returned {len(got)}."
                )
            fail(
                f"on test weights #{k} you return {got}, but §2.4 gives {want}. Check the "
                f"row ranges of each node, the ranking by the strongest non-none weight, "
                f"and the order (stronger edge first)."
            )
    passed(
        f"derive_cell agrees with nasedu's derive on {len(cases)} cells, including one "
        f"where 'none' has the largest weight on every edge."
    )


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

    def grad_alpha(
        weights,
    ):  # ∇_α L = sin(A w) + 2 α (w·w), recording where it is asked
        queries.append(float((weights - w).norm()))
        return torch.sin(A @ weights) + 2 * alpha * (weights @ weights)

    # ∇²_{α,w} L · v = cos(A w) ⊙ (A v) + 4 α (w·v)
    want = torch.cos(A @ w) * (A @ v) + 4 * alpha * (w @ v)
    got = call_student(mixed_hvp, "mixed_hvp", grad_alpha, w, v, 1e-4)
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        fail(
            f"mixed_hvp should return a tensor shaped like ∇_α L {tuple(want.shape)}, "
            f"got {got!r}"
        )
    if len(queries) != 2 or any(abs(d - 1e-4) > 1e-9 for d in queries):
        fail(
            f"Eq. 8 evaluates the gradient twice, at w ± ε v with ε = eps / ‖v‖, that "
            f"is at distance eps = 1e-4 from w; your function evaluated it "
            f"{len(queries)} time(s), at distances {[f'{d:.2e}' for d in queries]}."
        )
    error = float((got - want).norm() / want.norm())
    if error > 1e-6:
        fail(
            f"relative error {error:.1e} against the exact product; expected below 1e-6. "
            f"Check the sign of the difference and the division by 2ε (not `/ 2 * eps`)."
        )
    passed(
        f"mixed_hvp matches the exact mixed Hessian-vector product (relative error "
        f"{error:.1e})."
    )


autokeras = Checks("autokeras")


# ---- autokeras, lab 1: the layer-width distance d_l (Eq. 6) ----------------------------------

LAYER_WIDTH_PAIRS = ((16, 32), (32, 16), (64, 64), (3, 10), (128, 96), (1, 7), (50, 51))


@autokeras.add
def layer_distance(layer_distance: Callable[[int, int], float]) -> None:
    """Lab 1 of chapter *Auto-Keras*: ``layer_distance(w_a, w_b)`` is Eq. 6,
    |w_a − w_b| / max(w_a, w_b); compared with ``nasedu.spaces.morphism.layer_distance``."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.spaces.morphism import layer_distance as right_distance

    for a, b in LAYER_WIDTH_PAIRS:
        got = call_student(layer_distance, "layer_distance", a, b)
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            fail(f"layer_distance({a}, {b}) should return a number, got {got!r}.")
        want = right_distance(a, b)
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        if a != b and math.isclose(got, -want, abs_tol=1e-9):
            fail(
                f"layer_distance({a}, {b}) returned {got!r}: a distance is never negative; "
                f"take the absolute value of the difference of the widths."
            )
        if math.isclose(got, abs(a - b) / min(a, b), abs_tol=1e-9):
            fail(
                f"layer_distance({a}, {b}) returned {got!r}: you divide by the smaller "
                f"width; Eq. 6 divides by the larger one, so d_l stays between 0 and 1."
            )
        if math.isclose(got, abs(a - b) / (a + b), abs_tol=1e-9):
            fail(
                f"layer_distance({a}, {b}) returned {got!r}: you divide by the sum of the "
                f"widths; Eq. 6 divides by their maximum."
            )
        if got == abs(a - b) // max(a, b):
            fail(
                f"layer_distance({a}, {b}) returned {got!r}: that is integer division "
                f"(//); use / so that d_l is a fraction between 0 and 1."
            )
        fail(
            f"layer_distance({a}, {b}) returned {got!r}, Eq. 6 gives {want!r}: "
            f"|w_a - w_b| / max(w_a, w_b)."
        )
    passed(
        f"layer_distance agrees with Eq. 6 on {len(LAYER_WIDTH_PAIRS)} pairs of widths."
    )


# ---- autokeras, lab 2: the edit distance D_l between layer sequences (Eqs. 5 and 7) ----------

LAYER_SEQUENCES = (
    ((16, 32), (16, 32)),
    ((16, 32), (16, 32, 64)),  # one insertion
    ((8, 16, 32), (16,)),
    ((64,), (32,)),
    ((16, 32, 64), (16, 64)),  # deletion in the middle: a plain zip would get it wrong
    ((), (8, 8)),
    ((10, 20, 30, 40), (12, 18, 35)),
)


def _zip_distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    from nasedu.spaces.morphism import layer_distance as d

    return sum(d(x, y) for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b))


@autokeras.add
def layers_distance(layers_distance: Callable) -> None:
    """Lab 2 of chapter *Auto-Keras*: ``layers_distance(widths_a, widths_b)`` is D_l of
    Eq. 5 by the dynamic programme of Eq. 7 (with min, as the official code); compared
    with ``nasedu.spaces.morphism.layers_distance``."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.spaces.morphism import layers_distance as right_distance

    for a, b in LAYER_SEQUENCES:
        got = call_student(layers_distance, "layers_distance", a, b)
        try:
            got = float(got)
        except (TypeError, ValueError):
            fail(f"layers_distance({a}, {b}) should return a number, got {got!r}.")
        want = right_distance(a, b)
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        if not a or not b:
            fail(
                f"layers_distance({a}, {b}) returned {got!r}, but every layer of the "
                f"longer sequence is unmatched and costs 1: the answer is {want!r}. "
                f"Initialise the first row and column of the table with 0, 1, 2, ..."
            )
        if math.isclose(got, _zip_distance(a, b), abs_tol=1e-9):
            fail(
                f"layers_distance({a}, {b}) returned {got!r}: you match layer i with "
                f"layer i. Eq. 5 lets a layer be skipped (cost 1) so that later layers "
                f"can still be matched; fill the table A[i][j] of Eq. 7."
            )
        if got > want:
            fail(
                f"layers_distance({a}, {b}) returned {got!r}, more than the cheapest "
                f"matching ({want!r}). Eq. 7 as printed uses max; D_l is a minimum over "
                f"matchings (Eq. 5), so take the min of the three moves."
            )
        fail(
            f"layers_distance({a}, {b}) returned {got!r}, Eqs. 5-7 give {want!r}. "
            f"A[i][j] = min(A[i-1][j] + 1, A[i][j-1] + 1, A[i-1][j-1] + d_l(a_i, b_j))."
        )
    passed(
        f"layers_distance agrees with Eqs. 5-7 on {len(LAYER_SEQUENCES)} pairs of layer "
        f"sequences, insertions and deletions included."
    )


nasbot = Checks("nasbot")


def _nasbot_graphs() -> list:
    from nasedu.spaces.layer_graph import initial_pool

    return initial_pool(n_conv_blocks=2, units=8)


# ---- nasbot, lab 1: the layer masses (§3) ----------------------------------------------------


@nasbot.add
def layer_masses(layer_masses: Callable) -> None:
    """Lab 1 of chapter *NASBOT*: ``layer_masses(graph)`` returns the mass of every layer
    of a ``LayerGraph``; compared with ``LayerGraph.masses`` on the initial pool."""
    __tracebackhide__ = True  # noqa: F841
    import numpy as np

    from nasedu.spaces.layer_graph import CONVS

    for k, graph in enumerate(_nasbot_graphs()):
        got = call_student(layer_masses, "layer_masses", graph)
        try:
            got = np.asarray(got, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            fail(f"layer_masses should return one number per layer, got {got!r}.")
        want = graph.masses()
        if got.shape != want.shape:
            fail(
                f"graph #{k} has {graph.n} layers (ip and op included), but layer_masses "
                f"returned {got.size} numbers: return one mass per layer, in layer order."
            )
        if np.allclose(got, want):
            continue
        bad = int(np.flatnonzero(~np.isclose(got, want))[0])
        label = graph.labels[bad]
        c_in, c_out = graph.channels()
        hint = {
            "fc": "an fc layer weighs 0.1 · ch_in · ch_out",
            "max-pool": "a pooling layer weighs ch_in",
            "avg-pool": "a pooling layer weighs ch_in",
            "ip": "ip and op weigh max(0.1 · (sum of the conv, pool and fc masses), 100)",
            "op": "ip and op weigh max(0.1 · (sum of the conv, pool and fc masses), 100)",
            "softmax": "the softmax layers share the mass of op equally",
        }.get(label, "a conv layer weighs ch_in · ch_out")
        if label in CONVS and math.isclose(got[bad], graph.units[bad]):
            hint += " (not just its units)"
        fail(
            f"on graph #{k} {list(graph.labels)}, layer {bad} ({label}, ch_in "
            f"{c_in[bad]}, ch_out {c_out[bad]}) has mass {want[bad]:g}, you return "
            f"{got[bad]:g}: {hint}."
        )
    passed(
        f"layer_masses agrees with LayerGraph.masses on the {len(_nasbot_graphs())} "
        f"networks of the initial pool."
    )


# ---- nasbot, lab 2: the normalised OTMANN distance (§3) --------------------------------------


@nasbot.add
def normalised_distance(normalised_distance: Callable) -> None:
    """Lab 2 of chapter *NASBOT*: ``normalised_distance(d, a, b)`` turns the OTMANN
    distance d of graphs a and b into d̄ = d / (total mass of a + total mass of b);
    compared with ``nasedu.spaces.layer_graph.otmann``."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.spaces.layer_graph import otmann

    graphs = _nasbot_graphs()
    for a, b in [
        (graphs[0], graphs[1]),
        (graphs[2], graphs[3]),
        (graphs[4], graphs[0]),
    ]:
        d, want, _ = otmann(a, b)
        got = call_student(normalised_distance, "normalised_distance", d, a, b)
        try:
            got = float(got)
        except (TypeError, ValueError):
            fail(f"normalised_distance should return a number, got {got!r}.")
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        ma, mb = float(a.masses().sum()), float(b.masses().sum())
        if math.isclose(got, d / ma, rel_tol=1e-9) or math.isclose(
            got, d / mb, rel_tol=1e-9
        ):
            fail(
                "you divide by the mass of one network only: d̄ divides by the total "
                "mass of both, sum(a.masses()) + sum(b.masses())."
            )
        if math.isclose(got, d / (a.n + b.n), rel_tol=1e-9):
            fail(
                "you divide by the number of layers: d̄ divides by the total mass of both "
                "networks, sum(a.masses()) + sum(b.masses())."
            )
        if math.isclose(got, d / max(ma, mb), rel_tol=1e-9):
            fail("you divide by the larger mass: d̄ divides by the sum of both masses.")
        fail(
            f"for d = {d:.4g} you return {got!r}, d̄ is {want!r}: divide d by the "
            f"total mass of both networks."
        )
    passed(
        "normalised_distance agrees with nasedu's OTMANN on three pairs of networks."
    )


snas = Checks("snas")


# ---- snas, lab 1: the temperature schedule ---------------------------------------------------


@snas.add
def temperature(temperature: Callable) -> None:
    """Lab 1 of chapter *SNAS*: ``temperature(epoch, initial, minimum, total)`` anneals τ
    linearly from ``initial`` to ``minimum`` over ``total`` epochs, stepped at the start of
    each epoch; compared with ``nasedu.papers.snas.temperature``."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.papers.snas import temperature as right

    cases = [(e, 1.0, 0.03, 150) for e in (0, 1, 74, 148, 149, 150, 300)]
    cases += [(e, 2.0, 0.5, 10) for e in (0, 4, 9, 20)]
    for epoch, initial, minimum, total in cases:
        got = call_student(temperature, "temperature", epoch, initial, minimum, total)
        try:
            got = float(got)
        except (TypeError, ValueError):
            fail(f"temperature should return a number, got {got!r}.")
        want = right(epoch, initial, minimum, total)
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        args = f"temperature({epoch}, {initial}, {minimum}, {total})"
        if got < minimum - 1e-9:
            fail(
                f"{args} returned {got!r}, below the minimum {minimum}: after `total` "
                f"epochs τ stays at the minimum (clip with max)."
            )
        early = (1 - epoch / total) * (initial - minimum) + minimum
        if math.isclose(got, max(early, minimum), abs_tol=1e-9):
            fail(
                f"{args} returned {got!r}, the value one epoch too early: the scheduler "
                f"steps at the START of each epoch, so epoch 0 already uses "
                f"(1 - 1/total) of the way and epoch total - 1 reaches the minimum."
            )
        if math.isclose(
            got, max(initial * (1 - (epoch + 1) / total), minimum), abs_tol=1e-9
        ):
            fail(
                f"{args} returned {got!r}: you decay towards 0 and clip; the line goes "
                f"from `initial` to `minimum`, (1 - (epoch+1)/total)·(initial - minimum) "
                f"+ minimum."
            )
        fail(f"{args} returned {got!r}, the schedule gives {want!r}.")
    passed(
        f"temperature follows the linear schedule on {len(cases)} epochs, clipping at "
        f"the minimum included."
    )


# ---- snas, lab 2: a hard Gumbel-softmax sample (SNAS §2.2) -----------------------------------


@snas.add
def hard_gumbel_softmax(hard_gumbel_softmax: Callable) -> None:
    """Lab 2 of chapter *SNAS*: ``hard_gumbel_softmax(logits, tau)`` returns a one-hot
    sample per row whose argmax is distributed as softmax(logits) (the Gumbel-max trick),
    with the straight-through gradient of softmax((logits + g) / τ)."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    n = 20000
    for tau in (1.0, 0.3, 3.0):
        torch.manual_seed(0)
        logits = probs.log().expand(n, 4).clone().requires_grad_(True)  # (n, 4)
        z = call_student(hard_gumbel_softmax, "hard_gumbel_softmax", logits, tau)
        if not isinstance(z, torch.Tensor) or z.shape != logits.shape:
            fail(
                f"hard_gumbel_softmax should return a tensor shaped like the logits "
                f"{tuple(logits.shape)}, got "
                f"{tuple(z.shape) if isinstance(z, torch.Tensor) else z!r}."
            )
        values = z.detach()
        one_hot = ((values - values.round()).abs() < 1e-5).all() and bool(
            ((values.round().sum(-1) == 1) & (values.round() >= 0).all(-1)).all()
        )
        if not one_hot:
            fail(
                f"at τ = {tau} the rows are not one-hot vectors (one 1, zeros elsewhere): "
                f"a hard sample puts 1 at the argmax of the soft sample, e.g. "
                f"torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1)."
            )
        freq = values.round().mean(0)
        if (freq == 1).any():
            fail(
                "every row picks the same operation: without Gumbel noise the argmax is "
                "deterministic. Add g = -log(-log(u)), u ~ Uniform(0, 1), to the logits."
            )
        if (freq - probs).abs().max() > 0.02:
            fail(
                f"at τ = {tau} the operations are chosen with frequencies "
                f"{[round(float(f), 3) for f in freq]}, but the Gumbel-max trick gives "
                f"softmax(logits) = {[round(float(p), 3) for p in probs]} whatever τ "
                f"is. Use Gumbel noise g = -log(-log(u)) (not uniform or normal "
                f"noise), and divide the sum (logits + g) by τ, not the logits alone."
            )
        if not z.requires_grad:
            fail(
                "the sample carries no gradient, so α would never learn: return "
                "one_hot - soft.detach() + soft (straight-through), where soft = "
                "softmax((logits + g) / τ)."
            )
        weights = torch.arange(4.0)
        (z * weights).sum().backward()
        if logits.grad is None or float(logits.grad.abs().sum()) == 0.0:
            fail(
                "no gradient reaches the logits: return one_hot - soft.detach() + soft "
                "(straight-through), where soft = softmax((logits + g) / τ)."
            )
    passed(
        "hard_gumbel_softmax draws one-hot samples with the probabilities "
        "softmax(logits) at three temperatures and passes gradients to the logits."
    )


enas = Checks("enas")


# ---- enas, lab 1: the loose ends of a cell (ENAS §2.3) ---------------------------------------


@enas.add
def loose_ends(loose_ends: Callable) -> None:
    """Lab 1 of chapter *ENAS*: ``loose_ends(inputs, nodes)`` lists the intermediate
    states 2..nodes+1 that no node reads (``inputs`` holds the two input indices of
    every node, in order); compared with ``nasedu.spaces.enas_spaces.loose_ends``."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.spaces.enas_spaces import loose_ends as right

    rng = random.Random(0)
    cases = [([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], 5), ([0, 0, 2, 2, 3, 3], 3), ([1, 1], 1)]
    for nodes in (2, 3, 5, 5, 5):
        cases.append(
            ([rng.randrange(i + 2) for i in range(nodes) for _ in range(2)], nodes)
        )
    for inputs, nodes in cases:
        got = call_student(loose_ends, "loose_ends", list(inputs), nodes)
        try:
            got = tuple(int(j) for j in got)
        except TypeError:
            fail(f"loose_ends should return a list of state indices, got {got!r}.")
        want = right(inputs, nodes)
        if got == want:
            continue
        call = f"loose_ends({inputs}, {nodes})"
        if got == tuple(j - 2 for j in want) or got == tuple(
            j for j in range(nodes) if j + 2 not in set(inputs)
        ):
            fail(
                f"{call} returned {list(got)}: states are numbered with the two cell "
                f"inputs first, so node i is state i + 2; the answer is {list(want)}."
            )
        if any(j in (0, 1) for j in got):
            fail(
                f"{call} returned {list(got)}, which includes a cell input (0 or 1): only "
                f"the intermediate nodes 2..{nodes + 1} are concatenated."
            )
        if set(got) == set(want):
            fail(f"{call} returned {list(got)}: list the states in increasing order.")
        fail(f"{call} returned {list(got)}; the loose ends are {list(want)}.")
    passed(f"loose_ends finds the concatenated nodes of {len(cases)} cells.")


# ---- enas, lab 2: the skip penalty of the macro space --------------------------------------


@enas.add
def skip_penalty(skip_penalty: Callable) -> None:
    """Lab 2 of chapter *ENAS*: ``skip_penalty(p, target)`` is
    Σ_j KL(Bernoulli(p_j) ‖ Bernoulli(target)); compared with
    ``nasedu.papers.enas.skip_penalty``."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    from nasedu.papers.enas import skip_penalty as right

    cases = [
        (torch.tensor([0.4, 0.4, 0.4]), 0.4),
        (torch.tensor([0.9, 0.1, 0.5, 0.3]), 0.4),
        (torch.tensor([0.2, 0.7]), 0.25),
    ]
    for p, target in cases:
        got = call_student(skip_penalty, "skip_penalty", p.clone(), target)
        try:
            got = float(got.detach() if isinstance(got, torch.Tensor) else got)
        except (TypeError, ValueError):
            fail(f"skip_penalty should return a number (a 0-dim tensor), got {got!r}.")
        want = float(right(p, target))
        if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
            continue
        plist = [round(float(v), 3) for v in p]
        one_sided = float((p * (p / target).log()).sum())
        reverse = float(
            (
                target * (target / p).log()
                + (1 - target) * ((1 - target) / (1 - p)).log()
            ).sum()
        )
        mean = want / len(p)
        if math.isclose(got, one_sided, rel_tol=1e-4):
            fail(
                f"skip_penalty({plist}, {target}) returned {got:.4f}: only the p·log(p/t) "
                f"term. A skip bit is a Bernoulli variable; its KL divergence also has "
                f"the (1 - p)·log((1 - p)/(1 - t)) term for 'no skip'."
            )
        if math.isclose(got, reverse, rel_tol=1e-4):
            fail(
                f"skip_penalty({plist}, {target}) returned {got:.4f}, KL(target ‖ p): "
                f"the divergence is taken from the controller's distribution p to the "
                f"prior, KL(p ‖ target)."
            )
        if math.isclose(got, mean, rel_tol=1e-4):
            fail(
                f"skip_penalty({plist}, {target}) returned {got:.4f}, the mean over the "
                f"skip bits: ENAS sums the KL over them."
            )
        fail(
            f"skip_penalty({plist}, {target}) returned {got:.4f}; expected {want:.4f}."
        )
    p = torch.tensor([0.8, 0.3], requires_grad=True)
    value = call_student(skip_penalty, "skip_penalty", p, 0.4)
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        fail(
            "skip_penalty returns no tensor with a gradient: compute it with torch "
            "operations on p, so that the controller can descend it."
        )
    passed(
        f"skip_penalty gives the KL divergence to the skip prior on {len(cases)} cases "
        f"and is differentiable."
    )


pnas = Checks("pnas")


# ---- pnas, lab 1: the blocks a cell can grow by (§3.1) --------------------------------------


@pnas.add
def block_choices(block_choices: Callable) -> None:
    """Lab 1 of chapter *PNAS*: ``block_choices(position, primitives)`` lists every
    distinct block ``(in1, op1, in2, op2)`` that can be block ``position`` (0-based) of
    a cell, one per unordered pair; compared with ``PNASSpace.block_choices``."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.spaces.pnas import PNASSpace, canonical_block

    for position, primitives in [
        (0, ("sep_conv_3x3", "max_pool_3x3")),
        (1, ("sep_conv_3x3", "max_pool_3x3", "skip_connect")),
        (2, ("skip_connect",)),
    ]:
        args = f"block_choices({position}, {list(primitives)})"
        got = call_student(block_choices, "block_choices", position, list(primitives))
        try:
            got = [tuple(b) for b in got]
            canonical = [canonical_block(*b) for b in got]
        except (TypeError, ValueError):
            fail(f"{args} should return (in1, op1, in2, op2) tuples, got {got!r}.")
        space = PNASSpace(primitives=primitives, blocks=position + 1)
        want = set(space.block_choices(position))
        inputs = {i for b in got for i in (b[0], b[2])}
        if not inputs <= set(range(position + 2)):
            fail(
                f"{args} uses input(s) {sorted(inputs - set(range(position + 2)))}: "
                f"block {position} may read the two cell inputs (0, 1) and the "
                f"blocks before it (2..{position + 1}), nothing else."
            )
        if len(set(canonical)) < len(canonical):
            fail(
                f"{args} returned {len(canonical)} blocks, but only "
                f"{len(set(canonical))} differ: a block and its swap (in2, op2, in1, op1) "
                f"add the same two tensors, so list each unordered pair once."
            )
        missing = want - set(canonical)
        if missing:
            same = [b for b in missing if (b[0], b[1]) == (b[2], b[3])]
            if len(same) == len(missing):
                fail(
                    f"{args} misses blocks such as {same[0]}: the same (input, op) may "
                    f"be chosen twice (it adds a tensor to itself)."
                )
            example = sorted(missing)[0]
            fail(f"{args} misses {len(missing)} blocks, for example {example}.")
        if set(canonical) != want:
            extra = sorted(set(canonical) - want)[:3]
            fail(f"{args} returned blocks outside the space: {extra}.")
    passed(
        "block_choices lists every block once, with both cell inputs and all earlier "
        "blocks as inputs: 1-block cells of PNAS's 8 operations number "
        f"{len(PNASSpace().initial())}."
    )


# ---- pnas, lab 2: one step of Algorithm 1 (§3.2) --------------------------------------------


@pnas.add
def next_beam(next_beam: Callable) -> None:
    """Lab 2 of chapter *PNAS*: ``next_beam(parents, space, predict, k)`` expands every
    parent by one block, scores all children with ``predict`` (a list of cells in, a
    list of scores out) and returns the ``k`` children with the highest scores, best
    first; compared with a brute-force ranking."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.spaces.pnas import PNASSpace

    ops = ("sep_conv_3x3", "max_pool_3x3", "skip_connect")
    space = PNASSpace(primitives=ops, blocks=3)

    def predict(cells):
        # A toy predictor without ties: a fixed pseudo-random score per cell.
        return [random.Random(c.key()).random() for c in cells]

    parents = space.initial()[:6]
    for k in (5, 1):
        args = f"next_beam(<{len(parents)} one-block cells>, space, predict, k={k})"
        got = call_student(next_beam, "next_beam", parents, space, predict, k)
        got = list(got)
        children = [ch for p in parents for ch in space.expand(p)]
        scores = predict(children)
        order = sorted(range(len(children)), key=lambda i: -scores[i])
        ranked = [children[i] for i in order]
        want = ranked[:k]
        if len(got) != k:
            fail(f"{args} returned {len(got)} cells; the beam holds exactly k = {k}.")
        if got == want:
            continue
        if got == ranked[::-1][:k]:
            fail(f"{args} returned the {k} lowest-scored children: keep the highest.")
        one_parent = len({c.blocks[:1] for c in got}) == 1
        if one_parent and len({c.blocks[:1] for c in want}) > 1:
            fail(
                f"{args} only grew one parent: Algorithm 1 expands every cell of the "
                f"previous step and ranks all their children together."
            )
        if set(got) == set(want):
            fail(f"{args} returned the right cells in the wrong order: best first.")
        fail(
            f"{args} returned {[c.blocks for c in got][:2]}…, but the best child is "
            f"{want[0].blocks} (score {predict([want[0]])[0]:.3f})."
        )
    passed(
        "next_beam expands every parent, ranks all the children by the predictor and "
        "keeps the top k, best first."
    )


nas_rl = Checks("nas_rl")


# ---- nas_rl, lab 1: the REINFORCE loss with a baseline (NAS-RL §3.2) -------------------------


@nas_rl.add
def reinforce_loss(reinforce_loss: Callable) -> None:
    """Lab 1 of chapter *NAS-RL*: ``reinforce_loss(log_probs, rewards, baseline)`` is the
    loss whose gradient is the REINFORCE estimate of §3.2,
    −1/m Σ_k (R_k − b) log P(a_k); ``log_probs`` (m,) carries the graph, ``rewards`` is
    a list of m floats, ``baseline`` a float."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    cases = [
        ([-1.0, -2.0, -0.5], [0.9, 0.5, 0.7], 0.6),
        ([-3.0, -0.1], [0.2, 0.4], 0.4),
        ([-0.7, -1.3, -2.2, -0.4], [0.81, 0.64, 0.1, 0.9], 0.0),
    ]
    for values, rewards, b in cases:
        log_probs = torch.tensor(values, requires_grad=True)
        args = f"reinforce_loss(log_probs={values}, rewards={rewards}, baseline={b})"
        got = call_student(reinforce_loss, "reinforce_loss", log_probs, rewards, b)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            fail(f"{args} should return a 0-dim tensor (a scalar loss), got {got!r}.")
        if not got.requires_grad:
            fail(
                f"{args} returned a loss without a graph: keep log_probs a tensor (do "
                f"not call .item() or float() on it), so that backward() reaches the "
                f"controller."
            )
        want = -sum((r - b) * v for r, v in zip(rewards, values)) / len(values)
        value = float(got.detach())
        if math.isclose(value, want, abs_tol=1e-5):
            got.backward()
            grad = log_probs.grad
            expected = [-(r - b) / len(values) for r in rewards]
            if grad is None or not torch.allclose(
                grad, torch.tensor(expected), atol=1e-5
            ):
                fail(
                    f"{args} has the right value but the wrong gradient "
                    f"{None if grad is None else grad.tolist()}; expected {expected}: "
                    f"only log_probs may carry gradients."
                )
            continue
        if math.isclose(value, -want, abs_tol=1e-5):
            fail(
                f"{args} returned {value:.4f}, the right size with the wrong sign: the "
                f"optimiser MINIMISES the loss, and we want to MAXIMISE the expected "
                f"reward, so the loss is −mean((R − b) · log P)."
            )
        no_baseline = -sum(r * v for r, v in zip(rewards, values)) / len(values)
        if b and math.isclose(value, no_baseline, abs_tol=1e-5):
            fail(
                f"{args} returned {value:.4f}: the baseline is missing. Subtract b "
                f"from every reward: −mean((R − b) · log P)."
            )
        if math.isclose(value, want * len(values), abs_tol=1e-5):
            fail(
                f"{args} returned {value:.4f}, the sum over the m architectures: "
                f"§3.2 averages, 1/m Σ_k."
            )
        fail(f"{args} returned {value:.4f}; −mean((R − b) · log P) is {want:.4f}.")
    passed(
        "reinforce_loss is −mean((R − b) · log P), and its gradient reaches only the "
        "log-probabilities."
    )


# ---- nas_rl, lab 2: concatenate inputs of different sizes (NAS-RL §3.3) ----------------------


@nas_rl.add
def concat_padded(concat_padded: Callable) -> None:
    """Lab 2 of chapter *NAS-RL*: ``concat_padded(tensors)`` zero-pads (B, C_i, H_i,
    W_i) maps to the largest height and width, the extra split evenly with the odd
    row/column at the bottom/right, and concatenates them in depth (§3.3, rules 1 and 4);
    compared with ``nasedu.spaces.layerwise.concat_padded``."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    from nasedu.spaces.layerwise import concat_padded as right

    gen = torch.Generator().manual_seed(0)
    shapes_cases = [
        [(2, 3, 8, 8)],
        [(2, 3, 8, 8), (2, 5, 8, 8)],
        [(2, 3, 8, 8), (2, 4, 4, 4)],
        [(1, 2, 3, 7), (1, 1, 6, 2), (1, 3, 5, 5)],
    ]
    for shapes in shapes_cases:
        # Positive values, as after a ReLU: a zero in the output can only be padding.
        tensors = [torch.rand(s, generator=gen) + 0.5 for s in shapes]
        args = f"concat_padded(<maps of shapes {shapes}>)"
        got = call_student(concat_padded, "concat_padded", tensors)
        want = right(tensors)
        if not isinstance(got, torch.Tensor):
            fail(f"{args} should return a tensor, got {type(got).__name__}.")
        if got.shape != want.shape:
            channels = sum(s[1] for s in shapes)
            if got.shape[1] != channels:
                fail(
                    f"{args} returned shape {tuple(got.shape)}: concatenate along the "
                    f"channel dimension (dim=1), giving {channels} channels."
                )
            if got.shape[2] < want.shape[2] or got.shape[3] < want.shape[3]:
                fail(
                    f"{args} returned shape {tuple(got.shape)}, smaller than the "
                    f"largest input: pad the small maps up, never crop the large ones."
                )
            fail(
                f"{args} returned shape {tuple(got.shape)}; expected {tuple(want.shape)}."
            )
        if torch.allclose(got, want):
            continue
        if (got.sum() - want.sum()).abs() < 1e-3 and (got != 0).sum() == (
            want != 0
        ).sum():
            fail(
                f"{args} put the values in the right amount of zeros but at the wrong "
                f"place: split the padding evenly, dh // 2 on top and the rest at the "
                f"bottom (the same for the width), F.pad(x, (left, right, top, bottom))."
            )
        fail(
            f"{args} does not match: each map must keep its values unchanged and be "
            f"surrounded by zeros (F.pad with value 0; no interpolation)."
        )
    passed(
        "concat_padded zero-pads every map to the largest height and width and "
        "concatenates them in depth."
    )


nasnet = Checks("nasnet")


# ---- nasnet, lab 1: ScheduledDropPath (NASNet App. A.5, TF-Slim _apply_drop_path) ------------


@nasnet.add
def scheduled_keep_prob(scheduled_keep_prob: Callable) -> None:
    """Lab 1 of chapter *NASNet*: ``scheduled_keep_prob(keep_prob, cell, num_cells,
    step, total_steps)`` is the probability of *keeping* a path in cell ``cell``
    (0-based) at training step ``step``, scaled by depth and by time as TF-Slim does;
    compared with ``1 - nasedu.papers.nasnet.scheduled_drop_path``."""
    __tracebackhide__ = True  # noqa: F841
    from nasedu.papers.nasnet import scheduled_drop_path

    cases = [
        (0.6, cell, 20, step, 1000)
        for cell in (0, 9, 19)
        for step in (0, 250, 1000, 3000)
    ] + [(0.7, 3, 8, 40, 100)]
    for keep, cell, n, step, total in cases:
        args = f"scheduled_keep_prob({keep}, {cell}, {n}, {step}, {total})"
        got = call_student(
            scheduled_keep_prob, "scheduled_keep_prob", keep, cell, n, step, total
        )
        try:
            got = float(got)
        except (TypeError, ValueError):
            fail(f"{args} should return a number, got {got!r}.")
        want = 1 - scheduled_drop_path(1 - keep, cell, n, step / total)
        if math.isclose(got, want, abs_tol=1e-9):
            continue
        t, r = step / total, (cell + 1) / n
        if math.isclose(got, 1 - scheduled_drop_path(1 - keep, cell, n, 1.0)):
            fail(
                f"{args} returned {got!r}: that is the value at the end of training. "
                f"The drop probability grows linearly with step / total_steps."
            )
        if math.isclose(got, 1 - t * r * (1 - keep), abs_tol=1e-9):
            fail(
                f"{args} returned {got!r}: after total_steps the schedule stays at its "
                f"final value; clip step / total_steps at 1 with min(1, ...)."
            )
        if math.isclose(got, 1 - min(1.0, t) * (1 - keep), abs_tol=1e-9):
            fail(
                f"{args} returned {got!r}: you scale by time only. TF-Slim also scales "
                f"by depth, r = (cell + 1) / num_cells, so early cells drop less."
            )
        if math.isclose(got, 1 - min(1.0, t) * cell / n * (1 - keep), abs_tol=1e-9):
            fail(
                f"{args} returned {got!r}: the depth ratio is (cell + 1) / num_cells, "
                f"so that the first cell (cell = 0) drops paths too."
            )
        if math.isclose(got, 1 - want, abs_tol=1e-9):
            fail(f"{args} returned {got!r}: a drop probability; return the keep one.")
        fail(f"{args} returned {got!r}; TF-Slim's schedule keeps with {want!r}.")
    passed(
        f"scheduled_keep_prob matches TF-Slim's ScheduledDropPath on {len(cases)} "
        f"(cell, step) pairs, past the end of the schedule included."
    )


# ---- nasnet, lab 2: PPO's clipped surrogate (Schulman et al. 2017, Eq. 7) ---------------------


@nasnet.add
def clipped_surrogate(clipped_surrogate: Callable) -> None:
    """Lab 2 of chapter *NASNet*: ``clipped_surrogate(ratio, advantage, eps)`` returns,
    per sample, min(ρ·A, clip(ρ, 1−ε, 1+ε)·A) (tensors in, a tensor out); compared with
    ``nasedu.strategies.controller.ppo_loss``, sample by sample, values and gradients."""
    __tracebackhide__ = True  # noqa: F841
    import torch

    from nasedu.strategies.controller import ppo_loss

    ratio = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5, 0.5, 0.9, 1.1, 1.5])
    advantage = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -2.0])
    eps = 0.2
    log_ratio = ratio.log().requires_grad_()
    got = call_student(
        clipped_surrogate, "clipped_surrogate", log_ratio.exp(), advantage, eps
    )
    if not isinstance(got, torch.Tensor) or got.shape != ratio.shape:
        shape = (
            tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        )
        fail(
            f"clipped_surrogate should return one value per sample, a tensor of shape "
            f"{tuple(ratio.shape)}; got {shape}. Do not average."
        )
    want = torch.stack(
        [
            -ppo_loss(lr.view(1), torch.zeros(1), a.view(1), eps)
            for lr, a in zip(ratio.log(), advantage)
        ]
    )
    if not torch.allclose(got.detach(), want):
        plain = ratio * advantage
        clipped = ratio.clamp(1 - eps, 1 + eps) * advantage
        if torch.allclose(got.detach(), clipped):
            fail(
                "you return clip(ρ)·A alone: take the minimum with ρ·A, so that a "
                "ratio outside the range *against* the advantage is not clipped."
            )
        if torch.allclose(got.detach(), torch.maximum(plain, clipped)):
            fail(
                "you take the maximum: PPO takes the minimum, a pessimistic bound on "
                "the unclipped objective."
            )
        if torch.allclose(got.detach(), plain):
            fail("you return ρ·A: clip ρ to [1 − ε, 1 + ε] and take the minimum.")
        fail(
            f"for ρ = {ratio.tolist()}, A = {advantage.tolist()}, ε = {eps} you return "
            f"{got.detach().tolist()}; PPO gives {want.tolist()}."
        )
    if not got.requires_grad:
        fail(
            "the result has no gradient: compute it from `ratio` with torch operations "
            "(torch.clamp, torch.minimum), not from Python numbers."
        )
    got.sum().backward()
    zero = log_ratio.grad == 0
    expected = torch.tensor([0, 0, 0, 0, 1, 1, 0, 0, 0], dtype=torch.bool)
    if not torch.equal(zero, expected):
        fail(
            "the values are right but the gradients are not: a sample whose ratio has "
            "left [1 − ε, 1 + ε] in its advantage's direction must get no gradient."
        )
    passed(
        "clipped_surrogate matches PPO's clipped objective on 9 samples, and the "
        "clipped samples get no gradient."
    )


# ---------------------------------------------------------------------- hierarchical
hierarchical = Checks("hierarchical")


def _tournament_reference(rewards: list[float], seed: int, size: int) -> int:
    sample = random.Random(seed).sample(range(len(rewards)), size)
    return max(
        sample,
        key=lambda k: (-math.inf if math.isnan(rewards[k]) else rewards[k], -k),
    )


@hierarchical.add
def tournament_select(tournament_select: Callable) -> None:
    """``tournament_select(rewards, rng, size)``: the index of the fittest of ``size``
    members drawn with ``rng.sample`` (Liu et al. 2018, §3.2)."""
    __tracebackhide__ = True  # noqa: F841
    cases = [
        ([0.3, 0.9, 0.5, 0.7, 0.1, 0.8, 0.2, 0.6], seed, size)
        for seed in range(20)
        for size in (2, 3)
    ]
    cases += [([0.4, math.nan, 0.2, math.nan, 0.5], seed, 3) for seed in range(10)]
    for rewards, seed, size in cases:
        got = call_student(
            tournament_select, "tournament_select", rewards, random.Random(seed), size
        )
        want = _tournament_reference(rewards, seed, size)
        if got == want:
            continue
        sample = random.Random(seed).sample(range(len(rewards)), size)
        finite = [k for k in range(len(rewards)) if not math.isnan(rewards[k])]
        if not isinstance(got, int):
            fail(f"return the index of the winner (an int), not {got!r}.")
        if got == max(finite, key=lambda k: rewards[k]) and got not in sample:
            fail(
                "you return the best of the whole population: a tournament only "
                "looks at the `size` members it draws with rng.sample."
            )
        if got in sample and rewards[got] == min(rewards[k] for k in sample):
            fail("you return the *worst* of the sample: higher reward is fitter.")
        if got in sample and math.isnan(rewards[got]):
            fail(
                "a failed member (NaN reward) won: it must lose to every scored one "
                "(comparisons with NaN are always False, so max() can pick it)."
            )
        fail(
            f"with rewards {rewards}, size {size} and random.Random({seed}) you return "
            f"{got}; draw the sample with rng.sample(range(len(rewards)), size) — "
            f"here {sample} — and return its fittest member, {want}."
        )
    passed(f"tournament_select picks the fittest of its sample in {len(cases)} draws.")


def _live_reference(ops: list[list[int]]) -> set[int]:
    from nasedu.spaces.hierarchical import Motif

    return Motif(tuple(tuple(r) for r in ops)).live_nodes()


@hierarchical.add
def live_nodes(live_nodes: Callable) -> None:
    """``live_nodes(ops)``: the nodes of a motif on some source-to-sink path."""
    __tracebackhide__ = True  # noqa: F841
    rng = random.Random(0)
    cases = [
        [[], [1], [0, 1], [0, 0, 1]],
        [[], [1], [0, 1], [0, 0, 0], [0, 0, 1, 1]],  # node 3 fed by nothing
        [[], [1], [0, 1], [1, 0, 0], [0, 0, 1, 0]],  # node 3 feeds nothing
    ]
    for _ in range(40):
        n = rng.randint(3, 6)
        cases.append([[rng.choice((0, 0, 1, 2)) for _ in range(j)] for j in range(n)])
    for ops in cases:
        got = call_student(live_nodes, "live_nodes", [list(r) for r in ops])
        want = _live_reference(ops)
        if set(got) == want:
            continue
        n = len(ops)
        forward = {0}
        for j in range(1, n):
            if any(o and i in forward for i, o in enumerate(ops[j])):
                forward.add(j)
        if set(got) == forward:
            fail(
                f"for ops {ops} you return every node the source reaches, {sorted(got)}; "
                f"a node that reaches no sink contributes nothing either: {sorted(want)}."
            )
        fail(
            f"for ops {ops} (ops[j][i] != 0 is an edge i → j, node 0 the source, node "
            f"{n - 1} the sink) you return {sorted(got)}; the nodes on a source-to-sink "
            f"path are {sorted(want)}."
        )
    passed(f"live_nodes is right on {len(cases)} motifs, dead ends included.")
