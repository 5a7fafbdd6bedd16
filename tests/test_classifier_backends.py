"""torchvision, checkpoint and open_clip classifiers: real architectures, weights round trips.

The backends' own loading and preprocessing, compared exactly: torch eager, no engine probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.classify import create_classifier

IMAGES = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(3)]


@pytest.fixture(autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_torchvision_random_init_and_weights_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = create_classifier(
        "torchvision:resnet18", pretrained=False, device="cpu", engine="eager"
    )
    assert model.id == "torchvision:resnet18@random-init"
    probs = model.predict_proba(IMAGES)
    assert probs.shape == (3, 1000) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    torch.save(model.model.state_dict(), tmp_path / "r18.pth")
    reloaded = create_classifier(
        "torchvision:resnet18", weights=str(tmp_path / "r18.pth"), engine="eager"
    )
    assert reloaded.id.startswith("torchvision:resnet18@") and "random" not in reloaded.id
    assert np.allclose(reloaded.predict_proba(IMAGES), probs, atol=1e-6)


def test_torchvision_default_weights_are_never_downloaded(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no download here"):
        create_classifier("torchvision:resnet18")


def test_checkpoint_torchscript_with_class_names(tmp_path) -> None:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(net.eval()), str(path))
    (tmp_path / "tiny.pt.classes.txt").write_text("red\ngreen\nblue\n")
    model = create_classifier(f"checkpoint:{path}", input_size=32, device="cpu", engine="eager")
    assert model.class_names == ["red", "green", "blue"]
    expected = torch.softmax(net(model.preprocess(IMAGES)), dim=1).detach().numpy()
    assert np.allclose(model.predict_proba(IMAGES), expected, atol=1e-6)


def test_checkpoint_state_dict_needs_its_architecture(tmp_path) -> None:
    from torchvision.models import resnet18

    torch.save(resnet18(num_classes=5).state_dict(), tmp_path / "five.pth")
    model = create_classifier(
        f"checkpoint:{tmp_path / 'five.pth'}", arch="torchvision:resnet18", engine="eager"
    )
    assert model.class_names == ["0", "1", "2", "3", "4"]
    assert model.predict_proba(IMAGES[:1]).shape == (1, 5)
    with pytest.raises(ValueError, match="not a TorchScript model"):
        create_classifier(f"checkpoint:{tmp_path / 'five.pth'}")


def test_open_clip_zero_shot_over_given_classes() -> None:
    pytest.importorskip("open_clip", reason="open_clip_torch is not installed (extra: clip)")
    torch.manual_seed(0)
    model = create_classifier(
        "open_clip:RN50",
        class_names=["cat", "dog", "sports_car"],
        templates=["a photo of a {}."],
        engine="eager",
    )
    probs = model.predict_proba(IMAGES[:2])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert model.text_embeddings.shape[0] == 3
    assert np.allclose(torch.linalg.norm(model.text_embeddings, dim=1).numpy(), 1, atol=1e-5)
