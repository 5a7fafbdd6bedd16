"""The Source protocol: list image references cheaply, read one on demand.

Listing never decodes pixels, so a build can shard a million-image folder before touching one;
`read` returns raw bytes (or an already decoded PIL image for in-memory sources) and leaves
validation to `pipeline.imageio.decode_image`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image


@dataclass(frozen=True)
class SourceRef:
    """A pointer to one input image and what the source knows about it."""

    uri: str
    label: int | None = None
    label_name: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    id: str

    def refs(self) -> Iterator[SourceRef]: ...

    def read(self, ref: SourceRef) -> bytes | Image.Image: ...
