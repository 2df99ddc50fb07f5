"""Hierarchical evolution (chapter *Hierarchical evolution*).

Liu, Simonyan, Vinyals, Fernando & Kavukcuoglu, "Hierarchical Representations for
Efficient Architecture Search", ICLR 2018 (arXiv:1711.00436). Implemented: the flat and
the hierarchical representations (§2; ``nasedu.spaces.hierarchical``), mutation,
initialisation by random mutations of the trivial genotype, tournament selection and
asynchronous evolution (§3; ``nasedu.strategies.evolution``), random search in either
representation as the paper's baseline, each child trained from scratch in the
paper's small CIFAR skeleton through ``nasedu.train`` and scored by validation
accuracy. Workers: this process (``serial``, deterministic), a local process pool
(``process``) or a Ray cluster (``ray``, ``pip install "nasedu[ray]"``).

Sources: the abstract and DARTS Table 1 are the only primary text nasedu could read
(``paper-settings.md`` §4); every other paper setting below is marked UNVERIFIED with
where it comes from. The DARTS Table 1 cost (300 GPU-days) equals 200 GPUs × 36 h,
the abstract's search time, which is consistent with the often-quoted 200 workers.

Budgets: ``smoke`` evolves 8 tiny children (4 random + 4 mutants, each drawn with 20
instead of 1000 initial mutations) on the 8×8 digits, each trained for 2 short epochs
at 8 channels — a short training of tiny models that only shows the machinery run;
``colab`` 60 children of the C = 16 search model for 3 CIFAR-10 epochs on one GPU;
``paper`` the paper's protocol where known.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from nasedu import evaluate
from nasedu.evaluate import Outcome
from nasedu.parallel import (
    AsyncEvaluator,
    ProcessPoolEvaluator,
    RayEvaluator,
    SerialEvaluator,
)
from nasedu.search import METHODS, Method
from nasedu.spaces.hierarchical import (
    REPRESENTATIONS,
    HierarchicalGenotype,
    HierarchicalNetwork,
)
from nasedu.strategies.evolution import EvolutionSearch
from nasedu.train import TrainConfig

BACKENDS = ("serial", "process", "ray")


@dataclass(frozen=True)
class ChildConfig:
    """The search-time model and its training (§4.1, Fig. 2 top-left)."""

    C: int = 16  # Fig. 2 small model, C = 16 (paper-settings §4, UNVERIFIED)
    cells_per_stage: int = 1  # Fig. 2 small model: one cell per stage (UNVERIFIED)
    # The paper's step count, batch size and schedule were not available (UNVERIFIED);
    # nasedu: 20 epochs of SGD with cosine decay, crop + flip, no cutout/drop-path.
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=20,
            batch_size=64,
            lr=0.1,
            cutout=0,
            drop_path_prob=0.0,
            auxiliary_weight=0.0,
        )
    )


@dataclass(frozen=True)
class HierarchicalConfig:
    """Paper defaults; most are UNVERIFIED (module docstring)."""

    representation: str = "hierarchical"  # §2.2; "flat" = §2.1 (both in §4)
    evaluations: int = 7000  # §4 evolution steps (UNVERIFIED, commonly quoted)
    population: int = 200  # §3.2 initial population (UNVERIFIED, commonly quoted)
    init_mutations: int = 1000  # §3.2 mutations per initial genotype (UNVERIFIED)
    tournament_fraction: float = 0.05  # §3.2 "5% of the population" (S UNVERIFIED)
    backend: str = "ray"  # nasedu: the paper's workers were a cluster of GPUs
    workers: int = 200  # §3.3 200 GPU workers (UNVERIFIED; = 300 GPU-days / 36 h)
    devices: tuple[str, ...] | None = None  # process backend: GPU indices
    ray_address: str | None = "auto"  # ray backend: a running cluster (None: local)
    gpus_per_trial: float = 1  # ray backend: one GPU per child
    child: ChildConfig = field(default_factory=ChildConfig)

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation must be one of {', '.join(REPRESENTATIONS)}, "
                f"got {self.representation!r}"
            )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.workers < 1 or self.evaluations < 1 or self.population < 1:
            raise ValueError(
                f"workers, evaluations and population must be >= 1, got "
                f"{self.workers}, {self.evaluations}, {self.population}"
            )


@dataclass(frozen=True)
class HierarchicalRandomConfig(HierarchicalConfig):
    """Random search (§4): the initial-population draw, evaluated and nothing more."""

    evaluations: int = 200  # §4 random search: 200 samples in 1 h (UNVERIFIED)


_SMOKE_CHILD = {
    "C": 8,
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.1,
        "augment": None,  # CIFAR crops and flips would destroy 8×8 digits
        "cutout": 0,
        "amp": False,
    },
}
BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # One free Colab GPU: 60 children of the search model, 3 CIFAR-10 epochs each.
    "colab": {
        "evaluations": 60,
        "population": 20,
        "backend": "serial",
        "workers": 1,
        "child": {"train": {"epochs": 3, "batch_size": 128}},
    },
    # Seconds on a CPU: 8 tiny children (4 random + 4 mutants) on the 8×8 digits,
    # 2 short epochs each; 20 initial mutations keep the random cells small enough
    # to train in seconds (the paper's 1000 make nearly every edge an op).
    "smoke": {
        "evaluations": 8,
        "population": 4,
        "init_mutations": 20,
        "backend": "serial",
        "workers": 1,
        "gpus_per_trial": 0,  # with backend=ray: CPU children
        "child": _SMOKE_CHILD,
    },
}
RANDOM_BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "colab": {**BUDGETS["colab"], "evaluations": 20},
    "smoke": {**BUDGETS["smoke"], "evaluations": 6},
}


# ---------------------------------------------------------------------- children
def search_data(data, seed: int):
    """The search's data: test split withheld; CIFAR-10 (no fixed validation split)
    split 40k/10k (§4.1: the validation set is held out from the training set;
    the split sizes are UNVERIFIED)."""
    return evaluate.data_for_search(data, seed, holdout=0.2)


def train_child(
    architecture: dict[str, Any], step: int, data, child: ChildConfig, device, seed: int
) -> Outcome:
    """Train one genotype's search model from scratch, seeded by
    ``evaluate.child_seed(seed, step)``; reward = final validation accuracy. ``data``
    is ``search_data``'s output."""
    genotype = HierarchicalGenotype.from_dict(architecture)

    def build() -> HierarchicalNetwork:
        return HierarchicalNetwork(
            genotype, child.C, child.cells_per_stage, data.num_classes, data.in_channels
        )

    _, result = evaluate.train_child(build, data, child.train, device, seed, step)
    return Outcome(float(result.final_valid_acc), 0.0, {"params": result.params})


@dataclass(frozen=True)
class ChildTrainer:
    """``train_child`` as a picklable object for process-pool and Ray workers: each
    worker loads the dataset by name once and splits it as the search does."""

    child: ChildConfig
    dataset: str
    device: str = "auto"
    seed: int = 0

    def __call__(self, architecture: dict[str, Any], step: int) -> Outcome:
        data, device = _worker_data(self.dataset, self.device, self.seed)
        return train_child(architecture, step, data, self.child, device, self.seed)


@functools.lru_cache(maxsize=2)
def _worker_data(dataset: str, device: str, seed: int):
    from nasedu.data import load
    from nasedu.device import resolve_device

    return search_data(load(dataset), seed), resolve_device(device)


def make_evaluator(
    config: HierarchicalConfig, data, device, seed: int
) -> AsyncEvaluator:
    """The workers of ``config.backend`` (module docstring)."""
    if config.backend == "serial":
        fn = functools.partial(
            _train_in_process, search_data(data, seed), config.child, device, seed
        )
        return SerialEvaluator(fn, max_evaluations=config.evaluations)
    if config.backend == "process":
        worker_device = "auto" if config.devices else str(device)
        return ProcessPoolEvaluator(
            ChildTrainer(config.child, data.name, worker_device, seed),
            workers=config.workers,
            devices=list(config.devices) if config.devices else None,
            max_evaluations=config.evaluations,
        )
    return RayEvaluator(
        ChildTrainer(config.child, data.name, "auto", seed),
        address=config.ray_address,
        num_cpus=config.workers if config.ray_address is None else None,
        gpus_per_trial=config.gpus_per_trial,
        max_evaluations=config.evaluations,
    )


def _train_in_process(data, child, device, seed, architecture, step) -> Outcome:
    return train_child(architecture, step, data, child, device, seed)


# ---------------------------------------------------------------------- methods
def _search(config: HierarchicalConfig, data, device, seed: int, evolve: bool):
    return EvolutionSearch(
        representation=config.representation,
        evaluations=config.evaluations,
        population=config.population,
        init_mutations=config.init_mutations,
        tournament_fraction=config.tournament_fraction,
        evolve=evolve,
        make_evaluator=lambda: make_evaluator(config, data, device, seed),
        in_flight=1 if config.backend == "serial" else config.workers,
        seed=seed,
    )


def make(config: HierarchicalConfig, data, device, seed: int) -> EvolutionSearch:
    """Asynchronous evolution (``nasedu search hierarchical``)."""
    return _search(config, data, device, seed, evolve=True)


def make_random(config: HierarchicalConfig, data, device, seed: int) -> EvolutionSearch:
    """The random-search baseline (``nasedu search hierarchical_random``)."""
    return _search(config, data, device, seed, evolve=False)


METHODS.register(
    "hierarchical",
    Method(
        "hierarchical",
        HierarchicalConfig,
        BUDGETS,
        make,
        citation="liu2018hierarchical",
    ),
)
METHODS.register(
    "hierarchical_random",
    Method(
        "hierarchical_random",
        HierarchicalRandomConfig,
        RANDOM_BUDGETS,
        make_random,
        citation="liu2018hierarchical",
    ),
)
