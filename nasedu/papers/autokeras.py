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

§4.3's parallelism — searching on the CPU while the GPU trains — runs through the
asynchronous evaluator (``workers`` processes, ``nasedu.parallel``): one model more
than there are workers is kept in flight, so the next model is generated (from the
results so far, never from a model still training) while the workers train; a worker
that frees up starts the waiting model at once. The ``paper`` budget uses one worker
(§4.3); with ``workers = 0`` (``smoke``, ``colab``) generation and training alternate
in this process.

App. D's early stopping stops a model's training when its validation loss has not
improved for τ epochs; nasedu's training engine records validation *accuracy*, so
training stops when the accuracy has not improved for τ epochs (``early_stop``).

The ``smoke`` budget: a 3-block CNN of 8 filters on the 8×8 digits, 8 models of 2
epochs each, a shorter annealing schedule (T_min 0.05: about 28 expansions of 8
children instead of 88) and a learning rate of 0.02: a child continues from its
parent's weights, and restarting it at a rate made for training from scratch
(0.05) would undo much of what the parent learned in two epochs.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nasedu.bench import BENCHMARKS
from nasedu.evaluate import Outcome, child_seed, data_for_search
from nasedu.parallel import AsyncEvaluator, ProcessPoolEvaluator, SerialEvaluator
from nasedu.search import METHODS, Method
from nasedu.spaces import morphism
from nasedu.spaces.morphism import BourgainEmbedding, NetworkGraph
from nasedu.strategies.bayesopt import AsyncSearch, GaussianProcess, ucb_cost
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
    early_stop: bool = True  # App. D: stop after τ epochs without improvement
    # §4.3 parallelism: 0 = generation and training alternate in this process; n >= 1
    # = n training processes while generation runs here (§4.3: the search on the CPU,
    # the training on the one GPU); devices = GPU indices, worker i on
    # devices[i % len(devices)].
    workers: int = 1
    devices: tuple[str, ...] | None = None
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=200,
            batch_size=64,  # §5: 200 epochs, batch 64 (code MAX_ITER_NUM 200)
            drop_path_prob=0.0,
            auxiliary_weight=0.0,
        )
    )  # App. C: crop, flip, cutout

    def __post_init__(self) -> None:
        if self.models < 1 or self.workers < 0:
            raise ValueError(
                f"models must be >= 1 and workers >= 0, got {self.models}, "
                f"{self.workers}"
            )


BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # workers=0: generation and training alternate (workers=1 overlaps them, §4.3)
    "colab": {
        "models": 20,
        "filters": 32,
        "t_min": 1e-3,
        "workers": 0,
        "train": {"epochs": 10},
    },
    # 8 tiny models on the 8×8 digits, 2 epochs each; CIFAR augmentation would
    # destroy 8×8 digits. lr 0.02, not 0.05: children continue from trained weights.
    "smoke": {
        "models": 8,
        "workers": 0,
        "filters": 8,
        "dense_units": 16,
        "t_min": 0.05,
        "max_width": 64,
        "train": {
            "epochs": 2,
            "batch_size": 32,
            "lr": 0.02,
            "augment": None,
            "cutout": 0,
            "grad_clip": 5.0,
        },
    },
}


def search_data(data, seed: int):
    """The data a search trains on: the test split withheld (never select on test);
    CIFAR-10 (no fixed validation split) split 80/20 as in §5."""
    return data_for_search(data, seed, holdout=0.2)


class _EarlyStop(Exception):
    """Raised from the engine's ``on_epoch`` hook to end a model's training."""


def no_improvement(accuracies: list[float], tau: int) -> bool:
    """App. D's stopping rule: the last ``tau`` epochs did not improve on the best
    accuracy before them."""
    return len(accuracies) > tau and max(accuracies[-tau:]) <= max(accuracies[:-tau])


def train_model(
    candidate: tuple[NetworkGraph, dict | None],
    step: int,
    data,
    config: AutoKerasConfig,
    device,
    seed: int,
) -> Outcome:
    """Observation (§3): train a model — the first from random weights, a child from
    its morphed parent's — seeded by (seed, step); score = mean validation accuracy of
    the last τ epochs (App. D), training stopped early when ``no_improvement``. The
    trained weights travel back in ``extra``."""
    from nasedu.device import seed_everything
    from nasedu.networks import count_parameters

    graph, weights = candidate
    seed_everything(child_seed(seed, step))
    model = graph.build()
    if weights is not None:
        model.load_state_dict(weights)
    cfg = dataclasses.replace(config.train, seed=child_seed(seed, step))
    accs: list[float] = []

    def on_epoch(record: dict[str, Any]) -> None:
        accs.append(record["valid_acc"])
        if config.early_stop and no_improvement(accs, config.tau):
            raise _EarlyStop

    try:
        train(model, data, cfg, device, progress=False, on_epoch=on_epoch)
    except _EarlyStop:
        pass  # the model holds the weights of its last epoch either way
    trained = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return Outcome(
        float(np.mean(accs[-config.tau :])),
        0.0,
        {
            "params": count_parameters(model),
            "final_valid_acc": accs[-1],
            "epochs": len(accs),
            "weights": trained,
        },
    )


@dataclass(frozen=True)
class ModelTrainer:
    """``train_model`` as a picklable object for worker processes: the worker loads
    the dataset by name once and splits it as the search does."""

    config: AutoKerasConfig
    dataset: str
    device: str = "auto"
    seed: int = 0

    def __call__(self, candidate, step: int) -> Outcome:
        data, device = _worker_data(self.dataset, self.device, self.seed)
        return train_model(candidate, step, data, self.config, device, self.seed)


@functools.lru_cache(maxsize=2)
def _worker_data(dataset: str, device: str, seed: int):
    from nasedu.data import load
    from nasedu.device import resolve_device

    return search_data(load(dataset), seed), resolve_device(device)


def _train_in_process(data, config, device, seed, candidate, step) -> Outcome:
    return train_model(candidate, step, data, config, device, seed)


class AutoKerasSearch(AsyncSearch):
    """The update / generation / observation loop of §3; one step = one trained model.

    ``father`` in a record is the ``step`` of the model it was morphed from.
    """

    def __init__(self, config: AutoKerasConfig, data: Any, device: Any, seed: int):
        # §4.3: one model is generated ahead of the workers (none without workers).
        in_flight = config.workers + 1 if config.workers else 1
        super().__init__(config.models, in_flight)
        self.config, self.data, self.device, self.seed = config, data, device, seed
        self.rng = random.Random(seed)
        self.graphs: list[NetworkGraph] = []  # observed models, in order of arrival
        self.weights: list[dict[str, torch.Tensor]] = []  # trained, on the CPU
        self.costs: list[float] = []
        self.steps: list[int] = []  # the step of each observed model
        self._d = np.zeros((0, 0))  # edit distances between observed models, grown
        self.search_data = search_data(data, seed)

    # ----------------------------------------------------------------- evaluation
    def make_evaluator(self) -> AsyncEvaluator:
        """Serial in this process (``workers = 0``) or a pool of training processes."""
        cfg = self.config
        if cfg.workers == 0:
            return SerialEvaluator(
                functools.partial(
                    _train_in_process, self.search_data, cfg, self.device, self.seed
                ),
                max_evaluations=cfg.models,
            )
        device = "auto" if cfg.devices else str(self.device)
        return ProcessPoolEvaluator(
            ModelTrainer(cfg, self.data.name, device, self.seed),
            workers=cfg.workers,
            devices=list(cfg.devices) if cfg.devices else None,
            max_evaluations=cfg.models,
        )

    def candidate(self, trial: dict[str, Any]) -> tuple[NetworkGraph, dict | None]:
        return NetworkGraph.from_dict(trial["architecture"]), trial["weights"]

    # ----------------------------------------------------------------- update
    def distance_matrix(self) -> np.ndarray:
        """Edit distances (Eq. 4) between the observed models, (n, n). Only the rows of
        models observed since the last call are computed, as the official code's
        incremental GP does: each update costs n new distances, not n²."""
        lam, n, old = self.config.kernel_lambda, len(self.graphs), len(self._d)
        self._descs = [morphism.describe(g) for g in self.graphs]
        if old < n:
            d = np.zeros((n, n))
            d[:old, :old] = self._d
            for i in range(old, n):
                for j in range(i):
                    d[i, j] = d[j, i] = morphism.edit_distance(
                        self._descs[i], self._descs[j], lam
                    )
            self._d = d
        return self._d

    def fit_gp(self) -> tuple[GaussianProcess, BourgainEmbedding, np.ndarray]:
        """Update: the edit-distance matrix of the history, embedded (App. F), and a GP
        on the costs with κ = exp(−ρ²) (Eq. 3)."""
        d = self.distance_matrix()
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
        parent's index among the observed models, the operation sequence and α.

        Only trained models can be fathers; networks equal to an observed or a
        pending model are skipped. If no child beats the best observed cost, the
        child with the lowest α is returned (the paper leaves this case open; the
        code would stop searching).
        """
        cfg = self.config
        gp, emb, x_train = self.fit_gp()
        c_min = min(self.costs)
        queue = [
            (c, i, i, []) for i, c in enumerate(self.costs)
        ]  # (value, tie, father, ops)
        heapq.heapify(queue)
        tie, best, best_any = len(queue), None, None
        seen = {g.hash() for g in self.graphs}
        seen |= {self.candidate(t)[0].hash() for t in self.pending}
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

    def can_propose(self) -> bool:
        # The first model needs nothing; every later one a trained father.
        return self.submitted == 0 or bool(self.graphs)

    def propose(self, step: int) -> dict[str, Any]:
        if step == 0:
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
            return {
                "architecture": graph.to_dict(),
                "weights": None,
                "extra": {"father": None, "operations": []},
            }
        father, ops, alpha = self.generate()
        graph, weights = self.graphs[father], self.weights[father]
        # seeded by the python rng: the wider noise is the same after a resume
        op_rng = random.Random(self.rng.randrange(2**31))
        for op in ops:
            graph, weights = morphism.apply(
                graph, weights, op, op_rng, self.config.dropout
            )
        return {
            "architecture": graph.to_dict(),
            "weights": weights,
            "extra": {
                "father": self.steps[father],
                "operations": [list(o) for o in ops],
                "alpha": alpha,
            },
        }

    # ----------------------------------------------------------------- observation
    def observe(self, trial: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        extra = dict(outcome.extra)
        weights = extra.pop("weights", None)
        if weights is not None and np.isfinite(outcome.reward):
            self.graphs.append(self.candidate(trial)[0])
            self.weights.append(weights)
            self.costs.append(1.0 - outcome.reward)
            self.steps.append(trial["step"])
        return extra

    # ----------------------------------------------------------------- state
    def model_state(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "graphs": [g.to_dict() for g in self.graphs],
            "weights": self.weights,
            "costs": list(self.costs),
            "steps": list(self.steps),
            "rng": list(internal),
        }

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.graphs = [NetworkGraph.from_dict(g) for g in state["graphs"]]
        self.weights = list(state["weights"])
        self.costs = list(state["costs"])
        self.steps = list(state["steps"])
        self._d = np.zeros((0, 0))
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


# --------------------------------------------------------------------------- benchmark
def _random_descriptor(rng: random.Random, n_layers: int) -> morphism.Descriptor:
    """What the edit distance sees of a network with ``n_layers`` weighted layers (a
    fifth of them dense) and one skip connection per five layers."""
    n_dense = max(1, n_layers // 5)
    widths = [rng.choice((16, 32, 64, 128, 256)) for _ in range(n_layers)]
    skips = []
    for _ in range(max(1, n_layers // 5)):
        u = rng.randint(1, n_layers - 1)
        skips.append((u, rng.randint(1, n_layers - u), rng.choice(("add", "concat"))))
    return morphism.Descriptor(
        tuple(widths[n_dense:]), tuple(widths[:n_dense]), tuple(skips)
    )


def _euclidean_distances(rng: np.random.Generator, n: int) -> np.ndarray:
    """A valid (n, n) distance matrix standing in for n² edit distances."""
    x = rng.normal(size=(n, 8))  # (n, 8)
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))  # (n, n)


def benchmark(
    device: Any = None,
    layers: tuple[int, ...] = (10, 20, 50, 100, 200),
    networks: tuple[int, ...] = (10, 30, 100, 300, 1000),
    acquisition_networks: tuple[int, ...] = (10, 20, 40, 80),
    budget: str = "smoke",
    repeats: int = 3,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """How the cost of Auto-Keras's BO grows (``nasedu bench autokeras``).

    * **distance**: one edit distance (Eq. 4) between two networks of L weighted layers
      and L/5 skip connections: the DP of Eqs. 5–7 is O(L²), the Hungarian matching of
      Eq. 8 O(S³).
    * **gp_fit**: one update (§3.1) on n observed models, given their distance matrix:
      the Bourgain embedding (App. F), the kernel and the Cholesky factorisation, O(n³).
    * **acquisition**: one generation (Algorithm 1) with n observed models (their
      distances cached, as in a search): the GP update plus every expanded child's n
      edit distances, with the annealing schedule of ``budget``.

    Times are medians of ``repeats`` runs on the CPU (the search runs there, §4.3), with
    the fitted growth exponent of each; ``device`` is only recorded.
    """
    from nasedu.bench import environment, scaling, scaling_table
    from nasedu.data import load

    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    lam = AutoKerasConfig.kernel_lambda

    def distance(n_layers: int):
        a, b = _random_descriptor(rng, n_layers), _random_descriptor(rng, n_layers)
        return lambda: morphism.edit_distance(a, b, lam)

    def gp_fit(n: int):
        d, costs = _euclidean_distances(np_rng, n), np_rng.uniform(0, 1, n)

        def fit():
            emb = BourgainEmbedding(d)
            x = emb.transform(d)  # (n, K)
            GaussianProcess(1e-6).fit(emb.kernel(x, x), costs)

        return fit

    config = METHODS.get("autokeras").config(budget)
    data = load("digits")

    def acquisition(n: int):
        search = AutoKerasSearch(config, data, torch.device("cpu"), seed)
        graph = morphism.default_graph(
            data.in_channels,
            data.image_size,
            data.num_classes,
            config.n_conv,
            config.filters,
            config.dense_units,
            config.dropout,
        )
        graphs = [graph]
        while len(graphs) < n:  # random morphs of observed networks
            g = rng.choice(graphs)
            op = morphism.sample_operation(g, rng, config.max_width)
            graphs.append(morphism.apply(g, None, op)[0])
        search.graphs, search.costs = graphs, list(np_rng.uniform(0.2, 0.8, n))
        search._d = _euclidean_distances(np_rng, n) / 4  # cached, as in a search
        return search.generate

    results = {
        "distance (layers)": scaling(distance, list(layers), repeats),
        "gp_fit (observed networks)": scaling(gp_fit, list(networks), repeats),
        "acquisition (observed networks)": scaling(
            acquisition, list(acquisition_networks), repeats
        ),
    }
    if verbose:
        print(scaling_table(f"Auto-Keras ({budget} annealing schedule)", results))
    return {
        "benchmark": "autokeras",
        "budget": budget,
        "results": results,
        **environment(torch.device("cpu")),
    }


BENCHMARKS.register("autokeras", benchmark)


def make(config: AutoKerasConfig, data, device, seed: int) -> AutoKerasSearch:
    return AutoKerasSearch(config, data, device, seed)


METHODS.register(
    "autokeras",
    Method("autokeras", AutoKerasConfig, BUDGETS, make, citation="jin2019autokeras"),
)
