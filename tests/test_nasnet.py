"""NASNet (chapter NASNet): the cell space and its controller encoding, the TF-Slim
network (NASNet-A's parameter count at 6 @ 768 against the paper's Table 1),
ScheduledDropPath against R-TF's formula and through the training engine, PPO's
clipping, and resuming a search. Oracles: R-TF ``_apply_drop_path`` written out,
the paper's 3.3M, hand-computed channel counts."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from nasedu import genotypes as G
from nasedu import reported
from nasedu.data import ImageData
from nasedu.networks import count_parameters
from nasedu.papers import nasnet
from nasedu.search import load_methods, run
from nasedu.strategies.controller import PPO, Controller, ppo_loss
from nasedu.train import TrainConfig, train

COUNTS = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "parameter_counts.json").read_text()
)


def nasnet_a() -> nasnet.NASNetGenotype:
    return nasnet.NASNetGenotype.from_genotype(G.load("NASNet_A"))


def toy_images(n: int = 64, classes: int = 4) -> ImageData:
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
        train=split(n),
        valid=split(32),
        test=None,
        num_classes=classes,
        in_channels=1,
        image_size=8,
        mean=(0.0,),
        std=(1.0,),
    )


# ------------------------------------------------------------------ ScheduledDropPath
def tf_keep_prob(keep: float, cell: int, total_cells: int, step: int, total: int):
    """R-TF ``NasNetABaseCell._apply_drop_path`` (version v3), transcribed."""
    layer_ratio = (cell + 1) / float(total_cells)
    keep = 1 - layer_ratio * (1 - keep)
    current_ratio = min(1.0, step / total)
    return 1 - current_ratio * (1 - keep)


def test_scheduled_drop_path_is_r_tf_v3():
    for cell in range(20):
        for step in (0, 1000, 468750, 937500, 2_000_000):
            expected = 1 - tf_keep_prob(0.6, cell, 20, step, 937500)
            got = nasnet.scheduled_drop_path(0.4, cell, 20, step / 937500)
            assert got == pytest.approx(expected, abs=1e-12)
    assert nasnet.scheduled_drop_path(0.4, 19, 20, 1.0) == pytest.approx(0.4)
    assert nasnet.scheduled_drop_path(0.4, 0, 20, 0.0) == 0.0
    with pytest.raises(ValueError, match="cell must be in 0..19"):
        nasnet.scheduled_drop_path(0.4, 20, 20, 0.5)


def test_scheduled_drop_path_rises_linearly_with_training_and_depth():
    epochs, net = 10, nasnet.NASNetCIFAR(nasnet_a(), F=4, N=1, image_size=8)
    config = TrainConfig(epochs=epochs, drop_path_prob=0.4)
    table = [net.cell_drop_probs(config.drop_prob(e)) for e in range(epochs)]
    n = len(net.cells)
    for e, row in enumerate(table):
        expected = [1 - tf_keep_prob(0.6, i, n, e, epochs) for i in range(n)]
        assert row == pytest.approx(expected)
    # linear in time: equal increments per epoch, in every cell
    steps = torch.tensor(table).diff(dim=0)  # (epochs - 1, cells)
    assert torch.allclose(steps, steps[0].expand_as(steps))
    assert all(a < b for a, b in zip(table[-1], table[-1][1:]))  # deeper drops more


def test_the_engine_passes_the_schedule_into_every_cell():
    data = toy_images()
    model = nasnet.NASNetCIFAR(
        nasnet_a(), F=4, N=1, num_classes=4, in_channels=1, image_size=8
    )
    seen: dict[int, list[float]] = {i: [] for i in range(len(model.cells))}
    for i, cell in enumerate(model.cells):
        cell.register_forward_pre_hook(
            lambda mod, args, i=i: seen[i].append(args[2]) if mod.training else None
        )
    config = TrainConfig(
        epochs=2, batch_size=32, drop_path_prob=0.4, augment=None, cutout=0
    )
    train(model, data, config, "cpu", progress=False)
    n = len(model.cells)
    for i, probs in seen.items():
        expected = [nasnet.scheduled_drop_path(0.4, i, n, e / 2) for e in (0, 1)]
        assert probs == pytest.approx([expected[0]] * 2 + [expected[1]] * 2)


def test_drop_path_spares_identity_paths_as_r_tf_does():
    cell = nasnet.NASNetCIFAR(nasnet_a(), F=4, N=1, image_size=8).cells[0]
    ops = [op for node in cell.nodes for op, _ in node]
    flags = [flag for node in cell.droppable for flag in node]
    assert flags == [op != "skip_connect" for op in ops] and not all(flags)


# ------------------------------------------------------------------ network, counts
def test_nasnet_a_6_at_768_has_the_papers_3_3M_parameters():
    entry = COUNTS["paper_networks"][0]
    paper = reported.result("nasnet", "nasnet_a_6_768_cifar10")
    torch.manual_seed(0)
    net = nasnet.NASNetCIFAR(G.load(entry["genotype"]), F=entry["F"], N=entry["N"])
    assert net.name == entry["name"] == paper["label"].split("(")[1].rstrip(")")
    assert count_parameters(net) == entry["count"]
    assert count_parameters(net, auxiliary=True) == entry["count_with_auxiliary_head"]
    assert round(count_parameters(net) / 1e6, 1) == paper["params_M"] == 3.3
    assert len(net.cells) == 20  # R-TF num_cells=18 + 2 reduction cells


def test_nasnet_a_concatenates_r_tf_used_hiddenstates():
    net = nasnet.NASNetCIFAR(nasnet_a(), F=32, N=6)
    # Normal: h_{i-1} and the 5 blocks (6 × F); Reduction: blocks 1..4 (4 × 2F).
    assert [c.out_channels for c in net.cells[:8]] == [192] * 6 + [256, 384]
    assert net.cells[0].prev.__class__ is torch.nn.Identity  # first cell: stem twice
    assert net.penultimate_filters == 768


@pytest.mark.parametrize("seed", range(4))
def test_random_cells_build_run_and_train(seed):
    space = nasnet.NASNetSpace()
    genotype = space.sample(random.Random(seed))
    net = nasnet.NASNetCIFAR(genotype, F=4, N=1, in_channels=1, image_size=8)
    logits, aux = net(torch.randn(2, 1, 8, 8), drop_prob=0.3)
    assert logits.shape == aux.shape == (2, 10)
    (logits.sum() + aux.sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []
    net.eval()
    assert net(torch.randn(3, 1, 8, 8))[1] is None


def test_concat_blocks_double_the_channels_and_unused_blocks_are_the_output():
    space = nasnet.NASNetSpace(blocks=2)
    # normal: block 0 = concat(sep3(h0), skip(h1)); block 1 = add(skip(block 0), avg(h1))
    normal = [1, 1, 10, 0, 1, 2, 1, 0, 4, 0]
    reduce = [0, 1, 5, 5, 0, 0, 1, 5, 5, 0]
    g = space.decode(normal + reduce)
    assert g.normal_combine == ("concat", "add") and g.cells.normal_concat == (3,)
    assert g.cells.reduce_concat == (2, 3)  # neither reduction block is used
    cell = nasnet.NASNetCell(g, False, C_net=8, C_prev=8, prev_is_larger=False, F=4)
    # block 1 reads the 8-channel concat through a 1×1 conv: its output has F = 4
    assert cell.out_channels == 4
    out = cell(torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6))
    assert out.shape == (2, 4, 6, 6)


# ------------------------------------------------------------------------- space
def test_space_has_10B_decisions_and_decode_inverts_encode():
    space = nasnet.NASNetSpace()
    decisions = space.decisions()
    assert len(decisions) == 2 * 5 * 5  # App. A.2: 2 × 5B softmaxes
    assert [d.size for d in decisions[:5]] == [2, 2, 13, 13, 2]
    assert [d.size for d in decisions[20:25]] == [6, 6, 13, 13, 2]
    rng = random.Random(1)
    for _ in range(20):
        g = space.sample(rng)
        assert space.decode(space.encode(g)) == g
        assert space.from_json(json.loads(json.dumps(space.to_json(g)))) == g
    assert space.encode(nasnet_a())[:5] == [1, 0, 11, 10, 0]
    with pytest.raises(ValueError, match="outside normal0_input_a"):
        space.decode([2] + [0] * 49)
    with pytest.raises(ValueError, match="50 decisions"):
        space.decode([0] * 49)


def test_published_nasnet_a_round_trips_through_the_controller_encoding():
    space = nasnet.NASNetSpace()
    g = nasnet_a()
    decoded = space.decode(space.encode(g))
    assert (
        decoded.cells.normal == g.cells.normal
        and decoded.cells.reduce == g.cells.reduce
    )
    assert g.hash() == G.load("NASNet_A").hash()


def test_genotype_rejects_bad_combinations():
    with pytest.raises(ValueError, match="valid choices: add, concat"):
        nasnet.NASNetGenotype(G.load("NASNet_A"), ("mul",) * 5, ("add",) * 5)
    with pytest.raises(ValueError, match="one entry per block"):
        nasnet.NASNetGenotype(G.load("NASNet_A"), ("add",) * 4, ("add",) * 5)


# ---------------------------------------------------------------------------- PPO
def test_ppo_ratio_outside_the_clip_range_gives_zero_gradient():
    eps = 0.2
    log_old = torch.zeros(4)
    ratios = torch.tensor([1.5, 1.1, 0.5, 0.9])
    advantage = torch.tensor([1.0, 1.0, -1.0, -1.0])
    log_prob = ratios.log().requires_grad_()
    ppo_loss(log_prob, log_old, advantage, eps).backward()
    grad = log_prob.grad
    assert grad[0] == 0 and grad[2] == 0  # pushed beyond 1 ± ε in A's direction
    assert grad[1] != 0 and grad[3] != 0  # inside the range: the usual gradient
    # outside the range but against the advantage's direction: not clipped
    log_prob = torch.tensor([1.5, 0.5]).log().requires_grad_()
    ppo_loss(log_prob, torch.zeros(2), torch.tensor([-1.0, 1.0]), eps).backward()
    assert (log_prob.grad != 0).all()


@pytest.mark.parametrize("clip, zero", [(1e-4, True), (10.0, False)])
def test_ppo_second_epoch_has_no_gradient_once_ratios_leave_the_clip(clip, zero):
    space = nasnet.NASNetSpace(blocks=1)
    torch.manual_seed(0)
    ctrl = Controller(space.kinds(), hidden=16, layers=1, init_range=0.1)
    ppo = PPO(ctrl, lr=0.05, clip=clip, epochs=2)
    decisions = space.decisions()
    g = torch.Generator().manual_seed(0)
    batch = [(decisions, ctrl.sample(decisions, g).actions, r) for r in (1.0, 0.0)]
    ppo.update(batch)
    grads = torch.cat(
        [p.grad.flatten() for p in ctrl.parameters() if p.grad is not None]
    )
    assert bool((grads == 0).all()) is zero


# ------------------------------------------------------------------- search, resume
SMALL = {  # 3 children of 2 steps each; one update, then one child left in the buffer
    "samples": 3,
    "batch_size": 2,
    "child": {"F": 2, "train": {"epochs": 1, "batch_size": 500}},
}


def test_methods_are_registered_with_the_paper_controller():
    methods = load_methods()
    config = methods.get("nasnet").config("paper")
    assert (config.hidden, config.lr, config.entropy_weight) == (100, 0.00035, 1e-5)
    assert (config.baseline_decay, config.batch_size, config.samples) == (
        0.95,
        20,
        20000,
    )
    assert config.child.N == 2 and config.child.train.epochs == 20
    assert "nasnet_random" in methods


@pytest.mark.parametrize("method", ["nasnet", "nasnet_random"])
def test_resume_gives_the_same_controller_state_and_history(tmp_path, method):
    kwargs = dict(budget="smoke", device="cpu", seed=3, progress=False, **SMALL)
    whole = run(method, out=tmp_path / "whole", **kwargs)
    run(method, out=tmp_path / "cut", max_steps=2, **kwargs)
    resumed = run(method, out=tmp_path / "cut", resume=True, **kwargs)

    def trace(records):
        return [(r.step, r.architecture, r.reward) for r in records]

    assert len(whole.records) == 3 and trace(resumed.records) == trace(whole.records)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    sa, sb = a["search"]["strategy"], b["search"]["strategy"]
    if method == "nasnet":
        assert len(sa["log"]) == 1 and sa["log"] == sb["log"]
        assert len(sa["buffer"]) == 1 and sa["buffer"] == sb["buffer"]
        for key, value in sa["controller"].items():
            assert torch.equal(value, sb["controller"][key]), key
        assert sa["updater"]["baseline"] == sb["updater"]["baseline"]
    else:
        assert sa == sb


# --------------------------------------------------------------------------- lab checks
def test_lab_check_scheduled_keep_prob(capsys):
    from nasedu.checks import CheckFailed
    from nasedu.checks import nasnet as lab

    def right(keep, cell, n, step, total):
        return 1 - min(1.0, step / total) * (cell + 1) / n * (1 - keep)

    lab.scheduled_keep_prob(right)
    assert "✔" in capsys.readouterr().out
    wrong = {
        "clip step / total_steps at 1": lambda k, c, n, s, t: (
            1 - s / t * (c + 1) / n * (1 - k)
        ),
        "by time only": lambda k, c, n, s, t: 1 - min(1.0, s / t) * (1 - k),
        "the depth ratio is": lambda k, c, n, s, t: (
            1 - min(1.0, s / t) * c / n * (1 - k)
        ),
        "return the keep one": lambda k, c, n, s, t: 1 - right(k, c, n, s, t),
        "not written yet": lambda *a: (_ for _ in ()).throw(NotImplementedError()),
    }
    for message, fn in wrong.items():
        with pytest.raises(CheckFailed, match=re.escape(message)):
            lab.scheduled_keep_prob(fn)


def test_lab_check_clipped_surrogate(capsys):
    from nasedu.checks import CheckFailed
    from nasedu.checks import nasnet as lab

    def right(ratio, advantage, eps):
        return torch.minimum(
            ratio * advantage, ratio.clamp(1 - eps, 1 + eps) * advantage
        )

    lab.clipped_surrogate(right)
    assert "✔" in capsys.readouterr().out
    wrong = {
        "clip\\(ρ\\)·A alone": lambda r, a, e: r.clamp(1 - e, 1 + e) * a,
        "maximum": lambda r, a, e: torch.maximum(r * a, r.clamp(1 - e, 1 + e) * a),
        "you return ρ·A": lambda r, a, e: r * a,
        "one value per sample": lambda r, a, e: right(r, a, e).mean(),
        "no gradient": lambda r, a, e: right(r, a, e).detach(),
    }
    for message, fn in wrong.items():
        with pytest.raises(CheckFailed, match=message):
            lab.clipped_surrogate(fn)


@pytest.mark.slow
def test_children_trained_by_a_worker_pool_score_as_in_this_process(tmp_path):
    kwargs = dict(budget="smoke", device="cpu", seed=1, progress=False, **SMALL)
    serial = run("nasnet", out=tmp_path / "serial", **kwargs)
    pooled = run("nasnet", out=tmp_path / "pooled", workers=2, **kwargs)

    def trace(records):
        return [(r.step, r.architecture, r.reward) for r in records]

    assert trace(pooled.records) == trace(serial.records)
