"""Random search: the baseline every NAS method must beat (chapter *Introduction*;
Li & Talwalkar 2019; DARTS Table 1 reports it at 3.29 ± 0.15 % on CIFAR-10).

The strategy samples the space uniformly and learns nothing from the results. The
search it drives trains each sampled cell briefly (``nasedu.evaluate``) and keeps the
best by validation accuracy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from nasedu.evaluate import ChildTraining, Evaluator
from nasedu.search import METHODS, AskTellSearch, HistoryRecord, Method
from nasedu.spaces.cell import CellSpace


class RandomSearch:
    """Uniform sampling from a space; ``tell`` is a no-op by design."""

    def __init__(self, space: Any, seed: int = 0):
        self.space = space
        self.rng = random.Random(seed)

    def ask(self) -> Any:
        return self.space.sample(self.rng)

    def tell(self, architecture: Any, record: HistoryRecord) -> None:
        pass  # random search ignores feedback: that is what makes it the baseline

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"rng": list(internal)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate((3, tuple(state["rng"]), None))


@dataclass(frozen=True)
class RandomSearchConfig:
    """Random search over the DARTS cell space with short child training.

    The paper defaults are DARTS's random-search baseline (DARTS Table 1 ‡: the best
    of 24 cells sampled uniformly from the 7-op space, by validation error after 100
    training epochs). The paper does not say which network the children were trained
    in; nasedu uses its evaluation network (20 cells, C = 36; App. A.2.1).
    """

    samples: int = 24  # DARTS Table 1 ‡, "best architecture among 24 samples"
    space: CellSpace = field(default_factory=CellSpace)
    child: ChildTraining = field(default_factory=ChildTraining)


BUDGETS = {
    "paper": {},
    # 8 children of the DARTS search network (8 cells, 16 channels), 10 epochs each.
    "colab": {"samples": 8, "child": {"C": 16, "layers": 8, "train": {"epochs": 10}}},
    # 6 tiny children on the 8×8 digits, 2 epochs each: about 2 s per child on one CPU
    # core. Larger steps (batch 32, lr 0.1) make 2 epochs enough to rank cells, and the
    # CIFAR augmentation (4-px crops, flips, cutout) would destroy 8×8 digits.
    "smoke": {
        "samples": 6,
        "child": {
            "C": 4,
            "layers": 3,
            "auxiliary": False,
            "train": {
                "epochs": 2,
                "batch_size": 32,
                "lr": 0.1,
                "augment": None,
                "cutout": 0,
                "drop_path_prob": 0.0,
            },
        },
    },
}


def make(config: RandomSearchConfig, data, device, seed: int) -> AskTellSearch:
    evaluator = Evaluator(
        config.child.evaluator(data, device, seed), max_evaluations=config.samples
    )
    return AskTellSearch(config.space, RandomSearch(config.space, seed), evaluator)


METHODS.register(
    "random",
    Method("random", RandomSearchConfig, BUDGETS, make, citation="li2019random"),
)
