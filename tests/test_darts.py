"""DARTS (chapter DARTS): the supernet, the architecture gradient, the derived cell, the
search loop and its resume. Oracles: a cell of plain ``MixedOp``\\ s (DARTS Eq. 2 as
written), autograd through the unrolled step in float64, torch's own SGD step, the
official code's parameter count and its genotype rule."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nasedu.data import ImageData
from nasedu.genotypes import Genotype
from nasedu.networks import NetworkCIFAR
from nasedu.ops import DARTS_PRIMITIVES
from nasedu.papers import darts
from nasedu.papers import rnn_cells as rnn
from nasedu.search import Clock, load_methods, run
from nasedu.strategies.gradient import (
    CONVS,
    Alphas,
    MixedCell,
    SearchCell,
    Supernet,
    cosine_lr,
    derive,
    edge_index,
    num_edges,
)

P = DARTS_PRIMITIVES
OPS = {name: k for k, name in enumerate(P)}


# ---- helpers ---------------------------------------------------------------------------------


def copy_mixed_into_fused(fused: torch.nn.Module, mixed: torch.nn.Module) -> None:
    """Give a fused ``SearchCell`` (or a fused ``Supernet``) the weights of a ``MixedCell``
    (or a ``fused=False`` supernet): edge e of the bundle leaving state j is channels
    [e·C, (e+1)·C) of each batched convolution."""
    if isinstance(fused, Supernet):
        fused.stem.load_state_dict(mixed.stem.state_dict())
        fused.classifier.load_state_dict(mixed.classifier.state_dict())
        for f, m in zip(fused.cells, mixed.cells):
            copy_mixed_into_fused(f, m)
        return
    fused.preprocess0.load_state_dict(mixed.preprocess0.state_dict())
    fused.preprocess1.load_state_dict(mixed.preprocess1.state_dict())
    convs = [n for n in P if n in CONVS]
    with torch.no_grad():
        for j, bundle in enumerate(fused.bundles):
            first, C = max(0, j - 1), bundle.C
            for e, node in enumerate(range(first, fused.steps)):
                ops = mixed.edges[edge_index(node, j)].ops
                rows = slice(e * C, (e + 1) * C)
                for name in convs:
                    f, op = bundle.convs[convs.index(name)], ops[OPS[name]]
                    if name.startswith("sep"):
                        f.dw1.weight[rows] = op[0][1].weight
                        f.pw1.weight[rows] = op[0][2].weight
                        f.dw2.weight[rows] = op[1][1].weight
                        f.pw2.weight[rows] = op[1][2].weight
                    else:
                        f.dw.weight[rows] = op[1].weight
                        f.pw.weight[rows] = op[2].weight
                if bundle.reduce_skip is not None:
                    half = slice(e * C // 2, (e + 1) * C // 2)
                    skip = ops[OPS["skip_connect"]]
                    bundle.reduce_skip.conv_1.weight[half] = skip.conv_1.weight
                    bundle.reduce_skip.conv_2.weight[half] = skip.conv_2.weight


def tiny_net(seed: int = 0, dtype=torch.float64, **kw) -> Supernet:
    torch.manual_seed(seed)
    args = dict(C=2, num_classes=3, layers=3, in_channels=1) | kw
    return Supernet(**args).to(dtype)


def tiny_alphas(seed: int = 0, dtype=torch.float64) -> Alphas:
    return Alphas(14, 8, std=0.5, generator=torch.Generator().manual_seed(seed)).to(
        dtype
    )


def batch(seed: int, n: int = 4, hw: int = 4, classes: int = 3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 1, hw, hw, generator=g, dtype=dtype),
        torch.randint(0, classes, (n,), generator=g),
    )


def toy_images(n: int = 96, classes: int = 4) -> ImageData:
    """A learnable 1×8×8 toy problem (the quadrant of the label is brightened)."""
    g = torch.Generator().manual_seed(0)

    def split(m):
        y = torch.randint(0, classes, (m,), generator=g)
        x = 0.3 * torch.randn(m, 1, 8, 8, generator=g)
        for c in range(classes):
            r, col = divmod(c, 2)
            x[y == c, :, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 1.0
        return x, y

    return ImageData(
        "toy",
        split(n),
        split(16),
        split(16),
        num_classes=classes,
        in_channels=1,
        image_size=8,
        mean=(0.0,),
        std=(1.0,),
    )


# Second order is tested above on its own; searches run first order to stay fast.
TINY = dict(
    C=2,
    layers=3,
    epochs=2,
    batch_size=8,
    steps_per_epoch=2,
    valid_batches=1,
    augment=None,
    arch_lr=3e-2,
    order=1,
)


# ---- the supernet ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reduction,reduction_prev", [(False, False), (True, False), (False, True)]
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_cell_equals_a_cell_of_mixed_ops(
    reduction, reduction_prev, channels_last
):
    torch.manual_seed(0)
    mixed = MixedCell(4, 4, 6, 6, 4, reduction, reduction_prev).double()
    fused = SearchCell(4, 4, 6, 6, 4, reduction, reduction_prev).double()
    assert sum(p.numel() for p in fused.parameters()) == sum(
        p.numel() for p in mixed.parameters()
    )
    copy_mixed_into_fused(fused, mixed)
    hw0 = 8 if reduction_prev else 4
    s0 = torch.randn(3, 6, hw0, hw0, dtype=torch.float64)
    s1 = torch.randn(3, 6, 4, 4, dtype=torch.float64)
    if channels_last:
        s0, s1 = (s.contiguous(memory_format=torch.channels_last) for s in (s0, s1))
    alpha = torch.randn(14, 8, dtype=torch.float64, requires_grad=True)

    def run_cell(cell):
        out = cell(s0, s1, alpha.softmax(-1))
        grads = torch.autograd.grad(
            (out**2).sum(), [alpha, *cell.preprocess1.parameters()]
        )
        return out, grads

    (out_m, grads_m), (out_f, grads_f) = run_cell(mixed), run_cell(fused)
    assert out_f.shape == (3, 16, 2 if reduction else 4, 2 if reduction else 4)
    torch.testing.assert_close(out_f, out_m, rtol=1e-10, atol=1e-10)
    for g_f, g_m in zip(grads_f, grads_m):
        torch.testing.assert_close(g_f, g_m, rtol=1e-9, atol=1e-9)


def test_fused_and_reference_supernets_compute_the_same_function():
    mixed, fused = tiny_net(fused=False, C=4), tiny_net(C=4)
    copy_mixed_into_fused(fused, mixed)
    x, _ = batch(1, hw=8)
    alphas = tiny_alphas()
    torch.testing.assert_close(
        fused(x, *alphas.softmax()), mixed(x, *alphas.softmax()), rtol=1e-10, atol=1e-10
    )


def test_supernet_parameter_count_matches_the_official_search_model():
    # quark0/darts@f276dd3 cnn/model_search.Network(16, 10, 8, criterion) built on a CPU
    # (its .cuda() calls removed): sum(p.numel() for p in model.parameters()) = 1930618,
    # "param size = 1.930618MB" in train_search.py's log. The arch parameters are not
    # counted there either (they are Variables, not registered parameters).
    for fused in (True, False):
        assert (
            sum(p.numel() for p in Supernet(16, 10, 8, fused=fused).parameters())
            == 1930618
        )


def test_weights_and_alphas_are_separate_parameter_groups():
    net, alphas = tiny_net(), tiny_alphas()
    ids = {id(p) for p in net.parameters()}
    assert not ids & {id(p) for p in alphas.parameters()}
    assert [tuple(p.shape) for p in alphas.parameters()] == [(14, 8), (14, 8)]
    # Cells have no learnable BN affine parameters and no running statistics (A.1.1).
    for name, module in net.cells.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            assert module.weight is None and module.running_mean is None, name
    assert not list(net.buffers(recurse=True)) or all(
        not b.is_floating_point() for b in net.buffers()
    )


def test_none_only_and_reduced_primitive_sets_work():
    x, _ = batch(2, hw=8)
    for prims in (
        ("none", "skip_connect"),
        ("max_pool_3x3", "sep_conv_3x3"),
        ("none",),
    ):
        net = Supernet(2, 3, 3, primitives=prims, in_channels=1).double()
        w = torch.full((14, len(prims)), 1.0 / len(prims), dtype=torch.float64)
        assert net(x, w, w).shape == (4, 3)
    with pytest.raises(ValueError, match="cannot batch 'conv_3x3'"):
        Supernet(2, 3, 3, primitives=("conv_3x3",))


# ---- the architecture gradient ---------------------------------------------------------------


def unrolled_validation_gradient(net, alphas, train, valid, xi, buffers, mu, wd):
    """The oracle: ∇_α L_val(w'(α), α) by autograd through one real momentum-SGD step,
    w'(α) = w − ξ(μ·buf + ∇_w L_train(w, α) + wd·w), written independently of nasedu."""
    params = dict(net.named_parameters())

    def loss(p, x, y):
        return F.cross_entropy(functional_call(net, p, (x, *alphas.softmax())), y)

    grads = torch.autograd.grad(
        loss(params, *train), list(params.values()), create_graph=True
    )
    w_prime = {
        n: p.detach() - xi * (mu * b + g + wd * p.detach())
        for (n, p), g, b in zip(params.items(), grads, buffers)
    }
    return torch.autograd.grad(loss(w_prime, *valid), [alphas.normal, alphas.reduce])


def relative_error(got, want) -> float:
    got, want = (
        torch.cat([g.flatten() for g in got]),
        torch.cat([w.flatten() for w in want]),
    )
    return float((got - want).norm() / want.norm())


@pytest.fixture(scope="module")
def second_order_case():
    net, alphas = tiny_net(seed=3), tiny_alphas(seed=4)
    g = torch.Generator().manual_seed(5)
    buffers = [
        0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype) for p in net.parameters()
    ]
    train, valid = batch(6), batch(7)
    xi, mu, wd = 0.05, 0.9, 3e-4
    oracle = unrolled_validation_gradient(
        net, alphas, train, valid, xi, buffers, mu, wd
    )
    kw = dict(order=2, lr=xi, momentum_buffers=buffers, momentum=mu, weight_decay=wd)
    return net, alphas, train, valid, kw, oracle


def test_second_order_gradient_equals_autograd_through_the_unrolled_step(
    second_order_case,
):
    net, alphas, train, valid, kw, oracle = second_order_case
    exact = darts.alpha_gradient(net, alphas, train, valid, hessian="exact", **kw)
    assert relative_error(exact, oracle) < 1e-10
    # The second-order term matters here: the first-order gradient is far off.
    first = darts.alpha_gradient(net, alphas, train, valid, order=1)
    assert relative_error(first, oracle) > 0.1


def test_finite_difference_hessian_converges_to_the_unrolled_gradient(
    second_order_case,
):
    """Eq. 8 is a central difference: its error shrinks like ε² until the float64
    rounding floor. On this 2-channel supernet the curvature is so high that the
    paper's radius (ε·‖v‖ = 0.01) is still far from the limit; a smaller one is not."""
    net, alphas, train, valid, kw, oracle = second_order_case
    errors = {
        r: relative_error(
            darts.alpha_gradient(net, alphas, train, valid, fd_radius=r, **kw), oracle
        )
        for r in (1e-3, 1e-4, 1e-5)
    }
    assert errors[1e-5] < 1e-3
    assert errors[1e-4] < errors[1e-3] / 20 and errors[1e-5] < errors[1e-4] / 20, errors


def test_first_order_gradient_is_the_validation_gradient_at_fixed_weights():
    net, alphas = tiny_net(seed=1), tiny_alphas(seed=2)
    x, y = batch(3)
    reference = tiny_net(seed=1, fused=False)  # an independent network: plain MixedOps
    copy_mixed_into_fused(net, reference)
    want = torch.autograd.grad(
        F.cross_entropy(reference(x, *alphas.softmax()), y),
        [alphas.normal, alphas.reduce],
    )
    got = darts.alpha_gradient(net, alphas, None, (x, y), order=1)
    assert relative_error(got, want) < 1e-10
    # ξ = 0 in the second-order formula is the first-order gradient (§2.3).
    zero = darts.alpha_gradient(net, alphas, batch(4), (x, y), order=2, lr=0.0)
    assert relative_error(zero, want) < 1e-10


def test_unrolled_weights_are_the_next_momentum_sgd_step():
    net, alphas = tiny_net(seed=1), tiny_alphas()
    x, y = batch(8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    for _ in range(2):  # two real steps so that momentum buffers exist and matter
        opt.zero_grad()
        F.cross_entropy(net(x, *[a.detach() for a in alphas.softmax()]), y).backward()
        opt.step()
    buffers = [opt.state[p]["momentum_buffer"].clone() for p in net.parameters()]
    arch = tuple(a.detach() for a in alphas.softmax())
    unrolled = darts.unrolled_weights(net, arch, x, y, 0.1, buffers, 0.9, 3e-4)
    opt.zero_grad()
    F.cross_entropy(net(x, *arch), y).backward()
    opt.step()
    for w, p in zip(unrolled, net.parameters()):
        torch.testing.assert_close(w, p.detach(), rtol=1e-12, atol=1e-12)


def test_alpha_gradient_rejects_bad_settings():
    net, alphas = tiny_net(), tiny_alphas()
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        darts.alpha_gradient(net, alphas, batch(0), batch(1), order=3)
    with pytest.raises(ValueError, match="unknown hessian 'fd'; valid choices"):
        darts.alpha_gradient(net, alphas, batch(0), batch(1), hessian="fd")


# ---- the derived cell ------------------------------------------------------------------------


def hand_written_alphas() -> torch.Tensor:
    W = torch.zeros(14, 8)

    def put(node, source, **ops):
        for op, value in ops.items():
            W[edge_index(node, source), OPS[op]] = value

    put(0, 0, sep_conv_3x3=0.9)
    put(0, 1, none=0.99, skip_connect=0.5)  # `none` is strongest but never chosen
    put(1, 0, max_pool_3x3=0.3)
    put(1, 1, dil_conv_5x5=0.6)
    put(1, 2, none=0.95, avg_pool_3x3=0.4)
    put(2, 0, none=0.9, sep_conv_5x5=0.2)
    put(2, 1, none=0.9, sep_conv_5x5=0.1)
    put(2, 2, none=0.9, dil_conv_3x3=0.3)
    put(2, 3, none=0.9, skip_connect=0.25)
    put(3, 4, skip_connect=0.8)
    put(3, 2, max_pool_3x3=0.7, avg_pool_3x3=0.7)  # a tie: the first op wins
    return W


def test_derive_keeps_the_two_strongest_non_none_edges_per_node():
    W = hand_written_alphas()
    g = derive(W, W)
    assert g.normal == (
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("dil_conv_5x5", 1),
        ("avg_pool_3x3", 2),
        ("dil_conv_3x3", 2),
        ("skip_connect", 3),
        ("skip_connect", 4),
        ("max_pool_3x3", 2),
    )
    assert g.normal_concat == (2, 3, 4, 5) and g.form == "pairs"
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    # Every edge of every node from distinct predecessors; the network builds and runs.
    for node in g.nodes("normal"):
        assert node[0][1] != node[1][1]
    net = NetworkCIFAR(g, C=4, layers=3, num_classes=3, auxiliary=False, in_channels=1)
    assert net(torch.randn(2, 1, 8, 8))[0].shape == (2, 3)


def test_derive_all_form_keeps_every_argmax_none_included():
    W = hand_written_alphas()
    g = derive(W, W, form="all")
    assert g.form == "all" and len(g.normal) == 14
    assert g.nodes("normal")[0] == (("sep_conv_3x3", 0), ("none", 1))
    assert g.nodes("normal")[2] == (("none", 0), ("none", 1), ("none", 2), ("none", 3))
    assert Genotype.from_json(g.to_json()) == g


def test_derive_never_selects_none_even_when_it_dominates_everywhere():
    W = torch.rand(14, 8, generator=torch.Generator().manual_seed(0))
    W[:, OPS["none"]] += 10.0
    g = derive(W.softmax(-1), W.softmax(-1))
    assert all(op != "none" for op, _ in g.normal + g.reduce)


def test_derive_rejects_bad_shapes_and_forms():
    with pytest.raises(
        ValueError, match=r"shape \(13, 8\); 4 nodes over 8 operations need"
    ):
        derive(torch.zeros(13, 8), torch.zeros(14, 8))
    with pytest.raises(ValueError, match="unknown genotype form 'both'"):
        derive(torch.zeros(14, 8), torch.zeros(14, 8), form="both")


# ---- config, search, resume ------------------------------------------------------------------


def test_paper_config_and_budgets():
    spec = load_methods().get("darts")
    paper = spec.config("paper")
    assert paper == darts.DartsConfig()
    assert (paper.C, paper.layers, paper.epochs, paper.batch_size) == (16, 8, 50, 64)
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.lr_min) == (
        0.025,
        0.9,
        3e-4,
        0,
    )
    assert (paper.arch_lr, paper.arch_betas, paper.arch_weight_decay) == (
        3e-4,
        (0.5, 0.999),
        1e-3,
    )
    assert paper.order == 2 and paper.fd_radius == 0.01 and paper.train_portion == 0.5
    assert spec.config("smoke").C < paper.C and spec.config("colab").order == 1
    with pytest.raises(ValueError, match="order must be 1"):
        darts.DartsConfig(order=0)
    assert cosine_lr(0, 50, 0.025, 0.001) == 0.025
    assert cosine_lr(25, 50, 0.025, 0.001) == pytest.approx(0.013)


def test_search_records_alphas_and_a_buildable_cell_every_epoch():
    config = darts.DartsConfig(**TINY)
    records = darts.search(config, toy_images(), "cpu", seed=0)
    assert [r.step for r in records] == [0, 1]
    for r in records:
        assert len(r.extra["alphas"]["normal"]) == num_edges(4) == 14
        assert all(abs(sum(row) - 1) < 1e-5 for row in r.extra["alphas"]["reduce"])
        assert 0 <= r.reward <= 1 and r.cost > 0 and r.extra["lr"] > 0
        Genotype.from_dict(r.architecture)  # validates
    # α moved away from its zero initialisation (uniform softmax).
    assert (
        max(
            abs(v - 1 / 8) for row in records[-1].extra["alphas"]["normal"] for v in row
        )
        > 1e-3
    )


def test_state_dict_resume_gives_the_uninterrupted_alphas():
    config = darts.DartsConfig(**TINY | {"order": 2})
    data = toy_images()
    full = darts.DartsSearch(config, data, "cpu", seed=1).run_all()
    first = darts.DartsSearch(config, data, "cpu", seed=1)
    head = first.step(Clock())
    state = first.state_dict()
    resumed = darts.DartsSearch(
        config, data, "cpu", seed=1
    )  # a fresh search, same seed
    resumed.load_state_dict(state)
    tail = resumed.run_all()
    assert [r.extra["alphas"] for r in head + tail] == [r.extra["alphas"] for r in full]
    assert [r.architecture for r in head + tail] == [r.architecture for r in full]


def test_runner_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    settings_config = TINY | {"batch_size": 16}
    settings = dict(
        budget="smoke",
        dataset="digits",
        device="cpu",
        seed=0,
        progress=False,
        **settings_config,
    )
    whole = run("darts", out=tmp_path / "whole", **settings)
    run("darts", out=tmp_path / "cut", max_steps=1, **settings)
    resumed = run("darts", out=tmp_path / "cut", resume=True, **settings)
    assert [r.extra["alphas"] for r in resumed.records] == [
        r.extra["alphas"] for r in whole.records
    ]
    assert resumed.result["architecture"] == whole.result["architecture"]
    resolved = load_methods().get("darts").config("smoke", **settings_config)
    assert whole.config["config"] == json.loads(
        json.dumps(dataclasses.asdict(resolved))
    )


# ---- the recurrent cell (DARTS §3.1.2, App. A.1.2) -------------------------------------------


def test_darts_v2_recurrent_genotype_is_the_published_one():
    g = rnn.load_recurrent("darts_v2_rnn")
    # quark0/darts@f276dd3 rnn/genotypes.py DARTS_V2, copied by hand from the source.
    assert g.recurrent == (
        ("sigmoid", 0),
        ("relu", 1),
        ("relu", 1),
        ("identity", 1),
        ("tanh", 2),
        ("sigmoid", 5),
        ("tanh", 3),
        ("relu", 5),
    )
    assert g.concat == tuple(range(1, 9))
    assert rnn.RecurrentGenotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    with pytest.raises(
        ValueError, match="unknown recurrent genotype 'lstm'; valid choices"
    ):
        rnn.load_recurrent("lstm")
    with pytest.raises(ValueError, match="node 2: input 2 is invalid"):
        rnn.RecurrentGenotype([("tanh", 0), ("relu", 2)], [1, 2])
    with pytest.raises(ValueError, match="unknown recurrent operation 'none'"):
        rnn.RecurrentGenotype([("none", 0)], [1])


def test_recurrent_model_has_the_papers_23m_parameters():
    # DARTS Table 2: 23M at emsize = nhid = 850 (A.2.2) on PTB's 10,000 words:
    # 10,000·850 tied embedding + 10,000 bias + 1,700·1,700 (W0) + 8·850·1,700 (Ws).
    model = rnn.RNNModel(
        10000, 850, rnn.RecurrentCell(850, 850, rnn.load_recurrent("DARTS_V2_RNN"))
    )
    assert sum(p.numel() for p in model.parameters()) == 22_960_000


def test_search_cell_with_one_hot_weights_is_the_genotypes_cell():
    genotype = rnn.load_recurrent("darts_v2_rnn")
    torch.manual_seed(0)
    search = rnn.RecurrentSearchCell(6, 6, batch_norm=False).double()
    fixed = rnn.RecurrentCell(6, 6, genotype).double()
    fixed.load_state_dict(search.state_dict())
    w = torch.zeros(36, 5, dtype=torch.float64)
    w[:, 0] = 1.0  # every edge `none` ...
    start = 0
    for i, (op, j) in enumerate(genotype.recurrent):  # ... but the genotype's
        w[start + j] = 0.0
        w[start + j, rnn.RNN_PRIMITIVES.index(op)] = 1.0
        start += i + 1
    x, h = (
        torch.randn(5, 3, 6, dtype=torch.float64),
        torch.randn(3, 6, dtype=torch.float64),
    )
    mask = torch.rand(
        3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    out_s, last_s = search(x, h, w, mask, mask)
    out_f, last_f = fixed(x, h, None, mask, mask)
    torch.testing.assert_close(out_s, out_f, rtol=1e-12, atol=1e-12)
    assert rnn.derive_recurrent(w) == genotype


def test_derive_recurrent_keeps_the_strongest_non_none_edge_per_node():
    w = torch.zeros(36, 5)
    w[:, 0] = 5.0  # `none` strongest everywhere: never chosen
    w[0, 1] = 1.0  # node 1: tanh from state 0
    w[1 + 1, 4] = 0.9  # node 2: identity from state 1 (beats sigmoid from state 0)
    w[1 + 0, 3] = 0.8
    g = rnn.derive_recurrent(w)
    assert g.recurrent[:2] == (("tanh", 0), ("identity", 1))
    assert all(op != "none" for op, _ in g.recurrent)


def test_word_corpus_reads_ptb_files_and_batches_them(tmp_path):
    (tmp_path / "ptb.train.txt").write_text(" the cat sat \n the dog ran \n")
    (tmp_path / "ptb.valid.txt").write_text(" a cat ran \n")
    (tmp_path / "ptb.test.txt").write_text(" the <unk> sat \n")
    corpus = rnn.load_word_corpus(tmp_path)
    assert corpus.vocabulary[:4] == ("the", "cat", "sat", "<eos>")
    words = [corpus.vocabulary[i] for i in corpus.train.tolist()]
    assert words == ["the", "cat", "sat", "<eos>", "the", "dog", "ran", "<eos>"]
    assert [corpus.vocabulary[i] for i in corpus.valid.tolist()] == [
        "a",
        "cat",
        "ran",
        "<eos>",
    ]
    batches = rnn.batchify(corpus.train, 2)  # two columns of four words
    assert (
        batches.shape == (4, 2) and batches[:, 1].tolist() == corpus.train[4:].tolist()
    )
    x, y = rnn.get_batch(batches, 0, 35)
    assert x.shape == (3, 2) and torch.equal(y, batches[1:])
    with pytest.raises(FileNotFoundError, match="ptb.train.txt"):
        rnn.load_word_corpus(tmp_path / "missing")
    embedded = rnn.embedded_corpus()
    assert len(embedded) == 2000 and len(embedded.train) > 50_000


def test_recurrent_hypergradient_with_fixed_masks_converges_to_the_exact_one():
    """With the dropout masks held fixed within a step, Eq. 8 on the recurrent cell tends
    to the exact unrolled gradient. (Without clipping: R-DARTS clips ∇_w' L_val before
    the finite difference, which then estimates a rescaled product by design.)"""
    config = rnn.RecurrentSearchConfig(emsize=4, nhid=4, steps=3, batch_size=4, bptt=3)
    g = torch.Generator().manual_seed(0)
    corpus = rnn.Corpus(
        "toy",
        tuple(map(str, range(7))),
        *(torch.randint(0, 7, (200,), generator=g) for _ in range(3)),
    )
    search = rnn.RecurrentSearch(config, corpus, "cpu", seed=0)
    search.model.double()
    with torch.no_grad():
        search.alpha.data = torch.randn(6, 5, generator=g).double()
    hidden = search.model.init_hidden(4)
    masks = {k: v.double() for k, v in search.model.sample_masks(4, search.rng).items()}
    train = (*rnn.get_batch(search.train_data, 0, 3), hidden, masks)
    valid = (*rnn.get_batch(search.search_data, 0, 3), hidden, masks)
    kw = dict(order=2, lr=0.5, momentum=0.0, weight_decay=5e-7, clip=None)
    params = dict(search.model.named_parameters())
    exact, _ = darts.hypergradient(
        search._loss, params, [search.alpha], train, valid, hessian="exact", **kw
    )
    errors = [
        relative_error(
            darts.hypergradient(
                search._loss, params, [search.alpha], train, valid, fd_radius=r, **kw
            )[0],
            exact,
        )
        for r in (1e-3, 1e-4)
    ]
    assert errors[1] < 1e-6 and errors[1] < errors[0] / 20, errors
    first, _ = darts.hypergradient(
        search._loss, params, [search.alpha], train, valid, order=1
    )
    assert relative_error(first, exact) > 0.1


def test_recurrent_search_smoke_and_resume():
    config = rnn.RecurrentSearchConfig(
        **rnn.RECURRENT_BUDGETS["smoke"]
        | {"emsize": 8, "nhid": 8, "steps_per_epoch": 2, "order": 2}
    )
    corpus = rnn.embedded_corpus(200)
    full = rnn.RecurrentSearch(config, corpus, "cpu", seed=0).run_all()
    assert len(full) == 2 and all(r.extra["valid_ppl"] > 1 for r in full)
    assert len(full[0].extra["alphas"]) == 36
    rnn.RecurrentGenotype.from_dict(full[-1].architecture)
    first = rnn.RecurrentSearch(config, corpus, "cpu", seed=0)
    head = first.step(Clock())
    resumed = rnn.RecurrentSearch(config, corpus, "cpu", seed=0)
    resumed.load_state_dict(first.state_dict())
    assert [r.extra["alphas"] for r in head + resumed.run_all()] == [
        r.extra["alphas"] for r in full
    ]


# ---- GPU (skipped without CUDA; run by the GPU check script) ---------------------------------


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_search_epochs_on_cuda_with_amp_and_channels_last(order):
    config = darts.DartsConfig(**TINY | {"order": order, "C": 4})
    cuda = darts.DartsSearch(config, toy_images(), "cuda", seed=0)
    records = cuda.run_all()
    assert all(
        torch.isfinite(torch.tensor(r.extra["alphas"]["normal"])).all() for r in records
    )
    assert cuda.alphas.normal.device.type == "cuda"
    # The supernet on the GPU computes what it computes on the CPU (fp32, no autocast).
    net = tiny_net(dtype=torch.float32, C=4)
    alphas = tiny_alphas(dtype=torch.float32)
    x, _ = batch(0, hw=8, dtype=torch.float32)
    want = net(x, *alphas.softmax())
    got = net.cuda()(x.cuda(), *[a.cuda() for a in alphas.softmax()])
    torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)
