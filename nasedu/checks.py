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
