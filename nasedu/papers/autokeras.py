"""Auto-Keras: network morphism guided by Bayesian optimisation (chapter *Auto-Keras*).

Jin, Song & Hu, "Auto-Keras: An Efficient Neural Architecture Search System",
KDD 2019 (arXiv:1806.10282). Implemented: the three-step loop of §3 (update: a GP on
the edit-distance kernel of §3.1 with the Bourgain embedding of App. F; generation:
the acquisition α(f) = μ − β·σ of Eq. 10 minimised by the tree-structured search of
§3.2 / Algorithm 1 over morphism sequences, A*-like with simulated-annealing
acceptance; observation: the chosen child, initialised from its parent's *trained*
weights through the function-preserving morphisms of §3.3, is trained and scored by
the mean validation accuracy of its last τ epochs, App. D). The search minimises
the cost y = 1 − accuracy (the paper's Cost, §2).

Not implemented: App. D's early stopping (children train a fixed number of epochs)
and §4.3's CPU/GPU parallelism (generation and training alternate).

The ``smoke`` budget: a 3-block CNN of 8 filters on the 8×8 digits, 8 models of 2
epochs each, and a shorter annealing schedule (T_min 0.05: about 28 expansions of 8
children instead of 88).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nasedu.evaluate import Evaluator, Outcome
from nasedu.search import METHODS, Clock, HistoryRecord, Method, Search
from nasedu.spaces import morphism
from nasedu.spaces.morphism import BourgainEmbedding, NetworkGraph
from nasedu.strategies.bayesopt import GaussianProcess, ucb_cost
from nasedu.train import TrainConfig, train


@dataclass(frozen=True)
class AutoKerasConfig:
    """Paper defaults; values only the official code gives are marked "code"."""

    models: int = 100  # nasedu: §5 bounds time (12 h on one GTX 1080 Ti), not a count
    beta: float = 2.5  # §5 "β = 2.5" (Eq. 10); code constant.BETA = 2.576
    kernel_lambda: float = 1.0  # §5 λ = 1 (Eq. 4); code 0.1 (0.2.18) / 1.0 (0.4.0)
    t_start: float = 1.0  # code bayesian.py T = 1.0 (Algorithm 1 starts at T ← 1)
    t_min: float = 1e-4  # code constant.T_MIN; the paper's T_low is not given (§5.3)
    decay: float = 0.9  # code r = 0.9; the paper's r is not given (§5.3)
    children: int = 8  # App. B "until we reach eight children for a node"
    gp_noise: float = 1e-6  # nasedu: GP diagonal jitter
    n_conv: int = 3  # App. A: three conv blocks
    filters: int = 64  # App. A / §5: 64 filters per conv layer
    dense_units: int = 64  # App. A: FC 64
    dropout: float = 0.25  # nasedu: App. A has a dropout layer but no rate
    max_width: int = 1024  # nasedu: cap on a widened layer
    tau: int = 5  # App. D τ; code MAX_NO_IMPROVEMENT_NUM = 5: score = mean of last τ
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=200,
            batch_size=64,  # §5: 200 epochs, batch 64 (code MAX_ITER_NUM 200)
            drop_path_prob=0.0,
            auxiliary_weight=0.0,
        )
    )  # App. C: crop, flip, cutout


BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "colab": {"models": 20, "filters": 32, "t_min": 1e-3, "train": {"epochs": 10}},
    # 8 tiny models on the 8×8 digits, 2 epochs each; CIFAR augmentation would
    # destroy 8×8 digits.
    "smoke": {
        "models": 8,
        "filters": 8,
        "dense_units": 16,
        "t_min": 0.05,
        "max_width": 64,
        "train": {
            "epochs": 2,
            "batch_size": 32,
            "lr": 0.05,
            "augment": None,
            "cutout": 0,
            "grad_clip": 5.0,
        },
    },
}


class AutoKerasSearch(Search):
    """The update / generation / observation loop of §3; one step = one trained model."""

    def __init__(self, config: AutoKerasConfig, data: Any, device: Any, seed: int):
        self.config, self.data, self.device, self.seed = config, data, device, seed
        self.rng = random.Random(seed)
        self.graphs: list[NetworkGraph] = []
        self.weights: list[dict[str, torch.Tensor]] = []  # trained, on the CPU
        self.costs: list[float] = []
        self.evaluator = Evaluator(self._observe, max_evaluations=config.models)
        self.search_data = dataclasses.replace(data, test=None)  # never select on test
        if data.valid is None:  # CIFAR-10: §5 splits the training data 80/20
            from nasedu.data import search_split

            tr, va = search_split(*data.train, portion=0.8, seed=seed)
            self.search_data = dataclasses.replace(self.search_data, train=tr, valid=va)

    # ----------------------------------------------------------------- update
    def fit_gp(self) -> tuple[GaussianProcess, BourgainEmbedding, np.ndarray]:
        """Update: the edit-distance matrix of the history, embedded (App. F), and a GP
        on the costs with κ = exp(−ρ²) (Eq. 3)."""
        lam = self.config.kernel_lambda
        descs = [morphism.describe(g) for g in self.graphs]
        d = np.array(
            [[morphism.edit_distance(a, b, lam) for b in descs] for a in descs]
        )
        emb = BourgainEmbedding(d)
        x = emb.transform(d)  # (n, K)
        gp = GaussianProcess(self.config.gp_noise).fit(emb.kernel(x, x), self.costs)
        return gp, emb, x

    def acquisition(self, graph: NetworkGraph, gp, emb, x_train) -> float:
        """Eq. 10 on a cost: α(f) = μ(y_f) − β·σ(y_f) (lower is better)."""
        lam = self.config.kernel_lambda
        desc = morphism.describe(graph)
        d = np.array([[morphism.edit_distance(desc, g, lam) for g in self._descs]])
        x = emb.transform(d)  # (1, K)
        mu, std = gp.predict(emb.kernel(x, x_train), [1.0])
        return float(ucb_cost(mu, std, self.config.beta)[0])

    # ----------------------------------------------------------------- generation
    def generate(self) -> tuple[int, list[tuple], float]:
        """Algorithm 1: a priority queue of (α or observed cost, architecture); pop the
        lowest, expand it into ``children`` morphed children (App. B), push a child
        when exp((c_min − α(f'))/T) > U(0, 1); T ← r·T until T ≤ T_low. Returns the
        parent's index in the history, the operation sequence and α of the result.

        If no child beats the best observed cost, the child with the lowest α is
        returned (the paper leaves this case open; the code would stop searching).
        """
        cfg = self.config
        gp, emb, x_train = self.fit_gp()
        self._descs = [morphism.describe(g) for g in self.graphs]
        c_min = min(self.costs)
        queue = [
            (c, i, i, []) for i, c in enumerate(self.costs)
        ]  # (value, tie, father, ops)
        heapq.heapify(queue)
        tie, best, best_any = len(queue), None, None
        seen = {g.hash() for g in self.graphs}
        t = cfg.t_start
        while queue and t > cfg.t_min:
            t *= cfg.decay
            _, _, father, ops = heapq.heappop(queue)
            graph = self.graphs[father]
            for op in ops:
                graph, _ = morphism.apply(graph, None, op)
            for _ in range(cfg.children):
                op = morphism.sample_operation(graph, self.rng, cfg.max_width)
                if op is None:
                    break
                child, _ = morphism.apply(graph, None, op)
                if child.hash() in seen:
                    continue
                seen.add(child.hash())
                alpha = self.acquisition(child, gp, emb, x_train)
                if math.exp(min((c_min - alpha) / t, 50.0)) > self.rng.random():
                    heapq.heappush(queue, (alpha, tie, father, ops + [op]))
                    tie += 1
                if best_any is None or alpha < best_any[2]:
                    best_any = (father, ops + [op], alpha)
                if alpha < c_min:
                    c_min, best = alpha, (father, ops + [op], alpha)
        if best is None and best_any is None:
            raise ValueError(
                "generation found no valid morphism of any observed network"
            )
        return best or best_any

    # ----------------------------------------------------------------- observation
    def _observe(self, candidate: tuple[NetworkGraph, dict], step: int) -> Outcome:
        graph, weights = candidate
        model = graph.build()
        if weights is not None:
            model.load_state_dict(weights)
        cfg = dataclasses.replace(self.config.train, seed=self.seed * 1_000_003 + step)
        result = train(model, self.search_data, cfg, self.device, progress=False)
        accs = [h["valid_acc"] for h in result.history][-self.config.tau :]
        self._trained = {
            k: v.detach().cpu().clone() for k, v in model.state_dict().items()
        }
        return Outcome(
            float(np.mean(accs)),
            0.0,
            {"params": result.params, "final_valid_acc": result.final_valid_acc},
        )

    def step(self, clock: Clock) -> list[HistoryRecord]:
        n = len(self.graphs)
        if n == 0:
            cfg, d = self.config, self.data
            graph = morphism.default_graph(
                d.in_channels,
                d.image_size,
                d.num_classes,
                cfg.n_conv,
                cfg.filters,
                cfg.dense_units,
                cfg.dropout,
            )
            weights, extra = None, {"father": None, "operations": []}
            torch.manual_seed(self.seed)
        else:
            father, ops, alpha = self.generate()
            graph, weights = self.graphs[father], self.weights[father]
            # seeded by the python rng: the wider noise is the same after a resume
            op_rng = random.Random(self.rng.randrange(2**31))
            for op in ops:
                graph, weights = morphism.apply(
                    graph, weights, op, op_rng, self.config.dropout
                )
            extra = {
                "father": father,
                "operations": [list(o) for o in ops],
                "alpha": alpha,
            }
        outcome = self.evaluator.evaluate((graph, weights), step=n)
        self.graphs.append(graph)
        self.weights.append(self._trained)
        self.costs.append(1.0 - outcome.reward)
        record = HistoryRecord(
            step=n,
            architecture=graph.to_dict(),
            reward=outcome.reward,
            cost=outcome.cost,
            wall_clock=clock.elapsed(),
            extra={**outcome.extra, **extra},
        )
        return [record]

    def done(self) -> bool:
        return self.evaluator.exhausted(len(self.graphs))

    def progress_total(self) -> int | None:
        return self.config.models

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "graphs": [g.to_dict() for g in self.graphs],
            "weights": self.weights,
            "costs": list(self.costs),
            "rng": list(internal),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.graphs = [NetworkGraph.from_dict(g) for g in state["graphs"]]
        self.weights = list(state["weights"])
        self.costs = list(state["costs"])
        self.rng.setstate((3, tuple(state["rng"]), None))


KIND_COLORS = {
    "conv": "#8fb8de",
    "dense": "#f4b183",
    "pool": "#c5e0b4",
    "gap": "#c5e0b4",
    "bn": "#e6e6e6",
    "relu": "#e6e6e6",
    "dropout": "#e6e6e6",
    "add": "#ffd966",
    "concat": "#ffd966",
}


def draw_dag(
    labels: list[str],
    edges: list[tuple[int, int]],
    colors: list[str] | None = None,
    title: str | None = None,
    ax=None,
):
    """Draw a layer DAG top to bottom (matplotlib; used by the Auto-Keras and NASBOT
    chapters): node i at height −i in topological order, consecutive edges straight,
    longer edges (skips, branches) as arcs whose bow grows with the span.

    Args:
        labels: one text per node, in topological order.
        edges: (i, j) with i < j.
        colors: one face colour per node (default light grey).
        title: optional title.
        ax: Axes to draw on; a new figure when None.

    Returns:
        The matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    if any(not (0 <= a < b < len(labels)) for a, b in edges):
        raise ValueError(
            f"edges must be (i, j) with 0 <= i < j < {len(labels)}, got {edges}"
        )
    colors = colors or ["#e6e6e6"] * len(labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 0.34 * len(labels) + 0.6))
    for i, (text, color) in enumerate(zip(labels, colors, strict=True)):
        ax.text(
            0,
            -i,
            text,
            ha="center",
            va="center",
            fontsize=8,
            zorder=3,
            bbox={"boxstyle": "round,pad=0.25", "fc": color, "ec": "#555555"},
        )
    for a, b in edges:
        span = b - a
        if span == 1:
            start, end, style = (0.0, -a - 0.28), (0.0, -b + 0.28), "arc3"
        else:  # from the right side of the box, bowing right: clear of the boxes between
            start, end = (0.5, -a), (0.5, -b)
            style = f"arc3,rad={-min(0.15 + 0.5 / span**0.5, 0.6)}"
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                connectionstyle=style,
                arrowstyle="-|>",
                mutation_scale=8,
                color="#444444",
                lw=0.8,
                zorder=1,
                shrinkA=0,
                shrinkB=0,
            )
        )
    ax.set_xlim(-1.2, 1.2 + 0.2 * max([b - a for a, b in edges] + [1]) ** 0.5)
    ax.set_ylim(-len(labels) + 0.4, 0.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def draw(graph: NetworkGraph, title: str | None = None, ax=None):
    """Draw an Auto-Keras network graph (chapter *Auto-Keras*): input, then the layers in
    topological order; the layers of a skip connection (L_o, L_c) marked "(skip)"."""
    index = {morphism.INPUT: 0, **{x.id: i for i, x in enumerate(graph.layers, 1)}}
    labels, colors = [f"input {graph.in_channels}×{graph.image_size}²"], ["white"]
    for x in graph.layers:
        text = x.kind
        if x.kind == "conv":
            text = f"conv{x.kernel}×{x.kernel} {x.width}"
        elif x.kind == "dense":
            text = f"dense {x.width}"
        elif x.kind == "dropout":
            text = f"dropout {x.rate:g}"
        labels.append(
            text + (" (skip)" if x.skip and x.kind not in ("add", "concat") else "")
        )
        colors.append(KIND_COLORS.get(x.kind, "#e6e6e6"))
    edges = sorted((index[i], index[x.id]) for x in graph.layers for i in x.inputs)
    return draw_dag(labels, edges, colors, title, ax)


def make(config: AutoKerasConfig, data, device, seed: int) -> AutoKerasSearch:
    return AutoKerasSearch(config, data, device, seed)


METHODS.register(
    "autokeras",
    Method("autokeras", AutoKerasConfig, BUDGETS, make, citation="jin2019autokeras"),
)
