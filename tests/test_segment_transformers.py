"""`transformers-panoptic` and `clipseg`: tiny random architectures saved to a local folder and
loaded back offline, end to end; and the conversion of outputs into concept masks, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from pipeline.segment import create_segmenter
from pipeline.segment.transformers_backend import (
    crop_padding,
    label_concepts,
    panoptic_to_detections,
    semantic_to_detections,
    text_logits_to_detections,
)

RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 255, (40, 60, 3), dtype=np.uint8), RNG.integers(0, 255, (50, 50, 3))]
IMAGES[1] = IMAGES[1].astype(np.uint8)


# ------------------------------------------------------------------ conversion


def test_label_concepts_maps_coco_and_ade20k_spellings():
    table = label_concepts({0: "sky-other-merged", 1: "road, route", 2: "car", 3: "zzz-unknown"})
    assert table == {0: "sky", 1: "road", 2: "car"}


def test_panoptic_segments_become_one_mask_each_with_their_score():
    segmentation = torch.tensor([[1, 1, 2], [0, 2, 2], [3, 3, 3]])
    info = [
        {"id": 1, "label_id": 0, "score": 0.9},
        {"id": 2, "label_id": 2, "score": 0.7},
        {"id": 3, "label_id": 2, "score": 0.6},
    ]
    found = panoptic_to_detections(segmentation, info, {0: "sky", 2: "car"}, wanted={"sky", "car"})
    assert [(d.concept, d.score, int(d.mask.sum())) for d in found] == [
        ("sky", 0.9, 2),
        ("car", 0.7, 3),
        ("car", 0.6, 3),
    ]
    assert found[1].mask.tolist() == [[False, False, True], [False, True, True], [False] * 3]
    assert (
        panoptic_to_detections(segmentation, info, {0: "sky", 2: "car"}, {"sky"})[0].concept
        == "sky"
    )


def test_semantic_argmax_regions_scored_by_mean_probability():
    probs = torch.tensor(
        [[[0.6, 0.2], [0.1, 0.1]], [[0.3, 0.7], [0.2, 0.1]], [[0.1, 0.1], [0.7, 0.8]]]
    )
    found = semantic_to_detections(probs, {0: "road", 1: "sky"}, wanted=None)
    assert [d.concept for d in found] == ["road", "sky"]  # class 2 has no concept
    assert found[0].mask.tolist() == [[True, False], [False, False]]
    assert found[0].score == pytest.approx(0.6)
    assert found[1].score == pytest.approx(0.7)


def test_text_logits_threshold_on_upsampled_probabilities():
    logits = torch.full((2, 2, 2), -10.0)
    logits[0, 0, 0] = 10.0  # `wheel` only in the top-left quarter
    found = text_logits_to_detections(logits, ["wheel", "snow"], size=(4, 4), threshold=0.5)
    assert [d.concept for d in found] == ["wheel"]  # `snow` is empty everywhere
    assert found[0].mask.shape == (4, 4)
    assert found[0].mask[:2, :2].all() and not found[0].mask[2:, 2:].any()


def test_crop_padding_keeps_the_image_part_of_low_resolution_maps():
    pixel_mask = torch.zeros(64, 96, dtype=torch.long)
    pixel_mask[:40, :60] = 1
    assert crop_padding(torch.zeros(5, 16, 24), pixel_mask).shape == (5, 10, 15)
    assert crop_padding(torch.zeros(5, 16, 24), None).shape == (5, 16, 24)


# ------------------------------------------------------------------ real architectures


def _mask2former(folder):
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(
        image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
        window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    labels = {0: "car", 1: "sky-other-merged", 2: "road"}
    config = Mask2FormerConfig(
        backbone_config=backbone, hidden_dim=32, feature_size=32, mask_feature_size=32,
        num_queries=5, encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=32,
        dim_feedforward=32, num_attention_heads=2, id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(
        folder
    )


@pytest.mark.parametrize("task", ["panoptic", "semantic"])
def test_mask2former_runs_end_to_end_from_a_local_folder(tmp_path, task):
    _mask2former(tmp_path)
    segmenter = create_segmenter(
        "transformers-panoptic", concepts=["sky", "road", "car"], model=str(tmp_path),
        task=task, threshold=0.0, device="cpu", batch_size=2,
    )  # fmt: skip
    assert segmenter.id.startswith(f"transformers-panoptic@v1({tmp_path}@")
    assert f"task={task}" in segmenter.id
    results = segmenter.segment(IMAGES, [None, None])
    assert len(results) == 2
    for image, found in zip(IMAGES, results, strict=True):
        assert {d.concept for d in found} <= {"sky", "road", "car"}
        for detection in found:
            assert detection.mask.shape == image.shape[:2] and detection.mask.dtype == bool
            assert 0.0 <= detection.score <= 1.0
    if task == "semantic":  # every pixel is won by one of the three classes
        for image, found in zip(IMAGES, results, strict=True):
            assert sum(int(d.mask.sum()) for d in found) == image.shape[0] * image.shape[1]


def test_segformer_semantic_covers_every_pixel_with_ade20k_names(tmp_path):
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    labels = {0: "road, route", 1: "sky", 2: "grass"}
    config = SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
        decoder_hidden_size=16, id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(tmp_path)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path)
    segmenter = create_segmenter(
        "transformers-panoptic", concepts=["road", "sky", "grass"], model=str(tmp_path),
        task="semantic", device="cpu",
    )  # fmt: skip
    results = segmenter.segment(IMAGES, [1, None])
    for image, found in zip(IMAGES, results, strict=True):
        assert {d.concept for d in found} <= {"road", "sky", "grass"}
        assert sum(int(d.mask.sum()) for d in found) == image.shape[0] * image.shape[1]
    with pytest.raises(ValueError, match="semantic only"):
        create_segmenter("transformers-panoptic", concepts=["road"], model=str(tmp_path))
    with pytest.raises(ValueError, match="no label for snow"):
        create_segmenter(
            "transformers-panoptic", concepts=["snow"], model=str(tmp_path), task="semantic"
        )


def test_missing_weights_name_the_model_and_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-org/no-such-model"):
        create_segmenter("transformers-panoptic", model="no-such-org/no-such-model")
    with pytest.raises(FileNotFoundError, match="clipseg: cannot load"):
        create_segmenter("clipseg", model=str(tmp_path))


def _byte_vocab() -> dict[str, int]:
    """Every byte-level character, alone and word-final: CLIP's BPE with no merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]
    return {token: index for index, token in enumerate(tokens)}


def test_clipseg_asks_for_any_concept_by_name(tmp_path):
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    vocab = _byte_vocab()
    config = CLIPSegConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 32, "bos_token_id": 0, "eos_token_id": 1},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 16,
                       "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
        projection_dim=16, extract_layers=[0, 1], reduce_dim=8, decoder_num_attention_heads=2,
        decoder_intermediate_size=16,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPSegForImageSegmentation(config).save_pretrained(tmp_path)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    image_processor = ViTImageProcessor(size={"height": 32, "width": 32})
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp_path)
    segmenter = create_segmenter(
        "clipseg", concepts=["wheel", "Windshield", "tyre"], model=str(tmp_path),
        prompts={"wheel": "a car wheel"}, threshold=0.5, device="cpu", batch_size=2,
    )  # fmt: skip
    assert segmenter.concepts == ("wheel", "windshield", "tire")
    assert segmenter.prompts == ["a car wheel", "windshield", "tire"]
    assert "prompts=wheel=a car wheel;windshield=windshield;tire=tire" in segmenter.id
    results = segmenter.segment(IMAGES, [None, None])
    assert len(results) == 2
    for image, found in zip(IMAGES, results, strict=True):
        assert {d.concept for d in found} <= set(segmenter.concepts)
        for detection in found:
            assert detection.mask.shape == image.shape[:2]
            assert detection.score >= 0.5  # the mean probability inside a mask cut at 0.5
