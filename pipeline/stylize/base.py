"""The Stylizer protocol: re-render images in the texture of one style image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Stylizer(Protocol):
    """A loaded stylizer. `id` names the backend and every setting that changes its output.

    `stylize` takes uint8 RGB images (H x W x 3) and one uint8 RGB style image and returns
    uint8 RGB images of the same sizes as the inputs. Output is a pure function of
    (images, style, seed). A backend whose registration declares per-image `inputs` (the
    texture stylizer's `heights` with `units_per_height`) also takes them as keywords.
    """

    id: str

    def stylize(
        self, images: Sequence[np.ndarray], style: np.ndarray, seed: int = 0
    ) -> list[np.ndarray]: ...
