r"""The RNN controller of NAS-RL, NASNet and ENAS (chapters *NAS-RL*, *NASNet*, *ENAS*).

Zoph & Le (ICLR 2017, arXiv:1611.01578, §3.1) describe an architecture as a sequence
of tokens and let an LSTM emit it one token at a time: each token is sampled from a
softmax over the LSTM's output, and its embedding is the next step's input. The three
papers differ only in what the tokens mean, so one controller serves them all; a space
lists its tokens as *decisions*:

* ``Choice(kind, size)`` — a categorical token (a filter size, an operation); one
  softmax head and one embedding per ``kind``, shared by every decision of that kind;
* ``Pick(count)`` — one of the first ``count`` *anchors* (earlier hidden states),
  chosen by attention, ``logit_j = vᵀ tanh(W_prev h_j + W_curr h)`` (ENAS's input
  choice; Pham et al. 2018, §2.3 and the official ``micro_controller.py``);
* ``Skips(count)`` — NAS-RL's anchor point (§3.3): an independent sigmoid per earlier
  anchor, ``P(j → i) = sigmoid(vᵀ tanh(W_prev h_j + W_curr h_i))``; the current state
  then becomes an anchor itself (also ENAS's macro skip connections);
* ``Anchor()`` — one LSTM step whose state becomes an anchor, with no token (ENAS's
  cell inputs and finished nodes);
* ``NewCell()`` — a second cell starts: the anchors are forgotten, so its ``Pick``\ s
  count its own inputs and nodes, while the LSTM state carries on (ENAS samples the
  reduction cell after the normal one, ``micro_controller._build_sampler(prev_c,
  prev_h)``).

Two updates train it: ``Reinforce`` (Williams 1992; NAS-RL §3.2, ENAS) with an
exponential-moving-average baseline and an optional entropy bonus, and ``PPO`` with the
clipped objective (Schulman et al. 2017; NASNet App. A.2). ``ControllerStrategy`` puts
controller and update behind the ``ask``/``tell`` interface of ``nasedu.search``.
Every update recomputes the log-probabilities of stored action sequences
(``Controller.evaluate``), so nothing but the actions and rewards has to be kept
between sampling and learning — which is what lets children be trained in parallel and
a search be checkpointed and resumed exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Choice:
    """A categorical token with ``size`` options, predicted by the head of ``kind``."""

    kind: str
    size: int


@dataclass(frozen=True)
class Pick:
    """One of the first ``count`` anchors, chosen by attention (ENAS)."""

    count: int


@dataclass(frozen=True)
class Skips:
    """A 0/1 skip bit per each of the first ``count`` anchors (NAS-RL §3.3)."""

    count: int


@dataclass(frozen=True)
class Anchor:
    """An LSTM step whose hidden state becomes an anchor; no token is sampled."""


@dataclass(frozen=True)
class NewCell:
    """A new cell starts: forget the anchors, keep the LSTM state; action None."""


Decision = Choice | Pick | Skips | Anchor | NewCell
Action = int | tuple[int, ...] | None


_VALID = "Choice, Pick, Skips, Anchor, NewCell"


def decisions_to_data(decisions: Sequence[Decision]) -> list[list[Any]]:
    """Decisions as plain lists (checkpoints load with ``weights_only=True``)."""
    out: list[list[Any]] = []
    for d in decisions:
        if isinstance(d, Choice):
            out.append(["choice", d.kind, d.size])
        elif isinstance(d, Pick):
            out.append(["pick", d.count])
        elif isinstance(d, Skips):
            out.append(["skips", d.count])
        elif isinstance(d, (Anchor, NewCell)):
            out.append(["anchor" if isinstance(d, Anchor) else "new_cell"])
        else:
            raise ValueError(f"unknown decision {d!r}; valid choices: {_VALID}")
    return out


def decisions_from_data(data: Sequence[Sequence[Any]]) -> list[Decision]:
    """Inverse of ``decisions_to_data``."""
    makers = {
        "choice": lambda kind, size: Choice(kind, int(size)),
        "pick": lambda count: Pick(int(count)),
        "skips": lambda count: Skips(int(count)),
        "anchor": Anchor,
        "new_cell": NewCell,
    }
    out = []
    for name, *args in data:
        if name not in makers:
            raise ValueError(
                f"unknown decision {name!r}; valid choices: {', '.join(makers)}"
            )
        out.append(makers[name](*args))
    return out


@dataclass
class Sample:
    """A sampled (or re-scored) action sequence.

    Attributes:
        actions: one entry per decision: an int (``Choice``, ``Pick``), a tuple of
            0/1 (``Skips``) or None (``Anchor``).
        log_prob: log π(actions), a 0-dim tensor (with a graph unless sampled under
            ``torch.no_grad``).
        entropy: the summed entropy of every sampled distribution, 0-dim.
        skip_probs: every ``Skips`` sigmoid probability, concatenated (1-D; empty
            when there are none), for ENAS's skip penalty.
    """

    actions: list[Action]
    log_prob: torch.Tensor
    entropy: torch.Tensor
    skip_probs: torch.Tensor


class Controller(nn.Module):
    """A stacked LSTM that emits a sequence of decisions (NAS-RL §3.1, Fig. 2).

    Args:
        kinds: every ``Choice`` kind with its number of options.
        hidden: LSTM units per layer (NAS-RL 35, NASNet 100, ENAS 64 / 100).
        layers: stacked LSTM layers (NAS-RL 2, NASNet and ENAS 1).
        temperature: logits are divided by it (ENAS), or None.
        tanh_constant: logits become ``c · tanh(logits)`` (ENAS, after the
            temperature), or None.
        kind_tanh: a tanh constant per kind overriding ``tanh_constant`` (ENAS divides
            it by ``op_tanh_reduce`` = 2.5 for operation logits).
        init_range: every weight starts uniform in ±init_range (NAS-RL 0.08,
            NASNet and ENAS 0.1).
    """

    def __init__(
        self,
        kinds: dict[str, int],
        hidden: int = 35,
        layers: int = 2,
        temperature: float | None = None,
        tanh_constant: float | None = None,
        kind_tanh: dict[str, float] | None = None,
        init_range: float = 0.08,
    ):
        super().__init__()
        if not kinds or any(size < 1 for size in kinds.values()):
            raise ValueError(f"kinds must map names to sizes >= 1, got {kinds}")
        unknown = sorted(set(kind_tanh or {}) - set(kinds))
        if unknown:
            raise ValueError(
                f"kind_tanh names unknown kind {unknown[0]!r}; valid choices: "
                f"{', '.join(kinds)}"
            )
        self.kinds = dict(kinds)
        self.hidden, self.temperature = hidden, temperature
        self.tanh_constant, self.kind_tanh = tanh_constant, dict(kind_tanh or {})
        self.cells = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(layers))
        self.start = nn.Parameter(torch.zeros(1, hidden))  # the first step's input
        self.embeddings = nn.ModuleDict(
            {k: nn.Embedding(n, hidden) for k, n in kinds.items()}
        )
        self.heads = nn.ModuleDict({k: nn.Linear(hidden, n) for k, n in kinds.items()})
        # Attention over anchors, shared by Pick and Skips (NAS-RL §3.3 formula).
        self.w_prev = nn.Linear(hidden, hidden, bias=False)
        self.w_curr = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    def sample(
        self,
        decisions: Sequence[Decision],
        generator: torch.Generator | None = None,
        temperature: float | None = None,
    ) -> Sample:
        """Sample one action per decision; ``temperature`` overrides the module's
        (the chapters' sampler widget turns it)."""
        return self._run(decisions, None, generator, temperature)

    def evaluate(
        self, decisions: Sequence[Decision], actions: Sequence[Action]
    ) -> Sample:
        """log π and entropy of a stored action sequence (what REINFORCE and PPO
        differentiate); equal to the values at sampling for unchanged weights."""
        if len(actions) != len(decisions):
            raise ValueError(f"{len(actions)} actions for {len(decisions)} decisions")
        return self._run(decisions, list(actions), None, None)

    # ----------------------------------------------------------------- internals
    def _step(self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]]):
        for i, cell in enumerate(self.cells):
            state[i] = cell(x, state[i])
            x = state[i][0]
        return x  # (1, hidden): the top layer's output

    def _scale(
        self, logits: torch.Tensor, kind: str | None, temperature
    ) -> torch.Tensor:
        temperature = self.temperature if temperature is None else temperature
        if temperature is not None:
            logits = logits / temperature
        c = self.kind_tanh.get(kind, self.tanh_constant) if kind else self.tanh_constant
        if c is not None:
            logits = c * torch.tanh(logits)
        return logits

    def _attention(self, anchors: list[torch.Tensor], count: int, h: torch.Tensor):
        keys = torch.cat(anchors[:count])  # (count, hidden)
        return self.v(torch.tanh(self.w_prev(keys) + self.w_curr(h))).squeeze(1)

    def _run(self, decisions, actions, generator, temperature) -> Sample:
        zeros = torch.zeros(1, self.hidden, device=self.start.device)
        state = [(zeros, zeros) for _ in self.cells]
        x, anchors = self.start, []
        log_prob = entropy = self.start.new_zeros(())
        taken: list[Action] = []
        skip_probs: list[torch.Tensor] = []
        for n, d in enumerate(decisions):
            given = actions[n] if actions is not None else None
            if isinstance(d, NewCell):
                anchors, x = [], self.start
                taken.append(None)
                continue
            h = self._step(x, state)
            if isinstance(d, Anchor):
                anchors.append(h)
                taken.append(None)
                x = self.start
            elif isinstance(d, (Choice, Pick)):
                if isinstance(d, Choice):
                    if self.kinds.get(d.kind) != d.size:
                        raise ValueError(
                            f"decision {d} does not match the controller's kinds "
                            f"{self.kinds}"
                        )
                    logits = self._scale(self.heads[d.kind](h)[0], d.kind, temperature)
                else:
                    if not 1 <= d.count <= len(anchors):
                        raise ValueError(
                            f"Pick({d.count}) with {len(anchors)} anchors so far"
                        )
                    logits = self._scale(
                        self._attention(anchors, d.count, h), None, temperature
                    )
                log_p = torch.log_softmax(logits, dim=0)  # (size,)
                if given is None:
                    a = int(
                        torch.multinomial(
                            log_p.exp().detach().cpu(), 1, generator=generator
                        )
                    )
                else:
                    a = int(given)
                    if not 0 <= a < log_p.numel():
                        raise ValueError(
                            f"action {a} outside {d} (0..{log_p.numel() - 1})"
                        )
                log_prob = log_prob + log_p[a]
                entropy = entropy - (log_p.exp() * log_p).sum()
                taken.append(a)
                if isinstance(d, Choice):
                    x = self.embeddings[d.kind](torch.tensor([a], device=h.device))
                else:
                    x = anchors[a]
            elif isinstance(d, Skips):
                bits: tuple[int, ...] = ()
                if d.count > len(anchors):
                    raise ValueError(
                        f"Skips({d.count}) with {len(anchors)} anchors so far"
                    )
                if d.count:
                    logits = self._scale(
                        self._attention(anchors, d.count, h), None, temperature
                    )
                    p = torch.sigmoid(logits)  # (count,) P(anchor j feeds this layer)
                    if given is None:
                        bits = tuple(
                            int(b)
                            for b in torch.bernoulli(
                                p.detach().cpu(), generator=generator
                            )
                        )
                    else:
                        bits = tuple(int(b) for b in given)
                        if len(bits) != d.count or set(bits) - {0, 1}:
                            raise ValueError(f"skip bits {given} do not fit {d}")
                    b = torch.tensor(bits, dtype=p.dtype, device=p.device)
                    log_on, log_off = F.logsigmoid(logits), F.logsigmoid(-logits)
                    log_prob = log_prob + (b * log_on + (1 - b) * log_off).sum()
                    entropy = entropy - (p * log_on + (1 - p) * log_off).sum()
                    skip_probs.append(p)
                    keys = torch.cat(anchors[: d.count])  # (count, hidden)
                    x = (b @ keys).unsqueeze(0) / (1.0 + b.sum())  # ENAS macro
                else:
                    x = self.start
                anchors.append(h)
                taken.append(bits)
            else:
                raise ValueError(f"unknown decision {d!r}; valid choices: {_VALID}")
        probs = torch.cat(skip_probs) if skip_probs else self.start.new_zeros(0)
        return Sample(taken, log_prob, entropy, probs)


# --------------------------------------------------------------------------- updates
Batch = Sequence[tuple[Sequence[Decision], Sequence[Action], float]]


def _optimizer(controller: nn.Module, name: str, lr: float, **kwargs: Any):
    makers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    if name not in makers:
        raise ValueError(
            f"unknown optimizer {name!r}; valid choices: {', '.join(makers)}"
        )
    return makers[name](controller.parameters(), lr=lr, **kwargs)


class _Update:
    """What both updates share: the optimiser, the moving-average baseline and the
    entropy weight."""

    def __init__(
        self,
        controller: Controller,
        lr: float,
        baseline_decay: float,
        entropy_weight: float,
        optimizer: str,
        grad_clip: float | None,
        **optimizer_kwargs: Any,
    ):
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.controller, self.grad_clip = controller, grad_clip
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.optimizer = _optimizer(controller, optimizer, lr, **optimizer_kwargs)
        self.baseline: float | None = None

    def _advance_baseline(self, rewards: list[float]) -> None:
        # b is the moving average of *previous* rewards (NAS-RL §3.2, NASNet A.2), so
        # it is updated after the step; the first batch starts it at its own mean.
        # (ENAS's code moves b before computing the advantage; with its decay of
        # 0.99 and one sample per step the difference is one sample's weight.)
        mean = sum(rewards) / len(rewards)
        if self.baseline is None:
            self.baseline = mean
        else:
            d = self.baseline_decay
            self.baseline = d * self.baseline + (1 - d) * mean

    def _step(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad()
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.controller.parameters(), self.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]


class Reinforce(_Update):
    """REINFORCE with a moving-average baseline (Williams 1992; NAS-RL §3.2, Eq. 2):

        ∇J ≈ 1/m Σ_k (R_k − b) ∇ log π(a_k),

    with ``R_k = reward + entropy_weight · H(π)`` when an entropy bonus is asked for
    (ENAS adds it to the reward, detached, "to prevent premature convergence").
    """

    def __init__(
        self,
        controller: Controller,
        lr: float,
        baseline_decay: float = 0.95,
        entropy_weight: float = 0.0,
        optimizer: str = "adam",
        grad_clip: float | None = None,
        **optimizer_kwargs: Any,
    ):
        super().__init__(
            controller,
            lr,
            baseline_decay,
            entropy_weight,
            optimizer,
            grad_clip,
            **optimizer_kwargs,
        )

    def update(self, batch: Batch) -> dict[str, float]:
        if not batch:
            raise ValueError(
                "an update needs at least one (decisions, actions, reward)"
            )
        samples = [self.controller.evaluate(d, a) for d, a, _ in batch]
        rewards = [
            r + self.entropy_weight * float(s.entropy.detach())
            for (_, _, r), s in zip(batch, samples)
        ]
        b = sum(rewards) / len(rewards) if self.baseline is None else self.baseline
        loss = -torch.stack(
            [(r - b) * s.log_prob for r, s in zip(rewards, samples)]
        ).mean()
        value = self._step(loss)
        self._advance_baseline(rewards)
        return {"loss": value, "baseline": self.baseline, "reward": _mean(rewards)}


def ppo_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantage: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """The clipped surrogate of PPO (Schulman et al. 2017, Eq. 7), as a loss:

        −E[min(ρ A, clip(ρ, 1−ε, 1+ε) A)],  ρ = π(a) / π_old(a).

    A sample whose ratio has left [1−ε, 1+ε] in the direction its advantage favours
    contributes no gradient: the policy cannot move further on one batch.
    """
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return -torch.minimum(ratio * advantage, clipped * advantage).mean()


class PPO(_Update):
    """Proximal policy optimisation of the controller (NASNet App. A.2: "we use PPO
    with a learning rate of 0.00035"; the clipped objective of Schulman et al. 2017).

    One ``update`` takes ``epochs`` gradient steps on the batch, each against the
    log-probabilities the batch had under the policy at the start of the update;
    ``entropy_weight`` adds −w·H to the loss (NASNet's entropy penalty).
    """

    def __init__(
        self,
        controller: Controller,
        lr: float,
        clip: float = 0.2,
        epochs: int = 4,
        baseline_decay: float = 0.95,
        entropy_weight: float = 0.0,
        optimizer: str = "adam",
        grad_clip: float | None = None,
        **optimizer_kwargs: Any,
    ):
        if clip <= 0 or epochs < 1:
            raise ValueError(
                f"PPO needs clip > 0 and epochs >= 1, got {clip}, {epochs}"
            )
        super().__init__(
            controller,
            lr,
            baseline_decay,
            entropy_weight,
            optimizer,
            grad_clip,
            **optimizer_kwargs,
        )
        self.clip, self.epochs = clip, epochs

    def update(self, batch: Batch) -> dict[str, float]:
        if not batch:
            raise ValueError(
                "an update needs at least one (decisions, actions, reward)"
            )
        rewards = [r for _, _, r in batch]
        b = _mean(rewards) if self.baseline is None else self.baseline
        advantage = torch.tensor([r - b for r in rewards])  # (m,)
        with torch.no_grad():
            old = torch.stack(
                [self.controller.evaluate(d, a).log_prob for d, a, _ in batch]
            )
        value = 0.0
        for _ in range(self.epochs):
            samples = [self.controller.evaluate(d, a) for d, a, _ in batch]
            log_prob = torch.stack([s.log_prob for s in samples])  # (m,)
            entropy = torch.stack([s.entropy for s in samples]).mean()
            loss = ppo_loss(log_prob, old, advantage, self.clip)
            value = self._step(loss - self.entropy_weight * entropy)
        self._advance_baseline(rewards)
        return {"loss": value, "baseline": self.baseline, "reward": _mean(rewards)}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# --------------------------------------------------------------------------- strategy
class ControllerStrategy:
    """A controller and its update behind ``ask``/``tell`` (``nasedu.search``).

    ``ask`` samples an action sequence for ``space.decisions()`` and returns
    ``space.decode(actions)``; ``tell`` stores ``(decisions, space.encode(arch),
    reward)`` and runs ``updater.update`` every ``batch_size`` results (NAS-RL's m
    children per controller step, NASNet's minibatch of 20). Results may arrive in
    any order (parallel workers): each is matched to the decisions it was asked with.
    Failed evaluations (NaN reward, ``nasedu.parallel``) are left out of the update.

    The space must offer ``decisions()``, ``decode(actions)`` and its inverse
    ``encode(architecture)``, besides the ``SearchSpace`` protocol. ``space`` may be
    replaced between asks (NAS-RL's schedule grows the depth during search).
    """

    def __init__(
        self,
        space: Any,
        controller: Controller,
        updater: Reinforce | PPO,
        batch_size: int,
        seed: int = 0,
        reward_fn: Callable[[Any], float] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.space, self.controller, self.updater = space, controller, updater
        self.batch_size, self.reward_fn = batch_size, reward_fn
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer: list[tuple[list[list[Any]], list[Action], float]] = []
        self.asked: dict[str, list[list[Any]]] = {}
        self.log: list[dict[str, float]] = []  # one entry per controller update

    def _key(self, architecture: Any) -> str:
        return json.dumps(self.space.to_json(architecture), sort_keys=True)

    def ask(self) -> Any:
        decisions = self.space.decisions()
        with torch.no_grad():
            sample = self.controller.sample(decisions, self.generator)
        architecture = self.space.decode(sample.actions)
        self.asked[self._key(architecture)] = decisions_to_data(decisions)
        return architecture

    def tell(self, architecture: Any, record: Any) -> None:
        key = self._key(architecture)
        decisions = self.asked.pop(key, None) or decisions_to_data(
            self.space.decisions()
        )
        reward = self.reward_fn(record) if self.reward_fn else record.reward
        if math.isnan(reward):
            return
        actions = _plain(self.space.encode(architecture))
        self.buffer.append((decisions, actions, float(reward)))
        if len(self.buffer) >= self.batch_size:
            batch = [(decisions_from_data(d), a, r) for d, a, r in self.buffer]
            self.log.append(self.updater.update(batch))
            self.buffer = []

    def probability(self, architecture: Any) -> float:
        """π(architecture) under the current controller (the bandit tests and the
        chapters' "how sure is the controller" plots)."""
        with torch.no_grad():
            s = self.controller.evaluate(
                self.space.decisions(), self.space.encode(architecture)
            )
        return math.exp(float(s.log_prob))

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "updater": self.updater.state_dict(),
            "buffer": [list(item) for item in self.buffer],
            "asked": dict(self.asked),
            "generator": self.generator.get_state(),
            "log": list(self.log),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.updater.load_state_dict(state["updater"])
        self.buffer = [(d, _plain(a), r) for d, a, r in state["buffer"]]
        self.asked = dict(state["asked"])
        self.generator.set_state(state["generator"])
        self.log = list(state["log"])


def _plain(actions: Sequence[Action]) -> list[Action]:
    """Actions as ints, tuples of ints and None (what a checkpoint stores)."""
    return [
        tuple(int(b) for b in a) if isinstance(a, (list, tuple)) else a for a in actions
    ]
