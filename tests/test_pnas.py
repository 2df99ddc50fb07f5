"""PNAS (chapter PNAS): the cell space and its symmetry pruning, expansion, the
surrogates, Algorithm 1, resume, and PNASNet-5's parameter count.

Oracles: brute-force enumeration of ordered blocks (pruning and expansion), scipy's
Spearman ρ, a synthetic score the predictors can learn, a refit of the surrogate that
chose a step's children, and the parameter count of the official DARTS network
(``data/parameter_counts.json``)."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr

from nasedu import genotypes
from nasedu.evaluate import Outcome
from nasedu.networks import NetworkCIFAR, count_parameters
from nasedu.ops import PNAS_PRIMITIVES
from nasedu.papers import pnas
from nasedu.parallel import SerialEvaluator
from nasedu.reported import result
from nasedu.search import Clock, HistoryRecord, load_methods, run
from nasedu.spaces.pnas import PNASCell, PNASSpace, canonical_block
from nasedu.strategies.progressive import (
    Ensemble,
    ProgressiveSearch,
    SurrogateConfig,
    rank_correlation,
)

COUNTS = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "parameter_counts.json").read_text()
)["entries"]


# ---- the space ----------------------------------------------------------------------
def _ordered_blocks(position: int, primitives) -> list[tuple]:
    """Every (I1, O1, I2, O2) as the paper counts them: ordered, |I_b|²·|O|²."""
    inputs = range(position + 2)
    return list(itertools.product(inputs, primitives, inputs, primitives))


def test_one_block_cells_after_symmetry_pruning_match_the_paper():
    ordered = _ordered_blocks(0, PNAS_PRIMITIVES)
    assert len(ordered) == 2 * 2 * 8 * 8 == 256  # the paper's |B_1| before pruning
    # The rule: a + b = b + a, so a block and its swap are one block.
    distinct = {canonical_block(*b) for b in ordered}
    cells = PNASSpace().initial()
    assert {c.blocks[0] for c in cells} == distinct
    assert len(cells) == len(set(cells)) == len(distinct)
    assert len(distinct) == 136  # PNAS's number of 1-block cells after pruning
    assert PNASSpace().size(1) == 136 and PNASSpace().size(1, pruned=False) == 256


def test_unpruned_space_has_the_size_darts_quotes_for_pnas():
    cells = PNASSpace().size(pruned=False)
    quoted = result("pnas", "search_space_size")["cells"]
    assert f"{cells:.1e}" == f"{quoted:.1e}"  # 5.6e+14


@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_expansion_enumerates_exactly_the_children(blocks):
    space = PNASSpace(blocks=blocks + 1)
    parent = space.sample_cell(random.Random(blocks), blocks)
    children = space.expand(parent)
    oracle = {
        parent.extend(canonical_block(*b))
        for b in _ordered_blocks(blocks, PNAS_PRIMITIVES)
    }
    assert len(children) == len(set(children))  # no child listed twice
    assert set(children) == oracle
    n = (blocks + 2) * 8  # (input, op) choices of the new block
    assert len(children) == n * (n + 1) // 2
    assert all(c.blocks[:blocks] == parent.blocks for c in children)


def test_a_full_cell_cannot_grow_and_foreign_ops_are_refused():
    space = PNASSpace(primitives=("skip_connect",), blocks=1)
    with pytest.raises(ValueError, match="cannot grow"):
        space.expand(space.initial()[0])
    with pytest.raises(ValueError, match="not in this space"):
        space.tokens(PNASCell([(0, "sep_conv_3x3", 1, "skip_connect")]))
    with pytest.raises(ValueError, match="input 2 is invalid"):
        PNASCell([(0, "skip_connect", 2, "skip_connect")])
    with pytest.raises(ValueError, match="unknown operation 'conv_9x9'"):
        PNASCell([(0, "conv_9x9", 1, "skip_connect")])


def test_a_block_and_its_swap_are_one_cell():
    a = PNASCell([(1, "sep_conv_3x3", 0, "max_pool_3x3")])
    b = PNASCell([(0, "max_pool_3x3", 1, "sep_conv_3x3")])
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert PNASCell.from_list(a.to_list()) == a


def test_pnasnet5_is_a_cell_of_the_space_and_round_trips():
    cell = pnas.pnasnet_5()
    published = genotypes.load("pnasnet_5")
    assert len(cell) == 5
    assert PNASSpace().check(cell) is cell  # its ops are PNAS's 8 operations
    assert cell.to_genotype().hash() == published.hash()
    assert len(PNASSpace().tokens(cell)) == 4 * 5


# ---- the surrogates -----------------------------------------------------------------
def test_rank_correlation_matches_scipy():
    rng = random.Random(0)
    x = [rng.randint(0, 5) for _ in range(30)]  # many ties
    y = [v + rng.random() for v in x]
    assert rank_correlation(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert math.isnan(rank_correlation([1.0], [2.0]))
    assert math.isnan(rank_correlation([1, 1, 1], [1, 2, 3]))


SCORE_OPS = dict(zip(PNAS_PRIMITIVES, [0.9, 0.1, 0.6, 0.3, 0.0, 0.8, 0.4, 0.7]))


def _synthetic_score(cell: PNASCell) -> float:
    """A score the predictors can learn: the mean value of the cell's operations."""
    ops = [SCORE_OPS[b[k]] for b in cell.blocks for k in (1, 3)]
    return 0.2 + 0.6 * sum(ops) / len(ops)


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_surrogate_ranks_a_learnable_score_of_larger_cells(kind):
    space = PNASSpace(blocks=3)
    rng = random.Random(0)
    train = [space.sample_cell(rng, rng.randint(1, 3)) for _ in range(200)]
    test = [space.sample_cell(rng, 3) for _ in range(200)]
    config = SurrogateConfig(kind=kind, hidden=32, embed=32, epochs=60, batch_size=32)
    ensemble = Ensemble(config, space.vocabulary()).fit(
        [space.tokens(c) for c in train], [_synthetic_score(c) for c in train]
    )
    assert len(ensemble.models) == 5  # an ensemble of 5 on data folds
    predicted = ensemble.predict([space.tokens(c) for c in test])
    assert rank_correlation(predicted, [_synthetic_score(c) for c in test]) > 0.9


def test_ensemble_members_see_different_folds_and_fits_are_repeatable():
    space = PNASSpace(primitives=("skip_connect", "max_pool_3x3"), blocks=2)
    cells = space.initial()
    seqs, y = [space.tokens(c) for c in cells], [0.1 * i for i in range(len(cells))]
    config = SurrogateConfig(kind="mlp", hidden=8, embed=8, epochs=3)
    state = torch.random.get_rng_state()
    a = Ensemble(config, space.vocabulary()).fit(seqs, y, seed=1).predict(seqs)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    b = Ensemble(config, space.vocabulary()).fit(seqs, y, seed=1).predict(seqs)
    assert (a == b).all()
    with pytest.raises(ValueError, match="unknown surrogate 'gp'"):
        SurrogateConfig(kind="gp")


# ---- Algorithm 1 with a synthetic evaluator ------------------------------------------
def _fake_score(genotype, step: int) -> Outcome:
    return Outcome(_synthetic_score(PNASCell.from_genotype(genotype)), 0.0, {})


TINY_SURROGATE = SurrogateConfig(hidden=8, embed=8, epochs=5, members=2)


def _search(slots: int = 1, beam: int = 3) -> ProgressiveSearch:
    space = PNASSpace(primitives=("sep_conv_3x3", "skip_connect"), blocks=3)
    return ProgressiveSearch(
        space,
        SerialEvaluator(_fake_score),
        PNASCell,
        slots=slots,
        beam=beam,
        surrogate=TINY_SURROGATE,
        compare=("mlp",),
        seed=4,
    )


def _trace(records):
    return [(r.step, r.architecture, r.reward, r.extra) for r in records]


def test_each_step_trains_the_top_k_children_of_the_previous_step_by_the_surrogate():
    search, clock = _search(), Clock()
    initial = search.space.initial()
    records = [r for _ in initial for r in search.step(clock)]
    assert {PNASCell.from_list(r.extra["cell"]) for r in records} == set(initial)
    assert search.level == 2 and len(search.queue) == search.beam
    # Oracle: refit the surrogate on the same data, predict every child (enumerated
    # independently, from the ordered blocks) and take the top K.
    replay = _search()
    replay.load_state_dict({**search.state_dict(), "level": 1})
    fit = replay.fit_surrogates()["lstm"]
    children = [
        c.extend(canonical_block(*b))
        for c in initial
        for b in _ordered_blocks(1, search.space.primitives)
    ]
    children = list(dict.fromkeys(children))
    scores = fit.predict([search.space.tokens(c) for c in children])
    top = sorted(range(len(children)), key=lambda i: -scores[i])[: search.beam]
    assert set(search.queue) == {children[i] for i in top}
    while not search.done():
        records += search.step(clock)
    assert len(records) == len(initial) + 2 * search.beam == search.progress_total()
    assert [r.extra["blocks"] for r in records[-2 * search.beam :]] == [2] * 3 + [3] * 3
    # The 3-block children extend the 2-block cells that were trained.
    trained_2 = {
        tuple(map(tuple, r.extra["cell"])) for r in records if r.extra["blocks"] == 2
    }
    for r in records[-search.beam :]:
        assert tuple(map(tuple, r.extra["cell"][:2])) in trained_2
        assert set(r.extra["predicted"]) == {"lstm", "mlp"}
    out = search.result(records)
    assert len(out["cell"]) == 3 and out["reward"] == max(
        r.reward for r in records[-3:]
    )


@pytest.mark.parametrize("cut", [1, 5, 7])
def test_resume_with_trials_in_flight_equals_an_uninterrupted_search(cut):
    clock = Clock()
    whole = _search(slots=2)
    full = []
    while not whole.done():
        full += whole.step(clock)
    first = _search(slots=2)
    part = [r for _ in range(cut) for r in first.step(clock)]
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint stores it
    assert len(state["in_flight"]) >= 1  # two slots: one trial still pending
    second = _search(slots=2)
    second.load_state_dict(state)
    while not second.done():
        part += second.step(clock)
    assert _trace(part) == _trace(full)


def test_predictor_study_correlates_predictions_with_rewards_per_size():
    def rec(step, blocks, reward, lstm, mlp):
        extra = {"blocks": blocks, "predicted": {"lstm": lstm, "mlp": mlp}}
        return HistoryRecord(step, {}, reward, 0.0, 0.0, extra)

    records = [HistoryRecord(0, {}, 0.5, 0.0, 0.0, {"blocks": 1})] + [
        rec(1, 2, 0.1, 0.1, 0.3),
        rec(2, 2, 0.2, 0.2, 0.2),
        rec(3, 2, 0.3, 0.3, 0.1),
        rec(4, 3, 0.5, 0.9, 0.9),
    ]
    rows = pnas.predictor_study(records)
    assert [r["blocks"] for r in rows] == [2, 3] and rows[0]["n"] == 3
    assert rows[0]["lstm"] == pytest.approx(1.0) and rows[0]["mlp"] == pytest.approx(-1)
    assert math.isnan(rows[1]["lstm"])  # one child: no ranking


# ---- configs and the registered methods -------------------------------------------
def test_paper_budget_trains_1160_models_and_random_search_gets_as_many():
    paper = pnas.PNASConfig()
    assert paper.models() == 136 + 4 * 256 == 1160
    assert pnas.PNASRandomConfig().samples == paper.models()
    methods = load_methods()
    for budget in ("smoke", "colab"):
        config = methods.get("pnas").config(budget)
        baseline = methods.get("pnas_random").config(budget)
        assert baseline.samples == config.models()
        assert (baseline.blocks, baseline.primitives) == (
            config.blocks,
            config.primitives,
        )
        assert baseline.child == config.child
    with pytest.raises(ValueError, match="workers must be >= 0"):
        pnas.PNASConfig(workers=-1)


# ---- PNASNet-5 ----------------------------------------------------------------------
def _pnasnet(C: int, layers: int) -> int:
    torch.manual_seed(0)
    return count_parameters(
        NetworkCIFAR(genotypes.load("pnasnet_5"), C=C, layers=layers)
    )


def test_pnasnet5_parameter_count_in_the_papers_cifar_setting_matches_the_paper():
    final = pnas.PNASConfig().final
    (entry,) = [e for e in COUNTS if e["genotype"] == "PNASNet_5"]
    assert (final.C, final.layers) == (entry["C"], entry["layers"]) == (48, 9)
    count = _pnasnet(final.C, final.layers)
    assert count == entry["official_code_count"] == 3_176_602
    assert round(count / 1e6, 1) == result("pnas", "pnasnet5_cifar10")["params_M"]


def test_pnasnet5_read_with_nasnets_3n_plus_2_cells_would_not_match_the_paper():
    # NASNet's N counts normal cells only (3N + 2 cells); PNAS's TF-Slim model counts
    # the reduction cells in num_cells. Read the NASNet way, N = 3 misses 3.2M.
    assert round(_pnasnet(48, 3 * 3 + 2) / 1e6, 1) == 4.3
    assert 4.3 != result("pnas", "pnasnet5_cifar10")["params_M"]


# ---- runs through nasedu.search.run --------------------------------------------------
TINY = {
    "primitives": ["skip_connect"],
    "blocks": 2,
    "beam": 2,
    "surrogate": {"epochs": 5, "members": 2, "hidden": 8, "embed": 8},
    "child": {"train": {"epochs": 1}},
}


def test_resume_equals_an_uninterrupted_run(tmp_path):
    kw = dict(budget="smoke", seed=1, progress=False, **TINY)
    whole = run("pnas", out=tmp_path / "whole", **kw)
    assert len(whole.records) == 3 + 2  # 3 one-block cells of one op, then K = 2
    cut = tmp_path / "cut"
    run("pnas", out=cut, max_steps=3, **kw)  # stops right after the refit
    run("pnas", out=cut, resume=True, max_steps=1, **kw)
    resumed = run("pnas", out=cut, resume=True, **kw)
    assert _trace(resumed.records) == _trace(whole.records)
    assert resumed.result == whole.result
    saved = (cut / "result.json").read_text()
    assert json.loads(saved) == json.loads(
        (tmp_path / "whole" / "result.json").read_text()
    )


def test_random_baseline_samples_full_cells_of_the_space():
    out = run(
        "pnas_random",
        budget="smoke",
        seed=0,
        progress=False,
        samples=2,
        **{k: TINY[k] for k in ("primitives", "blocks", "child")},
    )
    assert len(out.records) == 2
    for r in out.records:
        cell = PNASCell.from_genotype(genotypes.Genotype.from_dict(r.architecture))
        assert len(cell) == 2


@pytest.mark.slow
def test_a_process_pool_scores_children_as_the_serial_search_does(tmp_path):
    kw = dict(budget="smoke", seed=1, progress=False, **TINY)
    serial = run("pnas", **kw)
    pooled = run("pnas", workers=2, **kw)

    def by_trial(records):
        return sorted((r.extra["trial"], r.extra["cell"], r.reward) for r in records)

    assert by_trial(pooled.records) == by_trial(serial.records)


# ---- the lab's checks ---------------------------------------------------------------
def _right_block_choices(position, primitives):
    pairs = list(itertools.product(range(position + 2), primitives))
    return [
        (a, x, b, y)
        for (a, x), (b, y) in itertools.combinations_with_replacement(pairs, 2)
    ]


def _right_next_beam(parents, space, predict, k):
    children = [c for p in parents for c in space.expand(p)]
    scores = predict(children)
    order = sorted(range(len(children)), key=lambda i: -scores[i])
    return [children[i] for i in order[:k]]


def test_lab_checks_pass_the_right_answers(capsys):
    from nasedu import checks

    checks.pnas.block_choices(_right_block_choices)
    checks.pnas.next_beam(_right_next_beam)
    assert capsys.readouterr().out.count(checks.PASS_MARK) == 2


@pytest.mark.parametrize(
    "wrong, message",
    [
        (
            lambda p, ops: list(
                itertools.product(range(p + 2), ops, range(p + 2), ops)
            ),
            "only .* differ",
        ),
        (
            lambda p, ops: [
                (a, x, b, y)
                for (a, x), (b, y) in itertools.combinations(
                    list(itertools.product(range(p + 2), ops)), 2
                )
            ],
            "may be chosen twice",
        ),
        (lambda p, ops: _right_block_choices(p + 1, ops), "nothing else"),
        (
            lambda p, ops: [b for b in _right_block_choices(p, ops) if b[0] == b[2]],
            "misses .* blocks, for example",
        ),
    ],
)
def test_lab_check_block_choices_explains_wrong_answers(wrong, message):
    from nasedu import checks

    with pytest.raises(checks.CheckFailed, match=message):
        checks.pnas.block_choices(wrong)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (
            lambda parents, space, predict, k: _right_next_beam(
                parents, space, lambda cells: [-s for s in predict(cells)], k
            ),
            "lowest-scored",
        ),
        (
            lambda parents, space, predict, k: _right_next_beam(
                parents[:1], space, predict, k
            ),
            "only grew one parent",
        ),
        (
            lambda parents, space, predict, k: _right_next_beam(
                parents, space, predict, k
            )[::-1],
            "wrong order",
        ),
        (
            lambda parents, space, predict, k: _right_next_beam(
                parents, space, predict, k + 1
            ),
            "exactly k",
        ),
    ],
)
def test_lab_check_next_beam_explains_wrong_answers(wrong, message):
    from nasedu import checks

    with pytest.raises(checks.CheckFailed, match=message):
        checks.pnas.next_beam(wrong)
