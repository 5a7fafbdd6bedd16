"""The offline classifier: packaged ImageNet weights mapped into timm, real predictions."""

from __future__ import annotations

import pytest
import skimage.data
import torch

from pipeline.classify import create_classifier, topk
from pipeline.classify.imagenet import class_index, class_names
from pipeline.classify.weights import map_positionally


def test_class_names_are_unique_imagenet_names() -> None:
    names = class_names()
    assert len(names) == 1000 == len(set(names))
    assert names[817] == "sports_car" and class_index("car_wheel") == 479


def test_real_weights_recognise_the_coffee_photo(classifier) -> None:
    assert classifier.id.startswith("timm:tf_efficientnet_lite0@5793442")
    probs = classifier.predict_proba([skimage.data.coffee(), skimage.data.chelsea()])
    assert probs.shape == (2, 1000)
    assert abs(float(probs.sum(axis=1).mean()) - 1.0) < 1e-4
    assert classifier.class_names[int(probs[0].argmax())] == "espresso"
    assert probs[0].max() > 0.8
    cats = {class_index(n) for n in ("tabby", "tiger_cat", "Egyptian_cat")}
    assert int(probs[1].argmax()) in cats


def test_positional_mapping_asserts_shapes() -> None:
    source = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    assert list(map_positionally(source, {"x": torch.ones(2, 3), "y": torch.ones(4)}, "f")) == [
        "x",
        "y",
    ]
    with pytest.raises(ValueError, match=r"a has shape \(2, 3\) but x needs \(3, 2\)"):
        map_positionally(source, {"x": torch.ones(3, 2), "y": torch.ones(4)}, "f")


def test_random_init_model_has_its_own_id() -> None:
    model = create_classifier("timm:tf_efficientnet_lite0", pretrained=False, device="cpu")
    assert model.id.endswith("@random-init")


def test_topk_orders_by_probability() -> None:
    import numpy as np

    rows = topk(np.array([[0.1, 0.7, 0.2]]), 2)
    assert rows == [[[1, pytest.approx(0.7)], [2, pytest.approx(0.2)]]]


def test_batched_preprocessing_equals_the_per_image_transform(classifier) -> None:
    """The batch path (PIL steps per image, one to-tensor + normalise) gives the same bits as
    the model's own transform applied image by image, on photos of different sizes."""
    from PIL import Image

    photos = [
        skimage.data.astronaut(),
        skimage.data.coffee()[:301, :417],
        skimage.data.chelsea()[7:, 3:],
        skimage.data.rocket(),
    ]
    batch = classifier.preprocess(photos)
    reference = torch.stack([classifier.transform(Image.fromarray(p)) for p in photos])
    assert batch.shape == reference.shape == (4, 3, 224, 224)
    assert torch.equal(batch, reference)
