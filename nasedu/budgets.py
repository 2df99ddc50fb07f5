"""Named budgets: one notebook, three scales (chapter *Introduction*, "Budgets").

Every method has a frozen config dataclass whose defaults are its paper's settings.
A budget is a named set of overrides applied to those defaults:

* ``paper`` — no overrides: the paper's own protocol, for readers with real GPUs;
* ``colab`` — one free Colab GPU, well under an hour, CIFAR-10;
* ``smoke`` — the default of every chapter: CPU, about a minute, the embedded dataset.

``resolve(Config, budgets, "smoke", seed=1)`` returns the config a run uses; the
runner writes it beside the results so every number can be traced to its settings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

BUDGETS = ("smoke", "colab", "paper")
C = TypeVar("C")


def resolve(
    config_cls: type[C],
    budgets: dict[str, dict[str, Any]],
    budget: str,
    **overrides: Any,
) -> C:
    """The paper config with the budget's overrides, then ``overrides``, applied."""
    if budget not in BUDGETS:
        raise ValueError(
            f"unknown budget {budget!r}; valid choices: {', '.join(BUDGETS)}"
        )
    fields = {f.name for f in dataclasses.fields(config_cls)}
    merged = merge(budgets.get(budget, {}), overrides)
    unknown = sorted(set(merged) - fields)
    if unknown:
        raise ValueError(
            f"unknown setting {unknown[0]!r} for {config_cls.__name__}; "
            f"valid settings: {', '.join(sorted(fields))}"
        )
    defaults = config_cls()
    for key, value in list(merged.items()):
        nested = getattr(defaults, key)
        if dataclasses.is_dataclass(nested) and isinstance(value, dict):
            merged[key] = _replace(nested, value, f"{key}.")
    return config_cls(**merged)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge nested override dicts (``extra`` wins)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _replace(config: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown setting {prefix}{unknown[0]!r}; valid settings: "
            f"{', '.join(prefix + f for f in sorted(fields))}"
        )
    changes = {}
    for key, value in overrides.items():
        current = getattr(config, key)
        changes[key] = (
            _replace(current, value, f"{prefix}{key}.")
            if dataclasses.is_dataclass(current) and isinstance(value, dict)
            else value
        )
    return dataclasses.replace(config, **changes)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``key=value`` command-line override; the value is read as JSON when it
    parses (numbers, booleans, lists), else kept as a string. ``child.train.epochs=5``
    returns ``("child", {"train": {"epochs": 5}})`` for nested configs."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r} must look like key=value")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    *outer, last = key.strip().split(".")
    value = {last: parsed}
    for name in reversed(outer):
        value = {name: value}
    return next(iter(value.items()))


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return dataclasses.asdict(config)
