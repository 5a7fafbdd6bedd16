"""AdaINStylizer: the release architecture, the AdaIN statistics, weights loading, determinism.

No weights are downloaded: the networks are randomly initialised (seeded), saved to temporary
files where a test needs weights files, and a `file://` URL stands in for a release URL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage import data

from pipeline.stylize import Stylizer, create_stylizer
from pipeline.stylize.adain import (
    ENCODER_DEPTH,
    AdaINStylizer,
    adain,
    adain_decoder,
    mean_std,
    vgg_normalised,
)

SMALL = {"content_size": 64, "style_size": 64, "device": "cpu", "pretrained": False}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, torch's two spinning OpenMP threads were
    10-100x slower for these tiny tensors whenever another process held a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stylizer() -> AdaINStylizer:
    return AdaINStylizer(**SMALL)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """A square and a non-square photo, both small."""
    return [
        cv2.resize(data.astronaut(), (64, 64), interpolation=cv2.INTER_AREA),
        cv2.resize(data.coffee(), (72, 48), interpolation=cv2.INTER_AREA),
    ]


@pytest.fixture(scope="module")
def style() -> np.ndarray:
    return cv2.resize(data.chelsea(), (96, 64), interpolation=cv2.INTER_AREA)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random networks saved like the release (full 53-layer VGG), truncated and as safetensors."""
    root = tmp_path_factory.mktemp("adain-weights")
    reference = AdaINStylizer(**{**SMALL, "init_seed": 7})
    full = vgg_normalised()
    full[:ENCODER_DEPTH].load_state_dict(reference.encoder.state_dict())
    files = {
        "encoder_full": root / "vgg_normalised.pth",
        "encoder_31": root / "vgg_relu4_1.pth",
        "decoder": root / "decoder.pth",
        "decoder_st": root / "decoder.safetensors",
    }
    torch.save(full.state_dict(), files["encoder_full"])
    torch.save(reference.encoder.state_dict(), files["encoder_31"])
    torch.save(reference.decoder.state_dict(), files["decoder"])
    save_file(
        {k: v.contiguous() for k, v in reference.decoder.state_dict().items()}, files["decoder_st"]
    )
    return files


def test_architecture_is_the_release_one() -> None:
    """Layer indices and shapes of pytorch-AdaIN's net.py (`vgg`: 53 children, `decoder`: 29)."""
    vgg, decoder = vgg_normalised(), adain_decoder()
    assert len(vgg) == 53 and len(decoder) == 29
    convs = [i for i, layer in enumerate(vgg) if isinstance(layer, torch.nn.Conv2d)]
    assert convs == [0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51]
    assert vgg[0].kernel_size == (1, 1) and vgg[0].in_channels == vgg[0].out_channels == 3
    assert isinstance(vgg[ENCODER_DEPTH - 1], torch.nn.ReLU)  # relu4_1
    assert vgg[ENCODER_DEPTH - 2].out_channels == 512
    assert [k for k in decoder.state_dict()][:2] == ["1.weight", "1.bias"]
    assert decoder[28].out_channels == 3 and decoder[1].in_channels == 512
    x = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        feat = vgg[:ENCODER_DEPTH](x)
        assert feat.shape == (1, 512, 8, 6)
        assert decoder(feat).shape == (1, 3, 64, 48)


def test_registered_and_shapes(
    stylizer: AdaINStylizer, images: list[np.ndarray], style: np.ndarray
) -> None:
    assert isinstance(create_stylizer("adain", **SMALL), Stylizer)
    outputs = stylizer.stylize(images, style, seed=3)
    assert [o.shape for o in outputs] == [i.shape for i in images]
    assert all(o.dtype == np.uint8 for o in outputs)
    assert all(o.std() > 1.0 for o in outputs)  # not a constant image
    gray = stylizer.stylize([images[0][:, :, 0]], style)[0]  # grayscale input accepted
    assert gray.shape == (64, 64, 3)
    assert stylizer.stylize([], style) == []


def test_adain_transfers_channel_statistics() -> None:
    generator = torch.Generator().manual_seed(0)
    content = torch.randn(2, 16, 9, 7, generator=generator) * 2.0 + 3.0
    style = torch.randn(1, 16, 5, 11, generator=generator) * 1.5 - 1.0
    out = adain(content, style)
    assert out.shape == content.shape
    out_mean, out_std = out.flatten(2).mean(2), out.flatten(2).std(2)
    style_mean, style_std = style.flatten(2).mean(2), style.flatten(2).std(2)
    # measured: 3e-6 (std), 4e-7 (mean); eps=1e-5 inside variances of ~2-4
    assert torch.allclose(out_mean, style_mean.expand_as(out_mean), atol=1e-4)
    assert torch.allclose(out_std, style_std.expand_as(out_std), atol=1e-4)
    # pure: same inputs, same output; the content's own layout is kept (per-channel affine)
    assert torch.equal(adain(content, style), out)
    corr = np.corrcoef(content[0, 0].flatten().numpy(), out[0, 0].flatten().numpy())[0, 1]
    assert corr > 0.999999
    with pytest.raises(ValueError, match="channel"):
        adain(content, style[:, :8])


def test_real_encoder_features_take_the_style_statistics(
    stylizer: AdaINStylizer, images: list[np.ndarray], style: np.ndarray
) -> None:
    """relu4_1 of the (random) release VGG: after AdaIN, each live channel has the style's stats.

    Channels that are all zero for the content image (dead ReLUs) cannot take any std, so only
    channels with content and style std > 0.05 are compared; eps=1e-8 so eps does not bias them.
    """
    content = torch.from_numpy(images[0].astype(np.float32) / 255).permute(2, 0, 1)[None]
    style_t = torch.from_numpy(style.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        fc, fs = stylizer.encoder(content), stylizer.encoder(style_t)
    assert fc.shape == (1, 512, 8, 8) and fs.shape == (1, 512, 8, 12)
    out = adain(fc, fs, eps=1e-8)
    _, c_std = mean_std(fc, 0.0)
    s_mean, s_std = mean_std(fs, 0.0)
    o_mean, o_std = mean_std(out, 0.0)
    live = ((c_std > 0.05) & (s_std > 0.05)).flatten()
    assert live.sum() > 200  # measured: 279 of 512 channels live in both; errors ~1e-7
    assert torch.allclose(o_mean.flatten(), s_mean.flatten(), atol=1e-4)
    assert torch.allclose(o_std.flatten()[live], s_std.flatten()[live], atol=1e-4)


def test_weights_round_trip(
    weight_files: dict[str, Path], images: list[np.ndarray], style: np.ndarray
) -> None:
    reference = AdaINStylizer(**{**SMALL, "init_seed": 7})
    expected = reference.stylize(images, style)
    options = {k: v for k, v in SMALL.items() if k != "pretrained"}
    for encoder, decoder in (("encoder_full", "decoder"), ("encoder_31", "decoder_st")):
        loaded = AdaINStylizer(
            encoder_weights=str(weight_files[encoder]),
            decoder_weights=weight_files[decoder],
            **options,
        )
        assert loaded.id == (
            f"adain@v1(encoder={sha256(weight_files[encoder])[:16]},"
            f"decoder={sha256(weight_files[decoder])[:16]},alpha=1.0,content_size=64,"
            "style_size=64)"
        )
        for got, want in zip(loaded.stylize(images, style), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    other = AdaINStylizer(**{**SMALL, "init_seed": 8})
    assert not np.array_equal(other.stylize(images, style)[0], expected[0])


def test_sha256_checks(weight_files: dict[str, Path], tmp_path: Path) -> None:
    encoder, decoder = weight_files["encoder_full"], weight_files["decoder"]
    good = sha256(encoder)
    AdaINStylizer(encoder, decoder, encoder_sha256=good.upper(), **{**SMALL, "pretrained": True})
    with pytest.raises(ValueError, match="sha256 mismatch"):
        AdaINStylizer(encoder, decoder, encoder_sha256="0" * 64, content_size=64, device="cpu")
    with pytest.raises(ValueError, match="64 hex digits"):
        AdaINStylizer(encoder, decoder, decoder_sha256="abc", content_size=64, device="cpu")
    with pytest.raises(ValueError, match="needs its sha256"):
        AdaINStylizer("https://example.invalid/vgg_normalised.pth", decoder, device="cpu")
    with pytest.raises(FileNotFoundError, match="not found"):
        AdaINStylizer(tmp_path / "missing.pth", decoder, device="cpu")
    with pytest.raises(ValueError, match=r"needs encoder weights.*releases"):
        AdaINStylizer(device="cpu")
    with pytest.raises(ValueError, match="not a pytorch-AdaIN"):
        AdaINStylizer(decoder, decoder, content_size=64, device="cpu")


def test_url_weights_are_verified_and_cached(
    weight_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file:// URL stands in for the release URL: copied into the hub cache, then reused."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    encoder, decoder = weight_files["encoder_full"], weight_files["decoder"]
    url, digest = encoder.as_uri(), sha256(encoder)
    cache = tmp_path / "hub" / "checkpoints" / "conceptswap-adain"
    with pytest.raises(ValueError, match="sha256 mismatch"):
        AdaINStylizer(url, decoder, encoder_sha256="f" * 64, content_size=64, device="cpu")
    assert not cache.exists() or not any(cache.iterdir())  # the bad download was discarded
    loaded = AdaINStylizer(url, decoder, encoder_sha256=digest, content_size=64, device="cpu")
    cached = cache / f"{digest[:16]}-vgg_normalised.pth"
    assert cached.is_file() and sha256(cached) == digest
    assert loaded.weights["encoder"] == digest[:16]


def test_deterministic_and_seed_free(
    stylizer: AdaINStylizer, images: list[np.ndarray], style: np.ndarray
) -> None:
    first = stylizer.stylize(images, style, seed=0)
    again = AdaINStylizer(**SMALL).stylize(images, style, seed=5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_independence(images: list[np.ndarray], style: np.ndarray) -> None:
    """[a, b] in one forward pass gives for a what [a] alone gives.

    Measured on this CPU (oneDNN, float32): exactly equal at 128 px canvases and up; at 64 px
    the first 1x1 convolution takes another kernel path for batch 1 and differs by ~1e-5.
    """
    batched = AdaINStylizer(**{**SMALL, "content_size": 128, "batch_size": 4})
    together = batched.stylize_float(images, style)
    for image, out in zip(images, together, strict=True):
        alone = batched.stylize_float([image], style)[0]
        assert np.abs(alone - out).max() < 1e-5
        rounded = np.rint(alone * 255).astype(int) - np.rint(out * 255).astype(int)
        assert np.abs(rounded).max() <= 1


def test_id_names_settings() -> None:
    ids = {
        AdaINStylizer(**SMALL).id,
        AdaINStylizer(**{**SMALL, "alpha": 0.5}).id,
        AdaINStylizer(**{**SMALL, "content_size": 32}).id,
        AdaINStylizer(**{**SMALL, "style_size": 32}).id,
        AdaINStylizer(**{**SMALL, "init_seed": 1}).id,
    }
    assert len(ids) == 5
    assert AdaINStylizer(**{**SMALL, "batch_size": 1}).id == AdaINStylizer(**SMALL).id
    for bad in ({"alpha": 1.5}, {"content_size": 60}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            AdaINStylizer(**{**SMALL, **bad})


def test_canvas_geometry_and_style_cache(stylizer: AdaINStylizer, style: np.ndarray) -> None:
    """Longer side → content_size, centred reflect padding, and the box that crops it back."""
    image = cv2.resize(data.coffee(), (96, 40), interpolation=cv2.INTER_AREA)
    canvas, (top, left, height, width) = stylizer._canvas(image)
    assert canvas.shape == (64, 64, 3)
    assert (top, left, height, width) == (18, 0, 27, 64)
    resized = cv2.resize(image, (64, 27), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(canvas[top : top + height, left : left + width], resized)
    np.testing.assert_array_equal(canvas[top - 1], resized[1])  # mirrored, edge not repeated
    first = stylizer.style_stats(style)
    assert stylizer.style_stats(style.copy()) is first  # encoded once per style image
