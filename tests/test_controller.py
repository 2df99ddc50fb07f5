"""The shared RNN controller (NAS-RL, NASNet, ENAS): sampling, REINFORCE and PPO."""

from __future__ import annotations

import math
import random

import pytest
import torch

from nasedu.checkpoint import load_checkpoint, save_checkpoint
from nasedu.search import HistoryRecord
from nasedu.strategies.controller import (
    PPO,
    Anchor,
    Choice,
    Controller,
    ControllerStrategy,
    NewCell,
    Pick,
    Reinforce,
    Skips,
    decisions_from_data,
    decisions_to_data,
    ppo_loss,
)


class ToySpace:
    """A bandit over every kind of decision; the best sequence is ``BEST``."""

    name = "toy"
    DECISIONS = [
        Choice("op", 4),
        Anchor(),
        Choice("filters", 4),
        Skips(1),
        Pick(2),
        Choice("size", 3),
        Skips(2),
    ]
    BEST = [2, None, 1, (1,), 0, 2, (1, 0)]

    def decisions(self):
        return list(self.DECISIONS)

    def decode(self, actions):
        return tuple(actions)

    def encode(self, architecture):
        return list(architecture)

    def sample(self, rng: random.Random):
        bit = lambda: rng.randrange(2)  # noqa: E731
        return (
            rng.randrange(4),
            None,
            rng.randrange(4),
            (bit(),),
            rng.randrange(2),
            rng.randrange(3),
            (bit(), bit()),
        )

    def to_json(self, architecture):
        return {
            "actions": [list(a) if isinstance(a, tuple) else a for a in architecture]
        }

    def from_json(self, data):
        return tuple(tuple(a) if isinstance(a, list) else a for a in data["actions"])


def score(actions) -> float:
    """Fraction of tokens (skip bits counted one by one) equal to ``BEST``'s."""
    hits = total = 0
    for a, b in zip(actions, ToySpace.BEST):
        if b is None:
            continue
        a, b = (a, b) if isinstance(b, tuple) else ((a,), (b,))
        hits += sum(x == y for x, y in zip(a, b))
        total += len(b)
    return hits / total


def record(reward: float) -> HistoryRecord:
    return HistoryRecord(0, {}, reward, 0.0, 0.0)


def make_controller(seed: int = 0) -> Controller:
    torch.manual_seed(seed)
    return Controller(
        {"op": 4, "filters": 4, "size": 3}, hidden=16, layers=1, init_range=0.1
    )


def run_bandit(strategy: ControllerStrategy, steps: int) -> float:
    for _ in range(steps):
        arch = strategy.ask()
        strategy.tell(arch, record(score(arch)))
    return strategy.probability(tuple(ToySpace.BEST))


def test_reinforce_learns_the_best_sequence_of_a_bandit():
    torch.set_num_threads(1)
    ctrl = make_controller()
    strategy = ControllerStrategy(
        ToySpace(), ctrl, Reinforce(ctrl, lr=0.005, baseline_decay=0.9), batch_size=4
    )
    start = strategy.probability(tuple(ToySpace.BEST))
    assert start < 0.01
    assert run_bandit(strategy, 600) > 0.9


def test_ppo_learns_the_best_sequence_of_a_bandit():
    torch.set_num_threads(1)
    ctrl = make_controller()
    updater = PPO(ctrl, lr=0.01, clip=0.2, epochs=4, baseline_decay=0.9)
    strategy = ControllerStrategy(ToySpace(), ctrl, updater, batch_size=8)
    assert run_bandit(strategy, 300) > 0.9


def test_log_probabilities_recomputed_equal_those_at_sampling():
    ctrl = make_controller(3)
    g = torch.Generator().manual_seed(1)
    for temperature in (None, 0.7):
        s = ctrl.sample(ToySpace.DECISIONS, g, temperature=temperature)
        if temperature is None:
            again = ctrl.evaluate(ToySpace.DECISIONS, s.actions)
            assert torch.allclose(s.log_prob, again.log_prob, atol=1e-6)
            assert torch.allclose(s.entropy, again.entropy, atol=1e-6)
            assert torch.allclose(s.skip_probs, again.skip_probs)
    assert s.skip_probs.shape == (3,)  # Skips(1) + Skips(2)


def test_skip_probability_is_the_nas_rl_anchor_formula():
    ctrl = make_controller(5)
    decisions = [Anchor(), Skips(1)]
    s = ctrl.sample(decisions, torch.Generator().manual_seed(0))
    # By hand: h_0 from the anchor step, h_1 from the skip step fed the start input.
    state = [(torch.zeros(1, 16), torch.zeros(1, 16))]
    h0 = ctrl._step(ctrl.start, state)
    h1 = ctrl._step(ctrl.start, state)
    w_prev, w_curr, v = ctrl.w_prev.weight, ctrl.w_curr.weight, ctrl.v.weight
    expected = torch.sigmoid(v @ torch.tanh(w_prev @ h0[0] + w_curr @ h1[0]))
    assert torch.allclose(s.skip_probs, expected, atol=1e-6)


def test_ppo_gives_zero_gradient_outside_the_clip_range():
    clip = 0.2
    old = torch.zeros(4)
    # ratios 1.5 and 0.5 left the range in the direction their advantages favour;
    # 1.1 and 0.9 are inside it.
    log_prob = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.9])).requires_grad_()
    advantage = torch.tensor([1.0, -1.0, 1.0, -1.0])
    ppo_loss(log_prob, old, advantage, clip).backward()
    assert log_prob.grad[0] == 0 and log_prob.grad[1] == 0
    assert log_prob.grad[2] != 0 and log_prob.grad[3] != 0
    # A ratio outside the range *against* its advantage still gets a gradient.
    log_prob = torch.log(torch.tensor([1.5])).requires_grad_()
    ppo_loss(log_prob, torch.zeros(1), torch.tensor([-1.0]), clip).backward()
    assert log_prob.grad[0] != 0


def test_reinforce_gradient_is_the_score_function_estimate():
    ctrl = make_controller(1)
    updater = Reinforce(ctrl, lr=0.0, optimizer="sgd")
    updater.baseline = 0.25
    actions = ctrl.sample(ToySpace.DECISIONS, torch.Generator().manual_seed(2)).actions
    updater.update([(ToySpace.DECISIONS, actions, 1.0)])
    got = ctrl.heads["op"].weight.grad.clone()
    ctrl.zero_grad()
    (-(1.0 - 0.25) * ctrl.evaluate(ToySpace.DECISIONS, actions).log_prob).backward()
    assert torch.allclose(got, ctrl.heads["op"].weight.grad)
    assert updater.baseline == pytest.approx(0.95 * 0.25 + 0.05 * 1.0)


def test_results_out_of_order_are_matched_to_their_decisions():
    ctrl = make_controller()
    strategy = ControllerStrategy(ToySpace(), ctrl, Reinforce(ctrl, lr=0.01), 3)
    archs = [strategy.ask() for _ in range(3)]
    for arch in reversed(archs):
        strategy.tell(arch, record(score(arch)))
    assert len(strategy.log) == 1 and not strategy.buffer and not strategy.asked
    strategy.tell(strategy.ask(), record(float("nan")))  # a failed trial: skipped
    assert not strategy.buffer


def test_strategy_state_survives_a_checkpoint(tmp_path):
    def fresh():
        ctrl = make_controller()
        return ControllerStrategy(ToySpace(), ctrl, PPO(ctrl, lr=0.02), batch_size=3)

    whole, cut = fresh(), fresh()
    run_bandit(whole, 10)
    run_bandit(cut, 5)
    pending = cut.ask()  # asked, not yet told, when the search stops
    save_checkpoint(tmp_path / "c.pt", {"s": cut.state_dict()})
    resumed = fresh()
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt")["s"])
    resumed.tell(pending, record(score(pending)))
    run_bandit(resumed, 4)
    for a, b in zip(whole.controller.parameters(), resumed.controller.parameters()):
        assert torch.equal(a, b)
    assert whole.log == resumed.log
    assert whole.ask() == resumed.ask()


def test_decisions_round_trip_and_errors():
    data = decisions_to_data(ToySpace.DECISIONS)
    assert decisions_from_data(data) == ToySpace.DECISIONS
    with pytest.raises(ValueError, match="valid choices: choice, pick"):
        decisions_from_data([["layer", 3]])
    ctrl = make_controller()
    with pytest.raises(ValueError, match="does not match"):
        ctrl.sample([Choice("op", 5)])
    with pytest.raises(ValueError, match="anchors so far"):
        ctrl.sample([Pick(1)])
    with pytest.raises(ValueError, match="outside"):
        ctrl.evaluate([Choice("op", 4)], [7])
    with pytest.raises(ValueError, match="valid choices: adam, sgd"):
        Reinforce(ctrl, lr=0.1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="kind_tanh"):
        Controller({"op": 4}, kind_tanh={"ops": 1.0})


def test_temperature_and_tanh_constant_flatten_the_policy():
    ctrl = make_controller()
    with torch.no_grad():
        ctrl.heads["op"].bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    sharp = ctrl.evaluate([Choice("op", 4)], [0]).log_prob.exp()
    ctrl.tanh_constant = 1.1
    capped = ctrl.evaluate([Choice("op", 4)], [0]).log_prob.exp()
    # c·tanh(·) bounds the logit gap by 2c, so π(0) <= e^{2.2} / (e^{2.2} + 3).
    assert capped <= math.exp(2.2) / (math.exp(2.2) + 3) + 1e-6 < sharp
    ctrl.tanh_constant, ctrl.temperature = None, 5.0
    assert ctrl.evaluate([Choice("op", 4)], [0]).log_prob.exp() < sharp


def test_a_new_cell_forgets_the_anchors_but_keeps_the_lstm_state():
    ctrl = make_controller(4)
    one = [Anchor(), Anchor(), Pick(2)]
    with pytest.raises(ValueError, match="anchors so far"):
        ctrl.sample([Anchor(), NewCell(), Pick(1)])
    both = ctrl.evaluate([*one, NewCell(), *one], [None, None, 1, None, None, None, 0])
    first = ctrl.evaluate(one, [None, None, 1])
    second_alone = ctrl.evaluate(one, [None, None, 0])
    # The second cell's choice is conditioned on the first cell (state carried on).
    assert not torch.allclose(both.log_prob, first.log_prob + second_alone.log_prob)
    assert decisions_from_data(decisions_to_data([NewCell()])) == [NewCell()]
