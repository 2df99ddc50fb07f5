"""NASBOT (chapter NASBOT): layer graphs, masses, path lengths, the OTMANN distance
against a brute-force linear program, the modifiers, and the resumable search."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from nasedu.papers.nasbot import _psd, otmann_kernel
from nasedu.search import load_methods, run
from nasedu.spaces import layer_graph as lg

TINY = {"evaluations": 3, "init_evaluations": 2, "ea_evaluations": 16}


def _graphs(n: int, seed: int = 0) -> list[lg.LayerGraph]:
    rng = random.Random(seed)
    return [
        lg.random_graph(rng, image_size=8, steps=rng.randint(0, 6)) for _ in range(n)
    ]


def test_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown label 'conv9'"):
        lg.chain(["conv9", "softmax"], [8, 0])
    with pytest.raises(ValueError, match="children of 'ip' must be conv"):
        lg.chain(["max-pool", "fc", "softmax"], [0, 8, 0])
    with pytest.raises(ValueError, match="before 'op' must all be softmax"):
        lg.chain(["conv3", "fc"], [8, 8])
    with pytest.raises(
        ValueError, match="mixes input sizes"
    ):  # pooled and unpooled inputs
        lg.make_graph(
            ["ip", "conv3", "max-pool", "conv3", "fc", "softmax", "op"],
            [0, 8, 0, 8, 8, 0, 0],
            [0, 1, 0, 1, 0, 0, 0],
            [(0, 1), (1, 2), (1, 3), (2, 3), (3, 4), (4, 5), (5, 6)],
        )
    g = lg.initial_pool()[3]
    assert lg.LayerGraph.from_dict(json.loads(json.dumps(g.to_dict()))) == g


def test_layer_masses_by_hand():
    small = lg.chain(["conv3", "max-pool", "fc", "softmax"], [16, 0, 32, 0])
    # conv: 1·16 (the input counts one channel); pool: its 16 input channels;
    # fc: 0.1·16·32 = 51.2; ip/op/softmax: max(0.1·83.2, 100) = 100
    assert np.allclose(small.masses(), [100, 16, 16, 51.2, 100, 100])
    big = lg.make_graph(
        ["ip", "conv3", "conv3", "fc", "softmax", "softmax", "op"],
        [0, 32, 64, 64, 0, 0, 0],
        [0, 1, 1, 0, 0, 0, 0],
        [(0, 1), (1, 2), (2, 3), (3, 4), (3, 5), (4, 6), (5, 6)],
    )
    proc = 32 + 32 * 64 + 0.1 * 64 * 64  # 2489.6 -> non-processing mass 248.96
    assert np.allclose(big.masses(), [248.96, 32, 2048, 409.6, 124.48, 124.48, 248.96])
    assert proc == pytest.approx(2489.6)


def test_path_lengths_by_hand():
    g = lg.initial_pool()[3]  # ip → c1 → c2 → c3 → pool, plus the skip c1 → pool
    bkwd, fwd = g.path_lengths()
    col = {
        k: i for i, k in enumerate((gr, t) for gr in lg.GROUPS for t in lg.PATH_TYPES)
    }
    assert bkwd[4, col["all", "shortest"]] == 2 and bkwd[4, col["all", "longest"]] == 4
    assert bkwd[4, col["all", "rw"]] == pytest.approx(1 + (1 + 3) / 2)
    assert (
        bkwd[4, col["conv", "longest"]] == 3 and bkwd[4, col["pool", "shortest"]] == 1
    )
    assert fwd[1, col["all", "shortest"]] == 4 and fwd[1, col["all", "longest"]] == 6
    assert fwd[0, col["fc", "longest"]] == 1 and fwd[7].sum() == 0


def test_label_mismatch_matrix():
    m = lg.label_mismatch(
        ["conv3", "conv7", "max-pool", "fc"], ["conv5", "avg-pool", "fc", "conv3"]
    )
    assert m[0, 0] == pytest.approx(np.sqrt(2) / 10 * np.sqrt(2))
    assert m[1, 3] == pytest.approx(np.sqrt(2) / 10 * 2)
    assert m[2, 1] == 0.5 and m[3, 2] == 0.0 and np.isinf(m[0, 2])


def _lp_optimum(supply, demand, cost):
    n1, n2 = cost.shape
    a_eq = np.zeros((n1 + n2, n1 * n2))
    for i in range(n1):
        a_eq[i, i * n2 : (i + 1) * n2] = 1
    for j in range(n2):
        a_eq[n1 + j, j::n2] = 1
    res = linprog(
        cost.ravel(),
        A_eq=a_eq,
        b_eq=np.concatenate([supply, demand]),
        bounds=(0, None),
        method="highs",
    )
    assert res.status == 0
    return res.fun


def test_otmann_equals_brute_force_linear_program():
    tiny = [
        lg.chain(["conv3", "softmax"], [8, 0]),
        lg.chain(["conv5", "fc", "softmax"], [16, 8, 0]),
        lg.chain(["conv3", "max-pool", "softmax"], [4, 0, 0]),
        lg.initial_pool(1, 8)[3],
    ]
    for a in tiny:
        for b in tiny:
            for mis, struct in zip(lg.MISLABEL_COEFFS, lg.STRUCT_COEFFS, strict=True):
                d, dbar, plan = lg.otmann(a, b, mis, struct)
                supply, demand, cost = lg.ot_problem(a, b, mis, struct)
                assert d == pytest.approx(
                    _lp_optimum(supply, demand, cost), rel=1e-7, abs=1e-7
                )
                assert np.allclose(plan.sum(1), supply) and np.allclose(
                    plan.sum(0), demand
                )


def test_otmann_is_zero_on_self_symmetric_and_normalised():
    graphs = _graphs(8)
    for a in graphs:
        d, dbar = lg.otmann_features(a, a)
        assert np.allclose(d, 0) and np.allclose(dbar, 0)
        for b in graphs:
            dab, eab = lg.otmann_features(a, b)
            dba, eba = lg.otmann_features(b, a)
            assert np.allclose(dab, dba, rtol=1e-9, atol=1e-6)
            assert np.all((eab >= 0) & (eab <= 1.0))
    a, b = (
        lg.chain(["conv3", "softmax"], [8, 0]),
        lg.chain(["conv3", "softmax"], [64, 0]),
    )
    assert lg.otmann(a, b)[0] > 0  # different masses must cost something


def test_kernel_gram_matrix_is_psd_after_projection():
    graphs = _graphs(10, seed=1)
    d = np.zeros((4, 10, 10))
    dbar = np.zeros_like(d)
    for i, a in enumerate(graphs):
        for j, b in enumerate(graphs):
            d[:, i, j], dbar[:, i, j] = lg.otmann_features(a, b)
    mean_d = d.reshape(4, -1).mean(1)
    k = otmann_kernel(d, dbar, 1.0, 0.5, 1 / (4 * mean_d), np.full(4, 1.0))
    assert np.allclose(k, k.T, atol=1e-9) and np.allclose(np.diag(k), 1.0)
    # the raw kernel is close to PSD (OTMANN is not Euclidean), the projection exactly
    assert np.linalg.eigvalsh(k).min() > -0.01
    assert np.linalg.eigvalsh(_psd(k)).min() > -1e-9


@pytest.mark.parametrize("name", list(lg.MODIFIERS))
def test_every_modifier_keeps_the_graph_valid(name):
    rng = random.Random(list(lg.MODIFIERS).index(name))
    applied = 0
    for g in _graphs(25, seed=2):
        try:
            child = lg.modify(g, name, rng)
        except ValueError:
            continue  # the modifier does not apply to this graph: refusal is allowed
        applied += 1
        child.validate()
        if name in ("wedge_layer", "branch"):
            assert child.n > g.n
        if name == "remove_layer":
            assert child.n == g.n - 1
        if name == "skip":
            assert len(child.edges) == len(g.edges) + 1
        if name.startswith("inc"):
            assert sum(child.units) > sum(g.units)
        if name.startswith("dec"):
            assert sum(child.units) < sum(g.units)
        if name == "swap_label":
            assert sum(x != y for x, y in zip(child.labels, g.labels, strict=True)) == 1
        if child.fits(8):
            out = child.build(1, 8, 10)(torch.randn(2, 1, 8, 8))
            assert out.shape == (2, 10)
    assert applied >= 5


def test_mutate_respects_image_size_and_layer_cap():
    rng = random.Random(0)
    for g in _graphs(10, seed=3):
        child = lg.mutate(g, rng, steps=5, image_size=8, max_layers=16)
        assert child.fits(8) and child.n <= max(16, g.n)


def test_paper_config_and_budgets():
    method = load_methods().get("nasbot")
    paper = method.config("paper")
    assert paper.init_evaluations == 20 and paper.mutation_steps[0] == 0.5
    assert method.config("smoke").evaluations < method.config("colab").evaluations
    assert paper.workers == 2 and paper.hallucinate  # code: mode='asy', 2 GPUs
    assert method.config("smoke").workers == 0


def _trace(records):
    return [
        (r.step, json.dumps(r.architecture, sort_keys=True), round(r.reward, 6))
        for r in records
    ]


def test_search_runs_and_resume_equals_uninterrupted(tmp_path):
    full = run(
        "nasbot",
        budget="smoke",
        seed=2,
        out=tmp_path / "full",
        progress=False,
        device="cpu",
        **TINY,
    )
    assert [r.extra["phase"] for r in full.records] == ["init", "init", "bo"]
    assert full.records[2].architecture not in [
        r.architecture for r in full.records[:2]
    ]
    part = tmp_path / "part"
    run(
        "nasbot",
        budget="smoke",
        seed=2,
        out=part,
        progress=False,
        device="cpu",
        max_steps=2,
        **TINY,
    )
    resumed = run(
        "nasbot",
        budget="smoke",
        seed=2,
        out=part,
        progress=False,
        device="cpu",
        resume=True,
        **TINY,
    )
    assert _trace(resumed.records) == _trace(full.records)


# --------------------------------------------------------------------- asynchronous BO
def test_hallucinated_observations_keep_the_mean_and_shrink_sigma():
    from nasedu.strategies.bayesopt import GaussianProcess, hallucinate

    rng = np.random.default_rng(0)
    pts = rng.normal(size=(7, 2))  # 4 observed, 1 pending, 2 test points
    k = np.exp(-((pts[:, None] - pts[None]) ** 2).sum(-1))
    y = rng.normal(size=4)
    gp = GaussianProcess(1e-4).fit(k[:4, :4], y)
    h = hallucinate(gp, k[:5, :5], y, k[4:5, :4], [1.0])
    mu0, sd0 = gp.predict(k[4:, :4], np.ones(3))
    mu1, sd1 = h.predict(k[4:, :5], np.ones(3))
    assert np.allclose(mu0, mu1)  # believing the prediction changes no mean
    assert sd1[0] < 0.02 < sd0[0]  # the pending point is (almost) known
    assert np.all(sd1 <= sd0 + 1e-12)


def _serial_schedule(monkeypatch):
    from nasedu.papers import nasbot
    from nasedu.parallel import SerialEvaluator

    def serial(self):
        return SerialEvaluator(
            lambda graph, step: nasbot.train_network(
                graph, step, self.search_data, self.config.train, self.device, self.seed
            )
        )

    monkeypatch.setattr(nasbot.NASBOTSearch, "make_evaluator", serial)


def test_two_workers_propose_around_the_pending_network_and_resume(
    tmp_path, monkeypatch
):
    _serial_schedule(monkeypatch)  # two trials in flight, in submission order
    tiny = {**TINY, "evaluations": 4}
    args = dict(budget="smoke", seed=5, progress=False, device="cpu", workers=2)
    full = run("nasbot", out=tmp_path / "full", **args, **tiny)
    assert [r.extra["pending"] for r in full.records] == [1, 1, 1, 0]
    archs = [json.dumps(r.architecture, sort_keys=True) for r in full.records]
    assert len(set(archs)) == 4  # a pending network is never proposed again
    part = tmp_path / "part"
    run("nasbot", out=part, max_steps=2, **args, **tiny)
    resumed = run("nasbot", out=part, resume=True, **args, **tiny)
    assert _trace(resumed.records) == _trace(full.records)


def test_one_worker_process_equals_the_serial_search():
    args = dict(budget="smoke", seed=6, progress=False, device="cpu")
    serial = run("nasbot", **args, **TINY)
    pooled = run("nasbot", workers=1, **args, **TINY)
    assert _trace(pooled.records) == _trace(serial.records)


# --------------------------------------------------------------------- MLPs
def test_mlp_masses_labels_and_mismatch_by_hand():
    g = lg.chain(["relu", "tanh", "softmax"], [16, 8, 0])
    assert g.kind == "mlp" and g.groups == lg.MLP_GROUPS
    # relu: 1·16 (the input counts one channel), tanh: 16·8 (no 0.1: not an fc
    # layer); ip/op/softmax: max(0.1·144, 100) = 100
    assert np.allclose(g.masses(), [100, 16, 128, 100, 100])
    m = lg.label_mismatch(
        ["relu", "relu", "tanh", "softmax"], ["elu", "logistic", "logistic", "relu"]
    )
    assert m[0, 0] == pytest.approx(0.1) and m[1, 1] == pytest.approx(0.25)
    assert m[2, 2] == pytest.approx(0.1) and m[0, 3] == 0.0 and np.isinf(m[3, 3])
    with pytest.raises(ValueError, match="unknown label 'conv3' in a MLP"):
        lg.chain(["relu", "conv3", "softmax"], [8, 8, 0])
    with pytest.raises(ValueError, match="one kind"):
        lg.otmann(g, lg.chain(["conv3", "softmax"], [8, 0]))


def test_mlp_otmann_equals_linear_program_and_modifiers_stay_valid():
    pool = lg.initial_pool_mlp(8)
    for a in pool[:3]:
        for b in pool[2:]:
            d, _, _ = lg.otmann(a, b)
            assert d == pytest.approx(_lp_optimum(*lg.ot_problem(a, b)), abs=1e-7)
    rng = random.Random(0)
    for g in pool:
        child = lg.mutate(g, rng, steps=4)
        child.validate()
        assert child.kind == "mlp"
        assert child.build(1, 8, 10)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    crelu = lg.chain(["crelu", "softmax"], [5, 0]).build(1, 8, 10)
    assert crelu.layers[1](torch.randn(2, 64)).shape == (2, 5)


def test_mlp_search_runs():
    r = run(
        "nasbot",
        budget="smoke",
        seed=0,
        progress=False,
        device="cpu",
        network="mlp",
        **TINY,
    )
    assert all(lg.LayerGraph.from_dict(x.architecture).kind == "mlp" for x in r.records)
    with pytest.raises(ValueError, match="network must be one of cnn, mlp"):
        load_methods().get("nasbot").config("smoke", network="rnn")


# --------------------------------------------------------------------- benchmark
def test_growth_exponent_recovers_known_powers():
    from nasedu.bench import growth_exponent

    sizes = [10, 20, 40, 80]
    assert growth_exponent(sizes, [n**2 * 1e-6 for n in sizes]) == pytest.approx(2.0)
    assert growth_exponent(sizes, [n * 3e-4 for n in sizes]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two or more"):
        growth_exponent([10], [1.0])


@pytest.mark.parametrize("name", ["nasbot", "autokeras"])
def test_bench_command_prints_the_table_and_writes_the_report(
    name, capsys, tmp_path, monkeypatch
):
    from nasedu.bench import BENCHMARKS
    from nasedu.cli import main

    load_methods()
    full = BENCHMARKS.get(name)
    tiny = dict(layers=(4, 8), networks=(3, 6), acquisition_networks=(2, 3), repeats=1)
    monkeypatch.setitem(BENCHMARKS._items, f"tiny-{name}", lambda d: full(d, **tiny))
    out = tmp_path / "bench.json"
    assert main(["bench", f"tiny-{name}", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "distance (layers) (time ~ size^" in printed and "acquisition" in printed
    report = json.loads(out.read_text())
    for r in report["results"].values():
        assert len(r["seconds"]) == 2 and all(s > 0 for s in r["seconds"])
        assert np.isfinite(r["exponent"])
