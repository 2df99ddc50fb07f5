"""Asynchronous evolution with tournament selection (chapter *Hierarchical evolution*).

Liu et al., "Hierarchical Representations for Efficient Architecture Search", ICLR 2018
(arXiv:1711.00436), §3:

* **mutation** (§3.1): sample a non-primitive level l, a motif m of that level, a
  successor node j and a predecessor node i < j, and replace the op on edge i→j by an
  op of level l−1 drawn uniformly — "none" (no edge) included. nasedu draws the op
  among all choices, the current one included (a mutation may leave the genotype
  unchanged), and redraws a mutation that would disconnect a motif's sink from its
  source (such a motif computes nothing; ``HierarchicalGenotype.validate``).
* **initialisation** (§3.2): the trivial genotype (identity chains) diversified by
  many random mutations; the same draw is the paper's random-search baseline.
* **tournament selection** (§3.2): sample a fraction of the population (5 %, at
  least 2 here), take the fittest, mutate it; the child joins the population and
  nothing is ever removed.
* **asynchronous evolution** (§3.3): a controller hands architectures to free
  workers and adds each result to the population the moment it arrives, out of order.
  This is ``nasedu.strategies.bayesopt.AsyncSearch`` with one trial per worker: the
  serial backend is deterministic, the process pool and Ray backends run in parallel
  (``nasedu.parallel``).

Settings marked UNVERIFIED in ``paper-settings.md`` §4 (the paper's full text was not
available to nasedu) are commented so in ``nasedu.papers.hierarchical``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nasedu.evaluate import Outcome
from nasedu.parallel import AsyncEvaluator, is_failed
from nasedu.spaces.hierarchical import HierarchicalGenotype, trivial
from nasedu.strategies.bayesopt import AsyncSearch


@dataclass(frozen=True)
class Mutation:
    """What a mutation changed: ``level`` is the paper's level l (2 = motifs over
    primitives), ``motif`` its 0-based index in that level, edge ``i``→``j`` set to
    op ``op`` (0 = none, k = the k-th op of level l−1)."""

    level: int
    motif: int
    i: int
    j: int
    op: int


def mutate(
    genotype: HierarchicalGenotype, rng: random.Random
) -> tuple[HierarchicalGenotype, Mutation]:
    """One random mutation (§3.1); returns the new genotype (same representation) and
    what changed. Draws that would disconnect a motif are redrawn."""
    while True:
        lv = rng.randrange(len(genotype.levels))
        m = rng.randrange(len(genotype.levels[lv]))
        motif = genotype.levels[lv][m]
        pairs = [(i, j) for j in range(1, motif.nodes) for i in range(j)]
        i, j = rng.choice(pairs)
        op = rng.randrange(genotype.op_count(lv) + 1)  # 0 = none ("no edge")
        new = motif.with_op(i, j, op)
        if new.nodes - 1 in new.live_nodes():
            levels = list(genotype.levels)
            levels[lv] = levels[lv][:m] + (new,) + levels[lv][m + 1 :]
            child = HierarchicalGenotype(tuple(levels), genotype.primitives)
            return child, Mutation(lv + 2, m, i, j, op)


def random_genotype(
    representation: str, rng: random.Random, mutations: int
) -> HierarchicalGenotype:
    """The trivial genotype after ``mutations`` random mutations (§3.2)."""
    if mutations < 0:
        raise ValueError(f"mutations must be >= 0, got {mutations}")
    genotype = trivial(representation)
    for _ in range(mutations):
        genotype, _ = mutate(genotype, rng)
    return genotype


def tournament_size(population: int, fraction: float) -> int:
    """``fraction`` of the population (§3.2: 5 %), at least 2 (a tournament of one
    would be random selection) and at most the population."""
    if not 0 < fraction <= 1:
        raise ValueError(f"tournament fraction must be in (0, 1], got {fraction}")
    return max(1, min(population, max(2, round(fraction * population))))


def tournament(rewards: Sequence[float], rng: random.Random, size: int) -> int:
    """Index of the fittest of ``size`` members drawn without replacement (§3.2);
    failed (NaN) members never win over scored ones; ties go to the earliest."""
    if not rewards:
        raise ValueError("tournament over an empty population")
    if size < 1:
        raise ValueError(f"tournament size must be >= 1, got {size}")
    sample = rng.sample(range(len(rewards)), min(size, len(rewards)))

    def fitness(k: int) -> tuple[float, int]:
        return (-math.inf if math.isnan(rewards[k]) else rewards[k], -k)

    return max(sample, key=fitness)


class EvolutionSearch(AsyncSearch):
    """The controller of §3.3 (``evolve=True``) or random search (``evolve=False``).

    Args:
        representation: ``"flat"`` or ``"hierarchical"``.
        evaluations: total architectures evaluated, initial population included.
        population: size of the initial population (random genotypes).
        init_mutations: random mutations applied to the trivial genotype per draw.
        tournament_fraction: tournament size as a fraction of the current population.
        evolve: False: every trial is a fresh random genotype (the baseline).
        make_evaluator: builds the ``AsyncEvaluator`` that scores genotype dicts.
        in_flight: trials running at once (one per worker).
        seed: seeds the controller's random draws.
    """

    def __init__(
        self,
        representation: str,
        evaluations: int,
        population: int,
        init_mutations: int,
        tournament_fraction: float,
        evolve: bool,
        make_evaluator: Callable[[], AsyncEvaluator],
        in_flight: int = 1,
        seed: int = 0,
    ):
        super().__init__(evaluations, in_flight)
        trivial(representation)  # validates the name
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        tournament_size(1, tournament_fraction)
        self.representation, self.init_population = representation, population
        self.init_mutations, self.fraction = init_mutations, tournament_fraction
        self.evolve, self._make_evaluator = evolve, make_evaluator
        self.rng = random.Random(seed)
        # The population: every successfully evaluated genotype, in order of arrival.
        self.population: list[dict[str, Any]] = []

    def make_evaluator(self) -> AsyncEvaluator:
        return self._make_evaluator()

    def can_propose(self) -> bool:
        return True

    def propose(self, step: int) -> dict[str, Any]:
        if not self.evolve or step < self.init_population or not self.population:
            genotype = random_genotype(
                self.representation, self.rng, self.init_mutations
            )
            origin = "initial" if self.evolve else "random"
            return {"architecture": genotype.to_dict(), "extra": {"origin": origin}}
        rewards = [p["reward"] for p in self.population]
        size = tournament_size(len(rewards), self.fraction)
        parent = self.population[tournament(rewards, self.rng, size)]
        child, change = mutate(
            HierarchicalGenotype.from_dict(parent["architecture"]), self.rng
        )
        return {
            "architecture": child.to_dict(),
            "extra": {
                "origin": "mutation",
                "parent": parent["step"],
                "tournament": size,
                "mutation": [change.level, change.motif, change.i, change.j, change.op],
            },
        }

    def candidate(self, trial: dict[str, Any]) -> dict[str, Any]:
        return trial["architecture"]  # plain JSON data: picklable and Ray-friendly

    def observe(self, trial: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        if not is_failed(outcome):  # a failed child never becomes a parent
            self.population.append(
                {
                    "step": trial["step"],
                    "architecture": trial["architecture"],
                    "reward": float(outcome.reward),
                }
            )
        return {**outcome.extra, "population": len(self.population)}

    def model_state(self) -> dict[str, Any]:
        _, internal, _ = self.rng.getstate()
        return {"rng": list(internal), "population": [dict(p) for p in self.population]}

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.rng.setstate((3, tuple(state["rng"]), None))
        self.population = [dict(p) for p in state["population"]]
