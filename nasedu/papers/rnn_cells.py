"""DARTS's recurrent cell search on a word-level corpus (Liu, Simonyan & Yang, ICLR 2019,
arXiv:1806.09055, §3.1.2 and App. A.1.2; chapter *DARTS*, "Recurrent cells").

The recurrent cell has N = 12 nodes (§3.1.2): the two inputs x_t and h_{t−1}, a first
intermediate node tanh-highway-combining them, eight more nodes each computed from one
predecessor by a highway-bypassed operation (Zilly et al. 2016),

    c = σ(W_c s_j),  s_i = s_j + c ⊙ (f(W_h s_j) − s_j),  f ∈ {tanh, relu, sigmoid, identity},

and an output node that averages the eight (``R-DARTS`` = ``quark0/darts@f276dd3``
``rnn/model.py``, ``rnn/model_search.py``, ``rnn/genotypes.py``: ``STEPS = 8``). In the
search every predecessor feeds every node through a softmax-weighted mixture of the
candidates, ``none`` included (36 edges), the linear maps of all edges into a node
are shared (A.1.2), and BatchNorm without affine parameters follows every node; the
derived cell keeps, per node, the single strongest non-``none`` edge (§2.4, k = 1).

Also here: the DARTS_V2 recurrent genotype as published data, the word corpus (the
PTB file format, and an embedded corpus from Python's own documentation that needs no
network), and a DARTS search driver that reuses ``darts.hypergradient``.

Differences from R-DARTS, each deliberate: dropout masks are drawn once per step and
reused by every forward pass of that step, so the finite difference of Eq. 8 compares
the same function at w+ and w− (R-DARTS draws new masks for each pass); BatchNorm uses
batch statistics also when evaluating (R-DARTS keeps running averages there).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nasedu.papers.darts import ORDERS, hypergradient
from nasedu.search import Clock, EpochSearch, HistoryRecord

RNN_PRIMITIVES = (
    "none",
    "tanh",
    "relu",
    "sigmoid",
    "identity",
)  # R-DARTS rnn/genotypes.py
STEPS = (
    8  # R-DARTS rnn/genotypes.py STEPS (and CONCAT = 8: the output averages all eight)
)
INIT_RANGE = 0.04  # R-DARTS rnn/model.py INITRANGE
ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def num_recurrent_edges(steps: int = STEPS) -> int:
    """Edges of the search cell: node i (1-based) has one from each of states 0..i−1."""
    return steps * (steps + 1) // 2


# --------------------------------------------------------------------------- genotype
@dataclass(frozen=True)
class RecurrentGenotype:
    """A recurrent cell: node i + 1 applies ``recurrent[i] = (op, j)`` to state j
    (state 0 is the first, tanh-highway node); the output averages ``concat``."""

    recurrent: tuple[tuple[str, int], ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        try:
            edges = tuple((str(op), int(j)) for op, j in self.recurrent)
            concat = tuple(int(i) for i in self.concat)
        except (TypeError, ValueError):
            raise ValueError(
                f"a recurrent genotype needs [op, input] pairs and a concat "
                f"list, got {self.recurrent!r} and {self.concat!r}"
            ) from None
        object.__setattr__(self, "recurrent", edges)
        object.__setattr__(self, "concat", concat)
        valid = [op for op in RNN_PRIMITIVES if op != "none"]
        for i, (op, j) in enumerate(edges):
            if op not in valid:
                raise ValueError(
                    f"node {i + 1}: unknown recurrent operation {op!r}; valid "
                    f"choices: {', '.join(valid)}"
                )
            if not 0 <= j <= i:
                raise ValueError(
                    f"node {i + 1}: input {j} is invalid; valid inputs are 0..{i}"
                )
        if not concat or any(not 0 <= c <= len(edges) for c in concat):
            raise ValueError(f"concat {list(concat)} must name states 0..{len(edges)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "recurrent": [list(e) for e in self.recurrent],
            "concat": list(self.concat),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecurrentGenotype:
        data = data.get("genotype", data)
        missing = [k for k in ("recurrent", "concat") if k not in data]
        if missing:
            raise ValueError(f"recurrent genotype JSON lacks {', '.join(missing)}")
        return cls(data["recurrent"], data["concat"])


def _recurrent_dir():
    return resources.files("nasedu._data") / "genotypes" / "recurrent"


def recurrent_names() -> list[str]:
    """Names of the published recurrent genotypes."""
    return sorted(
        json.loads(p.read_text())["name"]
        for p in _recurrent_dir().iterdir()
        if p.name.endswith(".json")
    )


def load_recurrent(name: str) -> RecurrentGenotype:
    """A published recurrent genotype by name, case-insensitively (``"DARTS_V2_RNN"``)."""
    for path in _recurrent_dir().iterdir():
        if path.name.endswith(".json"):
            record = json.loads(path.read_text())
            if record["name"].lower() == str(name).lower():
                return RecurrentGenotype.from_dict(record)
    raise ValueError(
        f"unknown recurrent genotype {name!r}; valid choices: "
        f"{', '.join(recurrent_names())}"
    )


def derive_recurrent(
    weights: torch.Tensor,
    primitives: Sequence[str] = RNN_PRIMITIVES,
    steps: int = STEPS,
) -> RecurrentGenotype:
    """The discrete recurrent cell (DARTS §2.4 with k = 1): each node keeps its one
    strongest incoming edge by the strongest non-``none`` weight, and that operation
    (R-DARTS ``RNNModelSearch.genotype``). ``weights``: (36, len(primitives))."""
    if tuple(weights.shape) != (num_recurrent_edges(steps), len(primitives)):
        raise ValueError(
            f"weights have shape {tuple(weights.shape)}; {steps} nodes over "
            f"{len(primitives)} operations need "
            f"{(num_recurrent_edges(steps), len(primitives))}"
        )
    W = weights.detach().cpu()
    keep = [k for k, op in enumerate(primitives) if op != "none"]
    gene, start = [], 0
    for i in range(steps):
        rows = W[start : start + i + 1][:, keep]  # (i + 1, non-none ops)
        j = sorted(range(i + 1), key=lambda r: -float(rows[r].max()))[0]
        gene.append((primitives[keep[int(rows[j].argmax())]], j))
        start += i + 1
    return RecurrentGenotype(gene, tuple(range(1, steps + 1)))


# --------------------------------------------------------------------------- cells
def _bn(x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, None, None, training=True, eps=1e-5)  # no affine (A.1.2)


class _HighwayCell(nn.Module):
    """What the search and the evaluation cells share: the first node (R-DARTS
    ``DARTSCell._compute_init_state``) and one shared linear map per later node."""

    def __init__(self, ninp: int, nhid: int, steps: int):
        super().__init__()
        self.nhid, self.steps = nhid, steps
        self.W0 = nn.Parameter(
            torch.empty(ninp + nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE)
        )
        self.Ws = nn.ParameterList(
            nn.Parameter(torch.empty(nhid, 2 * nhid).uniform_(-INIT_RANGE, INIT_RANGE))
            for _ in range(steps)
        )

    def first_node(self, x, h_prev, x_mask, h_mask):
        if x_mask is not None:
            x, h_prev_in = x * x_mask, h_prev * h_mask
        else:
            h_prev_in = h_prev
        c0, h0 = torch.cat([x, h_prev_in], dim=-1).mm(self.W0).split(self.nhid, dim=-1)
        return h_prev + c0.sigmoid() * (h0.tanh() - h_prev)  # (B, nhid)

    def forward(self, inputs, hidden, weights=None, x_mask=None, h_mask=None):
        """inputs (T, B, ninp), hidden (B, nhid) → outputs (T, B, nhid), last hidden."""
        outputs = []
        for x in inputs:
            hidden = self.cell(x, hidden, weights, x_mask, h_mask)
            outputs.append(hidden)
        outputs = torch.stack(outputs)
        return outputs, outputs[-1]


class RecurrentCell(_HighwayCell):
    """The evaluation cell of a ``RecurrentGenotype`` (R-DARTS ``DARTSCell``; no BN)."""

    def __init__(self, ninp: int, nhid: int, genotype: RecurrentGenotype):
        super().__init__(ninp, nhid, len(genotype.recurrent))
        self.genotype = genotype

    def cell(self, x, h_prev, weights, x_mask, h_mask):
        states = [self.first_node(x, h_prev, x_mask, h_mask)]
        for i, (op, j) in enumerate(self.genotype.recurrent):
            s = states[j]
            c, h = (
                (s if h_mask is None else s * h_mask)
                .mm(self.Ws[i])
                .split(self.nhid, -1)
            )
            states.append(s + c.sigmoid() * (ACTIVATIONS[op](h) - s))
        return torch.stack([states[i] for i in self.genotype.concat]).mean(
            0
        )  # (B, nhid)


class RecurrentSearchCell(_HighwayCell):
    """The relaxed recurrent cell (R-DARTS ``DARTSCellSearch``): node i mixes, over every
    predecessor j and candidate f, w[j→i, f] · (s_j + c_j ⊙ (f(h_j) − s_j)) with one
    shared linear map per node, then a non-affine BatchNorm (``batch_norm=False`` only
    for tests: with one-hot weights the cell then equals a ``RecurrentCell``)."""

    def __init__(
        self,
        ninp: int,
        nhid: int,
        steps: int = STEPS,
        primitives: Sequence[str] = RNN_PRIMITIVES,
        batch_norm: bool = True,
    ):
        super().__init__(ninp, nhid, steps)
        unknown = [p for p in primitives if p != "none" and p not in ACTIVATIONS]
        if unknown:
            raise ValueError(
                f"unknown recurrent operation {unknown[0]!r}; valid choices: "
                f"{', '.join(RNN_PRIMITIVES)}"
            )
        self.primitives, self.batch_norm = tuple(primitives), batch_norm
        self.ops = [
            k for k, p in enumerate(primitives) if p != "none"
        ]  # none adds zero

    def cell(self, x, h_prev, weights, x_mask, h_mask):
        norm = _bn if self.batch_norm else (lambda s: s)
        states = norm(self.first_node(x, h_prev, x_mask, h_mask)).unsqueeze(
            0
        )  # (1, B, H)
        offset = 0
        for i in range(self.steps):
            masked = states if h_mask is None else states * h_mask
            ch = (
                masked.reshape(-1, self.nhid)
                .mm(self.Ws[i])
                .view(i + 1, -1, 2 * self.nhid)
            )
            c, h = (
                ch.sigmoid()[..., : self.nhid],
                ch[..., self.nhid :],
            )  # (i+1, B, H) each
            w = weights[offset : offset + i + 1]  # (i + 1, num_ops)
            s = 0
            for k in self.ops:
                candidate = states + c * (ACTIVATIONS[self.primitives[k]](h) - states)
                s = s + (w[:, k].view(-1, 1, 1) * candidate).sum(0)  # (B, H)
            states = torch.cat([states, norm(s).unsqueeze(0)])
            offset += i + 1
        return states[1:].mean(0)  # (B, H): the average of the intermediate nodes


class RNNModel(nn.Module):
    """Embedding → one recurrent cell → decoder tied to the embedding (R-DARTS
    ``RNNModel``), with the AWD-LSTM regularisers of A.1.2: embedding dropout (whole
    words), locked dropout on the embeddings and the output, variational dropout on the
    cell's input and hidden state. ``forward`` takes its dropout masks from ``masks``
    (``sample_masks``), so the caller decides when they are redrawn."""

    def __init__(
        self,
        ntoken: int,
        ninp: int,
        cell: _HighwayCell,
        dropout: float = 0.75,
        dropouth: float = 0.25,
        dropoutx: float = 0.75,
        dropouti: float = 0.2,
        dropoute: float = 0.0,
    ):
        super().__init__()
        if ninp != cell.nhid:
            raise ValueError(
                f"the tied decoder needs emsize == nhid, got {ninp} and {cell.nhid}"
            )
        self.encoder = nn.Embedding(ntoken, ninp)
        self.cell = cell
        self.decoder = nn.Linear(ninp, ntoken)
        self.decoder.weight = self.encoder.weight  # tied (R-DARTS RNNModel)
        nn.init.uniform_(self.encoder.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.decoder.bias)
        self.ntoken, self.ninp, self.nhid = ntoken, ninp, cell.nhid
        self.dropouts = {
            "output": dropout,
            "h": dropouth,
            "x": dropoutx,
            "input": dropouti,
            "words": dropoute,
        }

    def sample_masks(
        self, batch: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """One set of dropout masks (R-DARTS ``mask2d``, ``LockedDropout``,
        ``embedded_dropout``), each scaled by 1/keep; empty when not training."""
        if not self.training:
            return {}
        device = self.encoder.weight.device
        sizes = {
            "output": (batch, self.ninp),
            "h": (batch, self.nhid),
            "x": (batch, self.ninp),
            "input": (batch, self.ninp),
            "words": (self.ntoken, 1),
        }
        masks = {}
        for name, shape in sizes.items():
            p = self.dropouts[name]
            if p > 0:
                keep = 1 - p
                masks[name] = (
                    torch.empty(shape, device=device).bernoulli_(
                        keep, generator=generator
                    )
                    / keep
                )
        return masks

    def forward(self, tokens, hidden, weights=None, masks=None):
        """tokens (T, B) → (log-probabilities (T, B, ntoken), last hidden (B, nhid),
        cell outputs (T, B, nhid) for the temporal activation regulariser)."""
        masks = masks or {}
        table = self.encoder.weight
        if "words" in masks:
            table = table * masks["words"]
        emb = F.embedding(tokens, table)  # (T, B, ninp)
        if "input" in masks:
            emb = emb * masks["input"]
        raw, hidden = self.cell(emb, hidden, weights, masks.get("x"), masks.get("h"))
        out = raw * masks["output"] if "output" in masks else raw
        log_probs = F.log_softmax(self.decoder(out), dim=-1)  # (T, B, ntoken)
        return log_probs, hidden, raw

    def init_hidden(self, batch: int) -> torch.Tensor:
        return self.encoder.weight.new_zeros(batch, self.nhid)


# --------------------------------------------------------------------------- corpus
@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenised word corpus: ``train``, ``valid``, ``test`` are 1-D LongTensors of
    word ids over ``vocabulary`` (``<eos>`` ends every line, as R-DARTS ``rnn/data.py``)."""

    name: str
    vocabulary: tuple[str, ...]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def __len__(self) -> int:
        return len(self.vocabulary)


def _tokenize(lines: Sequence[str], index: dict[str, int]) -> torch.Tensor:
    ids = []
    for line in lines:
        for word in line.split() + ["<eos>"]:
            ids.append(index.setdefault(word, len(index)))
    return torch.tensor(ids, dtype=torch.long)


def load_word_corpus(folder: str | Path, prefix: str = "ptb.") -> Corpus:
    """The Penn Treebank files (Mikolov's ``ptb.train.txt``, ``ptb.valid.txt``,
    ``ptb.test.txt``; ``prefix=""`` for R-DARTS's ``train.txt`` names): one sentence a
    line, words split on white space, ``<eos>`` appended, one vocabulary for all three."""
    folder = Path(folder)
    paths = {s: folder / f"{prefix}{s}.txt" for s in ("train", "valid", "test")}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"missing corpus file(s): {', '.join(missing)}; expected "
            f"{prefix}train.txt, {prefix}valid.txt, {prefix}test.txt"
        )
    index: dict[str, int] = {}
    splits = {
        s: _tokenize(p.read_text(encoding="utf-8").splitlines(), index)
        for s, p in paths.items()
    }
    return Corpus(folder.name, tuple(index), **splits)


def embedded_corpus(vocabulary_size: int = 2000) -> Corpus:
    """A word corpus that needs no network: the English text of Python's own help topics
    (``pydoc_data.topics``, shipped with CPython), lower-cased, numbers as ``N`` and
    rare words as ``<unk>`` as in Mikolov's PTB, split 80/10/10 by line."""
    from pydoc_data.topics import topics

    lines = []
    for key in sorted(topics):
        for line in topics[key].lower().splitlines():
            words = re.findall(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\sa-z0-9]", line)
            if len(words) >= 3:
                lines.append(["N" if w.isdigit() else w for w in words])
    counts = Counter(w for line in lines for w in line)
    kept = {w for w, _ in counts.most_common(vocabulary_size - 2)}
    text = [" ".join(w if w in kept else "<unk>" for w in line) for line in lines]
    n = len(text)
    parts = {
        "train": text[: int(0.8 * n)],
        "valid": text[int(0.8 * n) : int(0.9 * n)],
        "test": text[int(0.9 * n) :],
    }
    index: dict[str, int] = {}
    splits = {s: _tokenize(t, index) for s, t in parts.items()}
    return Corpus("python-docs", tuple(index), **splits)


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) → (N // batch_size, batch_size): column b is the b-th contiguous slice."""
    n = len(ids) // batch_size
    if n < 2:
        raise ValueError(f"{len(ids)} tokens are too few for batches of {batch_size}")
    return ids[: n * batch_size].view(batch_size, n).t().contiguous()


def get_batch(
    source: torch.Tensor, i: int, seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs source[i:i+L] and next-word targets source[i+1:i+1+L] (R-DARTS utils)."""
    seq_len = min(seq_len, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len]


# --------------------------------------------------------------------------- search
@dataclass(frozen=True)
class RecurrentSearchConfig:
    """A DARTS recurrent-cell search; defaults are the paper's PTB search (A.1.2) and,
    where only the code has a value, R-DARTS ``rnn/train_search.py``."""

    emsize: int = 300  # A.1.2 "embedding and the hidden sizes are set to 300"
    nhid: int = 300  # A.1.2
    steps: int = STEPS  # R-DARTS rnn/genotypes.py STEPS = 8 (§3.1.2: N = 12 nodes)
    epochs: int = 50  # A.1.2 "trained for 50 epochs"
    batch_size: int = 256  # A.1.2
    bptt: int = 35  # A.1.2 "BPTT length 35"
    lr: float = 20.0  # A.1.2 SGD without momentum, η_w = 20
    weight_decay: float = 5e-7  # A.1.2
    clip: float = 0.25  # R-DARTS --clip 0.25
    dropout: float = 0.75  # A.1.2 output layer
    dropouth: float = 0.25  # A.1.2 "0.25 to all the hidden nodes"
    dropoutx: float = 0.75  # A.1.2 "0.75 to the cell input"
    dropouti: float = 0.2  # A.1.2 "0.2 to word embeddings"
    dropoute: float = 0.0  # R-DARTS --dropoute 0 (whole-word dropout off in the search)
    tar_beta: float = 1e-3  # R-DARTS --beta: temporal activation regularisation
    arch_lr: float = 3e-3  # A.1.2 η_α = 3e-3 (Adam)
    arch_betas: tuple[float, float] = (0.9, 0.999)  # A.1.2 β = (0.9, 0.999)
    arch_weight_decay: float = 1e-3  # A.1.2
    alpha_init_std: float = 0.0  # A.1.2 "initialized as zeros"; R-DARTS 1e-3 · randn
    order: int = 2  # Table 2: second order 55.7 test perplexity, first order 57.6
    fd_radius: float = 0.01  # R-DARTS rnn/architect._hessian_vector_product(r=1e-2)
    steps_per_epoch: int | None = None  # nasedu: cap on steps per epoch (budgets)
    eval_batch_size: int = 10  # R-DARTS eval_batch_size

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order must be 1 or 2, got {self.order!r}")


RECURRENT_BUDGETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "smoke": {
        "emsize": 32,
        "nhid": 32,
        "epochs": 2,
        "batch_size": 16,
        "bptt": 12,
        "steps_per_epoch": 5,
        "order": 1,
        "eval_batch_size": 16,
    },
}


class RecurrentSearch(EpochSearch):
    """DARTS on the recurrent cell, one epoch per ``step``: w on the training text, α on
    the validation text (R-DARTS ``rnn/train_search.py`` trains α on PTB's validation
    split, ``search_data = batchify(corpus.valid, ...)``)."""

    def __init__(
        self,
        config: RecurrentSearchConfig,
        corpus: Corpus,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        c = self.config = config
        self.device, self.epoch, self.epochs = torch.device(device), 0, config.epochs
        self.rng = torch.Generator(device=self.device).manual_seed(seed)
        torch.manual_seed(seed)
        cell = RecurrentSearchCell(c.emsize, c.nhid, c.steps)
        self.model = RNNModel(
            len(corpus),
            c.emsize,
            cell,
            c.dropout,
            c.dropouth,
            c.dropoutx,
            c.dropouti,
            c.dropoute,
        ).to(self.device)
        self.alpha = nn.Parameter(
            c.alpha_init_std
            * torch.randn(
                num_recurrent_edges(c.steps),
                len(RNN_PRIMITIVES),
                generator=torch.Generator().manual_seed(seed),
            ).to(self.device)
        )
        self.train_data = batchify(corpus.train, c.batch_size).to(self.device)
        self.search_data = batchify(corpus.valid, c.batch_size).to(self.device)
        self.eval_data = batchify(corpus.valid, c.eval_batch_size).to(self.device)
        self.w_optimizer = torch.optim.SGD(
            self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay
        )
        self.arch_optimizer = torch.optim.Adam(
            [self.alpha],
            lr=c.arch_lr,
            betas=c.arch_betas,
            weight_decay=c.arch_weight_decay,
        )

    def weights(self) -> torch.Tensor:
        return self.alpha.softmax(-1)  # (36, 5)

    def _loss(self, params, batch):
        tokens, targets, hidden, masks = batch
        args = (tokens, hidden, self.weights(), masks)
        out = (
            self.model(*args)
            if params is None
            else functional_call(self.model, params, args)
        )
        log_probs, hidden_next, _ = out
        return F.nll_loss(
            log_probs.reshape(-1, log_probs.shape[-1]), targets.reshape(-1)
        ), hidden_next.detach()

    def train_epoch(self) -> float:
        c = self.config
        self.model.train()
        hidden = self.model.init_hidden(c.batch_size)
        hidden_valid = self.model.init_hidden(c.batch_size)
        i, k, total, tokens_seen = 0, 0, 0.0, 0
        while i < len(self.train_data) - 2:
            # R-DARTS: a full BPTT window 95 % of the time, else half; lr scaled to match.
            coin = float(torch.rand((), generator=self.rng, device=self.device))
            seq_len = int(c.bptt if coin < 0.95 else c.bptt / 2)
            lr = c.lr * seq_len / c.bptt
            x, y = get_batch(self.train_data, i, seq_len)
            xv, yv = get_batch(
                self.search_data, i % (len(self.search_data) - 1), c.bptt
            )
            masks = self.model.sample_masks(c.batch_size, self.rng)
            masks_valid = self.model.sample_masks(c.batch_size, self.rng)
            self.arch_optimizer.zero_grad(set_to_none=True)
            grads, hidden_valid = hypergradient(
                self._loss,
                dict(self.model.named_parameters()),
                [self.alpha],
                (x, y, hidden, masks),
                (xv, yv, hidden_valid, masks_valid),
                order=c.order,
                lr=lr,
                momentum=0.0,
                weight_decay=c.weight_decay,
                fd_radius=c.fd_radius,
                clip=c.clip,
            )
            self.alpha.grad = grads[0]
            self.arch_optimizer.step()

            for group in self.w_optimizer.param_groups:
                group["lr"] = lr
            log_probs, hidden_next, raw = self.model(
                x, hidden, self.weights().detach(), masks
            )
            nll = F.nll_loss(log_probs.reshape(-1, self.model.ntoken), y.reshape(-1))
            tar = c.tar_beta * (raw[1:] - raw[:-1]).pow(2).mean()  # R-DARTS --beta
            self.w_optimizer.zero_grad(set_to_none=True)
            (nll + tar).backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), c.clip)
            self.w_optimizer.step()
            hidden = hidden_next.detach()
            total += float(nll.detach()) * len(x)
            tokens_seen += len(x)
            i, k = i + seq_len, k + 1
            if c.steps_per_epoch is not None and k >= c.steps_per_epoch:
                break
        return total / tokens_seen

    @torch.no_grad()
    def evaluate(self, data: torch.Tensor) -> float:
        """Mean negative log-likelihood per word, no dropout (R-DARTS ``evaluate``)."""
        self.model.eval()
        hidden = self.model.init_hidden(data.shape[1])
        total, n = 0.0, 0
        limit = None if self.config.steps_per_epoch is None else 4 * self.config.bptt
        for i in range(0, len(data) - 1, self.config.bptt):
            if limit is not None and i >= limit:
                break
            x, y = get_batch(data, i, self.config.bptt)
            log_probs, hidden, _ = self.model(x, hidden, self.weights())
            total += float(
                F.nll_loss(
                    log_probs.reshape(-1, self.model.ntoken),
                    y.reshape(-1),
                    reduction="sum",
                )
            )
            n += y.numel()
        self.model.train()
        return total / n

    def genotype(self) -> RecurrentGenotype:
        return derive_recurrent(self.weights(), RNN_PRIMITIVES, self.config.steps)

    def step(self, clock: Clock) -> list[HistoryRecord]:
        start = time.perf_counter()
        train_nll = self.train_epoch()
        valid_nll = self.evaluate(self.eval_data)
        seconds = time.perf_counter() - start
        ppl = math.exp(min(valid_nll, 50.0))
        record = HistoryRecord(
            step=self.epoch,
            architecture=self.genotype().to_dict(),
            reward=-ppl,
            cost=seconds,
            wall_clock=clock.elapsed(),
            extra={
                "epoch": self.epoch,
                "alphas": self.weights().detach().cpu().tolist(),
                "train_ppl": math.exp(min(train_nll, 50.0)),
                "valid_ppl": ppl,
                "seconds": seconds,
            },
        )
        self.epoch += 1
        return [record]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "alpha": self.alpha.detach().clone(),
            "rng": self.rng.get_state(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.model.load_state_dict(state["model"])
        with torch.no_grad():
            self.alpha.copy_(state["alpha"])
        self.rng.set_state(state["rng"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])

    def run_all(self) -> list[HistoryRecord]:
        clock, records = Clock(), []
        while not self.done():
            records += self.step(clock)
        return records
