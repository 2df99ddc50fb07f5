"""Progressive search with a learned surrogate: sequential model-based optimisation
over cells of growing size (chapter *PNAS*; Liu et al., ECCV 2018, §3.2–3.3).

Algorithm 1 of PNAS, for a space that can list its 1-block cells (``initial``) and the
children of a cell (``expand``, one block more):

1. Q₁ ← all 1-block cells; train them all; fit the surrogate π on the results.
2. For b = 2..B: expand every cell of Q_{b−1} by one block, rank all the children by
   π, keep the top K as Q_b, train them, and refit π on everything trained so far.
3. Return the best trained B-block cell.

The surrogate ranks cells it has never seen, and larger than any it was trained on,
so it must read a variable number of blocks: the LSTM reads the cell's tokens in order,
the MLP averages a per-block embedding (§3.3). Each is an ensemble whose members are
trained on different folds of the data (§3.3: 5 members, each on 4/5 of the data —
UNVERIFIED, like the section numbers here; ``paper-settings.md`` §5).

Children are trained through a ``nasedu.parallel.AsyncEvaluator``: with a process pool,
several children train at once and each result is recorded when it arrives. A
checkpoint stores the trials still running and ``load_state_dict`` submits them again,
so a resumed search records what an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasedu.search import Clock, HistoryRecord, Search, best

SURROGATES = ("lstm", "mlp")


def rank_correlation(x: Any, y: Any) -> float:
    """Spearman's ρ: Pearson's correlation of the ranks (ties share their mean rank).

    NaN when either side is constant or has fewer than two values (no ranking exists).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {x.shape} vs {y.shape}")
    if x.size < 2:
        return math.nan

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # average the ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


# --------------------------------------------------------------------------- surrogates
class LSTMSurrogate(nn.Module):
    """PNAS §3.3: an LSTM reads the cell's tokens (I1, I2, O1, O2 per block); its
    last hidden state, through a linear layer and a sigmoid, predicts the accuracy."""

    def __init__(self, vocabulary: int, embed: int = 100, hidden: int = 100):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))  # (N, L, hidden)
        # The LSTM is unidirectional, so the state after a cell's last token ignores
        # the padding that follows it in a batch of cells of different sizes.
        last = out[torch.arange(len(tokens)), 4 * blocks - 1]  # (N, hidden)
        return torch.sigmoid(self.head(last)).squeeze(1)  # (N,)


class MLPSurrogate(nn.Module):
    """PNAS §3.3: each block's four token embeddings are concatenated (4·D values),
    the blocks are averaged — so any number of blocks gives one vector — and an MLP
    with a sigmoid output predicts the accuracy."""

    def __init__(
        self, vocabulary: int, embed: int = 100, hidden: int = 100, layers: int = 2
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embed)
        widths = [4 * embed] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            body += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*body, nn.Linear(widths[-1], 1))

    def forward(self, tokens: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        n, length = tokens.shape
        e = self.embedding(tokens).reshape(n, length // 4, -1)  # (N, B_max, 4·D)
        mask = torch.arange(length // 4, device=tokens.device) < blocks[:, None]
        mean = (e * mask[..., None]).sum(1) / blocks[:, None]  # (N, 4·D)
        return torch.sigmoid(self.mlp(mean)).squeeze(1)  # (N,)


@dataclass(frozen=True)
class SurrogateConfig:
    """The performance predictor of PNAS §3.3 and how it is fitted.

    Only ``kind``, ``hidden`` and ``members`` are taken from the issue's reading of the
    paper (UNVERIFIED, ``paper-settings.md`` §5); the fitting schedule is nasedu's.
    """

    kind: str = "lstm"  # §3.3 (UNVERIFIED): LSTM predictor; "mlp" is the alternative
    members: int = 5  # §3.3 (UNVERIFIED): ensemble of 5, each on 4/5 of the data
    embed: int = 100  # nasedu: token embedding size (the paper's D: UNVERIFIED)
    hidden: int = 100  # §3.3 (UNVERIFIED): hidden size 100
    mlp_layers: int = 2  # nasedu: hidden layers of the MLP predictor
    epochs: int = 100  # nasedu: passes over the data per fit
    batch_size: int = 128  # nasedu
    lr: float = 0.01  # nasedu: Adam learning rate
    loss: str = "l1"  # nasedu: L1 on the predicted accuracy ("l1" or "l2")

    def __post_init__(self) -> None:
        if self.kind not in SURROGATES:
            raise ValueError(
                f"unknown surrogate {self.kind!r}; valid choices: "
                f"{', '.join(SURROGATES)}"
            )
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"unknown loss {self.loss!r}; valid choices: l1, l2")
        if self.members < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                "members, epochs and batch_size must be >= 1, got "
                f"{self.members}, {self.epochs}, {self.batch_size}"
            )


def _pad(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of whole blocks → (N, 4·B_max) tokens padded with 0, (N,) blocks."""
    blocks = torch.tensor([len(s) // 4 for s in sequences])
    if any(len(s) % 4 or not s for s in sequences):
        raise ValueError("every token sequence must hold whole blocks of 4 tokens")
    tokens = torch.zeros(len(sequences), 4 * int(blocks.max()), dtype=torch.long)
    for i, s in enumerate(sequences):
        tokens[i, : len(s)] = torch.tensor(s)
    return tokens, blocks


class Ensemble:
    """``members`` surrogates of one kind, member i trained on all folds but fold i;
    the prediction is their mean (PNAS §3.3)."""

    def __init__(self, config: SurrogateConfig, vocabulary: int, device: Any = "cpu"):
        self.config, self.vocabulary = config, vocabulary
        self.device = torch.device(device)
        self.models: list[nn.Module] = []

    def _new(self) -> nn.Module:
        c = self.config
        if c.kind == "lstm":
            return LSTMSurrogate(self.vocabulary, c.embed, c.hidden)
        return MLPSurrogate(self.vocabulary, c.embed, c.hidden, c.mlp_layers)

    def fit(
        self, sequences: list[list[int]], targets: list[float], seed: int = 0
    ) -> Ensemble:
        """Fit every member on its folds; deterministic for a seed on a CPU (the
        global RNG is left as it was)."""
        if len(sequences) != len(targets) or not sequences:
            raise ValueError(
                f"need as many targets as sequences (and at least one), got "
                f"{len(sequences)} and {len(targets)}"
            )
        tokens, blocks = _pad(sequences)
        y = torch.tensor(targets, dtype=torch.float32)
        c, n = self.config, len(sequences)
        folds = np.array_split(np.random.default_rng(seed).permutation(n), c.members)
        loss_fn = nn.L1Loss() if c.loss == "l1" else nn.MSELoss()
        self.models = []
        with torch.random.fork_rng(devices=[]):
            for m in range(c.members):
                torch.manual_seed(seed * 1_000 + m)
                held_out = set(folds[m].tolist()) if c.members > 1 and n > 1 else set()
                rows = torch.tensor([i for i in range(n) if i not in held_out])
                model = self._new().to(self.device)
                optimizer = torch.optim.Adam(model.parameters(), lr=c.lr)
                for _ in range(c.epochs):
                    order = rows[torch.randperm(len(rows))]
                    for batch in order.split(c.batch_size):
                        t, b = (
                            tokens[batch].to(self.device),
                            blocks[batch].to(self.device),
                        )
                        loss = loss_fn(model(t, b), y[batch].to(self.device))
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                self.models.append(model.eval())
        return self

    @torch.no_grad()
    def predict(self, sequences: list[list[int]], chunk: int = 8192) -> np.ndarray:
        """Mean prediction of the members, shape (N,)."""
        if not self.models:
            raise ValueError("fit the ensemble before predicting")
        out = []
        for start in range(0, len(sequences), chunk):
            tokens, blocks = _pad(sequences[start : start + chunk])
            t, b = tokens.to(self.device), blocks.to(self.device)
            out.append(torch.stack([m(t, b) for m in self.models]).mean(0).cpu())
        return torch.cat(out).numpy().astype(float) if out else np.zeros(0)


# --------------------------------------------------------------------------- the search
class ProgressiveSearch(Search):
    """PNAS Algorithm 1 over a space with ``initial``, ``expand`` and ``tokens``.

    One ``step`` records one trained cell: it first fills the evaluator's free slots
    from the queue Q_b, then takes the next result that arrives. When Q_b is spent the
    surrogate is refitted and Q_{b+1} chosen.

    Args:
        space: e.g. ``nasedu.spaces.pnas.PNASSpace`` (``initial``, ``expand``,
            ``tokens``, ``vocabulary``, ``blocks``).
        evaluator: a ``nasedu.parallel.AsyncEvaluator`` scoring genotypes.
        cell_type: the cells' class (``to_genotype``, ``key``, ``to_list``,
            ``from_list``, ``len``), e.g. ``nasedu.spaces.pnas.PNASCell``.
        slots: trials kept in flight (the pool's workers; 1 for a serial evaluator).
        beam: K, the number of children trained per step.
        surrogate: the predictor that ranks children.
        compare: other predictor kinds fitted on the same data at every step and
            recorded beside it (the predictor study of §5), never used to rank.
        seed: seeds the surrogate fits.
        device: where the surrogates train.
    """

    def __init__(
        self,
        space: Any,
        evaluator: Any,
        cell_type: type,
        *,
        slots: int = 1,
        beam: int = 256,
        surrogate: SurrogateConfig | None = None,
        compare: tuple[str, ...] = (),
        seed: int = 0,
        device: Any = "cpu",
    ):
        if beam < 1 or slots < 1:
            raise ValueError(f"beam and slots must be >= 1, got {beam}, {slots}")
        self.space, self.evaluator, self.cell_type = space, evaluator, cell_type
        self.slots, self.beam, self.seed, self.device = slots, beam, seed, device
        self.surrogate = surrogate or SurrogateConfig()
        unknown = [k for k in compare if k not in SURROGATES]
        if unknown:
            raise ValueError(
                f"unknown surrogate {unknown[0]!r}; valid choices: "
                f"{', '.join(SURROGATES)}"
            )
        self.kinds = (self.surrogate.kind,) + tuple(
            k for k in compare if k != self.surrogate.kind
        )
        self.level = 1
        self.queue: list[Any] = list(space.initial())
        self.resubmit: list[tuple[int, Any]] = []  # trials in flight at a checkpoint
        self.pending: dict[int, Any] = {}  # trial step → cell
        self.observed: list[tuple[int, Any, float]] = []  # (trial, cell, reward)
        self.predictions: dict[str, dict[str, float]] = {}
        self.levels: list[dict[str, Any]] = []  # one summary per refit
        self.next_trial = 0

    # ------------------------------------------------------------------ the loop
    def _fill(self) -> None:
        while len(self.pending) < self.slots and (self.resubmit or self.queue):
            if self.resubmit:
                trial, cell = self.resubmit.pop(0)
            else:
                trial, cell = self.next_trial, self.queue.pop(0)
                self.next_trial += 1
            self.evaluator.submit(cell.to_genotype(), trial)
            self.pending[trial] = cell

    def step(self, clock: Clock) -> list[HistoryRecord]:
        self._fill()
        handle, outcome = next(iter(self.evaluator.results()))
        cell = self.pending.pop(handle.step)
        extra = {
            **outcome.extra,
            "blocks": len(cell),
            "cell": cell.to_list(),
            "trial": handle.step,
        }
        if cell.key() in self.predictions:
            extra["predicted"] = self.predictions[cell.key()]
        record = HistoryRecord(
            step=len(self.observed),
            architecture=handle.architecture.to_dict(),
            reward=outcome.reward,
            cost=outcome.cost,
            wall_clock=clock.elapsed(),
            extra=extra,
        )
        self.observed.append((handle.step, cell, outcome.reward))
        if not (self.queue or self.pending or self.resubmit):
            if self.level < self.space.blocks:
                self._next_level()
            else:
                self.evaluator.close()  # done: let a pool's workers go
        return [record]

    def fit_surrogates(self) -> dict[str, Ensemble]:
        """Fit every predictor kind on all cells trained so far (failed ones left out),
        in trial order so that the order results arrived in changes nothing."""
        data = sorted((t, c, r) for t, c, r in self.observed if not math.isnan(r))
        if not data:
            raise ValueError(
                "every child failed: there is nothing to fit a surrogate on"
            )
        sequences = [self.space.tokens(c) for _, c, _ in data]
        targets = [r for *_, r in data]
        fits = {}
        for k, kind in enumerate(self.kinds):
            config = dataclasses.replace(self.surrogate, kind=kind)
            fits[kind] = Ensemble(config, self.space.vocabulary(), self.device).fit(
                sequences, targets, seed=self.seed * 100 + 10 * self.level + k
            )
        return fits

    def _next_level(self) -> None:
        fits = self.fit_surrogates()
        parents = [c for _, c, _ in sorted(self.observed) if len(c) == self.level]
        children = list(
            dict.fromkeys(ch for p in parents for ch in self.space.expand(p))
        )
        sequences = [self.space.tokens(c) for c in children]
        scores = {kind: fit.predict(sequences) for kind, fit in fits.items()}
        # Stable sort: among equal predictions the earlier-enumerated child wins.
        order = np.argsort(-scores[self.surrogate.kind], kind="stable")[: self.beam]
        self.queue = [children[i] for i in order]
        self.predictions = {
            children[i].key(): {kind: float(s[i]) for kind, s in scores.items()}
            for i in order
        }
        self.level += 1
        self.levels.append(
            {
                "blocks": self.level,
                "parents": len(parents),
                "candidates": len(children),
                "trained_on": sum(1 for *_, r in self.observed if not math.isnan(r)),
            }
        )

    def done(self) -> bool:
        return self.level >= self.space.blocks and not (
            self.queue or self.pending or self.resubmit
        )

    def progress_total(self) -> int | None:
        return len(self.space.initial()) + (self.space.blocks - 1) * self.beam

    def result(self, records: list[HistoryRecord]) -> dict[str, Any]:
        """The best trained cell of the largest size (Algorithm 1 returns the top
        B-block cells), and the best cell of every size ("PNASNet-1…5", §5)."""
        best(records)  # raises a clear error when every child failed
        scored = [r for r in records if not math.isnan(r.reward)]
        largest = max(r.extra["blocks"] for r in scored)
        top = best([r for r in scored if r.extra["blocks"] == largest])
        per_size = {
            str(b): best([r for r in scored if r.extra["blocks"] == b]).step
            for b in sorted({r.extra["blocks"] for r in scored})
        }
        return {
            "architecture": top.architecture,
            "reward": top.reward,
            "step": top.step,
            "cell": top.extra["cell"],
            "best_step_per_blocks": per_size,
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        in_flight = sorted(
            self.resubmit + list(self.pending.items()), key=lambda p: p[0]
        )
        return {
            "level": self.level,
            "queue": [c.to_list() for c in self.queue],
            "in_flight": [[t, c.to_list()] for t, c in in_flight],
            "observed": [[t, c.to_list(), r] for t, c, r in self.observed],
            "predictions": self.predictions,
            "levels": self.levels,
            "next_trial": self.next_trial,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cell = self.cell_type.from_list
        self.level = state["level"]
        self.queue = [cell(c) for c in state["queue"]]
        self.resubmit = [(t, cell(c)) for t, c in state["in_flight"]]
        self.pending = {}
        self.observed = [(t, cell(c), r) for t, c, r in state["observed"]]
        self.predictions = state["predictions"]
        self.levels = state["levels"]
        self.next_trial = state["next_trial"]
