"""nasedu: Neural Architecture Search, reproduced — the package behind the book.

Each paper has one module in ``nasedu.papers``; the pieces they share are here:
``ops`` (candidate operations), ``genotypes`` (the cell architecture type),
``networks`` (evaluation networks), ``data`` (datasets), ``train`` (the training
engine), ``search`` (history record, spaces, strategies, evaluator), ``viz``.
"""

__version__ = "0.1.0"

from nasedu.networks import count_flops, count_parameters  # noqa: E402

__all__ = ["__version__", "count_parameters", "count_flops"]
