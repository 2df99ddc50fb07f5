"""Numbers the papers report, read from ``data/papers/*.json`` (chapter tables).

Every number the book quotes from a paper is a row here with its source (the
paper's table or section), so a "paper vs this run" table never hard-codes a value.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def paper(key: str) -> dict[str, Any]:
    """The record of one paper (``data/papers/<key>.json``), e.g. ``paper("darts")``."""
    folder = resources.files("nasedu._data") / "papers"
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
    if key not in names:
        raise ValueError(f"unknown paper {key!r}; valid choices: {', '.join(names)}")
    return json.loads((folder / f"{key}.json").read_text())


def result(key: str, result_id: str) -> dict[str, Any]:
    """One reported result row, e.g. ``result("darts", "random_search_cifar10")``."""
    rows = {r["id"]: r for r in paper(key)["results"]}
    if result_id not in rows:
        raise ValueError(
            f"paper {key!r} has no result {result_id!r}; valid choices: "
            f"{', '.join(rows)}"
        )
    record = paper(key)
    return {
        "paper": record["short"],
        "hardware": record.get("hardware", "—"),
        **rows[result_id],
    }


def parameter_counts() -> list[dict[str, Any]]:
    """Published parameter counts next to the official code's exact counts
    (``data/parameter_counts.json``; chapter *Introduction*, gallery)."""
    text = (resources.files("nasedu._data") / "parameter_counts.json").read_text()
    return json.loads(text)["entries"]
