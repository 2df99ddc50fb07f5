"""Performance estimation: how an architecture gets its score (chapter *Introduction*).

Two estimators share the one training engine (``nasedu.train``):

* ``ChildTraining`` trains a sampled cell briefly from scratch and scores it by
  validation accuracy — the estimator of NAS-RL, NASNet, PNAS and the DARTS random
  baseline (DARTS Table 1 ‡: "validation error after 100 training epochs");
* ``retrain`` trains a chosen cell with the DARTS evaluation protocol (DARTS
  App. A.2.1) and reports test accuracy — what the papers' tables report.

The ``Evaluator`` owns the search budget (how many architectures may be scored) and
records the compute each evaluation took, so no strategy can overspend or misreport.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasedu.genotypes import Genotype
from nasedu.networks import NetworkCIFAR, count_parameters
from nasedu.train import TrainConfig, train


@dataclass(frozen=True)
class Outcome:
    """An evaluation's score (higher is better), its compute seconds and details."""

    reward: float
    cost: float
    extra: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Scores architectures with ``fn(architecture, step) -> Outcome`` and owns the
    budget: the search is done when ``max_evaluations`` architectures were scored."""

    def __init__(self, fn: Callable[[Any, int], Outcome], max_evaluations: int):
        if max_evaluations < 1:
            raise ValueError(f"max_evaluations must be >= 1, got {max_evaluations}")
        self.fn, self.max_evaluations = fn, max_evaluations

    def evaluate(self, architecture: Any, step: int) -> Outcome:
        if self.exhausted(step):
            raise ValueError(
                f"budget spent: {self.max_evaluations} evaluations allowed"
            )
        start = time.perf_counter()
        outcome = self.fn(architecture, step)
        return dataclasses.replace(outcome, cost=time.perf_counter() - start)

    def exhausted(self, evaluations_done: int) -> bool:
        return evaluations_done >= self.max_evaluations


@dataclass(frozen=True)
class ChildTraining:
    """Train a cell's network from scratch and score it by validation accuracy.

    Defaults: the DARTS evaluation network and protocol for 100 epochs (DARTS §3.2
    and Table 1 ‡, the selection protocol also used for its random baseline).
    """

    C: int = 36  # DARTS App. A.2.1, initial channels of the evaluation network
    layers: int = 20  # DARTS App. A.2.1, 20 cells
    auxiliary: bool = True  # DARTS App. A.2.1, auxiliary towers with weight 0.4
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=100)
    )  # Tab. 1 ‡

    def build(self, genotype: Genotype, data) -> NetworkCIFAR:
        return NetworkCIFAR(
            genotype,
            C=self.C,
            layers=self.layers,
            num_classes=data.num_classes,
            auxiliary=self.auxiliary,
            in_channels=data.in_channels,
        )

    def evaluator(self, data, device, seed: int) -> Callable[[Genotype, int], Outcome]:
        """The scoring function for a search: train on half the training set, score
        on the other half (DARTS App. A.1.1); the test split is withheld."""
        search_data = data_for_search(data, seed, holdout=0.5)
        return child_scorer(
            lambda genotype: self.build(genotype, data),
            self.train,
            search_data,
            device,
            seed,
        )


def child_scorer(
    build: Callable[[Any], Any], config: TrainConfig, search_data, device, seed: int
) -> Callable[[Any, int], Outcome]:
    """``(architecture, step) -> Outcome``: train ``build(architecture)`` with
    ``train_child`` and score it by its final validation accuracy."""

    def score(architecture: Any, step: int) -> Outcome:
        model, result = train_child(
            lambda: build(architecture), search_data, config, device, seed, step
        )
        return Outcome(
            result.final_valid_acc,
            0.0,
            {"params": count_parameters(model), "epochs": config.epochs},
        )

    return score


def child_seed(seed: int, step: int) -> int:
    """The seed of a search's ``step``-th child: the same whichever worker trains it,
    and after a resume (``nasedu.parallel``)."""
    return seed * 1_000_003 + step


def data_for_search(data, seed: int, holdout: float = 0.5):
    """What a search may see of ``data``: never the test split (DARTS §3.2: "the test
    set is never used" for selection), and, for a dataset without a validation split
    (CIFAR-10), a ``holdout`` fraction of the training images held out to score
    children, split once by ``seed``."""
    from nasedu.data import search_split

    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
    search_data = dataclasses.replace(data, test=None)
    if data.valid is None:
        train_part, valid_part = search_split(*data.train, 1.0 - holdout, seed=seed)
        search_data = dataclasses.replace(
            search_data, train=train_part, valid=valid_part
        )
    return search_data


def train_child(
    build: Callable[[], Any], data, config: TrainConfig, device, seed: int, step: int
):
    """Build and train a search's ``step``-th child with the one training engine,
    weights and batches seeded by ``child_seed``; returns ``(model, TrainResult)``."""
    from nasedu.device import seed_everything

    child = child_seed(seed, step)
    seed_everything(child)
    model = build()
    result = train(
        model, data, dataclasses.replace(config, seed=child), device, progress=False
    )
    return model, result


@dataclass(frozen=True)
class RetrainConfig:
    """Retrain a cell with the DARTS CIFAR-10 evaluation protocol (App. A.2.1)."""

    C: int = 36  # DARTS App. A.2.1
    layers: int = 20  # DARTS App. A.2.1
    auxiliary: bool = True  # DARTS App. A.2.1, weight 0.4 (in TrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # 600 epochs, batch 96, ...


RETRAIN_BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # One free Colab GPU in well under an hour: a 8-cell, 16-channel network.
    "colab": {"C": 16, "layers": 8, "train": {"epochs": 20}},
    # Seconds on a CPU on the embedded 8×8 digits: no CIFAR augmentation (it would
    # destroy them), larger steps so that 3 epochs train the network.
    "smoke": {
        "C": 8,
        "layers": 5,
        "train": {
            "epochs": 3,
            "batch_size": 32,
            "lr": 0.05,
            "augment": None,
            "cutout": 0,
        },
    },
}


def retrain(
    genotype: Genotype,
    data,
    config: RetrainConfig,
    device,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
):
    """Train ``genotype``'s evaluation network and report test accuracy (DARTS §3.2)."""
    model = NetworkCIFAR(
        genotype,
        C=config.C,
        layers=config.layers,
        num_classes=data.num_classes,
        auxiliary=config.auxiliary,
        in_channels=data.in_channels,
    )
    return train(
        model, data, config.train, device, out_dir=out, resume=resume, progress=progress
    )


@dataclass(frozen=True)
class ChildScorer:
    """``ChildTraining.evaluator`` as a picklable object, for worker processes.

    A closure cannot cross a process boundary, so this frozen record holds only what
    the score needs (the child's config, a dataset *name*, a device string and the
    seed); the worker loads the dataset itself on its first call and keeps it. The
    score is the one ``ChildTraining.evaluator`` gives in-process, seeded from
    ``(seed, step)``, so a pooled search reports what a serial one does
    (``nasedu.parallel``; chapter *NAS-RL*, "Children evaluated in parallel").

    Attributes:
        child: the child network and its training protocol: a ``ChildTraining``, or
            any frozen config with the same ``evaluator(data, device, seed)`` method
            (e.g. ``nasedu.papers.nas_rl.NasRLChild``).
        dataset: a ``nasedu.data.names()`` entry, loaded in the worker.
        device: ``"auto"`` (the worker's own GPU when ``CUDA_VISIBLE_DEVICES`` gives it
            one, else its CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        seed: the search's seed.
    """

    child: Any
    dataset: str
    device: str = "auto"
    seed: int = 0

    def __call__(self, genotype: Genotype, step: int) -> Outcome:
        return _child_score_fn(self)(genotype, step)


@functools.lru_cache(maxsize=2)
def _child_score_fn(scorer: ChildScorer) -> Callable[[Genotype, int], Outcome]:
    # Cached per process: a worker loads (and splits) its dataset once, not per child.
    from nasedu.data import load
    from nasedu.device import resolve_device

    return scorer.child.evaluator(
        load(scorer.dataset), resolve_device(scorer.device), scorer.seed
    )
