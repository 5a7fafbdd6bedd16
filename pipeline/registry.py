"""Name → factory registries, one per stage, so a backend is one file plus one registration.

Factories import their heavy dependencies lazily, so listing backends or building another stage
never imports detectron2, open_clip or a model that is not used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownBackendError(ValueError):
    """A config named a backend that no registry entry provides."""


class Registry(Generic[T]):
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.stage} backend {name!r} registered twice")
            self._factories[name] = factory
            return factory

        return decorate

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, **options: object) -> T:
        if name not in self._factories:
            raise UnknownBackendError(
                f"unknown {self.stage} backend {name!r}; available: {', '.join(self.names())}"
            )
        return self._factories[name](**options)
