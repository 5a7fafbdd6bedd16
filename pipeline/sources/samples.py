"""Built-in sample photos: the public-domain / CC0 photographs that scikit-image ships.

Labels are ImageNet-1k classes only where one honestly fits the photo's subject; the others are
unlabelled and the build uses the classifier's clean prediction as their reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.classify.imagenet import class_index
from pipeline.sources.base import SourceRef


@dataclass(frozen=True)
class Sample:
    name: str
    loader: str  # attribute of skimage.data
    label: str | None  # ImageNet short class name
    license: str
    note: str


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample("coffee", "coffee", "espresso", "CC0-1.0", "a cup of espresso on a saucer"),
        Sample("chelsea", "chelsea", "tabby", "CC0-1.0", "Chelsea, a tabby cat"),
        Sample(
            "astronaut",
            "astronaut",
            None,
            "public-domain (NASA)",
            "astronaut Eileen Collins; no ImageNet class for people",
        ),
        Sample(
            "rocket",
            "rocket",
            None,
            "public-domain (NASA/SpaceX)",
            "a launch vehicle on its pad; ImageNet's `missile` means a weapon, so unlabelled",
        ),
        Sample(
            "motorcycle",
            "stereo_motorcycle",
            None,
            "CC0-1.0",
            "a motorcycle (left stereo view); ImageNet has no motorcycle class",
        ),
        Sample(
            "camera",
            "camera",
            None,
            "CC0-1.0",
            "the cameraman photo (grayscale); the subject is a person",
        ),
    )
}


def load_sample(name: str) -> np.ndarray:
    import skimage.data

    if name not in SAMPLES:
        raise KeyError(f"no built-in sample {name!r}; available: {', '.join(SAMPLES)}")
    data = getattr(skimage.data, SAMPLES[name].loader)()
    if isinstance(data, tuple):  # stereo pairs: the left view
        data = data[0]
    return np.asarray(data)


class SampleSource:
    """The built-in photos, in a fixed order (`names`' order); `limit` keeps the first N."""

    def __init__(self, names: list[str] | None = None, limit: int | None = None) -> None:
        chosen = list(names) if names else list(SAMPLES)
        unknown = [n for n in chosen if n not in SAMPLES]
        if unknown:
            raise KeyError(f"unknown built-in samples {unknown}; available: {', '.join(SAMPLES)}")
        if limit is not None and limit < 1:
            raise ValueError(f"source.limit must be at least 1, not {limit}")
        self.names = chosen[:limit]
        self.id = "samples:" + ",".join(self.names)

    def refs(self) -> Iterator[SourceRef]:
        for name in self.names:
            sample = SAMPLES[name]
            label = class_index(sample.label) if sample.label else None
            yield SourceRef(
                uri=f"samples://{name}",
                label=label,
                label_name=sample.label,
                meta={"license": sample.license, "note": sample.note, "origin": "scikit-image"},
            )

    def read(self, ref: SourceRef) -> Image.Image:
        return Image.fromarray(load_sample(ref.uri.removeprefix("samples://")))
