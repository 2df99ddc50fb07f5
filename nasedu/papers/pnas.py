"""PNAS: progressive neural architecture search (chapter *PNAS*).

Liu, Zoph, Neumann, Shlens, Hua, Li, Fei-Fei, Yuille, Huang & Murphy, "Progressive
Neural Architecture Search", ECCV 2018 (arXiv:1712.00559). Implemented: the cell space
of §3.1 (B = 5 blocks, two inputs and two of 8 operations per block, added; one cell
type, stride 2 for reduction; ``nasedu.spaces.pnas``), the progressive search of §3.2
(Algorithm 1: all 1-block cells trained, then per step every cell of the previous
step expanded by one block, the children ranked by the surrogate, the top K trained,
the surrogate refitted) and both predictors of §3.3, the LSTM and the MLP, as
ensembles on data folds (``nasedu.strategies.progressive``). Children train through
the foundation's engine and are evaluated by a ``nasedu.parallel`` evaluator: serially,
or ``workers`` at a time in a process pool. ``pnas_random`` is the random-search
baseline on the same space with the same number of trained models.

Sources. The paper's full text was not available to nasedu (``paper-settings.md`` §5):
every default below that comes from a reading of the paper is marked UNVERIFIED, and so
are the section numbers cited here (§3.1 space, §3.2 search, §3.3 predictors, §5
experiments, Table 1), which follow the arXiv version's layout from memory. What
is checked: the 8 operations and the PNASNet-5 cell agree with the official TF-Slim
model (``pnasnet.py``); the 136 1-block cells follow from the commutativity of
addition (``tests/test_pnas.py`` derives the number); PNASNet-5 in the CIFAR setting
N = 3, F = 48 counts 3,176,602 parameters, DARTS Table 1's 3.2M, once N is read as
TF-Slim's ``pnasnet.py`` reads it — 3N cells *including* the two reduction cells
("there is no distinction between reduction and normal cells in PNAS"), so 9 cells,
not NASNet's 3N + 2.

The ``smoke`` budget simplifies the space, not the algorithm: 3 of the 8 operations
(21 1-block cells), B = 3 blocks, K = 4, and children that are tiny networks (2 cells,
4 channels) trained 2 epochs on the 8×8 digits — short training, named as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nasedu import genotypes
from nasedu.evaluate import ChildTraining, Evaluator, RetrainConfig
from nasedu.ops import PNAS_PRIMITIVES
from nasedu.parallel import child_evaluator
from nasedu.search import METHODS, AskTellSearch, HistoryRecord, Method
from nasedu.spaces.pnas import PNASCell, PNASSpace
from nasedu.strategies.progressive import (
    SURROGATES,
    ProgressiveSearch,
    SurrogateConfig,
    rank_correlation,
)
from nasedu.strategies.random_search import RandomSearch
from nasedu.train import TrainConfig


def _search_child() -> ChildTraining:
    return ChildTraining(
        C=24,  # §4 (UNVERIFIED): F = 24 filters in the search's child networks
        layers=6,  # §4 (UNVERIFIED): N = 2, i.e. 3N = 6 cells counted as TF-Slim does
        auxiliary=False,  # nasedu: no auxiliary head while searching
        train=TrainConfig(
            epochs=20,  # §4 (UNVERIFIED): E = 20 epochs per child
            auxiliary_weight=0.0,
            drop_path_prob=0.0,  # nasedu: no drop-path for 20-epoch children
        ),  # the rest: nasedu's engine defaults (the DARTS protocol)
    )


def _final() -> RetrainConfig:
    return RetrainConfig(
        C=48,  # Table 1 (UNVERIFIED): F = 48; gives DARTS Tab. 1's 3.2M (tested)
        layers=9,  # Table 1 (UNVERIFIED): N = 3, i.e. 3N = 9 cells (TF-Slim pnasnet.py)
        auxiliary=True,  # TF-Slim pnasnet.py use_aux_head=1
        train=TrainConfig(),  # nasedu: DARTS's 600-epoch protocol (PNAS's: UNVERIFIED)
    )


@dataclass(frozen=True)
class PNASConfig:
    """PNAS's settings; see the module docstring for which are UNVERIFIED.

    ``final`` is not used by the search: it is the network and protocol that PNASNet-5
    (or the found cell) is retrained with (``nasedu.evaluate.retrain``).
    """

    blocks: int = 5  # §3.1 (UNVERIFIED): B = 5 blocks per cell
    beam: int = 256  # §3.2 (UNVERIFIED): K = 256 children trained per step
    primitives: tuple[str, ...] = PNAS_PRIMITIVES  # §3.1; matches TF-Slim PNASNet-5
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)  # §3.3
    compare_surrogates: bool = True  # §5 predictor study: fit both kinds every step
    child: ChildTraining = field(default_factory=_search_child)
    workers: int = 0  # nasedu: 0 trains children here; n > 0 in n worker processes
    final: RetrainConfig = field(default_factory=_final)

    def __post_init__(self) -> None:
        object.__setattr__(self, "primitives", tuple(self.primitives))
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    def space(self) -> PNASSpace:
        return PNASSpace(primitives=self.primitives, blocks=self.blocks)

    def models(self) -> int:
        """Models the search trains: |B₁| + (B − 1)·K (136 + 4·256 = 1160 in PNAS)."""
        return len(self.space().initial()) + (self.blocks - 1) * self.beam


SMOKE_PRIMITIVES = ("sep_conv_3x3", "max_pool_3x3", "skip_connect")
SMOKE_CHILD = {
    "C": 4,
    "layers": 2,  # both cells run with stride 2: 8×8 → 4×4 → 2×2
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.1,
        # The CIFAR augmentation (4-px crops, flips, cutout) would destroy 8×8 digits.
        "augment": None,
        "cutout": 0,
    },
}
SMOKE_FINAL = {
    "C": 4,
    "layers": 3,
    "auxiliary": False,
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "lr": 0.1,
        "augment": None,
        "cutout": 0,
        "drop_path_prob": 0.0,
    },
}
COLAB_PRIMITIVES = ("sep_conv_3x3", "sep_conv_5x5", "max_pool_3x3", "skip_connect")

BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # One free Colab GPU: 4 ops (36 1-block cells), B = 3, K = 8: 52 children of
    # 6 cells, 16 channels, 2 epochs each on CIFAR-10; PNASNet-5 retrained 20 epochs.
    "colab": {
        "blocks": 3,
        "beam": 8,
        "primitives": COLAB_PRIMITIVES,
        "child": {"C": 16, "train": {"epochs": 2, "batch_size": 128}},
        "final": {"C": 16, "train": {"epochs": 20}},
    },
    # Seconds on a CPU: 3 ops (21 1-block cells), B = 3, K = 4: 29 tiny children.
    "smoke": {
        "blocks": 3,
        "beam": 4,
        "primitives": SMOKE_PRIMITIVES,
        "surrogate": {"epochs": 60},
        "child": SMOKE_CHILD,
        "final": SMOKE_FINAL,
    },
}


def _evaluator(config: PNASConfig, data, device, seed: int, budget: int):
    """Serial in this process, or a pool of ``config.workers`` processes (one per GPU
    when the search runs on CUDA); either scores a child identically (``ChildScorer``
    seeds it from (seed, trial))."""
    devices = None
    if config.workers and str(device).startswith("cuda"):
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    return child_evaluator(
        config.child, data, device, seed, config.workers, devices, budget
    )


def make(config: PNASConfig, data, device, seed: int) -> ProgressiveSearch:
    space = config.space()
    compare = SURROGATES if config.compare_surrogates else ()
    return ProgressiveSearch(
        space,
        _evaluator(config, data, device, seed, config.models()),
        PNASCell,
        slots=max(1, config.workers),
        beam=config.beam,
        surrogate=config.surrogate,
        compare=compare,
        seed=seed,
        device="cpu",  # small predictors: the CPU is quick and deterministic
    )


# --------------------------------------------------------------------------- baseline
@dataclass(frozen=True)
class PNASRandomConfig:
    """Random search in PNAS's space with PNAS's budget: as many B-block cells,
    sampled uniformly, as PNAS trains models (§5 compares methods at equal numbers
    of trained models)."""

    samples: int = 1160  # = PNASConfig().models(): 136 + 4·256 (UNVERIFIED inputs)
    blocks: int = 5  # §3.1 (UNVERIFIED)
    primitives: tuple[str, ...] = PNAS_PRIMITIVES  # §3.1
    child: ChildTraining = field(default_factory=_search_child)

    def __post_init__(self) -> None:
        object.__setattr__(self, "primitives", tuple(self.primitives))


RANDOM_BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "colab": {
        "samples": 52,
        "blocks": 3,
        "primitives": COLAB_PRIMITIVES,
        "child": BUDGETS["colab"]["child"],
    },
    "smoke": {
        "samples": 29,
        "blocks": 3,
        "primitives": SMOKE_PRIMITIVES,
        "child": SMOKE_CHILD,
    },
}


def make_random(config: PNASRandomConfig, data, device, seed: int) -> AskTellSearch:
    space = PNASSpace(primitives=config.primitives, blocks=config.blocks)
    evaluator = Evaluator(
        config.child.evaluator(data, device, seed), max_evaluations=config.samples
    )
    return AskTellSearch(space, RandomSearch(space, seed), evaluator)


# --------------------------------------------------------------------------- analysis
def pnasnet_5() -> PNASCell:
    """The published PNASNet-5 cell (PNAS Fig. 1; ``data/genotypes/pnasnet_5.json``)."""
    return PNASCell.from_genotype(genotypes.load("pnasnet_5"))


def predictor_study(
    records: list[HistoryRecord], kinds: tuple[str, ...] = SURROGATES
) -> list[dict[str, Any]]:
    """Rank correlation of predicted vs measured accuracy per step (PNAS §5's study).

    At each step b ≥ 2 the surrogates, fitted on every cell trained before, predicted
    the K children that were then trained; this compares those predictions with the
    accuracies the children reached. One row per cell size: ``blocks``, ``n`` and the
    Spearman ρ of each kind (NaN when undefined, e.g. fewer than two children).
    """
    rows = []
    sizes = sorted({r.extra.get("blocks") for r in records if "predicted" in r.extra})
    for b in sizes:
        chosen = [
            r
            for r in records
            if r.extra.get("blocks") == b
            and "predicted" in r.extra
            and not math.isnan(r.reward)
        ]
        row: dict[str, Any] = {"blocks": b, "n": len(chosen)}
        for kind in kinds:
            pairs = [
                (r.extra["predicted"][kind], r.reward)
                for r in chosen
                if kind in r.extra["predicted"]
            ]
            row[kind] = rank_correlation(*zip(*pairs)) if pairs else math.nan
        rows.append(row)
    return rows


def best_per_blocks(records: list[HistoryRecord]) -> dict[int, HistoryRecord]:
    """The best trained cell of every size (PNAS calls them PNASNet-1 … PNASNet-5)."""
    out: dict[int, HistoryRecord] = {}
    for r in records:
        b = r.extra.get("blocks")
        if b is not None and not math.isnan(r.reward):
            if b not in out or r.reward > out[b].reward:
                out[b] = r
    return dict(sorted(out.items()))


def final_config(budget: str = "smoke", **overrides: Any) -> RetrainConfig:
    """The retraining config of a budget (``PNASConfig.final`` with its overrides)."""
    return METHODS.get("pnas").config(budget, **overrides).final


METHODS.register(
    "pnas", Method("pnas", PNASConfig, BUDGETS, make, citation="liu2018pnas")
)
METHODS.register(
    "pnas_random",
    Method(
        "pnas_random",
        PNASRandomConfig,
        RANDOM_BUDGETS,
        make_random,
        citation="liu2018pnas",
    ),
)
