"""Auto-Keras (chapter Auto-Keras): function-preserving morphisms, the edit distance,
the Bourgain kernel, the GP, and the resumable search."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random

import numpy as np
import pytest
import torch

from nasedu.search import load_methods, run
from nasedu.spaces import morphism as m
from nasedu.strategies.bayesopt import GaussianProcess, expected_improvement, ucb_cost

TINY = {"models": 3, "t_min": 0.3}  # three models, a few annealing steps


def _graph() -> m.NetworkGraph:
    return m.default_graph(1, 8, 10, n_conv=3, filters=6, dense_units=8)


def _trained_like(graph: m.NetworkGraph, seed: int) -> dict[str, torch.Tensor]:
    """Random weights *and* BN statistics, as after training (fresh BN is trivial)."""
    torch.manual_seed(seed)
    net = graph.build()
    state = {}
    for k, v in net.state_dict().items():
        if k.endswith("running_var"):
            state[k] = torch.rand_like(v) + 0.5
        elif v.is_floating_point():
            state[k] = torch.randn_like(v) * 0.5
        else:
            state[k] = v
    return state


def _out(graph, weights, x):
    net = graph.build().eval()
    net.load_state_dict(weights)
    with torch.no_grad():
        return net(x)


X = torch.randn(5, 1, 8, 8)


def _assert_same(g0, w0, g1, w1):
    assert g1.hash() != g0.hash()
    assert (_out(g1, w1, X) - _out(g0, w0, X)).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "kind,where",
    [
        ("conv", 3),
        ("bn", 3),
        ("dropout", 4),
        ("relu", 5),
        ("relu", 16),
        ("dense", 15),
        ("bn", 15),
    ],
)
def test_deeper_preserves_function(kind, where):
    g, w = _graph(), _trained_like(_graph(), 0)
    g1, w1 = m.deeper(g, w, where, kind)
    assert len(g1.layers) == len(g.layers) + 1 and g1.layers[where].kind == kind
    _assert_same(g, w, g1, w1)


def test_deeper_refuses_relu_where_it_is_not_the_identity():
    with pytest.raises(ValueError, match="valid choices there"):
        m.deeper(_graph(), None, 3, "relu")  # after a conv: values can be negative


def test_wider_preserves_function_and_widens_effective_area():
    g, w = _graph(), _trained_like(_graph(), 1)
    g1, w1 = m.wider(g, w, 3, 4, random.Random(0))
    assert g1.layer(3).width == 10 and g1.layer(7).width == 6  # L_p widened, L_n not
    assert w1["layers.7.weight"].shape == (6, 10, 3, 3)  # L_n reads 4 more channels
    assert w1["layers.6.running_mean"].shape == (10,)  # BN inside γ widened
    _assert_same(g, w, g1, w1)


def test_wider_through_add_widens_both_producers():
    g, w = _graph(), _trained_like(_graph(), 2)
    g, w = m.add_skip(g, w, 3, 7)  # conv 3 -> pool -> L_c -> add with conv 7
    gamma = m.effective_area(g, 7)
    g1, w1 = m.wider(g, w, 7, 2, random.Random(0))
    lc = [x for x in g.layers if x.skip and x.kind == "conv"][0]
    assert lc.id in gamma and g1.layer(lc.id).width == 8 and g1.layer(7).width == 8
    _assert_same(g, w, g1, w1)


@pytest.mark.parametrize("op", [m.add_skip, m.concat_skip])
@pytest.mark.parametrize("u,v", [(3, 7), (3, 11), (7, 11), (15, 16), (1, 3)])
def test_skip_connections_preserve_function(op, u, v):
    g, w = _graph(), _trained_like(_graph(), 3)
    g1, w1 = op(g, w, u, v)
    n_pool = (
        int(np.log2(g.shapes()[u][1] // g.shapes()[v][1])) if g.shapes()[v][1] else 0
    )
    new = [x for x in g1.layers if x.skip]
    assert sum(x.kind == "pool" for x in new) == n_pool  # L_o matches the path's pools
    assert sum(x.kind in ("add", "concat") for x in new) == 1
    _assert_same(g, w, g1, w1)


def test_the_oracle_can_fail():
    """A skip whose L_c is not zero changes the output: the check above has teeth."""
    g, w = _graph(), _trained_like(_graph(), 4)
    g1, w1 = m.add_skip(g, w, 3, 7)
    lc = [x for x in g1.layers if x.skip and x.kind == "conv"][0]
    w1[f"layers.{lc.id}.weight"] += 0.01
    assert (_out(g1, w1, X) - _out(g, w, X)).abs().max().item() > 1e-5


def test_random_chains_of_morphisms_preserve_function():
    rng = random.Random(0)
    for trial in range(8):
        g0 = _graph()
        w0 = _trained_like(g0, 10 + trial)
        g, w = g0, w0
        for _ in range(6):
            op = m.sample_operation(g, rng, max_width=48)
            g, w = m.apply(g, w, op, rng)
            g.validate()
        _assert_same(g0, w0, g, w)


def test_graph_json_round_trip_and_validation():
    g = m.add_skip(_graph(), None, 3, 11)[0]
    assert m.NetworkGraph.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    bad = g.to_dict()
    bad["layers"][2]["inputs"] = [99]
    with pytest.raises(ValueError, match="reads"):
        m.NetworkGraph.from_dict(bad)


# --------------------------------------------------------------------- distance
def _brute_layers(a, b):
    """Eq. 5 by enumeration: the best order-preserving injection of the shorter list."""
    if len(a) > len(b):
        a, b = b, a
    best = min(
        sum(m.layer_distance(x, b[j]) for x, j in zip(a, js, strict=True))
        for js in itertools.combinations(range(len(b)), len(a))
    )
    return best + len(b) - len(a)


def test_layer_distance_dp_equals_enumeration():
    rng = random.Random(0)
    for _ in range(40):
        a = [rng.choice([8, 16, 32, 64]) for _ in range(rng.randint(1, 5))]
        b = [rng.choice([8, 16, 32, 64]) for _ in range(rng.randint(1, 5))]
        assert m.layers_distance(tuple(a), tuple(b)) == pytest.approx(
            _brute_layers(a, b)
        )
    assert m.layers_distance((64, 64), (64, 128, 64)) == pytest.approx(1.0)  # by hand
    assert m.layers_distance((32,), (64,)) == pytest.approx(0.5)


def test_skip_distance_hungarian_equals_enumeration_and_hand_value():
    rng = random.Random(1)
    for _ in range(30):
        sa = [
            (rng.randint(1, 9), rng.randint(1, 5), "add")
            for _ in range(rng.randint(1, 4))
        ]
        sb = [
            (rng.randint(1, 9), rng.randint(1, 5), "add")
            for _ in range(rng.randint(1, 4))
        ]
        small, large = sorted((sa, sb), key=len)
        brute = min(
            sum(m.skip_distance(s, large[j]) for s, j in zip(small, p, strict=True))
            for p in itertools.permutations(range(len(large)), len(small))
        )
        assert m.skips_distance(sa, sb) == pytest.approx(
            brute + len(large) - len(small)
        )
    # Eq. 9 by hand: (|2−4| + |3−1|) / (4 + 3) = 4/7
    assert m.skip_distance((2, 3, "add"), (4, 1, "add")) == pytest.approx(4 / 7)


def test_edit_distance_is_symmetric_zero_on_self_and_hand_computed():
    rng = random.Random(2)
    graphs = [_graph()]
    for _ in range(6):
        g = graphs[-1]
        graphs.append(m.apply(g, None, m.sample_operation(g, rng, 48), rng)[0])
    for a in graphs:
        assert m.edit_distance(a, a) == 0.0
        for b in graphs:
            assert m.edit_distance(a, b) == pytest.approx(m.edit_distance(b, a))
    g = _graph()
    wide = m.wider(g, None, 3, 6)[0]  # 6 -> 12 filters in one conv: d_l = 6/12
    assert m.edit_distance(g, wide) == pytest.approx(0.5)
    skip = m.add_skip(g, None, 3, 11)[0]  # one extra skip: D_s = 1, λ = 1
    assert m.edit_distance(g, skip, lam=1.0) == pytest.approx(1.0)
    assert m.edit_distance(g, skip, lam=0.1) == pytest.approx(0.1)


def test_bourgain_kernel_is_positive_semidefinite():
    rng = random.Random(3)
    graphs = [_graph()]
    for _ in range(14):
        g = rng.choice(graphs)
        graphs.append(m.apply(g, None, m.sample_operation(g, rng, 48), rng)[0])
    d = np.array([[m.edit_distance(a, b) for b in graphs] for a in graphs])
    emb = m.BourgainEmbedding(d)
    x = emb.transform(d)
    k = emb.kernel(x, x)
    assert np.allclose(k, k.T) and np.allclose(np.diag(k), 1.0)
    assert np.linalg.eigvalsh(k).min() > -1e-9
    # the raw exp(−d²) need not be PSD; the embedded one is, with test points included
    k_all = emb.kernel(np.vstack([x, x[:3] + 0.1]), np.vstack([x, x[:3] + 0.1]))
    assert np.linalg.eigvalsh(k_all).min() > -1e-9


# --------------------------------------------------------------------- GP
def test_gp_posterior_matches_closed_form():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(6, 2))
    k = np.exp(-((pts[:, None] - pts[None]) ** 2).sum(-1))
    y = rng.normal(size=4)
    noise = 1e-3
    gp = GaussianProcess(noise).fit(k[:4, :4], y)
    mu, std = gp.predict(k[4:, :4], np.diag(k)[4:])
    inv = np.linalg.inv(k[:4, :4] + noise * np.eye(4))
    mu_ref = y.mean() + k[4:, :4] @ inv @ (y - y.mean())
    var_ref = np.diag(k[4:, 4:] - k[4:, :4] @ inv @ k[:4, 4:])
    assert np.allclose(mu, mu_ref) and np.allclose(std, np.sqrt(var_ref))
    logdet = np.linalg.slogdet(k[:4, :4] + noise * np.eye(4))[1]
    r = y - y.mean()
    lml_ref = -0.5 * r @ inv @ r - 0.5 * logdet - 2 * np.log(2 * np.pi)
    assert gp.log_marginal_likelihood() == pytest.approx(lml_ref)
    assert ucb_cost(np.array([1.0]), np.array([0.2]), 2.5)[0] == pytest.approx(0.5)
    # EI at std → 0 is the plain improvement; EI grows with std at equal mean
    assert expected_improvement(np.array([0.5]), np.array([0.0]), 0.3)[
        0
    ] == pytest.approx(0.2)
    ei = expected_improvement(np.array([0.3, 0.3]), np.array([0.1, 0.2]), 0.3)
    assert ei[1] > ei[0] > 0


# --------------------------------------------------------------------- search
def test_paper_config_and_budgets():
    method = load_methods().get("autokeras")
    paper = method.config("paper")
    assert paper.beta == 2.5 and paper.kernel_lambda == 1.0 and paper.children == 8
    assert (
        paper.filters == 64
        and paper.train.batch_size == 64
        and paper.train.epochs == 200
    )
    assert method.config("smoke").models < method.config("colab").models
    assert paper.workers == 1  # §4.3: search on the CPU while the GPU trains
    assert method.config("smoke").workers == 0


def _trace(records):
    return [
        (
            r.step,
            json.dumps(r.architecture, sort_keys=True),
            round(r.reward, 6),
            json.dumps(r.extra.get("operations")),
        )
        for r in records
    ]


def test_search_children_inherit_weights_and_resume_equals_uninterrupted(tmp_path):
    full = run(
        "autokeras",
        budget="smoke",
        seed=1,
        out=tmp_path / "full",
        progress=False,
        device="cpu",
        **TINY,
    )
    assert len(full.records) == TINY["models"]
    for r in full.records[1:]:
        assert r.extra["operations"] and r.extra["father"] is not None
        assert 0.0 <= r.reward <= 1.0
    part = tmp_path / "part"
    run(
        "autokeras",
        budget="smoke",
        seed=1,
        out=part,
        progress=False,
        device="cpu",
        max_steps=1,
        **TINY,
    )
    resumed = run(
        "autokeras",
        budget="smoke",
        seed=1,
        out=part,
        progress=False,
        device="cpu",
        resume=True,
        **TINY,
    )
    assert _trace(resumed.records) == _trace(full.records)


def test_generated_child_starts_from_its_parents_trained_function():
    from nasedu import data as data_mod
    from nasedu.papers.autokeras import AutoKerasSearch
    from nasedu.search import Clock

    config = load_methods().get("autokeras").config("smoke", **TINY)
    data = data_mod.load("digits")
    search = AutoKerasSearch(config, data, torch.device("cpu"), seed=0)
    search.step(Clock())
    father, ops, alpha = search.generate()
    assert ops and np.isfinite(alpha)
    graph, weights = search.graphs[father], search.weights[father]
    fresh = graph.build().state_dict()
    assert any(not torch.equal(fresh[k], weights[k]) for k in fresh)  # trained weights
    child, child_w = graph, weights
    for op in ops:
        child, child_w = m.apply(child, child_w, op, random.Random(0))
    x = data.valid[0][:32]
    assert (
        _out(child, child_w, x) - _out(graph, weights, x)
    ).abs().max().item() <= 1e-5


# --------------------------------------------------------------------- §4.3 parallelism
def _serial_schedule(monkeypatch):
    """Run the pooled schedule (one model generated ahead of the workers) with the
    serial evaluator: deterministic, no processes."""
    from nasedu.papers import autokeras as ak
    from nasedu.parallel import SerialEvaluator

    def serial(self):
        return SerialEvaluator(
            lambda candidate, step: ak.train_model(
                candidate, step, self.search_data, self.config, self.device, self.seed
            )
        )

    monkeypatch.setattr(ak.AutoKerasSearch, "make_evaluator", serial)


def test_next_model_is_generated_while_the_workers_train_and_resume_keeps_it(
    tmp_path, monkeypatch
):
    _serial_schedule(monkeypatch)
    args = dict(budget="smoke", seed=3, progress=False, device="cpu", workers=1)
    full = run("autokeras", out=tmp_path / "full", **args, **TINY)
    # one worker: a model trains while the next one waits, already generated
    assert [r.extra["pending"] for r in full.records] == [0, 1, 0]
    # generated before model 1 was observed: its father can only be model 0
    assert full.records[2].extra["father"] == 0
    part = tmp_path / "part"
    run("autokeras", out=part, max_steps=2, **args, **TINY)
    state = torch.load(part / "checkpoint.pt", weights_only=True)["search"]
    assert [t["step"] for t in state["pending"]] == [2]  # cut off with a model waiting
    resumed = run("autokeras", out=part, resume=True, **args, **TINY)
    assert _trace(resumed.records) == _trace(full.records)


def test_pooled_search_equals_the_serial_schedule(monkeypatch):
    """One worker process: results arrive in submission order, so the pool reproduces
    the serial evaluator exactly (with several workers the order depends on timing)."""
    args = dict(budget="smoke", seed=4, progress=False, device="cpu", workers=1)
    pooled = run("autokeras", **args, **TINY)
    _serial_schedule(monkeypatch)
    serial = run("autokeras", **args, **TINY)
    assert _trace(pooled.records) == _trace(serial.records)
    assert all(r.cost > 0 for r in pooled.records)


def test_a_failed_first_model_stops_the_search_with_a_clear_error(monkeypatch):
    from nasedu.papers import autokeras as ak

    def oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(ak, "train_model", oom)
    with pytest.raises(ValueError, match="every result so far failed"):
        run("autokeras", budget="smoke", progress=False, device="cpu", **TINY)


def test_early_stopping_rule_and_training_stops():
    from nasedu import data as data_mod
    from nasedu.papers import autokeras as ak

    assert not ak.no_improvement([0.5, 0.6, 0.7], 1)
    assert ak.no_improvement([0.5, 0.7, 0.7], 1)  # equal is no improvement
    assert not ak.no_improvement([0.5, 0.7, 0.6, 0.8], 2)
    assert ak.no_improvement([0.5, 0.9, 0.6, 0.8], 2)
    assert not ak.no_improvement([0.9, 0.1], 2)  # fewer than τ + 1 epochs
    config = (
        load_methods()
        .get("autokeras")
        .config("smoke", tau=1, train={"epochs": 4, "lr": 1e-12})
    )
    data = data_mod.load("digits")
    graph = m.default_graph(1, 8, 10, n_conv=2, filters=4, dense_units=8)
    # a learning rate of ~0 cannot change the accuracy: stopped after τ + 1 epochs
    out = ak.train_model((graph, None), 0, ak.search_data(data, 0), config, "cpu", 0)
    assert out.extra["epochs"] == 2 and out.extra["final_valid_acc"] == out.reward
    no_stop = dataclasses.replace(config, early_stop=False)
    out = ak.train_model((graph, None), 0, ak.search_data(data, 0), no_stop, "cpu", 0)
    assert out.extra["epochs"] == 4
