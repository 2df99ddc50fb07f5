"""ENAS (chapter *ENAS*): shared weights are really shared, a child extracted from the
micro super-graph computes what the super-graph computes, the three spaces run, and
a resumed search continues exactly."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nasedu import genotypes
from nasedu.papers import enas
from nasedu.search import load_methods, run
from nasedu.spaces.enas_spaces import (
    MacroArch,
    MacroSpace,
    MicroSpace,
    NewCell,
    RecurrentSpace,
    genotype_from_arc,
    recurrent_arch_from_arc,
)


def _micro(C=4, layers=3, classes=5):
    torch.manual_seed(0)
    return enas.MicroSupernet(C, classes, layers, in_channels=1)


def _used(model, loss) -> set[int]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {
        id(p)
        for p in model.parameters()
        if p.grad is not None and p.grad.abs().sum() > 0
    }


# --------------------------------------------------------------------------- spaces
def test_published_arc_decodes_to_the_published_enas_cell():
    record = json.loads((genotypes._published_dir() / "enas.json").read_text())
    g = genotype_from_arc(record["fixed_arc"])
    assert g == genotypes.load("enas")
    assert g.reduce_concat == (2, 4, 5, 6)  # node 3 is read by node 4: not a loose end


@pytest.mark.parametrize("space", [MicroSpace(), MacroSpace(), RecurrentSpace()])
def test_encode_inverts_decode_and_json_round_trips(space):
    rng = random.Random(3)
    for _ in range(5):
        arch = space.sample(rng)
        assert space.decode(space.encode(arch)) == arch
        assert space.from_json(json.loads(json.dumps(space.to_json(arch)))) == arch
        assert len(space.encode(arch)) == len(space.decisions())


def test_micro_encode_rejects_a_cell_outside_the_space():
    with pytest.raises(ValueError, match="the ENAS micro space has 5 nodes"):
        MicroSpace().encode(genotypes.load("darts_v2"))
    with pytest.raises(ValueError, match="not in the ENAS micro space"):
        edges = [("dil_conv_3x3", 0), ("sep_conv_3x3", 1)]
        MicroSpace(nodes=1).encode(genotypes.Genotype(edges, [2], edges, [2]))


def test_ptb_arc_decodes():
    from nasedu.reported import result

    a = recurrent_arch_from_arc(result("enas", "enas_ptb")["fixed_arc"])
    assert len(a.activations) == 12 and a.inputs[:3] == (0, 1, 2)
    assert a.loose_ends() == (3, 4, 7, 9, 10, 11)


# --------------------------------------------------------------------------- sharing
def test_two_micro_children_use_the_same_tensors_for_a_common_choice():
    net = _micro()
    space = MicroSpace()
    a = space.sample(random.Random(0))
    # b: a copy of a whose first normal node changes its second operation
    (op_x, x), (op_y, y) = a.nodes("normal")[0]
    other = next(p for p in space.primitives if p != op_y and p != "skip_connect")
    b_normal = ((op_x, x), (other, y)) + tuple(a.normal[2:])
    b = genotypes.Genotype(b_normal, a.normal_concat, a.reduce, a.reduce_concat)
    x_in = torch.randn(4, 1, 8, 8)
    used_a = _used(net, net(x_in, a).sum())
    used_b = _used(net, net(x_in, b).sum())
    common = net.cells[0].op(0, 0, x, op_x)  # layer 0 is a normal cell
    only_a = net.cells[0].op(0, 1, y, op_y)
    only_b = net.cells[0].op(0, 1, y, other)
    for p in common.parameters():
        assert id(p) in used_a and id(p) in used_b  # one tensor, trained by both
    assert all(id(p) not in used_b for p in only_a.parameters())
    assert all(id(p) not in used_a for p in only_b.parameters())
    assert any(True for _ in only_b.parameters())  # a conv: it has weights


def test_macro_and_recurrent_children_share_their_common_ops():
    torch.manual_seed(0)
    net = enas.MacroSupernet(4, 3, layers=4, in_channels=1)
    ops = ("conv_3x3", "sep_conv_5x5", "max_pool", "conv_5x5")
    skips = ((), (1,), (0, 1), (1, 0, 1))
    a = MacroArch(ops, skips)
    b = MacroArch(("conv_3x3", "conv_5x5", "max_pool", "conv_5x5"), skips)
    x = torch.randn(4, 1, 8, 8)
    used_a, used_b = _used(net, net(x, a).sum()), _used(net, net(x, b).sum())
    for p in net.branches[0]["conv_3x3"].parameters():
        assert id(p) in used_a and id(p) in used_b
    for p in net.branches[1]["sep_conv_5x5"].parameters():
        assert id(p) in used_a and id(p) not in used_b

    cell = enas.EnasRecurrentCell(6, 6, nodes=4)
    space = RecurrentSpace(nodes=4)
    r1 = space.from_json(
        {"activations": ["tanh", "relu", "tanh", "sigmoid"], "inputs": [0, 1, 1]}
    )
    r2 = space.from_json(
        {"activations": ["tanh", "relu", "tanh", "sigmoid"], "inputs": [0, 0, 1]}
    )
    h = torch.zeros(2, 6)
    out1, _ = cell(torch.randn(3, 2, 6), h, r1)
    (g1,) = torch.autograd.grad(out1.sum(), cell.Ws[1])  # node 2: (input, act, ...)
    # node 2 reads node 1 with tanh in r1: only block [1, tanh] of its matrix moves
    assert g1[1, 0].abs().sum() > 0 and g1[0].abs().sum() == 0
    out2, _ = cell(torch.randn(3, 2, 6), h, r2)
    (g2,) = torch.autograd.grad(out2.sum(), cell.Ws[1])
    assert g2[0, 0].abs().sum() > 0 and g2[1].abs().sum() == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_micro_child_built_standalone_computes_the_supernet_output(seed):
    net = _micro(C=4, layers=5).double()
    space = MicroSpace()
    g = genotypes.load("enas") if seed == 0 else space.sample(random.Random(seed))
    child = net.child(g).double()
    child.train()
    net.train()
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    logits, aux = child(x)
    assert aux is None
    torch.testing.assert_close(logits, net(x, g), rtol=1e-10, atol=1e-10)
    # The child holds copies of exactly the weights it uses: fewer than the supernet.
    assert sum(p.numel() for p in child.parameters()) < sum(
        p.numel() for p in net.parameters()
    )


def test_child_extraction_is_not_vacuous():
    # The oracle above must be able to fail: a child of another cell differs.
    net = _micro(C=4, layers=5).double()
    g, h = MicroSpace().sample(random.Random(5)), MicroSpace().sample(random.Random(6))
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    assert not torch.allclose(net.child(h)(x)[0], net(x, g))


# --------------------------------------------------------------------------- shapes
def test_all_three_spaces_run_with_right_shapes():
    rng = random.Random(0)
    micro = _micro(C=4, layers=5, classes=7)
    assert micro(torch.randn(3, 1, 8, 8), MicroSpace().sample(rng)).shape == (3, 7)
    macro = enas.MacroSupernet(4, 7, layers=12, in_channels=3)
    assert macro(torch.randn(3, 3, 16, 16), MacroSpace().sample(rng)).shape == (3, 7)
    standalone = enas.MacroSupernet(4, 7, 12, 3, arch=MacroSpace().sample(rng))
    assert standalone(torch.randn(2, 3, 16, 16)).shape == (2, 7)
    assert sum(p.numel() for p in standalone.parameters()) < sum(
        p.numel() for p in macro.parameters()
    )
    from nasedu.papers.rnn_cells import RNNModel

    model = RNNModel(50, 8, enas.EnasRecurrentCell(8, 8, nodes=12))
    tokens = torch.randint(0, 50, (5, 3))
    log_probs, hidden, raw = model(
        tokens, model.init_hidden(3), RecurrentSpace().sample(rng)
    )
    assert log_probs.shape == (5, 3, 50) and hidden.shape == (3, 8)


# --------------------------------------------------------------------------- controller
def test_controller_restarts_at_new_cell_and_rescores_exactly():
    space = MicroSpace(nodes=3)
    ctrl = enas.make_controller(space, enas.ControllerSettings(hidden=16), seed=0)
    decisions = space.decisions()
    assert sum(isinstance(d, NewCell) for d in decisions) == 1
    s = ctrl.sample(decisions, torch.Generator().manual_seed(1))
    again = ctrl.evaluate(decisions, s.actions)
    torch.testing.assert_close(again.log_prob, s.log_prob)
    g = space.decode(s.actions)
    assert space.encode(g) == s.actions
    # The reduction cell picks among its own 2 + i states: never beyond them.
    for i, node in enumerate(g.nodes("reduce")):
        assert all(j < i + 2 for _, j in node)


def test_skip_penalty_is_zero_at_the_target_and_pulls_towards_it():
    p = torch.tensor([0.4, 0.4])
    assert float(enas.skip_penalty(p, 0.4)) == pytest.approx(0.0, abs=1e-6)
    logits = torch.tensor([2.0], requires_grad=True)  # p ≈ 0.88 > 0.4
    enas.skip_penalty(torch.sigmoid(logits), 0.4).backward()
    assert logits.grad.item() > 0  # descending lowers p


def test_macro_update_uses_the_skip_penalty():
    space = MacroSpace(layers=4)
    ctrl = enas.make_controller(space, enas.ControllerSettings(hidden=8), seed=0)
    upd = enas.EnasReinforce(ctrl, 0.01, skip_weight=0.8, skip_target=0.4)
    s = ctrl.sample(space.decisions(), torch.Generator().manual_seed(0))
    out = upd.update([(space.decisions(), s.actions, 0.5)])
    assert out["skip_penalty"] > 0


def test_cosine_restarts_schedule():
    f = enas.cosine_restarts
    assert f(0, 0.05, 0.0005, 10, 2) == pytest.approx(0.05)
    assert f(5, 0.05, 0.0005, 10, 2) == pytest.approx((0.05 + 0.0005) / 2)
    assert f(10, 0.05, 0.0005, 10, 2) == pytest.approx(0.05)  # first restart
    assert f(30, 0.05, 0.0005, 10, 2) == pytest.approx(0.05)  # after 10 + 20


# --------------------------------------------------------------------------- methods
def test_methods_registered_with_paper_settings():
    methods = load_methods()
    config = methods.get("enas").config("paper")
    assert config.space == "micro" and config.micro.nodes == 5
    assert (
        config.micro.controller.lr == 0.0035
        and config.macro.controller.skip_weight == 0.8
    )
    assert config.rnn.controller.temperature == 5.0
    assert methods.get("enas_random").config("smoke").micro.training.epochs >= 1
    with pytest.raises(ValueError, match="unknown ENAS space 'mezzo'; valid choices"):
        methods.get("enas").config("smoke", space="mezzo")


TINY = {
    "micro": {
        "C": 2,
        "layers": 3,
        "training": {"epochs": 2},
        "controller": {"train_steps": 1, "num_aggregate": 2},
    },
    "macro": {
        "filters": 4,
        "layers": 3,
        "training": {"epochs": 2},
        "controller": {"train_steps": 1, "num_aggregate": 2},
    },
    "rnn": {
        "nhid": 8,
        "nodes": 3,
        "epochs": 2,
        "bptt": 4,
        "controller": {"train_steps": 1, "num_aggregate": 2},
    },
    "steps_per_epoch": 2,
    "valid_batches": 1,
    "derive_samples": 2,
}


def _trace(records):
    return [
        (
            r.step,
            json.dumps(r.architecture, sort_keys=True),
            r.reward,
            json.dumps(r.extra["controller"]),
            json.dumps(r.extra["derive_samples"]),
        )
        for r in records
    ]


@pytest.mark.parametrize(
    "method, space",
    [("enas", "micro"), ("enas", "macro"), ("enas", "rnn"), ("enas_random", "micro")],
)
def test_resume_gives_the_same_controller_and_history(tmp_path, method, space):
    kwargs = dict(budget="smoke", seed=4, progress=False, space=space, **TINY)
    whole = run(method, out=tmp_path / "whole", **kwargs)
    part = run(method, out=tmp_path / "part", max_steps=1, **kwargs)
    assert len(part.records) == 1
    resumed = run(method, out=tmp_path / "part", resume=True, **kwargs)
    assert _trace(resumed.records) == _trace(whole.records)
    assert resumed.result == whole.result
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["search"]
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["search"]
    for key, value in a["controller"].items():
        assert torch.equal(value, b["controller"][key]), key
    assert a["updater"]["baseline"] == b["updater"]["baseline"]
    for key, value in a["supernet"].items():
        assert torch.equal(value, b["supernet"][key]), key


def test_derive_keeps_the_best_sample_on_one_batch():
    records = run("enas", budget="smoke", seed=1, progress=False, **TINY).records
    for r in records:
        samples = r.extra["derive_samples"]
        best = max(samples, key=lambda s: s["reward"])  # the first of equals
        assert r.architecture == best["architecture"]
        assert 0.0 <= r.reward <= 1.0 and r.extra["children_evaluated"] == 2 + 2


# --------------------------------------------------------------------------- lab checks
def test_lab_checks_pass_right_answers_and_explain_wrong_ones(capsys):
    from nasedu import checks
    from nasedu.spaces.enas_spaces import loose_ends

    checks.enas.loose_ends(loose_ends)
    checks.enas.skip_penalty(enas.skip_penalty)
    assert capsys.readouterr().out.count(checks.PASS_MARK) == 2

    def with_inputs(inputs, nodes):
        return [j for j in range(nodes + 2) if j not in set(inputs)]

    def zero_based(inputs, nodes):
        return [j - 2 for j in loose_ends(inputs, nodes)]

    def stub(inputs, nodes):
        raise NotImplementedError("write your code here")

    for wrong, message in [
        (with_inputs, "includes a cell input"),
        (zero_based, "node i is state i \\+ 2"),
        (stub, "is not written yet"),
    ]:
        with pytest.raises(checks.CheckFailed, match=message):
            checks.enas.loose_ends(wrong)

    def one_sided(p, t):
        return (p * (p / t).log()).sum()

    def reverse(p, t):
        return (t * (t / p).log() + (1 - t) * ((1 - t) / (1 - p)).log()).sum()

    def mean(p, t):
        return enas.skip_penalty(p, t) / len(p)

    def detached(p, t):
        return enas.skip_penalty(p, t).detach().item()

    for wrong, message in [
        (one_sided, "'no skip'"),
        (reverse, "KL\\(target"),
        (mean, "sums the KL"),
        (detached, "no tensor with a gradient"),
    ]:
        with pytest.raises(checks.CheckFailed, match=message):
            checks.enas.skip_penalty(wrong)
