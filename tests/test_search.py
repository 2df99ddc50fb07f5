"""The shared search vocabulary: records, budgets, the cell space, random search,
checkpointed runs and their resume (chapter Introduction)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import pytest

from nasedu import budgets
from nasedu.search import HistoryRecord, best, load_methods, read_history, run
from nasedu.spaces.cell import CellSpace
from nasedu.strategies.random_search import RandomSearch

# Three tiny children keep a full search to a few seconds on one CPU core.
FAST = {"samples": 3}


def test_history_record_round_trip_and_errors(tmp_path):
    record = HistoryRecord(
        step=3,
        architecture={"a": [1, 2]},
        reward=0.5,
        cost=1.5,
        wall_clock=9.0,
        extra={"params": 10},
    )
    assert HistoryRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    with pytest.raises(ValueError, match="lacks reward"):
        HistoryRecord.from_dict(
            {"step": 0, "architecture": {}, "cost": 0, "wall_clock": 0}
        )
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(record.to_dict()) + "\n{not json\n")
    with pytest.raises(ValueError, match="history.jsonl:2: malformed"):
        read_history(path)


def test_best_prefers_highest_reward_then_earliest():
    records = [
        HistoryRecord(i, {}, r, 0, 0) for i, r in enumerate([0.2, 0.9, 0.9, 0.1])
    ]
    assert best(records).step == 1
    failed = HistoryRecord(9, {}, float("nan"), 0, 0, {"failed": True})
    assert best([failed, *records]).step == 1  # a NaN must not win nor poison max()
    with pytest.raises(ValueError, match="no successful records"):
        best([])
    with pytest.raises(ValueError, match="no successful records"):
        best([failed])


@dataclass(frozen=True)
class Inner:
    epochs: int = 10
    lr: float = 0.1


@dataclass(frozen=True)
class Outer:
    samples: int = 24
    inner: Inner = field(default_factory=Inner)


def test_budget_resolution_nested_and_errors():
    table = {"smoke": {"samples": 2, "inner": {"epochs": 1}}}
    config = budgets.resolve(Outer, table, "smoke", inner={"lr": 0.5})
    assert config == Outer(samples=2, inner=Inner(epochs=1, lr=0.5))
    assert budgets.resolve(Outer, table, "paper") == Outer()
    with pytest.raises(
        ValueError, match="unknown budget 'huge'; valid choices: smoke, colab"
    ):
        budgets.resolve(Outer, table, "huge")
    with pytest.raises(ValueError, match="unknown setting 'sample'"):
        budgets.resolve(Outer, table, "paper", sample=3)
    with pytest.raises(ValueError, match="unknown setting inner.'epoch'"):
        budgets.resolve(Outer, table, "paper", inner={"epoch": 3})


def test_parse_override():
    assert budgets.parse_override("samples=4") == ("samples", 4)
    assert budgets.parse_override("child.train.epochs=5") == (
        "child",
        {"train": {"epochs": 5}},
    )
    assert budgets.parse_override("name=abc") == ("name", "abc")
    with pytest.raises(ValueError, match="key=value"):
        budgets.parse_override("samples")


def test_cell_space_samples_are_valid_and_respect_the_space():
    space = CellSpace()
    rng = random.Random(0)
    for _ in range(50):
        g = space.sample(rng)
        for cell in ("normal", "reduce"):
            assert g.steps(cell) == 4
            assert g.concat(cell) == (2, 3, 4, 5)
            for node in g.nodes(cell):
                assert node[0][1] != node[1][1]  # distinct inputs (DARTS §2.4)
                assert all(op in space.primitives for op, _ in node)
    unused = CellSpace(concat="unused", distinct_inputs=False)
    g = unused.sample(rng)
    used = {i for _, i in g.normal}
    assert set(g.normal_concat) == set(range(2, 6)) - used


def test_cell_space_size_by_hand():
    # One node, k ops: 2 ordered distinct input pairs × k² op pairs per cell, squared.
    space = CellSpace(
        primitives=("skip_connect", "max_pool_3x3", "sep_conv_3x3"), steps=1
    )
    assert space.size() == (2 * 3**2) ** 2
    with pytest.raises(ValueError, match="unknown operation 'conv_9x9'"):
        CellSpace(primitives=("conv_9x9",))


def test_random_search_is_reproducible_and_resumable():
    space = CellSpace()
    a, b = RandomSearch(space, seed=7), RandomSearch(space, seed=7)
    assert [a.ask().hash() for _ in range(5)] == [b.ask().hash() for _ in range(5)]
    c = RandomSearch(space, seed=1)
    c.load_state_dict(a.state_dict())
    assert c.ask() == a.ask()


def test_random_method_is_registered_with_budgets():
    method = load_methods().get("random")
    assert method.config("paper").samples == 24  # DARTS Table 1 ‡
    assert method.config("paper").child.train.epochs == 100
    assert method.config("smoke").samples < method.config("colab").samples
    with pytest.raises(
        ValueError, match="unknown search method 'randm'; valid choices: .*random"
    ):
        load_methods().get("randm")


def _trace(records):
    return [
        (r.step, json.dumps(r.architecture, sort_keys=True), r.reward) for r in records
    ]


def test_run_writes_files_and_resume_equals_uninterrupted(tmp_path):
    full = run(
        "random", budget="smoke", seed=3, out=tmp_path / "full", progress=False, **FAST
    )
    assert len(full.records) == FAST["samples"]
    for name in ("config.json", "history.jsonl", "result.json", "checkpoint.pt"):
        assert (tmp_path / "full" / name).is_file()
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert (
        config["config"]["samples"] == FAST["samples"] and config["budget"] == "smoke"
    )
    assert _trace(read_history(tmp_path / "full" / "history.jsonl")) == _trace(
        full.records
    )

    part = tmp_path / "part"
    first = run(
        "random", budget="smoke", seed=3, out=part, progress=False, max_steps=1, **FAST
    )
    assert len(first.records) == 1 and not (part / "result.json").exists()
    resumed = run(
        "random", budget="smoke", seed=3, out=part, progress=False, resume=True, **FAST
    )
    assert _trace(resumed.records) == _trace(full.records)
    assert resumed.result == full.result


def test_run_refuses_to_overwrite_or_resume_wrongly(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        run(
            "random",
            budget="smoke",
            out=tmp_path / "x",
            resume=True,
            progress=False,
            **FAST,
        )
    run(
        "random",
        budget="smoke",
        out=tmp_path / "y",
        max_steps=1,
        progress=False,
        **FAST,
    )
    with pytest.raises(ValueError, match="already holds a search"):
        run("random", budget="smoke", out=tmp_path / "y", progress=False, **FAST)
    with pytest.raises(ValueError, match="different settings.*seed"):
        run(
            "random",
            budget="smoke",
            seed=5,
            out=tmp_path / "y",
            resume=True,
            progress=False,
            **FAST,
        )
