"""Name → backend registries, one per stage, so a backend is one file plus one registration.

A registration carries everything the stages need to know about a backend, so no stage
special-cases a backend by name:

- `factory`: builds the backend from the config's `options` (heavy imports happen inside it,
  so listing backends never imports detectron2, open_clip or an unused model);
- `needs_classifier`: the factory also gets `classifier=`, the loaded classifier the build uses
  (or the one named by the backend's own `classifier` option), and that classifier's
  fingerprint is part of the backend's;
- `default_classifier`: for a backend that needs one, the classifier it uses when its options
  name none, given the audited one (`cam`: never the audited model); absent, the audited one;
- `facts`: what the backend's output is worth, for its options (`cam`: "a finder, not a
  segmentation model" and its measured IoU), recorded in build.yaml and shown by the report;
- `settings`: build settings the factory accepts besides its options (`max_side`: the build's
  working resolution; `device`: the classifier's device), passed by the stage that creates it;
- `inputs`: per-image inputs the stage passes besides the images, for the backend's options
  (the texture stylizer with `units_per_height`: `heights`, each image's concept height);
- `weights`: for classifiers, where a model's default weights file lies without loading it (its
  digest is part of the fingerprint).

`Backend.describe(options)` returns all of it as plain data, the one place `doctor`, validation
and build.yaml read a backend's facts from.

Register with a decorator or in one line: `segmenters.register("top-half")(TopHalfSegmenter)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

# options → what the backend's output is worth (short sentences keyed by fact name)
Facts = Callable[[Mapping[str, Any]], dict[str, str]]
# options → names of the per-image inputs the backend's call takes besides the images
Inputs = Callable[[Mapping[str, Any]], tuple[str, ...]]


class UnknownBackendError(ValueError):
    """A config named a backend that no registry entry provides."""


@dataclass(frozen=True)
class Backend(Generic[T]):
    """One registered backend and what the stages need to know to build and fingerprint it."""

    name: str
    factory: Callable[..., T]
    needs_classifier: bool = False
    settings: tuple[str, ...] = ()
    weights: Callable[[str], Path | None] | None = None
    default_classifier: Callable[[str], str] | None = None
    facts: Facts | None = None
    inputs: Inputs | None = None

    def inputs_for(self, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The per-image inputs the stage must pass for these options (none by default)."""
        return self.inputs(options) if self.inputs is not None else ()

    def classifier_name(self, options: Mapping[str, Any], audited: str) -> str:
        """The classifier this backend's evidence comes from: its `classifier` option, else its
        registration's default for the `audited` classifier, else the audited one."""
        if "classifier" in options:
            return str(options["classifier"])
        return self.default_classifier(audited) if self.default_classifier else audited

    def describe(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything the registration states, as plain data, with the `facts` for `options`
        (the defaults when None)."""
        described: dict[str, Any] = {
            "name": self.name,
            "needs_classifier": self.needs_classifier,
            "settings": list(self.settings),
        }
        if self.facts is not None:
            described.update(self.facts(options or {}))
        if inputs := self.inputs_for(options or {}):
            described["inputs"] = list(inputs)
        return described


class Registry(Generic[T]):
    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._backends: dict[str, Backend[T]] = {}

    def register(
        self,
        name: str,
        *,
        needs_classifier: bool = False,
        settings: tuple[str, ...] = (),
        weights: Callable[[str], Path | None] | None = None,
        default_classifier: Callable[[str], str] | None = None,
        facts: Facts | None = None,
        inputs: Inputs | None = None,
    ) -> Callable[[F], F]:
        if default_classifier is not None and not needs_classifier:
            raise ValueError(
                f"{self.stage} backend {name!r}: default_classifier needs needs_classifier=True"
            )

        def decorate(factory: F) -> F:
            if name in self._backends:
                raise ValueError(f"{self.stage} backend {name!r} registered twice")
            self._backends[name] = Backend(
                name,
                factory,
                needs_classifier,
                settings,
                weights,
                default_classifier,
                facts,
                inputs,
            )
            return factory

        return decorate

    def unregister(self, name: str) -> None:
        """Remove a registration (a plug-in that is unloaded, a test's own backend)."""
        self._backends.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._backends)

    def __contains__(self, name: object) -> bool:
        return name in self._backends

    def spec(self, name: str) -> Backend[T]:
        if name not in self._backends:
            raise UnknownBackendError(
                f"unknown {self.stage} backend {name!r}; available: {', '.join(self.names())}"
            )
        return self._backends[name]

    def describe(self) -> dict[str, dict[str, Any]]:
        """name → `Backend.describe()` of every registration (for `doctor`, at default options)."""
        return {name: self._backends[name].describe() for name in self.names()}

    def create(self, name: str, **options: object) -> T:
        return self.spec(name).factory(**options)  # type: ignore[return-value]
