"""SNAS (chapter SNAS): Gumbel-softmax samples, the temperature schedule, the resource
costs and penalty, single-level search and its resume. Oracles: torch's own
``gumbel_softmax`` and ``RelaxedOneHotCategorical``, costs worked out by hand from the
formulas of ``SNAS/operations.py`` (which ``op_costs`` also matched exactly when run
side by side with the official modules, every op, both strides, four shapes)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import RelaxedOneHotCategorical

from nasedu.data import ImageData
from nasedu.genotypes import Genotype
from nasedu.ops import DARTS_PRIMITIVES
from nasedu.papers import snas
from nasedu.search import Clock, load_methods
from nasedu.strategies.gradient import Alphas, Supernet, edge_index

P = DARTS_PRIMITIVES
OPS = {name: k for k, name in enumerate(P)}


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


# ---- sampling --------------------------------------------------------------------------------


def test_temperature_schedule_values():
    # R-SNAS utils.Temp_Scheduler, stepped before each epoch: (1 − (e+1)/150)·0.97 + 0.03.
    assert snas.temperature(0) == pytest.approx(1 - 0.97 / 150)
    assert snas.temperature(74) == pytest.approx(0.515)
    assert snas.temperature(149) == pytest.approx(0.03)
    assert snas.temperature(400) == 0.03  # clamped at the minimum
    values = [snas.temperature(e) for e in range(150)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert snas.temperature(2, 1.0, 0.1, total=3) == pytest.approx(0.1)


def test_gumbel_softmax_is_torchs():
    logits = torch.randn(14, 8, generator=torch.Generator().manual_seed(0))
    for hard in (False, True):
        torch.manual_seed(3)
        ours = snas.gumbel_softmax(logits, 0.7, hard)
        torch.manual_seed(3)
        theirs = F.gumbel_softmax(logits, tau=0.7, hard=hard)
        torch.testing.assert_close(ours, theirs)


def test_hard_samples_are_one_hot_and_gradients_reach_alpha():
    alphas = Alphas(
        14, 8, mean=1.0, std=0.5, generator=torch.Generator().manual_seed(0)
    )
    g = torch.Generator().manual_seed(1)
    z_n = snas.gumbel_softmax(alphas.normal, 0.5, hard=True, generator=g)
    z_r = snas.gumbel_softmax(alphas.reduce, 0.5, hard=True, generator=g)
    for z in (z_n, z_r):
        assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(z.detach().sum(-1), torch.ones(14))
    torch.manual_seed(0)
    net = Supernet(2, 3, 3, in_channels=1)
    loss = F.cross_entropy(
        net(torch.randn(4, 1, 8, 8), z_n, z_r), torch.tensor([0, 1, 2, 0])
    )
    loss.backward()
    assert alphas.normal.grad.abs().sum() > 0 and alphas.reduce.grad.abs().sum() > 0


def test_soft_samples_lie_on_the_simplex_and_sharpen_as_temperature_falls():
    logits = torch.zeros(2000, 8)
    g = torch.Generator().manual_seed(0)
    hot = snas.gumbel_softmax(logits, 1.0, generator=g)
    cold = snas.gumbel_softmax(logits, 0.03, generator=g)
    torch.testing.assert_close(hot.sum(-1), torch.ones(2000))
    assert cold.max(-1).values.mean() > 0.95 and hot.max(-1).values.mean() < 0.7


def test_argmax_of_samples_follows_softmax_of_alpha():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 0.5, 0.5, -2.0, 0.0])
    g = torch.Generator().manual_seed(0)
    z = snas.gumbel_softmax(logits.expand(40000, 8), 1.0, hard=True, generator=g)
    torch.testing.assert_close(z.mean(0), logits.softmax(-1), atol=0.01, rtol=0)


def test_concrete_log_prob_is_the_relaxed_categorical_density():
    logits = torch.randn(
        5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    dist = RelaxedOneHotCategorical(
        torch.tensor(0.7, dtype=torch.float64), logits=logits
    )
    torch.manual_seed(0)
    z = dist.sample()
    torch.testing.assert_close(
        snas.concrete_log_prob(logits, z, 0.7, floor=0.0), dist.log_prob(z)
    )


# ---- resources -------------------------------------------------------------------------------


def test_op_costs_worked_out_by_hand():
    # C = 4 channels, 8×8 input; y is the output side. Formulas of SNAS/operations.py.
    assert snas.op_costs("none", 4, 8, 1) == (0, 0, 0)
    assert snas.op_costs("sep_conv_3x3", 4, 8, 1) == (
        104,
        104 * 64,
        64 * (7 * 4 + 4) + 104,
    )
    assert snas.op_costs("dil_conv_5x5", 4, 8, 1) == (
        116,
        116 * 64,
        64 * (3 * 4 + 4) + 116,
    )
    assert snas.op_costs("max_pool_3x3", 4, 8, 1) == (0, 9 * 64 * 4, 2 * 64 * 4)
    assert snas.op_costs("skip_connect", 4, 8, 1) == (0, 0, 2 * 4 * 64)
    # Strided (reduction cell, y = 4): FactorizedReduce and a strided separable conv.
    assert snas.op_costs("skip_connect", 4, 8, 2) == (
        16,
        16 * 16,
        2 * 16 * (16 + 2) + 16,
    )
    assert snas.op_costs("sep_conv_3x3", 4, 8, 2) == (
        104,
        104 * 16,
        16 * (10 * 4 + 4) + 104,
    )
    assert snas.op_costs("avg_pool_3x3", 4, 8, 2) == (0, 9 * 16 * 4, 5 * 16 * 4)
    with pytest.raises(ValueError, match="no SNAS cost for operation 'conv_3x3'"):
        snas.op_costs("conv_3x3", 4, 8, 1)


def hand_built_cell() -> torch.Tensor:
    """One-hot choices: node 2 = sep3(0) + skip(1), node 3 = max(0) + dil5(2), the rest none."""
    z = torch.zeros(14, 8, dtype=torch.float64)
    z[:, OPS["none"]] = 1.0
    for node, source, op in (
        (0, 0, "sep_conv_3x3"),
        (0, 1, "skip_connect"),
        (1, 0, "max_pool_3x3"),
        (1, 2, "dil_conv_5x5"),
    ):
        z[edge_index(node, source)] = 0.0
        z[edge_index(node, source), OPS[op]] = 1.0
    return z


def test_resource_term_of_a_hand_built_cell():
    costs = snas.cell_costs(False, C=4, h=8)
    z = hand_built_cell()
    # Linear penalty, 0.43·(2·size + FLOPs/4000 + MAC/100) per edge, numbers from above.
    linear = 0.43 * (
        (2 * 104 + 6656 / 4000 + 2152 / 100)
        + (512 / 100)
        + (2304 / 4000 + 512 / 100)
        + (2 * 116 + 7424 / 4000 + 1140 / 100)
    )
    got = snas.edge_penalty(costs, z, log=False).sum()
    assert float(got) == pytest.approx(linear)
    assert linear == pytest.approx(209.52008)
    # Log penalty: mean of log size, log FLOPs, log MAC per edge; zeros count as log 1.
    logs = (
        math.log(104)
        + math.log(6656)
        + math.log(2152)
        + math.log(512)
        + math.log(2304)
        + math.log(512)
        + math.log(116)
        + math.log(7424)
        + math.log(1140)
    ) / 3
    assert float(snas.edge_penalty(costs, z, log=True).sum()) == pytest.approx(logs)
    assert float(snas.edge_penalty(costs, z, "size", log=False).sum()) == 104 + 116
    # Two normal cells and one reduction cell: each type averaged over its cells.
    reduce_costs = snas.cell_costs(True, C=8, h=8)
    total = snas.resource_penalty(
        [(False, costs), (False, costs), (True, reduce_costs)],
        z,
        z,
        log=False,
        reduce_ratio=2.0,
    )
    want = linear + 2.0 * float(snas.edge_penalty(reduce_costs, z, log=False).sum())
    assert float(total) == pytest.approx(want)


def test_reduction_cells_cost_strided_edges_at_the_input_side():
    costs = snas.cell_costs(True, C=4, h=8)
    assert tuple(costs[edge_index(0, 0), OPS["skip_connect"]].tolist()) == (
        16,
        256,
        592,
    )
    # An edge from an intermediate node is stride 1 on the reduced 4×4 maps.
    assert tuple(costs[edge_index(1, 2), OPS["skip_connect"]].tolist()) == (
        0,
        0,
        2 * 4 * 16,
    )


def test_resource_gradient_methods():
    costs = snas.cell_costs(False, C=4, h=8).float()
    alphas = Alphas(
        14, 8, mean=1.0, std=0.5, generator=torch.Generator().manual_seed(0)
    )
    z = snas.gumbel_softmax(
        alphas.normal, 1.0, generator=torch.Generator().manual_seed(1)
    )
    cells = [(False, costs)]
    for method in snas.RESOURCE_METHODS:
        alphas.zero_grad()
        penalty = snas.resource_penalty(
            cells, z, z, method=method, alphas=alphas, tau=1.0
        )
        (g,) = torch.autograd.grad(penalty, [alphas.normal])
        assert g.abs().sum() > 0, method
    # `discrete` is the expected cost under softmax(α): here, the expected parameter size.
    expected = (alphas.normal.softmax(-1) * costs[:, :, 0]).sum()
    got = snas.resource_penalty(
        cells, z, z, method="discrete", separation="size", log=False, alphas=alphas
    )
    torch.testing.assert_close(got, expected)
    # The reparametrised penalty lowers the expected cost: a step against its gradient
    # moves probability towards cheap operations.
    logits = alphas.normal.detach().clone().requires_grad_()
    before = (logits.softmax(-1) * costs[:, :, 0]).sum()
    cheap = snas.resource_penalty(
        cells, logits.softmax(-1), None, separation="size", log=False
    )
    (g,) = torch.autograd.grad(cheap, [logits])
    after = ((logits - 0.01 * g).softmax(-1) * costs[:, :, 0]).sum()
    assert after < before
    with pytest.raises(ValueError, match="unknown resource method 'magic'"):
        snas.resource_penalty(cells, z, z, method="magic")


# ---- derivation, config, search --------------------------------------------------------------


def test_child_is_the_argmax_in_both_genotype_forms():
    config = snas.SnasConfig(
        C=2, layers=3, epochs=1, batch_size=8, steps_per_epoch=1, augment=None
    )
    search = snas.SnasSearch(config, toy_images(), "cpu", seed=0)
    with torch.no_grad():
        search.alphas.normal.copy_(hand_built_cell().float())
        search.alphas.reduce.copy_(hand_built_cell().float())
    all_form = search.genotype()
    assert all_form.form == "all" and len(all_form.normal) == 14
    assert all_form.nodes("normal")[0] == (("sep_conv_3x3", 0), ("skip_connect", 1))
    assert all_form.nodes("normal")[3] == (
        ("none", 0),
        ("none", 1),
        ("none", 2),
        ("none", 3),
        ("none", 4),
    )
    pairs = search.genotype("pairs")
    assert pairs.normal[:4] == (
        ("sep_conv_3x3", 0),
        ("skip_connect", 1),
        ("max_pool_3x3", 0),
        ("dil_conv_5x5", 2),
    )
    assert all(op != "none" for op, _ in pairs.normal)
    n, r = search.child_weights()
    assert torch.equal(n, hand_built_cell().float())


def test_paper_config_budgets_and_errors():
    spec = load_methods().get("snas")
    paper = spec.config("paper")
    assert paper == snas.SnasConfig()
    assert (paper.epochs, paper.C, paper.layers, paper.batch_size) == (150, 16, 8, 64)
    assert (paper.temperature, paper.temperature_min, paper.temperature_epochs) == (
        1.0,
        0.03,
        150,
    )
    assert paper.resource_method == "reparametrization" and paper.log_penalty
    assert paper.resource_lambda == 1.5e-3 and paper.drop_path_prob == 0.3
    smoke = spec.config("smoke")
    assert smoke.temperature_epochs == smoke.epochs
    with pytest.raises(ValueError, match="unknown resource_method 'reinforce'"):
        snas.SnasConfig(resource_method="reinforce")
    with pytest.raises(ValueError, match="temperature_min"):
        snas.SnasConfig(temperature_min=2.0)


TINY = dict(
    C=2,
    layers=3,
    epochs=2,
    temperature_epochs=2,
    batch_size=8,
    steps_per_epoch=2,
    valid_batches=1,
    augment=None,
    arch_lr=3e-2,
    drop_path_prob=0.2,
)


def test_single_level_step_updates_weights_and_alphas_from_the_training_loss():
    search = snas.SnasSearch(snas.SnasConfig(**TINY), toy_images(), "cpu", seed=0)
    w0 = [p.detach().clone() for p in search.supernet.parameters()]
    a0 = search.alphas.normal.detach().clone()
    search.train_epoch(0)
    assert not torch.equal(search.alphas.normal, a0)
    assert any(not torch.equal(p, q) for p, q in zip(search.supernet.parameters(), w0))
    assert not hasattr(search, "valid_loader")  # one data stream: no bilevel split


def test_search_records_and_resume_with_the_same_samples():
    config = snas.SnasConfig(**TINY | {"epochs": 3, "temperature_epochs": 3})
    data = toy_images()
    full = snas.SnasSearch(config, data, "cpu", seed=2).run_all()
    assert [round(r.extra["temperature"], 6) for r in full] == [
        round(snas.temperature(e, 1.0, 0.03, 3), 6) for e in range(3)
    ]
    for r in full:
        assert Genotype.from_dict(r.architecture).form == "all"
        assert Genotype.from_dict(r.extra["genotype_pairs"]).form == "pairs"
        assert set(r.extra["child_costs"]) == {"size", "flops", "mac"}
        assert 0 <= r.reward <= 1
    first = snas.SnasSearch(config, data, "cpu", seed=2)
    head = first.step(Clock())
    resumed = snas.SnasSearch(config, data, "cpu", seed=2)
    resumed.load_state_dict(first.state_dict())
    tail = resumed.run_all()
    assert [r.extra["alphas"] for r in head + tail] == [r.extra["alphas"] for r in full]
    assert [r.architecture for r in head + tail] == [r.architecture for r in full]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_snas_epochs_on_cuda():
    records = snas.SnasSearch(
        snas.SnasConfig(**TINY), toy_images(), "cuda", seed=0
    ).run_all()
    assert len(records) == 2
    assert all(math.isfinite(r.extra["resource_penalty"]) for r in records)
