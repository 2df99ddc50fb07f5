"""Hierarchical evolution: representations, mutation, hashing, flattening, tournament
selection, asynchronous evolution (serial, out of order, Ray), resume."""

from __future__ import annotations

import math
import os
import random

import pytest
import torch

from nasedu.evaluate import Outcome
from nasedu.networks import count_parameters
from nasedu.parallel import AsyncEvaluator, SerialEvaluator
from nasedu.search import Clock, run
from nasedu.spaces.hierarchical import (
    FLAT_NODES,
    HIERARCHICAL_MOTIFS,
    HIERARCHICAL_NODES,
    HierarchicalGenotype,
    HierarchicalNetwork,
    Motif,
    MotifModule,
    trivial,
)
from nasedu.strategies.evolution import (
    EvolutionSearch,
    mutate,
    random_genotype,
    tournament,
    tournament_size,
)

REPS = ("flat", "hierarchical")


def _shape(g: HierarchicalGenotype) -> list[tuple[int, ...]]:
    return [tuple(m.nodes for m in level) for level in g.levels]


# ---------------------------------------------------------------------- genotypes
def test_trivial_genotypes_have_the_papers_sizes():
    flat, hier = trivial("flat"), trivial("hierarchical")
    assert _shape(flat) == [(FLAT_NODES,)] and flat.representation == "flat"
    assert _shape(hier) == [
        (HIERARCHICAL_NODES[0],) * HIERARCHICAL_MOTIFS[0],
        (HIERARCHICAL_NODES[1],),
    ]
    assert len(hier.primitives) == 6 and hier.representation == "hierarchical"
    with pytest.raises(ValueError, match="valid: flat, hierarchical"):
        trivial("tree")


@pytest.mark.parametrize("representation", REPS)
def test_every_mutation_is_valid_and_keeps_the_representation(representation):
    rng = random.Random(0)
    genotype = trivial(representation)
    for _ in range(300):
        child, change = mutate(genotype, rng)
        child.validate()
        assert child.representation == representation
        assert _shape(child) == _shape(genotype)
        lv = change.level - 2
        assert 0 <= change.i < change.j < child.levels[lv][change.motif].nodes
        assert 0 <= change.op <= child.op_count(lv)
        # Exactly the named edge may differ.
        diffs = [
            (lv2, m, j, i)
            for lv2, level in enumerate(genotype.levels)
            for m, motif in enumerate(level)
            for j, row in enumerate(motif.ops)
            for i, o in enumerate(row)
            if child.levels[lv2][m].ops[j][i] != o
        ]
        assert diffs in ([], [(lv, change.motif, change.j, change.i)])
        genotype = child


def test_mutation_draws_none_and_every_level():
    rng = random.Random(1)
    changes = [mutate(trivial("hierarchical"), rng)[1] for _ in range(400)]
    assert {c.level for c in changes} == {2, 3}
    assert any(c.op == 0 for c in changes)  # "no edge" is one of the choices
    assert {c.op for c in changes if c.level == 2} == set(range(7))


def test_json_round_trip_and_validation_errors():
    g = random_genotype("hierarchical", random.Random(3), 50)
    assert HierarchicalGenotype.from_json(g.to_json()) == g
    assert HierarchicalGenotype.from_dict({"architecture": g.to_dict()}) == g
    bad = g.to_dict()
    bad["levels"][0][0][1] = [9]
    with pytest.raises(ValueError, match="valid: 0 \\(none\\) to 6"):
        HierarchicalGenotype.from_dict(bad)
    cut = HierarchicalGenotype(((Motif(((), (0,), (0, 1))),),))
    with pytest.raises(ValueError, match="not connected"):
        cut.validate()
    with pytest.raises(ValueError, match="exactly one motif"):
        HierarchicalGenotype(((Motif(((), (1,))), Motif(((), (1,)))),)).validate()


def _relabel_motif(motif: Motif, rng: random.Random) -> Motif:
    """The same DAG under a random topological order (source first, sink last)."""
    n = motif.nodes
    preds = {j: {i for i, o in enumerate(motif.ops[j]) if o} for j in range(n)}
    order, placed = [0], {0}
    while len(order) < n - 1:
        ready = [j for j in range(1, n - 1) if j not in placed and preds[j] <= placed]
        j = rng.choice(ready)
        order.append(j)
        placed.add(j)
    order.append(n - 1)
    new = {old: k for k, old in enumerate(order)}
    rows = [[0] * j for j in range(n)]
    for i, j, o in motif.edges():
        rows[new[j]][new[i]] = o
    return Motif(tuple(tuple(r) for r in rows))


@pytest.mark.parametrize("seed", range(5))
def test_hash_is_invariant_to_relabelling_nodes_and_motifs(seed):
    rng = random.Random(seed)
    g = random_genotype("hierarchical", rng, 60)
    level2 = [_relabel_motif(m, rng) for m in g.levels[0]]
    perm = list(range(len(level2)))
    rng.shuffle(perm)  # motif k moves to position perm[k]
    moved = [None] * len(level2)
    for k, m in enumerate(level2):
        moved[perm[k]] = m
    cell = _relabel_motif(g.cell, rng)
    cell = Motif(tuple(tuple(perm[o - 1] + 1 if o else 0 for o in r) for r in cell.ops))
    relabelled = HierarchicalGenotype((tuple(moved), (cell,)), g.primitives).validate()
    assert relabelled.hash() == g.hash()
    # A real change of a live edge (to a motif that computes something else) does
    # change the hash.
    live = g.cell.live_nodes()
    i, j, o = next(e for e in g.cell.edges() if e[0] in live and e[1] in live)

    def motif_hash(k):
        return HierarchicalGenotype(((g.levels[0][k - 1],),)).hash()

    k = next(k for k in range(1, 7) if motif_hash(k) != motif_hash(o))
    other = HierarchicalGenotype((g.levels[0], (g.cell.with_op(i, j, k),)))
    assert other.hash() != g.hash()


def test_hash_ignores_dead_nodes_and_none_edges():
    chain = Motif(((), (1,), (0, 6), (0, 0, 6)))  # conv, identity, identity
    # The same chain through nodes 0, 1, 2, 4, with node 3 fed by nothing (dead) ...
    unfed = Motif(((), (1,), (0, 6), (0, 0, 0), (0, 0, 6, 1)))
    # ... or with node 3 fed by the source but feeding nothing (a dead end).
    dead_end = Motif(((), (1,), (0, 6), (1, 0, 0), (0, 0, 6, 0)))
    a, b, c = (
        HierarchicalGenotype(((m,),)).validate() for m in (chain, unfed, dead_end)
    )
    assert b.cell.live_nodes() == {0, 1, 2, 4} == c.cell.live_nodes()
    assert a.hash() == b.hash() == c.hash()
    assert a.hash() != HierarchicalGenotype(((chain.with_op(0, 1, 2),),)).hash()


# ---------------------------------------------------------------------- modules
def test_trivial_cell_is_the_identity_and_merges_concatenate():
    x = torch.randn(2, 4, 6, 6)
    for rep in REPS:
        g = trivial(rep)
        module = MotifModule(g, len(g.levels) - 1, 0, 4)
        assert torch.equal(module(x), x)  # a chain of identities
    # Two parallel identity paths into the sink: concatenation (8 ch) then 1×1 → 4.
    g = HierarchicalGenotype(((Motif(((), (6,), (6, 6))),),)).validate()
    module = MotifModule(g, 0, 0, 4)
    merge = module.merges["2"]
    assert merge[0].in_channels == 8 and merge[0].out_channels == 4
    assert module(x).shape == x.shape


@pytest.mark.parametrize("seed", range(3))
def test_flattening_builds_runs_and_keeps_the_network(seed):
    g = random_genotype("hierarchical", random.Random(seed), 40)
    flat = g.flatten().validate()
    assert flat.representation == "flat" and len(flat.levels) == 1
    # Only primitives on the flat DAG's edges; the hierarchical cell's motif edges
    # became copies of their graphs.
    assert all(1 <= o <= 6 for _, _, o in flat.cell.edges())
    torch.manual_seed(0)
    net_h = HierarchicalNetwork(g, C=4, num_classes=10, in_channels=1)
    net_f = HierarchicalNetwork(flat, C=4, num_classes=10, in_channels=1)
    # Same merges with the same inputs: the same parameters (an oracle that a wrong
    # expansion - a lost edge, a merged node - fails).
    assert count_parameters(net_h) == count_parameters(net_f)
    out = net_f(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert trivial("flat").flatten() == trivial("flat")


# ---------------------------------------------------------------------- selection
def test_tournament_picks_the_fittest_of_its_sample():
    rewards = [0.3, 0.9, float("nan"), 0.5, 0.7, 0.1, 0.9, 0.2]
    for seed in range(50):
        size = 1 + seed % len(rewards)
        sample = random.Random(seed).sample(range(len(rewards)), size)
        scored = [k for k in sample if not math.isnan(rewards[k])]
        expected = max(scored, key=lambda k: (rewards[k], -k)) if scored else None
        got = tournament(rewards, random.Random(seed), size)
        assert got in sample
        if expected is not None:
            assert got == expected
    # The whole population: the global best, earliest on ties.
    assert tournament(rewards, random.Random(0), len(rewards)) == 1
    assert tournament_size(200, 0.05) == 10  # §3.2: 5 % of the population
    assert tournament_size(4, 0.05) == 2 and tournament_size(1, 0.05) == 1
    with pytest.raises(ValueError, match="empty"):
        tournament([], random.Random(0), 2)


# ---------------------------------------------------------------------- evolution
def _fitness(architecture, step):
    """A cheap deterministic score: the fraction of convolution edges in the flat
    network (what a search can climb)."""
    g = HierarchicalGenotype.from_dict(architecture).flatten()
    edges = g.cell.edges()
    convs = sum(
        1 for _, _, o in edges if g.primitives[o - 1].startswith(("conv", "sep"))
    )
    return Outcome(convs / max(1, len(edges)), 0.0, {"edges": len(edges)})


def _search(evaluations=12, evolve=True, make=None, in_flight=1, seed=0, rep="flat"):
    return EvolutionSearch(
        rep,
        evaluations,
        population=4,
        init_mutations=15,
        tournament_fraction=0.5,
        evolve=evolve,
        make_evaluator=make or (lambda: SerialEvaluator(_fitness, evaluations)),
        in_flight=in_flight,
        seed=seed,
    )


def _drive(search, steps=None):
    records, clock = [], Clock()
    while not search.done() and (steps is None or len(records) < steps):
        records += search.step(clock)
    return records


def _key(records):
    return [(r.step, r.architecture, r.reward, r.extra.get("parent")) for r in records]


@pytest.mark.parametrize("rep", REPS)
def test_serial_evolution_is_deterministic_and_mutates_tournament_winners(rep):
    a, b = _drive(_search(rep=rep)), _drive(_search(rep=rep))
    assert _key(a) == _key(b) and len(a) == 12
    assert _key(_drive(_search(rep=rep, seed=1))) != _key(a)
    by_step = {r.step: r for r in a}
    for r in a[4:]:
        assert r.extra["origin"] == "mutation"
        parent = HierarchicalGenotype.from_dict(by_step[r.extra["parent"]].architecture)
        level, m, i, j, op = r.extra["mutation"]
        assert (
            parent.levels[level - 2][m].with_op(i, j, op)
            == (HierarchicalGenotype.from_dict(r.architecture).levels[level - 2][m])
        )
    random_records = _drive(_search(rep=rep, evolve=False))
    assert {r.extra["origin"] for r in random_records} == {"random"}
    # Random search draws what evolution's initial population draws.
    assert _key(random_records[:4]) == _key(a[:4])


class _Reversed(AsyncEvaluator):
    """Finishes the trials in flight last-submitted-first: results out of order."""

    def __init__(self, fn, max_evaluations=None):
        super().__init__(fn, max_evaluations)
        self.queue = []

    def _start(self, handle):
        self.queue.append(handle)

    def results(self, timeout=None):
        while self.queue:
            handle = self.queue.pop()
            yield handle, self.fn(handle.architecture, handle.step)

    def pending(self):
        return len(self.queue)


def test_asynchronous_results_join_the_population_as_they_arrive():
    search = _search(make=lambda: _Reversed(_fitness, 12), in_flight=3)
    records = _drive(search)
    steps = [r.step for r in records]
    assert sorted(steps) == list(range(12)) and steps != sorted(steps)
    assert [p["step"] for p in search.population] == steps  # order of arrival


def test_a_failed_child_is_recorded_and_the_search_goes_on():
    def flaky(architecture, step):
        if step in (1, 5):
            raise RuntimeError("CUDA out of memory")
        return _fitness(architecture, step)

    search = _search(make=lambda: SerialEvaluator(flaky, 12))
    records = _drive(search)
    failed = [r for r in records if r.extra.get("failed")]
    assert [r.step for r in failed] == [1, 5] and all(
        math.isnan(r.reward) for r in failed
    )
    assert len(records) == 12 and len(search.population) == 10


def test_state_dict_resume_equals_uninterrupted():
    whole = _drive(_search(make=lambda: _Reversed(_fitness, 12), in_flight=3))
    first = _search(make=lambda: _Reversed(_fitness, 12), in_flight=3)
    part = _drive(first, steps=5)
    state = first.state_dict()
    assert state["pending"]  # trials cut off in flight are part of the state
    second = _search(make=lambda: _Reversed(_fitness, 12), in_flight=3)
    second.load_state_dict(state)
    assert _key(part + _drive(second)) == _key(whole)


def test_run_resume_equals_uninterrupted(tmp_path):
    settings = dict(
        budget="smoke",
        seed=3,
        progress=False,
        evaluations=4,
        population=2,
        child={"C": 2, "train": {"epochs": 1, "batch_size": 256}},
    )
    whole = run("hierarchical", out=tmp_path / "a", **settings)
    run("hierarchical", out=tmp_path / "b", max_steps=2, **settings)
    resumed = run("hierarchical", out=tmp_path / "b", resume=True, **settings)
    assert _key(resumed.records) == _key(whole.records)
    assert resumed.result["architecture"] == whole.result["architecture"]
    assert [r.extra["origin"] for r in whole.records] == ["initial"] * 2 + [
        "mutation"
    ] * 2


def test_config_errors_name_the_choices():
    from nasedu.papers.hierarchical import HierarchicalConfig

    with pytest.raises(ValueError, match="flat, hierarchical"):
        HierarchicalConfig(representation="tree")
    with pytest.raises(ValueError, match="serial, process, ray"):
        HierarchicalConfig(backend="mpi")


# ---------------------------------------------------------------------- Ray
def _ray_fn(architecture, step):
    if step == 1:
        raise ValueError("a bad child")
    if step == 2:
        os._exit(3)  # the worker process dies outright
    return _fitness(architecture, step)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    import sys

    # Ray workers cannot import this test module by name: ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # A private instance on this machine: 2 CPUs, no dashboard, nothing joins it.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_backend_marks_failed_workers_and_the_search_goes_on(local_ray):
    from nasedu.parallel import RayEvaluator

    search = _search(
        evaluations=8,
        make=lambda: RayEvaluator(_ray_fn, cpus_per_trial=1, max_evaluations=8),
        in_flight=2,
    )
    records = _drive(search)
    assert sorted(r.step for r in records) == list(range(8))
    failed = {r.step: r.extra["error"] for r in records if r.extra.get("failed")}
    assert set(failed) == {1, 2}, failed
    assert "a bad child" in failed[1] and "Ray worker failed" in failed[2]
    serial = {r.step: r.reward for r in _drive(_search(evaluations=8))}
    # Scores do not depend on the backend (the parents do, with 2 in flight).
    assert all(
        r.reward == _fitness(r.architecture, r.step).reward
        for r in records
        if not r.extra.get("failed")
    )
    assert serial[0] == next(r.reward for r in records if r.step == 0)
    assert local_ray.is_initialized()  # the evaluator did not own Ray: left running
    with pytest.raises(ValueError, match="asks for 1 GPU"):
        RayEvaluator(_ray_fn, gpus_per_trial=1)  # would wait forever on a CPU cluster


def test_real_children_on_ray_score_as_in_this_process(local_ray):
    settings = dict(
        budget="smoke",
        seed=1,
        progress=False,
        evaluations=2,
        population=2,
        child={"C": 2, "train": {"epochs": 1, "batch_size": 256}},
    )
    serial = run("hierarchical", **settings)
    on_ray = run("hierarchical", backend="ray", ray_address=None, workers=2, **settings)
    rewards = {r.step: (r.architecture, r.reward) for r in serial.records}
    assert {r.step: (r.architecture, r.reward) for r in on_ray.records} == rewards


# ---------------------------------------------------------------------- lab checks
def test_lab_checks_pass_right_answers_and_explain_wrong_ones(capsys):
    from nasedu import checks
    from nasedu.checks import CheckFailed

    def right(rewards, rng, size):
        return tournament(rewards, rng, size)

    checks.hierarchical.tournament_select(right)
    assert "✔" in capsys.readouterr().out

    def global_best(rewards, rng, size):
        return max(range(len(rewards)), key=lambda k: rewards[k])

    def worst(rewards, rng, size):
        return min(rng.sample(range(len(rewards)), size), key=lambda k: rewards[k])

    def nan_blind(rewards, rng, size):
        return max(rng.sample(range(len(rewards)), size), key=lambda k: rewards[k])

    for wrong, message in (
        (global_best, "whole population"),
        (worst, "worst"),
        (nan_blind, "NaN"),
    ):
        with pytest.raises(CheckFailed, match=message):
            checks.hierarchical.tournament_select(wrong)

    checks.hierarchical.live_nodes(
        lambda ops: Motif(tuple(map(tuple, ops))).live_nodes()
    )
    assert "✔" in capsys.readouterr().out

    def forward_only(ops):
        seen = {0}
        for j in range(1, len(ops)):
            if any(o and i in seen for i, o in enumerate(ops[j])):
                seen.add(j)
        return seen

    with pytest.raises(CheckFailed, match="reaches no sink"):
        checks.hierarchical.live_nodes(forward_only)
    with pytest.raises(CheckFailed, match="write your code here|NotImplementedError"):

        def stub(ops):
            raise NotImplementedError("write your code here")

        checks.hierarchical.live_nodes(stub)


def test_skeleton_stages_and_the_picklable_trainer():
    import pickle

    from nasedu.data import load
    from nasedu.papers.hierarchical import (
        ChildConfig,
        ChildTrainer,
        search_data,
        train_child,
    )
    from nasedu.train import TrainConfig

    g = random_genotype("hierarchical", random.Random(0), 20)
    net = HierarchicalNetwork(g, C=4, cells_per_stage=2, num_classes=10, in_channels=3)
    cells = [m for m in net.features if isinstance(m, MotifModule)]
    assert len(cells) == 6  # 3 stages × N = 2 (the final-evaluation layout)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert net.classifier.in_features == 16  # C doubled at each of the 2 reductions
    child = ChildConfig(
        C=2,
        train=TrainConfig(
            epochs=1,
            batch_size=256,
            augment=None,
            cutout=0,
            drop_path_prob=0.0,
            auxiliary_weight=0.0,
            amp=False,
        ),
    )
    trainer = pickle.loads(pickle.dumps(ChildTrainer(child, "digits", "cpu", 5)))
    here = train_child(
        g.to_dict(), 3, search_data(load("digits"), 5), child, torch.device("cpu"), 5
    )
    assert trainer(g.to_dict(), 3) == here  # a worker scores what this process does
