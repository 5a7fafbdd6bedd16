"""CRAFT-style concept discovery (Fel et al. 2023) per class, on a build's images.

For a class: square crops on a grid over its images (CRAFT's patches), each resized to the
model's input; their activations at a non-negative layer, averaged over positions; NMF of that
matrix (scikit-learn) gives k concepts — a bank `W` (k x C) and each crop's coefficients `U`.
Then, per concept:

- importance: CRAFT's Sobol total index (Halton designs, Jansen estimator) of the class logit
  when the concept coefficients of the images' activation maps are masked, or the mean drop of
  the class logit when the concept is removed from the activations (`occlusion`);
- top patches: the crops with the largest coefficient;
- maps: the coefficient of each position of each image (`W` fixed, non-negative least squares),
  thresholded into masks that `export_masks` writes in the `annotations` segmenter's mask-folder
  layout, so a build can re-texture a discovered concept and test it counterfactually.

The rest of the network after the layer is evaluated by replacing the layer's output
(`replaced_output`), or by the timm model's `forward_head` when the layer's output is what
`forward_features` returns (then Sobol is cheap: pooling and the classifier only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from pipeline.classify import Classifier
from pipeline.concepts.activations import input_size, layer_activations, replaced_output, to_input
from pipeline.concepts.build_inputs import class_images, classes_by_count, load_build
from pipeline.concepts.crops import grid_boxes, resize
from pipeline.concepts.scores import REFERENCES_FILE, concepts_dir
from pipeline.concepts.settings import DiscoverySettings
from pipeline.imageio import encode_png
from pipeline.store import BuildStore
from pipeline.store.atomic import atomic_write_bytes


@dataclass
class Discovery:
    """The concepts discovered for one class.

    `bank` is W (k x C); `importance` one value per concept (Sobol total index or logit drop);
    `patches[k]` the top crops of concept k as (image_id, (x0, y0, x1, y1) in the build
    image's pixels, coefficient); `maps[image_id]` k x h x w coefficient maps.
    """

    class_index: int
    class_name: str
    layer: str
    method: str
    bank: np.ndarray
    importance: np.ndarray
    patches: list[list[tuple[str, tuple[int, int, int, int], float]]]
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (h, w)
    reconstruction_error: float = float("nan")

    def concept_name(self, k: int) -> str:
        return f"discovered-{self.class_index}-{k}"


def factorize(
    activations: np.ndarray, k: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, object]:
    """NMF of non-negative activations (n x C) into U (n x k) and W (k x C), as CRAFT does.

    Args:
        activations: one row per crop, non-negative.
        k: number of concepts.
        seed: NMF initialisation seed.

    Returns:
        (U, W, the fitted scikit-learn NMF, whose `transform` gives U for new activations).
    """
    from sklearn.decomposition import NMF

    if activations.min() < -1e-6:
        raise ValueError(
            "NMF needs non-negative activations: choose a layer after a ReLU (e.g. `bn2` of "
            f"timm EfficientNets); got a minimum of {activations.min():.3g}"
        )
    reducer = NMF(n_components=k, init="nndsvda", max_iter=500, random_state=seed)
    u = reducer.fit_transform(np.clip(activations, 0, None).astype(np.float64))
    return u, reducer.components_, reducer


def sobol_designs(k: int, n_designs: int, seed: int = 0) -> np.ndarray:
    """Masks for Jansen's estimator: [A; B; C_1..C_k] with A, B two halves of a Halton
    sequence over 2k dimensions and C_i = A with column i taken from B ((k + 2)·n x k)."""
    from scipy.stats import qmc

    points = qmc.Halton(d=2 * k, scramble=True, seed=seed).random(n_designs)
    a, b = points[:, :k], points[:, k:]
    cs = []
    for i in range(k):
        c = a.copy()
        c[:, i] = b[:, i]
        cs.append(c)
    return np.concatenate([a, b, *cs]).astype(np.float32)


def sobol_total_indices(outputs: np.ndarray, k: int, n_designs: int) -> np.ndarray:
    """Jansen's total-order Sobol indices from the outputs on `sobol_designs` masks."""
    f_a, f_b = outputs[:n_designs], outputs[n_designs : 2 * n_designs]
    variance = np.var(np.concatenate([f_a, f_b]))
    if variance == 0:
        return np.zeros(k)
    totals = []
    for i in range(k):
        f_c = outputs[(2 + i) * n_designs : (3 + i) * n_designs]
        totals.append(np.mean((f_a - f_c) ** 2) / (2 * variance))
    return np.asarray(totals)


def _head(model: torch.nn.Module, layer: str, sample: torch.Tensor) -> Callable | None:
    """`model.forward_head` when `layer`'s output is what `forward_features` returns."""
    if not (hasattr(model, "forward_head") and hasattr(model, "forward_features")):
        return None
    with torch.no_grad():
        features = model.forward_features(sample)
        captured = layer_activations(model, [layer], sample)[layer]
    return model.forward_head if torch.equal(features.cpu(), captured) else None


def _logits(
    model: torch.nn.Module, layer: str, image: torch.Tensor, acts: torch.Tensor,
    head: Callable | None, batch_size: int,
) -> torch.Tensor:  # fmt: skip
    """The logits when `layer` outputs each of `acts` (M x C x h x w) for one image."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(acts), batch_size):
            chunk = acts[start : start + batch_size]
            if head is not None:
                outputs.append(head(chunk))
            else:
                with replaced_output(model, layer, chunk):
                    outputs.append(model(image.expand(len(chunk), -1, -1, -1)))
    return torch.cat(outputs)


def discover(
    classifier: Classifier,
    layer: str,
    images: Sequence[np.ndarray],
    image_ids: Sequence[str],
    class_index: int,
    settings: DiscoverySettings,
    image_sizes: dict[str, tuple[int, int]] | None = None,
) -> Discovery:
    """Discover `settings.n_concepts` concepts of one class from its images.

    Args:
        classifier: the classifier whose `model` is explained.
        layer: a module name with non-negative outputs.
        images: the class's images at the model's input size.
        image_ids: their ids (for the patches and maps).
        class_index: the class whose logit the importance is measured on.
        settings: `DiscoverySettings`.
        image_sizes: build image sizes (h, w) to express patch boxes in; default input size.
    """
    model = classifier.model.eval()
    size = images[0].shape[0]
    side = max(8, round(settings.patch_frac * size))
    boxes = grid_boxes(size, size, side, max(1, round(settings.stride_frac * side)))
    crops, owners = [], []
    for index, image in enumerate(images):
        for box in boxes:
            crops.append(resize(image[box[1] : box[3], box[0] : box[2]], size))
            owners.append((index, box))
    crop_acts = layer_activations(model, [layer], to_input(classifier, crops), settings.batch_size)
    pooled = crop_acts[layer].mean((2, 3)).numpy()
    u, bank, reducer = factorize(pooled, settings.n_concepts, settings.seed)
    error = float(np.linalg.norm(pooled - u @ bank) / (np.linalg.norm(pooled) or 1.0))

    batch = to_input(classifier, list(images))
    acts = layer_activations(model, [layer], batch, settings.batch_size)[layer]
    n, channels, h, w = acts.shape
    flat = acts.permute(0, 2, 3, 1).reshape(-1, channels).numpy().astype(np.float64)
    maps = reducer.transform(np.clip(flat, 0, None)).reshape(n, h, w, -1).transpose(0, 3, 1, 2)

    head = _head(model, layer, batch[:1])
    bank_t = torch.from_numpy(bank).float()
    k = settings.n_concepts
    importance = np.zeros(k)
    for i in range(n):
        coeffs = torch.from_numpy(maps[i]).float()  # k x h x w
        contribution = torch.einsum("khw,kc->kchw", coeffs, bank_t)  # each concept's share
        if settings.importance == "sobol":
            masks = torch.from_numpy(sobol_designs(k, settings.n_designs, settings.seed))
            perturbed = torch.einsum("mk,kchw->mchw", masks, contribution)
            logits = _logits(model, layer, batch[i : i + 1], perturbed, head, settings.batch_size)
            importance += sobol_total_indices(logits[:, class_index].numpy(), k, settings.n_designs)
        else:
            full = acts[i : i + 1]
            removed = torch.clamp(full - contribution, min=0)  # k x C x h x w
            logits = _logits(model, layer, batch[i : i + 1], torch.cat([full, removed]), head,
                             settings.batch_size)  # fmt: skip
            importance += (logits[0, class_index] - logits[1:, class_index]).numpy()
    importance /= max(n, 1)

    sizes = image_sizes or {}
    patches = []
    for concept in range(k):
        order = np.argsort(-u[:, concept], kind="stable")[: settings.top_patches]
        top = []
        for j in order:
            index, (x0, y0, x1, y1) = owners[j]
            height, width = sizes.get(image_ids[index], (size, size))
            sx, sy = width / size, height / size
            box = (int(x0 * sx), int(y0 * sy), round(x1 * sx), round(y1 * sy))
            top.append((image_ids[index], box, float(u[j, concept])))
        patches.append(top)
    names = list(classifier.class_names)
    return Discovery(
        class_index=int(class_index),
        class_name=names[class_index] if class_index < len(names) else str(class_index),
        layer=layer,
        method=settings.importance,
        bank=bank,
        importance=importance,
        patches=patches,
        maps={image_id: maps[i] for i, image_id in enumerate(image_ids)},
        image_sizes={image_id: sizes.get(image_id, (size, size)) for image_id in image_ids},
        reconstruction_error=error,
    )


def discover_concepts(
    build_dir: str | Path,
    classifier: Classifier,
    layer: str,
    classes: Sequence[int] | int | None = None,
    settings: DiscoverySettings | None = None,
) -> list[Discovery]:
    """Concepts discovered per class of a build (the reference classes, as `concept_scores`).

    Args:
        build_dir: a build with an images manifest.
        classifier: the classifier to explain.
        layer: a module of `classifier.model` with non-negative outputs (`bn2` for timm
            EfficientNets: the last features, after the activation).
        classes: class indices, or a count of the most frequent classes (default: every class
            with at least `settings.min_images` images).
        settings: `DiscoverySettings`.
    """
    settings = settings or DiscoverySettings()
    references = concepts_dir(build_dir, classifier.id) / REFERENCES_FILE
    build = load_build(str(build_dir), classifier, settings.batch_size, 0.0, references)
    if classes is None or isinstance(classes, int):
        classes = classes_by_count(build.images, classes, settings.min_images)
    size = input_size(classifier)
    chosen = class_images(build, classes, settings.max_images, size)
    discoveries = []
    for class_index, rows in chosen.items():
        if len(rows) < settings.min_images:
            continue
        sizes = {r.image_id: (int(r.height), int(r.width)) for r in rows.itertuples(index=False)}
        discoveries.append(
            discover(classifier, layer, list(rows["pixels"]), list(rows["image_id"]),
                     class_index, settings, sizes)
        )  # fmt: skip
    return discoveries


def discovery_table(discoveries: Sequence[Discovery]) -> pd.DataFrame:
    """One row per discovered concept: class, name, importance (and its share), top patches."""
    rows = []
    for found in discoveries:
        total = float(np.sum(np.clip(found.importance, 0, None))) or 1.0
        for k, value in enumerate(found.importance):
            rows.append(
                {
                    "class_index": found.class_index,
                    "class_name": found.class_name,
                    "concept": found.concept_name(k),
                    "layer": found.layer,
                    "method": found.method,
                    "importance": float(value),
                    "importance_share": max(float(value), 0.0) / total,
                    "top_patches": [[i, list(b), c] for i, b, c in found.patches[k]],
                    "reconstruction_error": found.reconstruction_error,
                }
            )
    return pd.DataFrame(rows)


def concept_masks(found: Discovery, threshold: float = 0.5) -> dict[str, dict[str, np.ndarray]]:
    """image_id → concept name → mask at the build image's size: positions whose coefficient
    reaches `threshold` × the concept's largest coefficient over the class's images."""
    peaks = np.max(np.stack([m.max((1, 2)) for m in found.maps.values()]), axis=0)
    masks: dict[str, dict[str, np.ndarray]] = {}
    for image_id, maps in found.maps.items():
        height, width = found.image_sizes[image_id]
        for k in range(maps.shape[0]):
            if peaks[k] <= 0:
                continue
            full = cv2.resize(maps[k].astype(np.float32), (width, height),
                              interpolation=cv2.INTER_LINEAR)  # fmt: skip
            mask = full >= threshold * peaks[k]
            if mask.any():
                masks.setdefault(image_id, {})[found.concept_name(k)] = mask
    return masks


def export_masks(
    discoveries: Sequence[Discovery],
    build_dir: str | Path,
    out_dir: str | Path,
    threshold: float = 0.5,
) -> Path:
    """Write the discovered concepts' masks as `<out_dir>/<image stem>/<concept>.png`: the
    `annotations` segmenter's `mask_dir` layout (with `image_root` = the build's source
    folder), so a build can re-texture them like any concept.

    Returns:
        `out_dir`.
    """
    out = Path(out_dir)
    images = BuildStore(build_dir).frame("images", ["image_id", "uri", "width", "height"])
    info = {r.image_id: r for r in images.itertuples(index=False)}
    for found in discoveries:
        for image_id, masks in concept_masks(found, threshold).items():
            row = info[image_id]
            stem = Path(str(row.uri)).stem
            for concept, mask in masks.items():
                original = cv2.resize(mask.astype(np.uint8), (int(row.width), int(row.height)),
                                      interpolation=cv2.INTER_NEAREST) > 0  # fmt: skip
                atomic_write_bytes(out / stem / f"{concept}.png", encode_png(original))
    return out
