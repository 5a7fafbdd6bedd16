"""Stylizer backends, created by name from the build config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.registry import Registry
from pipeline.stylize.base import Stylizer

stylizers: Registry[Stylizer] = Registry("stylizer")


def _texture_inputs(options: Mapping[str, Any]) -> tuple[str, ...]:
    """With `units_per_height` the texture is sized by each image's concept height."""
    return ("heights",) if options.get("units_per_height") is not None else ()


@stylizers.register("texture", inputs=_texture_inputs)
def _texture(**options: Any) -> Stylizer:
    from pipeline.stylize.texture import TextureStylizer

    return TextureStylizer(**options)


@stylizers.register("adain", settings=("batch_size",))
def _adain(**options: Any) -> Stylizer:
    from pipeline.stylize.adain import AdaINStylizer

    return AdaINStylizer(**options)


@stylizers.register("gatys")
def _gatys(**options: Any) -> Stylizer:
    from pipeline.stylize.gatys import GatysStylizer

    return GatysStylizer(**options)


def create_stylizer(backend: str, **options: Any) -> Stylizer:
    return stylizers.create(backend, **options)


__all__ = ["Stylizer", "create_stylizer", "stylizers"]
