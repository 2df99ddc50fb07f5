"""The shared vocabulary of every search (chapter *Introduction*).

Elsken et al.'s survey splits NAS into a search space, a search strategy and a
performance-estimation strategy. nasedu keeps them as separate small pieces:

* a **space** is data: it samples and describes architectures (``nasedu.spaces``);
* a **strategy** proposes architectures and learns from results (``ask``/``tell``);
* an **evaluator** measures an architecture and owns the budget (``nasedu.evaluate``).

Every method, whatever its inner loop, reports the same ``HistoryRecord``
(architecture as JSON, reward, cost, wall-clock, step), so any two methods can be
plotted on one axis. ``run`` drives any ``Search`` with checkpoints: SIGINT/SIGTERM
save the state, and ``resume=True`` continues to the result an uninterrupted run gives.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import math
import pkgutil
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nasedu import budgets as budgets_mod
from nasedu.checkpoint import load_checkpoint, save_checkpoint, write_json_atomic
from nasedu.registry import Registry


@dataclass(frozen=True)
class HistoryRecord:
    """One evaluated architecture, in the order results arrived.

    Attributes:
        step: 0-based index of the result in the search.
        architecture: the architecture as JSON-ready data (e.g. ``Genotype.to_dict()``).
        reward: what the search maximises (e.g. validation accuracy).
        cost: compute seconds the evaluation itself took (summed over workers, it can
            exceed wall-clock when evaluations run in parallel).
        wall_clock: seconds since the search started when this result arrived.
        extra: method-specific details (test accuracy, parameter count, α, ...).
    """

    step: int
    architecture: dict[str, Any]
    reward: float
    cost: float
    wall_clock: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data) - {"extra"}
        if missing:
            raise ValueError(f"history record lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in names})


def read_history(path: str | Path) -> list[HistoryRecord]:
    """Records of a ``history.jsonl`` file."""
    records = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(HistoryRecord.from_dict(json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: malformed history line: {e}") from None
    return records


def best(records: list[HistoryRecord]) -> HistoryRecord:
    """The record with the highest reward (the earliest on ties); failed evaluations
    (NaN reward, see ``nasedu.parallel``) never win."""
    scored = [r for r in records if not math.isnan(r.reward)]
    if not scored:
        raise ValueError(
            "no successful records: the search evaluated nothing that worked"
        )
    return max(scored, key=lambda r: (r.reward, -r.step))


class SearchSpace(Protocol):
    """A space is data: it samples architectures and never changes while searched."""

    name: str

    def sample(self, rng: random.Random) -> Any: ...

    def to_json(self, architecture: Any) -> dict[str, Any]: ...

    def from_json(self, data: dict[str, Any]) -> Any: ...


class Strategy(Protocol):
    """Proposes architectures (``ask``) and learns from their records (``tell``)."""

    def ask(self) -> Any: ...

    def tell(self, architecture: Any, record: HistoryRecord) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Search(abc.ABC):
    """A resumable search, the unit the CLI and the chapters run.

    Subclasses implement ``step`` (one unit of work: one evaluation, or one epoch of a
    supernet) returning the records it produced, ``done``, ``result`` and the state
    pair. ``run`` below handles output files, checkpoints and signals for all of them.
    """

    @abc.abstractmethod
    def step(self, clock: Clock) -> list[HistoryRecord]:
        """Do one unit of work; return the records it produced."""

    @abc.abstractmethod
    def done(self) -> bool:
        """Whether the budget is spent."""

    def result(self, records: list[HistoryRecord]) -> dict[str, Any]:
        """The best architecture found, as JSON-ready data (default: highest reward)."""
        top = best(records)
        return {
            "architecture": top.architecture,
            "reward": top.reward,
            "step": top.step,
        }

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this search stands."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from ``state_dict``."""

    def progress_total(self) -> int | None:
        """Total number of steps, for the progress bar (None when unknown)."""
        return None

    def close(self) -> None:
        """Release what the search holds (worker processes); ``run`` calls it when it
        stops, finished, interrupted or failed. The state stays resumable."""
        return None  # most searches hold nothing


class AskTellSearch(Search):
    """Space + strategy + evaluator: each step asks for one architecture, evaluates it
    (the evaluator owns the budget) and tells the strategy the result."""

    def __init__(self, space: SearchSpace, strategy: Strategy, evaluator: Any):
        self.space, self.strategy, self.evaluator = space, strategy, evaluator
        self.steps_done = 0

    def step(self, clock: Clock) -> list[HistoryRecord]:
        architecture = self.strategy.ask()
        outcome = self.evaluator.evaluate(architecture, step=self.steps_done)
        record = HistoryRecord(
            step=self.steps_done,
            architecture=self.space.to_json(architecture),
            reward=outcome.reward,
            cost=outcome.cost,
            wall_clock=clock.elapsed(),
            extra=outcome.extra,
        )
        self.strategy.tell(architecture, record)
        self.steps_done += 1
        return [record]

    def done(self) -> bool:
        return self.evaluator.exhausted(self.steps_done)

    def progress_total(self) -> int | None:
        return self.evaluator.max_evaluations

    def state_dict(self) -> dict[str, Any]:
        return {"steps_done": self.steps_done, "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_done = state["steps_done"]
        self.strategy.load_state_dict(state["strategy"])


class EpochSearch(Search):
    """A search whose step is one epoch of training a supernet (DARTS, SNAS, the
    recurrent DARTS search): one record per epoch, done after ``epochs`` epochs, and
    the result is the architecture derived from the *final* α (DARTS §2.4), not the
    best epoch's. Subclasses set ``self.epochs`` and ``self.epoch``."""

    epochs: int
    epoch: int

    def done(self) -> bool:
        return self.epoch >= self.epochs

    def progress_total(self) -> int | None:
        return self.epochs

    def result(self, records: list[HistoryRecord]) -> dict[str, Any]:
        last = records[-1]
        return {
            "architecture": last.architecture,
            "reward": last.reward,
            "step": last.step,
        }


class RoundSearch(Search):
    """Sample a round of children, evaluate them asynchronously, learn, repeat.

    One ``step`` takes *one* finished child from the evaluator (so SIGTERM waits for
    at most one child, not a round); when the round is complete its records are
    returned in submission order and told to the strategy in that order, so the
    history and the controller do not depend on which worker finished first. The
    state holds the round in flight: on resume the unfinished children are submitted
    again (each child is seeded by its step, so it scores what it would have).

    Args:
        space: the space (at its start depth, for a growing one).
        strategy: any ask/tell strategy with a replaceable ``space`` attribute.
        make_evaluator: ``() -> AsyncEvaluator``, called lazily (workers start on the
            first step, after a resume has loaded the state).
        samples: children in the whole search.
        round_size: children per round (NAS-RL's K · m, NASNet's minibatch).
        space_at: ``n -> space`` child n is sampled in (NAS-RL's growing depth), or
            None for a fixed space.
    """

    def __init__(
        self,
        space: Any,
        strategy: Any,
        make_evaluator,
        samples: int,
        round_size: int,
        space_at: Callable[[int], Any] | None = None,
    ):
        self.space, self.strategy = space, strategy
        self.make_evaluator, self.space_at = make_evaluator, space_at
        self.samples, self.round_size = samples, round_size
        self.sampled = 0
        self.round: list[dict[str, Any]] = []  # the round in flight, by step
        self.pool: Any = None  # a nasedu.parallel.AsyncEvaluator once started

    def _space_for(self, n: int) -> Any:
        return self.space if self.space_at is None else self.space_at(n)

    def _start_round(self) -> None:
        for _ in range(min(self.round_size, self.samples - self.sampled)):
            self.strategy.space = self._space_for(self.sampled)
            architecture = self.strategy.ask()
            self.round.append(
                {
                    "step": self.sampled,
                    "architecture": self.space.to_json(architecture),
                    "outcome": None,
                }
            )
            self.pool.submit(architecture, self.sampled)
            self.sampled += 1

    def step(self, clock: Clock) -> list[HistoryRecord]:
        if self.pool is None:
            self.pool = self.make_evaluator()
            for trial in self.round:  # a resumed round: submit the unfinished again
                if trial["outcome"] is None:
                    self.pool.submit(
                        self.space.from_json(trial["architecture"]), trial["step"]
                    )
        if not self.round:
            self._start_round()
        handle, outcome = next(iter(self.pool.results()))
        trial = next(t for t in self.round if t["step"] == handle.step)
        extra = dict(outcome.extra)
        if extra.get("failed"):  # nasedu.parallel.is_failed
            extra.pop("traceback", None)
        trial["outcome"] = {
            "reward": float(outcome.reward),
            "cost": float(outcome.cost),
            "wall_clock": clock.elapsed(),
            "extra": extra,
        }
        if any(t["outcome"] is None for t in self.round):
            return []
        records = []
        for t in sorted(self.round, key=lambda t: t["step"]):
            o = t["outcome"]
            record = HistoryRecord(
                step=t["step"],
                architecture=t["architecture"],
                reward=o["reward"],
                cost=o["cost"],
                wall_clock=o["wall_clock"],
                extra={**o["extra"], "round": t["step"] // self.round_size},
            )
            # The depth this child was sampled at (the strategy may need its decisions).
            self.strategy.space = self._space_for(t["step"])
            self.strategy.tell(self.space.from_json(t["architecture"]), record)
            records.append(record)
        self.round = []
        if self.done():
            self.close()
        return records

    def done(self) -> bool:
        return self.sampled >= self.samples and not self.round

    def progress_total(self) -> int | None:
        return self.samples

    def close(self) -> None:
        """Stop the evaluator's workers (a finished search does it itself)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "sampled": self.sampled,
            "round": [dict(t) for t in self.round],
            "strategy": self.strategy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampled = state["sampled"]
        self.round = [dict(t) for t in state["round"]]
        self.strategy.load_state_dict(state["strategy"])
        if self.round:  # the strategy must be able to decode the round's depth
            self.strategy.space = self._space_for(self.round[-1]["step"])


# --------------------------------------------------------------------------- methods
@dataclass(frozen=True)
class Method:
    """A registered search method: its paper-default config, budgets and factory.

    ``make(config, data, device, seed)`` builds the ``Search``; ``budgets`` maps
    ``smoke``/``colab``/``paper`` to overrides of ``config_cls``'s paper defaults.
    """

    name: str
    config_cls: type
    budgets: dict[str, dict[str, Any]]
    make: Callable[..., Search]
    default_dataset: dict[str, str] = field(
        default_factory=lambda: {
            "smoke": "digits",
            "colab": "cifar10",
            "paper": "cifar10",
        }
    )
    citation: str = ""

    def config(self, budget: str = "smoke", **overrides: Any) -> Any:
        return budgets_mod.resolve(self.config_cls, self.budgets, budget, **overrides)


METHODS: Registry[Method] = Registry("search method")


def load_methods() -> Registry[Method]:
    """Import every strategy and paper module so that their methods are registered."""
    import nasedu.papers
    import nasedu.strategies

    for package in (nasedu.strategies, nasedu.papers):
        for info in pkgutil.iter_modules(package.__path__):
            __import__(f"{package.__name__}.{info.name}")
    return METHODS


# --------------------------------------------------------------------------- running
class Clock:
    """Wall-clock seconds since the search started, carried across resumes."""

    def __init__(self, offset: float = 0.0):
        self.offset, self.start = offset, time.perf_counter()

    def elapsed(self) -> float:
        return self.offset + time.perf_counter() - self.start


class Interrupted(Exception):
    """Raised after a checkpoint was saved because SIGINT/SIGTERM arrived."""


@contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag checked between steps, so a step is never cut
    in half and the checkpoint always describes a whole number of steps."""
    caught: list[int] = []
    previous = {}
    handled = (signal.SIGINT, signal.SIGTERM)
    try:
        for sig in handled:
            previous[sig] = signal.signal(sig, lambda s, f: caught.append(s))
    except ValueError:  # not the main thread (e.g. inside a worker): no handlers
        previous = {}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class RunResult:
    """What ``run`` returns: the records, the best architecture and where files went."""

    records: list[HistoryRecord]
    result: dict[str, Any]
    config: dict[str, Any]
    out: Path | None
    seconds: float


def run(
    method: str,
    *,
    budget: str = "smoke",
    dataset: str | None = None,
    device: str = "auto",
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
    **overrides: Any,
) -> RunResult:
    """Run a registered search method with checkpoints.

    Writes ``out/config.json`` (resolved), ``out/history.jsonl``, ``out/result.json``
    and ``out/checkpoint.pt`` (after every step, atomically). SIGINT/SIGTERM finish the
    current step, save, and raise ``Interrupted``; ``resume=True`` continues from the
    checkpoint. ``max_steps`` stops early after that many steps of this call (the state
    is saved, so a later ``resume`` goes on) — the chapters use it to show resuming.
    """
    from nasedu import data as data_mod
    from nasedu.device import resolve_device, rng_state, seed_everything, set_rng_state

    spec = load_methods().get(method)
    config = spec.config(budget, **overrides)
    dataset = dataset or spec.default_dataset[budget]
    torch_device = resolve_device(device)
    out_dir = Path(out) if out is not None else None
    run_config = {
        "method": method,
        "budget": budget,
        "dataset": dataset,
        "device": device,
        "resolved_device": str(torch_device),
        "seed": seed,
        "config": budgets_mod.to_dict(config),
    }
    run_config = json.loads(json.dumps(run_config))  # as it reads back from config.json
    checkpoint = out_dir / "checkpoint.pt" if out_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        if resume and not checkpoint.exists():
            raise ValueError(f"--resume: no checkpoint at {checkpoint}")
        if not resume and checkpoint.exists():
            raise ValueError(
                f"{out_dir} already holds a search; pass resume=True (--resume) "
                "to continue it or choose another output folder"
            )
        if resume:
            saved = json.loads((out_dir / "config.json").read_text())
            if saved != run_config:
                changed = sorted(k for k in run_config if saved.get(k) != run_config[k])
                raise ValueError(
                    f"--resume with different settings than the saved run "
                    f"({', '.join(changed)}); see {out_dir / 'config.json'}"
                )
        write_json_atomic(out_dir / "config.json", run_config)

    seed_everything(seed)
    data = data_mod.load(dataset)
    search = spec.make(config, data, torch_device, seed)
    records: list[HistoryRecord] = []
    clock = Clock()
    if resume:
        state = load_checkpoint(checkpoint, map_location="cpu")
        search.load_state_dict(state["search"])
        set_rng_state(state["rng"])
        records = [HistoryRecord.from_dict(r) for r in state["records"]]
        clock = Clock(state["wall_clock"])

    def save() -> None:
        if not out_dir:
            return
        save_checkpoint(
            checkpoint,
            {
                "search": search.state_dict(),
                "rng": rng_state(),
                "records": [r.to_dict() for r in records],
                "wall_clock": clock.elapsed(),
            },
        )
        # history.jsonl is rewritten from the checkpointed records, so a crash between
        # the two writes can never leave a history that disagrees with the state.
        text = "".join(json.dumps(r.to_dict()) + "\n" for r in records)
        tmp = out_dir / "history.jsonl.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / "history.jsonl")

    from tqdm.auto import tqdm

    bar = tqdm(
        total=search.progress_total(),
        initial=len(records),
        desc=method,
        disable=not progress,
    )
    steps_this_call = 0
    try:
        with _deferred_signals() as caught:
            while not search.done():
                if max_steps is not None and steps_this_call >= max_steps:
                    break
                new = search.step(clock)
                records.extend(new)
                steps_this_call += 1
                bar.update(1)
                if any(not math.isnan(r.reward) for r in new):
                    bar.set_postfix(best=f"{best(records).reward:.4f}")
                save()
                if caught:
                    raise Interrupted(
                        f"search interrupted by signal {caught[0]}; state saved to "
                        f"{checkpoint}; continue with --resume"
                        if checkpoint
                        else "search interrupted (no --out folder, nothing saved)"
                    )
    finally:
        bar.close()
        # Searches that own worker processes (nasedu.parallel) stop them here, so an
        # interrupted run exits without waiting for children it will re-submit.
        search.close()
    result = search.result(records) if records else {}
    if out_dir and search.done():
        write_json_atomic(out_dir / "result.json", {"method": method, **result})
    return RunResult(records, result, run_config, out_dir, clock.elapsed())
