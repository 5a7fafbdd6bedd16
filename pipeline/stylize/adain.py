"""AdaIN: arbitrary style transfer in one forward pass (Huang & Belongie, ICCV 2017).

A fixed VGG-19 encoder (the "normalised" VGG of Gatys et al., up to relu4_1) maps the content and
the style image to feature maps; adaptive instance normalisation gives the content features the
style's per-channel mean and standard deviation; a trained decoder maps the result back to pixels.

The networks here are exactly those of the public PyTorch port, naoto0804/pytorch-AdaIN
(`net.py`: `vgg` and `decoder`, `nn.Sequential`s with the same layer indices), so its release
files load with `load_state_dict` (keys `0.weight`, `2.weight`, ...):

    https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth
    https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth

(licence: MIT for the port; the weights are converted from the authors' Torch release,
xunhuang1995/AdaIN-style). Nothing is bundled and nothing is downloaded unless asked: pass local
files (`encoder_weights=`, `decoder_weights=`; `.pth` loaded with `weights_only=True`, or
`.safetensors`), or URLs together with their sha256 (`encoder_sha256=`, `decoder_sha256=`; a URL
without one is refused). A URL is fetched once into the torch hub cache
(`$TORCH_HOME/hub/checkpoints/conceptswap-adain/`) and its sha256 checked before use; a local file
is checked too when a sha256 is given. docs/stylize.md lists the sha256 values that other projects
publish for the release files; this module does not hard-code them because they could not be
verified here.

Geometry, chosen so a batch runs as one tensor and an image's output never depends on its batch:
every content image is resized so its longer side is `content_size`, then reflect-padded (centred)
to a `content_size` x `content_size` canvas; the decoded canvas is cropped back to the image's
region and resized to the input size. Content statistics are taken over the whole canvas (the
mirrored border is made of the image's own pixels, so they barely move). The style image is
resized so its shorter side is `style_size` (the release's `--style_size`) and encoded once per
style image; its feature statistics are cached by pixel hash, so successive batches of one style
do not encode it again.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from pipeline.classify.base import resolve_device
from pipeline.classify.weights import load_state_dict_file
from pipeline.hashing import sha256_file
from pipeline.stylize.colour import to_rgb_uint8

VERSION = "v1"
#: Children of the full `vgg_normalised` Sequential kept for encoding: up to and including relu4_1.
ENCODER_DEPTH = 31
#: The decoder upsamples three times, so canvases are multiples of this.
STRIDE = 8
EPS = 1e-5
RELEASE_URLS = {
    "encoder": "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/vgg_normalised.pth",
    "decoder": "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth",
}
_URL_SCHEMES = ("http://", "https://", "file://")
_STYLE_CACHE_SIZE = 8


def _conv_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(cin, cout, (3, 3)), nn.ReLU()]


def _pool() -> nn.Module:
    return nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)


def vgg_normalised(depth: int = 53) -> nn.Sequential:
    """The release's normalised VGG-19 (53 children, relu1_1 ... relu5_4) or its first `depth`.

    Child 0 is a 1x1 convolution that does the original Caffe preprocessing (RGB in [0, 1] →
    mean-subtracted BGR in [0, 255]), so the network takes plain [0, 1] RGB. Only the first
    `ENCODER_DEPTH` children (to relu4_1) are used; the rest exist so the release file loads
    strictly.
    """
    layers: list[nn.Module] = [nn.Conv2d(3, 3, (1, 1))]
    layers += _conv_relu(3, 64) + _conv_relu(64, 64) + [_pool()]  # relu1_1, relu1_2
    layers += _conv_relu(64, 128) + _conv_relu(128, 128) + [_pool()]  # relu2_1, relu2_2
    layers += _conv_relu(128, 256)  # relu3_1 (index 17)
    for _ in range(3):  # relu3_2 .. relu3_4
        layers += _conv_relu(256, 256)
    layers += [_pool(), *_conv_relu(256, 512)]  # relu4_1 (index 30)
    for _ in range(3):  # relu4_2 .. relu4_4
        layers += _conv_relu(512, 512)
    layers += [_pool()]
    for _ in range(4):  # relu5_1 .. relu5_4
        layers += _conv_relu(512, 512)
    return nn.Sequential(*layers[:depth])


def adain_decoder() -> nn.Sequential:
    """The release decoder: relu4_1 features (512 channels, 1/8 size) → RGB, mirroring the encoder.

    The last convolution has no activation; its output is meant to be clamped to [0, 1].
    """
    up = nn.UpsamplingNearest2d(scale_factor=2)
    layers: list[nn.Module] = [*_conv_relu(512, 256), up]
    for _ in range(3):
        layers += _conv_relu(256, 256)
    layers += [*_conv_relu(256, 128), nn.UpsamplingNearest2d(scale_factor=2)]
    layers += [*_conv_relu(128, 128), *_conv_relu(128, 64), nn.UpsamplingNearest2d(scale_factor=2)]
    layers += [*_conv_relu(64, 64), nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(64, 3, (3, 3))]
    return nn.Sequential(*layers)


def _random_init(module: nn.Sequential) -> nn.Sequential:
    """He-normal convolutions, zero biases: random networks whose activations keep their scale.

    (PyTorch's default init shrinks activations about tenfold per block, so relu4_1 of a random
    VGG would be ~1e-4 and its statistics would drown in AdaIN's eps.)
    """
    for layer in module:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return module


def mean_std(feat: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and sqrt(variance + eps) of N x C x H x W features.

    Unbiased variance as in the release (`function.calc_mean_std`); a 1 x 1 map falls back to the
    population variance (0) instead of NaN.
    """
    if feat.ndim != 4:
        raise ValueError(f"expected N x C x H x W features, got shape {tuple(feat.shape)}")
    flat = feat.flatten(2)
    correction = 1 if flat.shape[2] > 1 else 0
    mean = flat.mean(dim=2)[:, :, None, None]
    std = (flat.var(dim=2, correction=correction) + eps).sqrt()[:, :, None, None]
    return mean, std


def adain_from_stats(
    content_feat: torch.Tensor,
    style_mean: torch.Tensor,
    style_std: torch.Tensor,
    eps: float = EPS,
) -> torch.Tensor:
    """AdaIN with precomputed style statistics (N x C x 1 x 1, or 1 x C x 1 x 1 to broadcast)."""
    content_mean, content_std = mean_std(content_feat, eps)
    return (content_feat - content_mean) / content_std * style_std + style_mean


def adain(content_feat: torch.Tensor, style_feat: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Adaptive instance normalisation: content features with the style's channel mean and std.

    `out = (c - mean(c)) / std(c) * std(s) + mean(s)` per sample and channel, std including `eps`
    in the variance. `style_feat` may hold one sample for a batch of content features. A pure
    function of its inputs; its spatial size may differ from the content's.
    """
    if content_feat.ndim != 4 or style_feat.ndim != 4:
        raise ValueError("adain expects N x C x H x W content and style features")
    if content_feat.shape[1] != style_feat.shape[1]:
        raise ValueError(
            f"channel mismatch: content {content_feat.shape[1]}, style {style_feat.shape[1]}"
        )
    if style_feat.shape[0] not in (1, content_feat.shape[0]):
        raise ValueError(
            f"style batch {style_feat.shape[0]} must be 1 or the content batch "
            f"{content_feat.shape[0]}"
        )
    style_mean, style_std = mean_std(style_feat, eps)
    return adain_from_stats(content_feat, style_mean, style_std, eps)


# --- weights ---------------------------------------------------------------------------------


def _is_url(source: str) -> bool:
    return source.startswith(_URL_SCHEMES)


def _check_sha256(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{what}: sha256 must be 64 hex digits, got {value!r}")
    return digest


def _cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / "conceptswap-adain"


def resolve_weights(source: str | Path, sha256: str | None, what: str) -> tuple[Path, str]:
    """A local weights file (checked against `sha256` when given) or a URL fetched into the cache.

    Returns the local path and the file's sha256. A URL requires `sha256`; the download lands in
    `$TORCH_HOME/hub/checkpoints/conceptswap-adain/` and is reused on later runs once it matches.
    A mismatch removes the download and raises `ValueError` naming both digests.
    """
    expected = _check_sha256(sha256, what)
    text = str(source)
    if _is_url(text):
        if expected is None:
            raise ValueError(
                f"{what}: a URL ({text}) needs its sha256 ({what.split()[0]}_sha256=...); "
                "weights are never downloaded unverified"
            )
        name = Path(text.split("?", 1)[0]).name or "weights.pth"
        target = _cache_dir() / f"{expected[:16]}-{name}"
        if target.is_file() and sha256_file(target) == expected:
            return target, expected
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        try:
            torch.hub.download_url_to_file(text, str(partial), progress=False)
            actual = sha256_file(partial)
            if actual != expected:
                raise ValueError(
                    f"{what}: sha256 mismatch for {text}: expected {expected}, got {actual}; "
                    "the download was discarded"
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target, expected
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what}: weights file not found: {path}")
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        raise ValueError(f"{what}: sha256 mismatch for {path}: expected {expected}, got {actual}")
    return path, actual


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Strict load with a message that names missing/unexpected keys and shape mismatches."""
    target = module.state_dict()
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    bad_shapes = [
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        for key, value in target.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    if missing or unexpected or bad_shapes:
        raise ValueError(
            f"{origin}: not a pytorch-AdaIN state dict; missing {missing[:6]}, unexpected "
            f"{unexpected[:6]}, shape mismatches {bad_shapes[:4]}"
        )
    module.load_state_dict(state, strict=True)


def load_encoder_state(encoder: nn.Sequential, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load the release `vgg_normalised.pth` (all 53 children) or a file of the first 31 only."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        full = {key: tuple(value.shape) for key, value in vgg_normalised().state_dict().items()}
    if set(state) == set(full):
        bad = [key for key, shape in full.items() if tuple(state[key].shape) != shape]
        if bad:
            raise ValueError(f"{origin}: not a pytorch-AdaIN VGG; shape mismatches at {bad[:6]}")
        state = {k: v for k, v in state.items() if int(k.split(".", 1)[0]) < ENCODER_DEPTH}
    _load_into(encoder, state, origin)


class AdaINStylizer:
    """AdaIN style transfer with the pytorch-AdaIN networks (see the module docstring).

    Args:
        encoder_weights: path or URL of `vgg_normalised.pth` (or `.safetensors`).
        decoder_weights: path or URL of `decoder.pth`.
        encoder_sha256 / decoder_sha256: required for URLs, checked for local files when given.
        alpha: 0..1, content/style trade-off in feature space: `alpha * adain + (1 - alpha) *
            content features` (1: full stylization).
        content_size: side of the square canvas content images are encoded at (their longer side
            is resized to it, the rest reflect-padded); a multiple of 8.
        style_size: the style image's shorter side is resized to this before encoding.
        device: "auto" (CUDA when present), "cpu", "cuda:1", ...
        batch_size: canvases per forward pass. Does not change outputs.
        pretrained: with False, networks without a weights file are randomly initialised (seeded
            by `init_seed`, so reproducible): for tests and benchmarks only.
        init_seed: seed of the random initialisation.

    `seed` in `stylize` is accepted for the protocol and unused: AdaIN is deterministic.
    """

    def __init__(
        self,
        encoder_weights: str | Path | None = None,
        decoder_weights: str | Path | None = None,
        encoder_sha256: str | None = None,
        decoder_sha256: str | None = None,
        alpha: float = 1.0,
        content_size: int = 512,
        style_size: int = 512,
        device: str = "auto",
        batch_size: int = 8,
        pretrained: bool = True,
        init_seed: int = 0,
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if content_size < 2 * STRIDE or content_size % STRIDE:
            raise ValueError(
                f"content_size must be a multiple of {STRIDE} >= 16, got {content_size}"
            )
        if style_size < STRIDE:
            raise ValueError(f"style_size must be >= {STRIDE}, got {style_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.alpha = float(alpha)
        self.content_size = int(content_size)
        self.style_size = int(style_size)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)

        with torch.device("meta"):  # parameters are filled below: no wasted initialisation
            encoder = vgg_normalised(ENCODER_DEPTH)
            decoder = adain_decoder()
        encoder, decoder = encoder.to_empty(device="cpu"), decoder.to_empty(device="cpu")
        tags = {}
        for offset, (what, module, source, sha256) in enumerate(
            (
                ("encoder", encoder, encoder_weights, encoder_sha256),
                ("decoder", decoder, decoder_weights, decoder_sha256),
            )
        ):
            if source is None:
                if pretrained:
                    raise ValueError(
                        f"AdaIN needs {what} weights: pass {what}_weights= (a local file, or "
                        f"{RELEASE_URLS[what]} with {what}_sha256=...); see docs/stylize.md. "
                        "pretrained=False runs randomly initialised networks (tests only)."
                    )
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(init_seed * 2 + offset)
                    _random_init(module)
                tags[what] = f"random-init-{init_seed}"
                continue
            path, digest = resolve_weights(source, sha256, f"{what} weights")
            state = load_state_dict_file(path)
            if what == "encoder":
                load_encoder_state(module, state, str(path))
            else:
                _load_into(module, state, str(path))
            tags[what] = digest[:16]
        self.encoder = encoder.eval().requires_grad_(False).to(self.device)
        self.decoder = decoder.eval().requires_grad_(False).to(self.device)
        self.weights = tags
        self.id = (
            f"adain@{VERSION}(encoder={tags['encoder']},decoder={tags['decoder']},"
            f"alpha={self.alpha!r},content_size={self.content_size},style_size={self.style_size})"
        )
        self._style_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def __repr__(self) -> str:
        return f"AdaINStylizer({self.id})"

    # --- tensors ---------------------------------------------------------------------------

    def _to_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(rgb, dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)

    def _canvas(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """Resize (longer side = content_size), reflect-pad to the square; returns the box."""
        height, width = rgb.shape[:2]
        side = self.content_size
        scale = side / max(height, width)
        new_h = min(side, max(1, round(height * scale)))
        new_w = min(side, max(1, round(width * scale)))
        if (new_h, new_w) != (height, width):
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            rgb = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)
        top, left = (side - new_h) // 2, (side - new_w) // 2
        canvas = cv2.copyMakeBorder(
            rgb, top, side - new_h - top, left, side - new_w - left, cv2.BORDER_REFLECT_101
        )
        return canvas, (top, left, new_h, new_w)

    @torch.inference_mode()
    def style_stats(self, style: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """relu4_1 channel mean and std of the style image (1 x 512 x 1 x 1 each), cached."""
        rgb = to_rgb_uint8(style)
        key = hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest()
        if key in self._style_cache:
            self._style_cache.move_to_end(key)
            return self._style_cache[key]
        height, width = rgb.shape[:2]
        scale = self.style_size / min(height, width)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            rgb = cv2.resize(rgb, size, interpolation=interpolation)
        feat = self.encoder(self._to_tensor(rgb)[None].to(self.device))
        stats = mean_std(feat)
        self._style_cache[key] = stats
        while len(self._style_cache) > _STYLE_CACHE_SIZE:
            self._style_cache.popitem(last=False)
        return stats

    @torch.inference_mode()
    def stylize_float(self, images: Sequence[np.ndarray], style: np.ndarray) -> list[np.ndarray]:
        """Stylized images as float32 RGB in [0, 1] at the input sizes (before uint8 rounding)."""
        style_mean, style_std = self.style_stats(style)
        outputs: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_rgb_uint8(image) for image in images[start : start + self.batch_size]]
            canvases, boxes = zip(*(self._canvas(rgb) for rgb in chunk), strict=True)
            batch = torch.stack([self._to_tensor(c) for c in canvases]).to(self.device)
            content = self.encoder(batch)
            feat = adain_from_stats(content, style_mean, style_std)
            if self.alpha < 1.0:
                feat = self.alpha * feat + (1.0 - self.alpha) * content
            decoded = self.decoder(feat).clamp_(0.0, 1.0).float().cpu().numpy()
            for rgb, canvas, (top, left, h, w) in zip(chunk, decoded, boxes, strict=True):
                crop = np.ascontiguousarray(
                    canvas[:, top : top + h, left : left + w].transpose(1, 2, 0)
                )
                height, width = rgb.shape[:2]
                if (h, w) != (height, width):
                    interpolation = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
                    crop = np.clip(
                        cv2.resize(crop, (width, height), interpolation=interpolation), 0, 1
                    )
                outputs.append(crop)
        return outputs

    def stylize(
        self, images: Sequence[np.ndarray], style: np.ndarray, seed: int = 0
    ) -> list[np.ndarray]:
        """Re-render each image in `style`; uint8 RGB at the input sizes. `seed` is unused."""
        del seed
        return [np.rint(out * 255.0).astype(np.uint8) for out in self.stylize_float(images, style)]
