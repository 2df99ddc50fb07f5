"""Neural Architecture Search with Reinforcement Learning (Zoph & Le, ICLR 2017,
arXiv:1611.01578; chapter *NAS-RL*).

A two-layer LSTM controller writes a CNN layer by layer (§3.1, Fig. 2): filter
height and width, strides and number of filters, with anchor-point skip connections
(§3.3; ``nasedu.spaces.layerwise``). Each sampled network is trained from scratch and
its validation accuracy is the reward R; the controller maximises J(θ) = E[R] with
REINFORCE and an exponential-moving-average baseline b (§3.2, Eq. 2–3):

    ∇J ≈ 1/m Σ_k Σ_t ∇ log P(a_t | a_{t−1:1}; θ) (R_k − b).

The number of layers grows as the search goes on (§3.1). Children are trained in
parallel (§3.2 "parallelism and asynchronous updates"; ``nasedu.parallel``): here
one controller samples a *round* of K·m children (K replicas × m children each),
evaluates them on any ``AsyncEvaluator`` backend and then applies K REINFORCE
updates of m children each, in submission order — the same result whichever backend
or worker ran which child.

§3.4's recurrent variant, the *NAS cell*, is here too: the controller fills a binary
tree of ``base`` leaves with a combination (add, element-wise multiplication) and an
activation per node, plus the "cell inject" and "cell index" tokens that thread the
memory state c_t through it; a child is a small language model scored by
c / perplexity² (``NASCellSpace``, ``NASCellLM``, method ``nas_rl_rnn``).

Sources (``paper-settings.md`` §1): the paper's §1–§3.4 text was read, §4 was not;
every experimental value (value sets, controller size and learning rate, the depth
schedule, the child training, the cubed reward, the parallel set-up, the PTB reward
constant) comes from secondary quotes and is marked UNVERIFIED next to it.

What ``smoke`` simplifies: 8×8 digits instead of CIFAR-10, 12 children of 2–4 layers
trained for 2 epochs, 2 replicas × 2 children per round, the embedded word corpus
and a 40-step language model for the NAS cell.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasedu.evaluate import (
    Outcome,
    child_seed,
    data_for_search,
    train_child,
)
from nasedu.networks import count_parameters
from nasedu.parallel import (
    AsyncEvaluator,
    ProcessPoolEvaluator,
    SerialEvaluator,
    child_evaluator,
)
from nasedu.search import METHODS, Method, RoundSearch
from nasedu.spaces.layerwise import (
    LayerwiseArchitecture,
    LayerwiseSpace,
    build_network,
)
from nasedu.strategies.controller import (
    Action,
    Choice,
    Controller,
    ControllerStrategy,
    Decision,
    Reinforce,
)
from nasedu.strategies.random_search import RandomSearch
from nasedu.train import TrainConfig


# --------------------------------------------------------------------------- child
@dataclass(frozen=True)
class NasRLChild:
    """How a sampled CNN is trained and scored (NAS-RL §4.1, secondary, UNVERIFIED).

    The reward is the maximum validation accuracy over the last ``reward_epochs``
    epochs (S1: "the maximum validation accuracy of the last 5 epochs", UNVERIFIED;
    §3.2 itself says only "validation accuracy"). The controller sees it raised to
    ``NasRLConfig.reward_power``.
    """

    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=50,  # §4.1 "trained for 50 epochs" (UNVERIFIED)
            batch_size=128,  # not in the sources read: nasedu's choice
            lr=0.1,  # §4.1 momentum SGD, lr 0.1 (UNVERIFIED)
            lr_min=0.1,  # no schedule is quoted: a constant lr (cosine from 0.1 to 0.1)
            momentum=0.9,  # §4.1 (UNVERIFIED); Nesterov: not in nasedu's engine
            weight_decay=1e-4,  # §4.1 (UNVERIFIED)
            grad_clip=None,  # not quoted
            drop_path_prob=0.0,  # no drop-path in 2016
            augment="crop_flip",  # §4.1 random crops and flips (UNVERIFIED)
            cutout=0,  # cutout is from 2017
            label_smoothing=0.0,
        )
    )
    reward_epochs: int = 5  # S1: max of the last 5 epochs (UNVERIFIED)
    valid_portion: float = 0.1  # §4.1 45,000 train / 5,000 validation (UNVERIFIED)

    def __post_init__(self) -> None:
        if self.reward_epochs < 1:
            raise ValueError(f"reward_epochs must be >= 1, got {self.reward_epochs}")
        if not 0 < self.valid_portion < 1:
            raise ValueError(
                f"valid_portion must be in (0, 1), got {self.valid_portion}"
            )

    def evaluator(self, data, device, seed: int):
        """``fn(architecture, step) -> Outcome`` trained on ``data``'s training split
        and scored on its validation split (held out of CIFAR-10's training set when
        the dataset has none); the test split is withheld from the search."""
        search_data = data_for_search(data, seed, self.valid_portion)

        def score(architecture: LayerwiseArchitecture | dict, step: int) -> Outcome:
            model, result = train_child(
                lambda: build_network(architecture, data.in_channels, data.num_classes),
                search_data,
                self.train,
                device,
                seed,
                step,
            )
            accs = [h["valid_acc"] for h in result.history]
            reward = max(accs[-self.reward_epochs :])
            return Outcome(
                reward,
                0.0,
                {
                    "params": count_parameters(model),
                    "layers": len(model.architecture),
                    "final_valid_acc": result.final_valid_acc,
                    "epochs": self.train.epochs,
                },
            )

        return score


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class NasRLConfig:
    """A NAS-RL search; defaults are the paper's CIFAR-10 set-up (§3, §4.1).

    Every experimental value is quoted by secondary sources only (``paper-settings.md``
    §1, UNVERIFIED); the stride-free experiment is the default (``space.strides``).
    """

    samples: int = 12800  # §4.1 architectures sampled on CIFAR-10 (S1, UNVERIFIED)
    space: LayerwiseSpace = field(default_factory=LayerwiseSpace)  # §3.3, §4.1
    # Depth schedule (§3.1 "increase it as training progresses"): start at
    # space.num_layers = 6 and add 2 every 1,600 samples (S1, UNVERIFIED).
    layers_step: int = 2
    layers_every: int = 1600
    max_layers: int | None = None  # nasedu: an optional cap (none in the paper)
    children_per_replica: int = 8  # m (§3.2 "parallelism", S2, UNVERIFIED)
    replicas: int = 100  # K controller replicas (S2, UNVERIFIED)
    controller_hidden: int = 35  # §4.1 two-layer LSTM, 35 units (S2, UNVERIFIED)
    controller_layers: int = 2  # §4.1 (S2, UNVERIFIED)
    controller_lr: float = 0.0006  # §4.1 Adam, lr 0.0006 (S2, UNVERIFIED)
    init_range: float = 0.08  # §4.1 weights U(−0.08, 0.08) (S2, UNVERIFIED)
    baseline_decay: float = 0.95  # §3.2 EMA baseline, decay not given: NASNet's 0.95
    reward_power: float = 3.0  # §4.1 "... cubed" (S1, UNVERIFIED); 1 = §3.2 as read
    child: NasRLChild = field(default_factory=NasRLChild)
    # Parallel evaluation (nasedu): 0 = in this process (SerialEvaluator); n >= 1 =
    # n worker processes; devices = GPU indices, one worker per entry.
    workers: int = 0
    devices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.devices is not None:
            object.__setattr__(self, "devices", tuple(str(d) for d in self.devices))
        for name in ("samples", "layers_every", "children_per_replica", "replicas"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.layers_step < 0 or self.workers < 0:
            raise ValueError(
                f"layers_step and workers must be >= 0, got {self.layers_step}, "
                f"{self.workers}"
            )
        if self.max_layers is not None and self.max_layers < self.space.num_layers:
            raise ValueError(
                f"max_layers {self.max_layers} is below the start depth "
                f"{self.space.num_layers}"
            )

    @property
    def round_size(self) -> int:
        """Children sampled before the controller learns from them: K · m."""
        return self.replicas * self.children_per_replica


def depth_at(config: NasRLConfig, sampled: int) -> int:
    """Number of layers of the ``sampled``-th architecture (0-based): the schedule of
    §3.1, ``start + step · ⌊sampled / every⌋``, capped at ``max_layers``."""
    depth = config.space.num_layers + config.layers_step * (
        sampled // config.layers_every
    )
    return depth if config.max_layers is None else min(depth, config.max_layers)


BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # One free Colab GPU (T4): 32 CIFAR-10 children of 3–4 layers, 3 epochs each,
    # 4 replicas × 4 children per round (2 rounds, 8 controller updates). Estimated,
    # not measured here: about 30 s per child, 16 min per search.
    "colab": {
        "samples": 32,
        "space": {"num_layers": 3},
        "layers_step": 1,
        "layers_every": 16,
        "children_per_replica": 4,
        "replicas": 4,
        "child": {"train": {"epochs": 3}, "reward_epochs": 3},
    },
    # Seconds on a CPU on the 8×8 digits: 12 children of 2–4 layers, 2 epochs each,
    # 2 replicas × 2 children per round (3 rounds, 6 controller updates). Larger
    # steps (batch 32) and no CIFAR augmentation (it would destroy 8×8 digits); a
    # controller lr of 0.01 so that 6 updates move the policy visibly.
    "smoke": {
        "samples": 12,
        "space": {"num_layers": 2},
        "layers_step": 1,
        "layers_every": 4,
        "children_per_replica": 2,
        "replicas": 2,
        "controller_lr": 0.01,
        "child": {
            "train": {
                "epochs": 2,
                "batch_size": 32,
                "lr": 0.05,
                "lr_min": 0.05,
                "augment": None,
            },
            "reward_epochs": 2,
        },
    },
}


# --------------------------------------------------------------------------- search
def make_controller(config: NasRLConfig, space: Any) -> Controller:
    """The paper's controller (§4.1, UNVERIFIED sizes): 2 × 35 LSTM, U(±0.08)."""
    return Controller(
        space.kinds(),
        hidden=config.controller_hidden,
        layers=config.controller_layers,
        init_range=config.init_range,
    )


def _evaluators(config: NasRLConfig, data, device, seed: int):
    return functools.partial(
        child_evaluator,
        config.child,
        data,
        device,
        seed,
        config.workers,
        config.devices,
    )


def _space_at(config: NasRLConfig, n: int) -> LayerwiseSpace:
    """The space child ``n`` is sampled in: its depth follows the schedule."""
    return dataclasses.replace(config.space, num_layers=depth_at(config, n))


def make(config: NasRLConfig, data, device, seed: int) -> RoundSearch:
    """NAS-RL: controller + REINFORCE on the layer-wise space (method ``nas_rl``)."""
    torch.manual_seed(seed)  # the controller's initial weights
    controller = make_controller(config, config.space)
    updater = Reinforce(
        controller, lr=config.controller_lr, baseline_decay=config.baseline_decay
    )
    power = config.reward_power
    strategy = ControllerStrategy(
        config.space,
        controller,
        updater,
        batch_size=config.children_per_replica,  # one update per replica's m children
        seed=seed,
        reward_fn=lambda record: record.reward**power,
    )
    return RoundSearch(
        config.space,
        strategy,
        _evaluators(config, data, device, seed),
        config.samples,
        config.round_size,
        functools.partial(_space_at, config),
    )


def make_random(config: NasRLConfig, data, device, seed: int) -> RoundSearch:
    """Random search in the same space, with the same depth schedule, children and
    rounds (method ``nas_rl_random``): the controller replaced by uniform samples."""
    return RoundSearch(
        config.space,
        RandomSearch(config.space, seed),
        _evaluators(config, data, device, seed),
        config.samples,
        config.round_size,
        functools.partial(_space_at, config),
    )


METHODS.register(
    "nas_rl",
    Method("nas_rl", NasRLConfig, BUDGETS, make, citation="zoph2017nasrl"),
)
METHODS.register(
    "nas_rl_random",
    Method(
        "nas_rl_random", NasRLConfig, BUDGETS, make_random, citation="zoph2017nasrl"
    ),
)


# =========================================================================== NAS cell
COMBINATIONS = ("add", "elem_mult")  # §4.2 (S4 verbatim, UNVERIFIED)
RNN_ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu")  # §4.2 (S4, UNVERIFIED)
_ACT = {
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
}


def _combine(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b if name == "add" else a * b


def tree_children(base: int) -> list[tuple[int, int]]:
    """Children of every internal node of the binary tree over ``base`` leaves.

    Nodes 0..base−1 are the leaves; internal nodes are numbered level by level, so
    for base 2 the root is node 2 with children (0, 1) (Fig. 5), for base 8 nodes
    8..14 with the root last."""
    if base < 2 or base & (base - 1):
        raise ValueError(f"base must be a power of two >= 2, got {base}")
    level, nxt, children = list(range(base)), base, []
    while len(level) > 1:
        parents = []
        for a, b in zip(level[::2], level[1::2], strict=True):
            children.append((a, b))
            parents.append(nxt)
            nxt += 1
        level = parents
    return children


@dataclass(frozen=True)
class NASCellGenotype:
    """A NAS recurrent cell (§3.4, Fig. 5).

    Attributes:
        nodes: ``(combination, activation)`` per tree node: ``base`` leaves (each
            combines W x_t and U h_{t−1}) then the internal nodes level by level (each
            combines its two children); the root's output is h_t.
        inject: ``(combination, activation)`` that merges c_{t−1} into a node's
            output ("Cell Inject").
        cell_index: ``(source, target)`` ("Cell Indices"): c_t is node ``source``'s
            output before its activation; c_{t−1} is injected into node ``target``.
    """

    nodes: tuple[tuple[str, str], ...]
    inject: tuple[str, str]
    cell_index: tuple[int, int]

    def __post_init__(self) -> None:
        nodes = tuple((str(c), str(a)) for c, a in self.nodes)
        inject = tuple(str(v) for v in self.inject)
        index = tuple(int(i) for i in self.cell_index)
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "inject", inject)
        object.__setattr__(self, "cell_index", index)
        tree_children(self.base)  # a power of two
        if len(nodes) != 2 * self.base - 1:
            raise ValueError(f"{len(nodes)} nodes is not a full binary tree")
        for n, (c, a) in enumerate((*nodes, inject)):
            if c not in COMBINATIONS:
                raise ValueError(
                    f"node {n}: unknown combination {c!r}; valid choices: "
                    f"{', '.join(COMBINATIONS)}"
                )
            if a not in RNN_ACTIVATIONS:
                raise ValueError(
                    f"node {n}: unknown activation {a!r}; valid choices: "
                    f"{', '.join(RNN_ACTIVATIONS)}"
                )
        if len(index) != 2 or any(not 0 <= i < len(nodes) for i in index):
            raise ValueError(
                f"cell_index {index} must be two node indices in 0..{len(nodes) - 1}"
            )

    @property
    def base(self) -> int:
        return (len(self.nodes) + 1) // 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [list(n) for n in self.nodes],
            "inject": list(self.inject),
            "cell_index": list(self.cell_index),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NASCellGenotype:
        missing = [k for k in ("nodes", "inject", "cell_index") if k not in data]
        if missing:
            raise ValueError(f"NAS cell JSON lacks {', '.join(missing)}")
        return cls(tuple(map(tuple, data["nodes"])), data["inject"], data["cell_index"])

    def equations(self) -> list[str]:
        """The cell as equations, in Fig. 5's notation."""
        children = tree_children(self.base)
        source, target = self.cell_index
        out = []
        for n, (comb, act) in enumerate(self.nodes):
            op = " + " if comb == "add" else " ⊙ "
            if n < self.base:
                pre = f"W{n}·x_t{op}U{n}·h_(t-1)"
            else:
                a, b = children[n - self.base]
                pre = f"a{a}{op}a{b}"
            line = f"a{n} = {act}({pre})"
            if n == target:
                iop = " + " if self.inject[0] == "add" else " ⊙ "
                line += f";  a{n} ← {self.inject[1]}(a{n}{iop}c_(t-1))"
            if n == source:
                line += f";  c_t = {pre}"
            out.append(line)
        out.append(f"h_t = a{len(self.nodes) - 1}")
        return out


@dataclass(frozen=True)
class NASCellSpace:
    """The controller's view of the NAS cell (§3.4): per node a combination and an
    activation, then the inject pair, then the two cell indices (Fig. 5 order)."""

    name: str = "nas_rl_cell"
    base: int = 8  # §3.4 "we use a base number of 8"

    def __post_init__(self) -> None:
        tree_children(self.base)

    @property
    def num_nodes(self) -> int:
        return 2 * self.base - 1

    def kinds(self) -> dict[str, int]:
        return {
            "combination": len(COMBINATIONS),
            "activation": len(RNN_ACTIVATIONS),
            "inject_combination": len(COMBINATIONS),
            "inject_activation": len(RNN_ACTIVATIONS),
            "cell_index": self.num_nodes,
        }

    def decisions(self) -> list[Decision]:
        k = self.kinds()
        out: list[Decision] = []
        for _ in range(self.num_nodes):
            out += [Choice("combination", k["combination"])]
            out += [Choice("activation", k["activation"])]
        out += [Choice("inject_combination", k["inject_combination"])]
        out += [Choice("inject_activation", k["inject_activation"])]
        out += [Choice("cell_index", k["cell_index"])] * 2
        return out

    def decode(self, actions: Sequence[Action]) -> NASCellGenotype:
        if len(actions) != len(self.decisions()):
            raise ValueError(
                f"{len(actions)} actions for {len(self.decisions())} decisions"
            )
        a = [int(x) for x in actions]
        nodes = tuple(
            (COMBINATIONS[a[2 * n]], RNN_ACTIVATIONS[a[2 * n + 1]])
            for n in range(self.num_nodes)
        )
        rest = a[2 * self.num_nodes :]
        return NASCellGenotype(
            nodes, (COMBINATIONS[rest[0]], RNN_ACTIVATIONS[rest[1]]), (rest[2], rest[3])
        )

    def encode(self, genotype: NASCellGenotype) -> list[Action]:
        if genotype.base != self.base:
            raise ValueError(
                f"cell of base {genotype.base} in a space of base {self.base}"
            )
        out: list[Action] = []
        for c, act in genotype.nodes:
            out += [COMBINATIONS.index(c), RNN_ACTIVATIONS.index(act)]
        out += [
            COMBINATIONS.index(genotype.inject[0]),
            RNN_ACTIVATIONS.index(genotype.inject[1]),
        ]
        return out + list(genotype.cell_index)

    def sample(self, rng: random.Random) -> NASCellGenotype:
        return self.decode([rng.randrange(d.size) for d in self.decisions()])

    def to_json(self, genotype: NASCellGenotype) -> dict[str, Any]:
        return genotype.to_dict()

    def from_json(self, data: dict[str, Any]) -> NASCellGenotype:
        genotype = NASCellGenotype.from_dict(data)
        self.encode(genotype)  # checks the base
        return genotype

    def size(self) -> int:
        """Number of token sequences: (2·4)^(2·base−1) · (2·4) · (2·base−1)²
        (≈ 6 × 10¹⁶ for base 8, as §4.2 says, S4)."""
        out = 1
        for d in self.decisions():
            out *= d.size
        return out


class NASCell(nn.Module):
    """The recurrent cell of a ``NASCellGenotype``: (x_t, h_{t−1}, c_{t−1}) → (h_t, c_t).

    Only the leaves have weights (one W and one U per leaf, §3.4: "no learnable
    parameters for the internal nodes of the tree")."""

    def __init__(self, ninp: int, nhid: int, genotype: NASCellGenotype):
        super().__init__()
        self.genotype, self.nhid = genotype, nhid
        self.children_of = tree_children(genotype.base)
        self.w = nn.Linear(ninp, genotype.base * nhid)  # every leaf's W x_t at once
        self.u = nn.Linear(nhid, genotype.base * nhid, bias=False)

    def step(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g, base = self.genotype, self.genotype.base
        wx = self.w(x).chunk(base, dim=-1)  # base × (B, nhid)
        uh = self.u(h).chunk(base, dim=-1)
        source, target = g.cell_index
        outs: list[torch.Tensor] = []
        c_new = c
        for n, (comb, act) in enumerate(g.nodes):
            if n < base:
                pre = _combine(comb, wx[n], uh[n])
            else:
                a, b = self.children_of[n - base]
                pre = _combine(comb, outs[a], outs[b])
            out = _ACT[act](pre)  # (B, nhid)
            if n == target:
                out = _ACT[g.inject[1]](_combine(g.inject[0], out, c))
            if n == source:
                c_new = pre
            outs.append(out)
        return outs[-1], c_new

    def forward(self, inputs: torch.Tensor, state):
        """inputs (T, B, ninp), state (h, c) each (B, nhid) → outputs (T, B, nhid)."""
        h, c = state
        outputs = []
        for x in inputs:
            h, c = self.step(x, h, c)
            outputs.append(h)
        return torch.stack(outputs), (h, c)


class NASCellLM(nn.Module):
    """Embedding → ``NASCell`` → decoder tied to the embedding: the child of the PTB
    search at a small size (the paper's child had 2 layers, S1, UNVERIFIED)."""

    def __init__(self, ntoken: int, nhid: int, genotype: NASCellGenotype):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, nhid)
        self.cell = NASCell(nhid, nhid, genotype)
        self.decoder = nn.Linear(nhid, ntoken)
        self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor, state):
        out, state = self.cell(self.encoder(tokens), state)  # (T, B, nhid)
        return self.decoder(out), state  # (T, B, ntoken)


@functools.lru_cache(maxsize=2)
def _corpus(name: str):
    from nasedu.papers import rnn_cells

    if name == "embedded":
        return rnn_cells.embedded_corpus()
    return rnn_cells.load_word_corpus(name)


@dataclass(frozen=True)
class NASCellChild:
    """Train a NAS-cell language model briefly and reward c / perplexity² (§4.2 via
    P-ENASv0 §4.4; c = 80 from S1, UNVERIFIED). Picklable, for worker processes."""

    corpus: str = "embedded"  # "embedded" or a folder with ptb.{train,valid,test}.txt
    nhid: int = 200  # nasedu: the paper's child sizes were not read
    steps: int = 400  # nasedu: the paper trained 35 epochs (S1, UNVERIFIED)
    batch_size: int = 20
    bptt: int = 35
    lr: float = 1.0  # nasedu (plain SGD, gradient clip below)
    clip: float = 0.25
    valid_batches: int = 10
    reward_c: float = 80.0  # S1 (UNVERIFIED); the c / ppl² form: P-ENASv0 §4.4
    device: str = "cpu"
    seed: int = 0

    def __call__(self, genotype: NASCellGenotype | dict, step: int) -> Outcome:
        from nasedu.device import resolve_device, seed_everything
        from nasedu.papers.rnn_cells import batchify, get_batch

        if isinstance(genotype, dict):
            genotype = NASCellGenotype.from_dict(genotype)
        seed_everything(child_seed(self.seed, step))
        device = resolve_device(self.device)
        corpus = _corpus(self.corpus)
        model = NASCellLM(len(corpus), self.nhid, genotype).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=self.lr)
        data = batchify(corpus.train, self.batch_size).to(device)
        zeros = torch.zeros(self.batch_size, self.nhid, device=device)
        state, i = (zeros, zeros), 0
        for _ in range(self.steps):
            if i >= len(data) - 2:
                i, state = 0, (zeros, zeros)
            x, y = get_batch(data, i, self.bptt)
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), self.clip)
            optimizer.step()
            state = tuple(s.detach() for s in state)
            i += len(x)
        nll = self._valid_nll(model, corpus.valid, device)
        ppl = math.exp(min(nll, 50.0))
        return Outcome(
            self.reward_c / ppl**2, 0.0, {"valid_ppl": ppl, "train_loss": loss.item()}
        )

    @torch.no_grad()
    def _valid_nll(self, model: NASCellLM, ids: torch.Tensor, device) -> float:
        from nasedu.papers.rnn_cells import batchify, get_batch

        data = batchify(ids, self.batch_size).to(device)
        zeros = torch.zeros(self.batch_size, self.nhid, device=device)
        state, total, n = (zeros, zeros), 0.0, 0
        for k, i in enumerate(range(0, len(data) - 1, self.bptt)):
            if k >= self.valid_batches:
                break
            x, y = get_batch(data, i, self.bptt)
            logits, state = model(x, state)
            total += float(
                F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
                )
            )
            n += y.numel()
        return total / n


@dataclass(frozen=True)
class NASCellConfig:
    """The NAS-cell search on a word corpus (§3.4, §4.2; values from S1/S4,
    UNVERIFIED)."""

    samples: int = 15000  # §4.2 "15,000 ... architectures" (S4, UNVERIFIED)
    space: NASCellSpace = field(default_factory=NASCellSpace)  # base 8 (§3.4)
    children_per_replica: int = 1  # §4.2 m = 1 (S1, UNVERIFIED)
    replicas: int = 400  # §4.2 K = 400 (S1, UNVERIFIED)
    controller_hidden: int = 35  # as for CIFAR-10 (UNVERIFIED)
    controller_layers: int = 2
    controller_lr: float = 0.0005  # §4.2 (S1, UNVERIFIED)
    init_range: float = 0.08
    baseline_decay: float = 0.95  # not given: NASNet's value
    child: NASCellChild = field(default_factory=NASCellChild)
    workers: int = 0

    @property
    def round_size(self) -> int:
        return self.replicas * self.children_per_replica


RNN_BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # Seconds on a CPU: base-2 cells (Fig. 5's size), 8 children of a 32-unit model
    # trained for 40 steps on the embedded corpus, 2 × 2 children per round.
    "smoke": {
        "samples": 8,
        "space": {"base": 2},
        "children_per_replica": 2,
        "replicas": 2,
        "controller_lr": 0.01,
        "child": {
            "nhid": 32,
            "steps": 40,
            "batch_size": 16,
            "bptt": 12,
            "lr": 2.0,
            "valid_batches": 4,
        },
    },
    # One free Colab GPU: base-4 cells, 32 children of a 128-unit model trained for
    # 200 steps (estimated, not measured: a few minutes).
    "colab": {
        "samples": 32,
        "space": {"base": 4},
        "children_per_replica": 4,
        "replicas": 4,
        "child": {"nhid": 128, "steps": 200, "device": "auto"},
    },
}


def make_rnn(config: NASCellConfig, data, device, seed: int) -> RoundSearch:
    """The NAS-cell search (method ``nas_rl_rnn``); ``data`` (an image set) is not
    used: the corpus is ``config.child.corpus``."""
    torch.manual_seed(seed)
    space = config.space
    controller = Controller(
        space.kinds(),
        hidden=config.controller_hidden,
        layers=config.controller_layers,
        init_range=config.init_range,
    )
    updater = Reinforce(
        controller, lr=config.controller_lr, baseline_decay=config.baseline_decay
    )
    strategy = ControllerStrategy(
        space, controller, updater, config.children_per_replica, seed=seed
    )
    child = dataclasses.replace(config.child, seed=seed)
    if config.child.device == "cpu" and device.type != "cpu":
        child = dataclasses.replace(child, device=str(device))

    def make_evaluator() -> AsyncEvaluator:
        if config.workers == 0:
            return SerialEvaluator(child)
        return ProcessPoolEvaluator(child, workers=config.workers)

    return RoundSearch(
        space, strategy, make_evaluator, config.samples, config.round_size
    )


METHODS.register(
    "nas_rl_rnn",
    Method(
        "nas_rl_rnn",
        NASCellConfig,
        RNN_BUDGETS,
        make_rnn,
        default_dataset={"smoke": "digits", "colab": "digits", "paper": "digits"},
        citation="zoph2017nasrl",
    ),
)
