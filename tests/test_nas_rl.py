"""NAS-RL (chapter NAS-RL): the layer-wise space and its child networks, the depth
schedule, pooled == serial evaluation, exact resume, and the NAS recurrent cell.
Oracles: output sizes and channel counts worked out by hand from the paper's four
wiring rules, Fig. 5's worked example of the NAS cell written out in torch, and an
uninterrupted run for resume."""

from __future__ import annotations

import random

import pytest
import torch

from nasedu.checkpoint import load_checkpoint
from nasedu.evaluate import Outcome
from nasedu.papers import nas_rl
from nasedu.parallel import SerialEvaluator, timed_call
from nasedu.search import load_methods, run
from nasedu.spaces.layerwise import (
    Layer,
    LayerwiseArchitecture,
    LayerwiseSpace,
    build_network,
    concat_padded,
    output_size,
    pad_to,
)
from nasedu.strategies.controller import Choice, Controller, Skips

TINY = {"samples": 4, "child": {"train": {"epochs": 1}, "reward_epochs": 1}}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- space
@pytest.mark.parametrize("strides", [(1,), (1, 2, 3)])
def test_random_samples_build_and_run_with_the_right_shapes(strides):
    space = LayerwiseSpace(num_layers=6, strides=strides)
    rng = random.Random(0)
    patterns = set()
    for _ in range(12):
        arch = space.sample(rng)
        patterns.add(tuple(layer.inputs for layer in arch.layers))
        net = build_network(arch, in_channels=1, num_classes=10)
        x = torch.randn(2, 1, 8, 8)
        hidden = net.features(x)
        filters = [layer.filters for layer in arch.layers]
        assert hidden.shape[:2] == (2, sum(filters[i] for i in arch.outputs()))
        assert tuple(hidden.shape[2:]) == output_size(arch, 8)
        logits = net(x)
        assert logits.shape == (2, 10)
        logits.sum().backward()  # every layer reaches the output (rule 3)
        assert all(p.grad is not None for p in net.parameters())
        for conv, layer in zip(net.convs, arch.layers, strict=True):
            c_in = sum(filters[j] for j in layer.inputs) if layer.inputs else 1
            assert conv[0].weight.shape == (
                layer.filters,
                c_in,
                layer.filter_height,
                layer.filter_width,
            )
    assert len(patterns) > 6  # the skips really vary


def test_wiring_rules_by_hand():
    arch = LayerwiseArchitecture(
        (
            Layer(3, 3, 24),  # 0: image, 8×8
            Layer(5, 1, 36, 2, 2),  # 1: image (no input), 4×4
            Layer(1, 7, 48, inputs=(0, 1)),  # 2: concat of 8×8 and padded 4×4
            Layer(3, 3, 24, 3, 1, inputs=(1,)),  # 3: 2×4, unused
        )
    )
    assert arch.outputs() == (2, 3)
    net = build_network(arch, in_channels=3, num_classes=5)
    assert net.convs[2][0].in_channels == 24 + 36
    assert net.convs[1][0].in_channels == 3 and net.out_channels == 48 + 24
    hidden = net.features(torch.randn(1, 3, 8, 8))
    assert hidden.shape == (1, 72, 8, 8)
    # Layer 3's 2×4 map sits in the middle of zeros (rule 4), after ReLU ≥ 0.
    part = hidden[0, 48:]
    assert part[:, :3].abs().sum() == 0 and part[:, 5:].abs().sum() == 0
    assert part[:, :, :2].abs().sum() == 0 and part[:, :, 6:].abs().sum() == 0


def test_pad_and_concat():
    x = torch.ones(1, 2, 2, 3)
    y = pad_to(x, 5, 4)
    assert y.shape == (1, 2, 5, 4) and y.sum() == x.sum()
    assert y[0, 0, 1:3, 0:3].eq(1).all()  # 3 rows split 1 / 2, 1 column 0 / 1
    z = concat_padded([torch.zeros(1, 1, 4, 4), x])
    assert z.shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="cannot pad"):
        pad_to(x, 1, 3)


def test_decisions_follow_fig_4_and_encode_inverts_decode():
    space = LayerwiseSpace(num_layers=3, strides=(1, 2, 3))
    d = space.decisions()
    assert d[:6] == [
        Skips(0),
        Choice("filter_height", 4),
        Choice("filter_width", 4),
        Choice("stride_height", 3),
        Choice("stride_width", 3),
        Choice("filters", 4),
    ]
    assert d[6] == Skips(1) and d[12] == Skips(2) and len(d) == 18
    assert len(LayerwiseSpace(num_layers=3).decisions()) == 12  # no stride tokens
    ctrl = Controller(space.kinds(), hidden=35, layers=2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        s = ctrl.sample(d, gen)
        arch = space.decode(s.actions)
        assert space.encode(arch) == s.actions
        again = ctrl.evaluate(d, space.encode(arch))
        assert torch.allclose(again.log_prob, s.log_prob)
    # An architecture of another depth encodes too (the depth grows during search).
    deeper = LayerwiseSpace(num_layers=5, strides=(1, 2, 3)).sample(random.Random(3))
    assert space.decode(space.encode(deeper)) == deeper


def test_architecture_validation_json_and_hash():
    arch = LayerwiseSpace(num_layers=4).sample(random.Random(2))
    again = LayerwiseArchitecture.from_json(arch.to_json())
    assert again == arch and again.hash() == arch.hash()
    other = LayerwiseSpace(num_layers=4).sample(random.Random(5))
    assert other.hash() != arch.hash()
    with pytest.raises(ValueError, match="positive odd"):
        LayerwiseArchitecture((Layer(2, 3, 24),))
    with pytest.raises(ValueError, match="earlier layers"):
        LayerwiseArchitecture((Layer(3, 3, 24, inputs=(0,)),))
    with pytest.raises(ValueError, match="increasing"):
        LayerwiseArchitecture(
            (Layer(3, 3, 24), Layer(3, 3, 24), Layer(1, 1, 24, inputs=(1, 0)))
        )
    with pytest.raises(ValueError, match="not in"):
        LayerwiseSpace().encode(LayerwiseArchitecture((Layer(9, 3, 24),)))
    with pytest.raises(ValueError, match="not in"):
        LayerwiseSpace().from_json(
            LayerwiseArchitecture((Layer(3, 3, 24, 2, 1),)).to_dict()
        )
    assert "svg" in arch.svg()


def test_space_size_by_hand():
    # 2 layers, no strides: (4·4·4)² token choices × 2^1 skip bit.
    assert LayerwiseSpace(num_layers=2).size() == 64**2 * 2
    assert LayerwiseSpace(num_layers=3, strides=(1, 2, 3)).size() == (64 * 9) ** 3 * 8


def test_depth_schedule():
    config = nas_rl.NasRLConfig()
    assert [nas_rl.depth_at(config, n) for n in (0, 1599, 1600, 3200, 12799)] == [
        6,
        6,
        8,
        10,
        20,
    ]
    capped = nas_rl.NasRLConfig(max_layers=9)
    assert nas_rl.depth_at(capped, 12799) == 9


# --------------------------------------------------------------------------- search
def _controller_state(folder):
    state = load_checkpoint(folder / "checkpoint.pt", map_location="cpu")
    return state["search"]["strategy"]


def _trace(records):
    return [(r.step, r.architecture, r.reward, r.extra.get("params")) for r in records]


def test_search_updates_the_controller_once_per_replica(tmp_path):
    result = run("nas_rl", budget="smoke", progress=False, out=tmp_path, **TINY)
    assert [r.step for r in result.records] == [0, 1, 2, 3]
    strategy = _controller_state(tmp_path)
    assert len(strategy["log"]) == 2  # 2 replicas × 2 children: two updates
    assert all(0.0 <= r.reward <= 1.0 for r in result.records)


def test_pooled_evaluation_equals_serial(tmp_path):
    serial = run("nas_rl", budget="smoke", progress=False, out=tmp_path / "s", **TINY)
    pooled = run(
        "nas_rl",
        budget="smoke",
        progress=False,
        out=tmp_path / "p",
        workers=2,
        **TINY,
    )
    assert _trace(serial.records) == _trace(pooled.records)
    a, b = _controller_state(tmp_path / "s"), _controller_state(tmp_path / "p")
    for key, value in a["controller"].items():
        assert torch.equal(value, b["controller"][key]), key
    assert a["log"] == b["log"]


@pytest.mark.parametrize("method", ["nas_rl", "nas_rl_random"])
def test_resume_equals_uninterrupted_run(tmp_path, method):
    settings = {**TINY, "samples": 6}
    whole = run(method, budget="smoke", progress=False, out=tmp_path / "w", **settings)
    # 3 steps = one finished round (2·2 children) is not reached: the round in flight
    # has one child done and two pending, which resume must submit again.
    cut = tmp_path / "c"
    part = run(method, budget="smoke", progress=False, out=cut, max_steps=3, **settings)
    assert part.records == []
    mid = load_checkpoint(cut / "checkpoint.pt", map_location="cpu")["search"]
    assert sum(t["outcome"] is None for t in mid["round"]) == 1
    done = run(method, budget="smoke", progress=False, out=cut, resume=True, **settings)
    assert _trace(done.records) == _trace(whole.records)
    depths = [len(r.architecture["layers"]) for r in whole.records]
    assert depths == [2, 2, 2, 2, 3, 3]  # smoke: 2 layers, +1 every 4 samples
    assert done.result == whole.result
    a, b = _controller_state(tmp_path / "w"), _controller_state(cut)
    if method == "nas_rl":
        for key, value in a["controller"].items():
            assert torch.equal(value, b["controller"][key]), key
        assert (
            a["log"] == b["log"]
            and a["updater"]["baseline"] == b["updater"]["baseline"]
        )
    else:
        assert a == b


def test_methods_are_registered_with_budgets():
    methods = load_methods()
    for name in ("nas_rl", "nas_rl_random", "nas_rl_rnn"):
        spec = methods.get(name)
        assert set(spec.budgets) == {"smoke", "colab", "paper"}
    paper = methods.get("nas_rl").config("paper")
    assert (paper.controller_hidden, paper.controller_layers) == (35, 2)
    assert paper.controller_lr == 0.0006 and paper.round_size == 800


# --------------------------------------------------------------------------- NAS cell
def test_tree_of_base_8_and_space_size():
    children = nas_rl.tree_children(8)
    assert children[0] == (0, 1) and children[4] == (8, 9) and children[-1] == (12, 13)
    assert nas_rl.tree_children(2) == [(0, 1)]
    size = nas_rl.NASCellSpace(base=8).size()
    assert size == 8**15 * 8 * 15**2 and 6e16 < size < 7e16  # §4.2: ≈ 6 × 10¹⁶
    with pytest.raises(ValueError, match="power of two"):
        nas_rl.tree_children(6)


def test_nas_cell_matches_fig_5_by_hand():
    g = nas_rl.NASCellGenotype(
        nodes=(("add", "tanh"), ("elem_mult", "relu"), ("elem_mult", "sigmoid")),
        inject=("add", "relu"),
        cell_index=(1, 0),
    )
    torch.manual_seed(0)
    cell = nas_rl.NASCell(5, 4, g)
    x, h, c = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4)
    wx, uh = cell.w(x).chunk(2, -1), cell.u(h).chunk(2, -1)
    a0 = torch.tanh(wx[0] + uh[0])
    a1 = torch.relu(wx[1] * uh[1])
    a0 = torch.relu(a0 + c)  # cell inject into node 0
    h_t = torch.sigmoid(a0 * a1)
    c_t = wx[1] * uh[1]  # node 1 before its activation
    h_new, c_new = cell.step(x, h, c)
    assert torch.allclose(h_new, h_t) and torch.allclose(c_new, c_t)
    space = nas_rl.NASCellSpace(base=2)
    assert space.decode(space.encode(g)) == g
    assert nas_rl.NASCellGenotype.from_dict(g.to_dict()) == g
    assert g.equations()[-1] == "h_t = a2"


def test_nas_cell_lm_and_search_run():
    g = nas_rl.NASCellSpace(base=8).sample(random.Random(0))
    lm = nas_rl.NASCellLM(50, 16, g)
    zeros = torch.zeros(2, 16)
    logits, (h, c) = lm(torch.randint(0, 50, (7, 2)), (zeros, zeros))
    assert logits.shape == (7, 2, 50) and h.shape == c.shape == (2, 16)
    result = run("nas_rl_rnn", budget="smoke", progress=False, samples=4)
    assert len(result.records) == 4
    assert all(r.reward > 0 and r.extra["valid_ppl"] > 1 for r in result.records)


# --------------------------------------------------------------------------- lab checks
def test_lab_check_reinforce_loss(capsys):
    from nasedu.checks import CheckFailed
    from nasedu.checks import nas_rl as lab

    def right(log_probs, rewards, baseline):
        r = torch.tensor(rewards) - baseline
        return -(r * log_probs).mean()

    lab.reinforce_loss(right)
    assert "✔" in capsys.readouterr().out
    wrong = {
        "wrong sign": lambda lp, r, b: -right(lp, r, b),
        "baseline is missing": lambda lp, r, b: right(lp, r, 0.0),
        "the sum over": lambda lp, r, b: right(lp, r, b) * len(r),
        "without a graph": lambda lp, r, b: right(lp, r, b).detach(),
        "not written yet": lambda lp, r, b: (_ for _ in ()).throw(
            NotImplementedError("write your code here")
        ),
    }
    for message, fn in wrong.items():
        with pytest.raises(CheckFailed, match=message):
            lab.reinforce_loss(fn)


def test_lab_check_concat_padded(capsys):
    import torch.nn.functional as F

    from nasedu.checks import CheckFailed
    from nasedu.checks import nas_rl as lab

    lab.concat_padded(concat_padded)
    assert "✔" in capsys.readouterr().out

    def top_left(tensors):
        h = max(t.shape[2] for t in tensors)
        w = max(t.shape[3] for t in tensors)
        padded = [F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2])) for t in tensors]
        return torch.cat(padded, 1)

    def cropped(tensors):
        h = min(t.shape[2] for t in tensors)
        w = min(t.shape[3] for t in tensors)
        return torch.cat([t[:, :, :h, :w] for t in tensors], 1)

    def resized(tensors):
        h = max(t.shape[2] for t in tensors)
        w = max(t.shape[3] for t in tensors)
        return torch.cat([F.interpolate(t, size=(h, w)) for t in tensors], 1)

    def wrong_dim(tensors):
        return torch.cat([t.flatten(1) for t in tensors], 1)

    cases = {
        "wrong place": top_left,
        "never crop": cropped,
        "no interpolation": resized,
        "channel dimension": wrong_dim,
    }
    for message, fn in cases.items():
        with pytest.raises(CheckFailed, match=message):
            lab.concat_padded(fn)


class _ReversedEvaluator(SerialEvaluator):
    """Finishes the trials of a round last-submitted first, like a pool can."""

    def results(self, timeout=None):
        while self._queue:
            handle = self._queue.pop()
            yield handle, timed_call(self.fn, handle.architecture, handle.step)


def _toy_score(architecture, step):
    if step == 2:
        raise RuntimeError("CUDA out of memory (simulated)")
    return Outcome(sum(layer.filters for layer in architecture.layers) / 1000, 0.0)


@pytest.mark.parametrize("backend", [SerialEvaluator, _ReversedEvaluator])
def test_round_order_and_failed_children(backend):
    from nasedu.search import Clock

    config = nas_rl.NasRLConfig(
        samples=6,
        space=LayerwiseSpace(num_layers=2),
        replicas=2,
        children_per_replica=2,
    )
    search = nas_rl.make(config, None, torch.device("cpu"), seed=0)
    search.make_evaluator = lambda: backend(_toy_score)
    clock, records, told = Clock(), [], []
    tell = search.strategy.tell
    search.strategy.tell = lambda arch, record: (
        told.append(record.step),
        tell(arch, record),
    )
    while not search.done():
        records += search.step(clock)
    assert [r.step for r in records] == list(range(6)) == told
    failed = records[2]
    assert failed.reward != failed.reward and failed.extra["failed"]  # NaN, kept
    assert "traceback" not in failed.extra
    # The failed child is left out of its replica's update; the others all count.
    assert len(search.strategy.log) == 2 and len(search.strategy.buffer) == 1
