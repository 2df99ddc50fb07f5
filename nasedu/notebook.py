"""Helpers every chapter notebook calls at its top and for its results.

``setup`` checks the ``parameters`` cell (budget, device, dataset, seed), picks the
device and says which hardware is producing the chapter's numbers; ``glue`` records a
value for the book (myst-nb) and still works in Colab, where myst-nb is absent.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Any

import torch

from nasedu.budgets import BUDGETS


@dataclass(frozen=True)
class Session:
    """What a chapter runs with: the checked parameters and the resolved device."""

    budget: str
    device: torch.device
    dataset: str
    seed: int

    @property
    def hardware(self) -> str:
        """The hardware in words, printed next to every result of the chapter."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        cores = torch.get_num_threads()
        return f"CPU ({platform.processor() or platform.machine()}, {cores} threads)"


def setup(
    budget: str = "smoke",
    device: str = "auto",
    dataset: str | None = None,
    seed: int = 0,
) -> Session:
    """Validate a chapter's parameters, seed everything and pick the device."""
    from nasedu.data import DATASETS
    from nasedu.device import resolve_device, seed_everything

    if budget not in BUDGETS:
        raise ValueError(
            f"unknown budget {budget!r}; valid choices: {', '.join(BUDGETS)}"
        )
    dataset = dataset or ("digits" if budget == "smoke" else "cifar10")
    DATASETS.get(dataset)  # raises with the valid names
    seed_everything(seed)
    session = Session(budget, resolve_device(device), dataset, seed)
    if budget == "smoke" and session.device.type == "cpu":
        # At smoke shapes every kernel is tiny: CPU time follows the number of kernels
        # launched, and intra-op threads only add synchronisation (and collapse when
        # another process competes for the cores). One thread is several times faster.
        torch.set_num_threads(1)
    print(
        f"budget={budget}  dataset={dataset}  seed={seed}  device={session.device} "
        f"({session.hardware})"
    )
    return session


def glue(name: str, value: Any, display: bool = False) -> None:
    """Record ``value`` under ``name`` for the book (myst-nb's glue); in Colab, where
    myst-nb is not installed, just show it when ``display`` is set. Returns None, so a
    cell ending in ``glue(...)`` prints nothing extra."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy/torch scalars would render as "np.float64(...)"
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)


def paper_vs_run(paper_row: dict[str, Any], this_run: dict[str, Any]):
    """The "paper vs this run" table every chapter shows (an HTML table).

    ``paper_row`` is a row of ``nasedu.reported`` (with its source); ``this_run`` has
    the same metric keys plus ``hardware`` and ``budget``.
    """
    from html import escape

    from IPython.display import HTML

    metrics = [
        ("test_error_pct", "test error (%)"),
        ("params_M", "params (M)"),
        ("search_cost", "search cost"),
        ("hardware", "hardware"),
        ("budget", "budget"),
    ]

    def cell(row: dict[str, Any], key: str) -> str:
        if key == "test_error_pct" and "test_error_std" in row:
            return f"{row[key]} ± {row['test_error_std']}"
        if key == "search_cost" and "search_cost_gpu_days" in row:
            return f"{row['search_cost_gpu_days']} GPU-days"
        return str(row.get(key, "—"))

    paper = {**paper_row, "budget": paper_row.get("budget", "the paper's protocol")}
    head = "".join(f"<th>{escape(label)}</th>" for _, label in metrics)
    source = f"{paper_row.get('paper', '')}, {paper_row.get('source', '')}".strip(", ")
    rows = [
        f"<tr><td>{escape(paper_row.get('label', 'paper'))}<br><small>{escape(source)}"
        f"</small></td>"
        + "".join(f"<td>{escape(cell(paper, k))}</td>" for k, _ in metrics)
        + "</tr>",
        "<tr><td>this run</td>"
        + "".join(f"<td>{escape(cell(this_run, k))}</td>" for k, _ in metrics)
        + "</tr>",
    ]
    return HTML(
        f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}"
        "</tbody></table>"
    )
