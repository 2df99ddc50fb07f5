"""Registries by name: ops, genotypes, datasets, search methods, budgets.

A registry refuses duplicate names and, when asked for a name it does not know,
raises a ``ValueError`` listing every valid choice, so a reader's typo becomes a
clear one-line message instead of a ``KeyError`` deep in a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object mapping that refuses duplicates and explains misses."""

    def __init__(self, kind: str, *, case_sensitive: bool = True) -> None:
        self.kind = kind
        self.case_sensitive = case_sensitive
        self._items: dict[str, T] = {}

    def _key(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is None."""

        def add(item: T) -> T:
            key = self._key(name)
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}")
        try:
            return self._items[self._key(name)]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
