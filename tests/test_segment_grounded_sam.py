"""`grounded-sam`: tiny random Grounding DINO and SAM saved to local folders and loaded back
offline, end to end; and the conversions (prompt → token concepts, logits → labelled boxes,
boxes → SAM prompts, SAM masks → detections) on hand-built tensors, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from pipeline.segment import create_segmenter
from pipeline.segment.grounded_sam import (
    GroundedBox,
    box_prompts,
    grounding_to_boxes,
    prompt_groups,
    prompt_text,
    sam_to_detections,
    token_concepts,
)

RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 255, shape, dtype=np.uint8) for shape in [(40, 60, 3), (50, 50, 3)]]
WORDS = ["wheel", "road", "snow", "traffic", "light", "winds", "##hield", "car"]


def _tokenizer(folder):
    """A BERT word-piece tokenizer from a small vocab file, with [CLS], [SEP] and `.` at the
    ids of bert-base-uncased (101, 102, 1012): Grounding DINO hard-codes them to split phrases."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [f"[unused{i}]" for i in range(99, 99 + 1012 - len(vocab))]
    vocab += [".", "?", *WORDS]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return BertTokenizer(str(folder / "vocab.txt"))


PROMPT_IDS = [101, 1014, 1012, 1017, 1018, 1012, 1019, 1020, 1012, 102]  # wheel. traffic light...
PROMPT_POSITIONS = [-1, 0, -1, 1, 1, -1, 2, 2, -1, -1]


# ------------------------------------------------------------------ conversion


def test_prompt_text_and_groups_that_fit_the_text_length():
    assert prompt_text(["Wheel", " traffic light"]) == "wheel. traffic light."
    # lengths include the `.`; every group also holds [CLS] and [SEP]
    assert prompt_groups([2, 3, 2, 4], limit=8) == [[0, 1], [2, 3]]
    assert prompt_groups([2, 3, 2, 4], limit=256) == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match="prompt 1 has 9 tokens"):
        prompt_groups([2, 9], limit=10)


def test_token_concepts_map_multi_word_and_word_piece_phrases(tmp_path):
    tokenizer = _tokenizer(tmp_path)
    ids = tokenizer(prompt_text(["wheel", "traffic light", "windshield"]))["input_ids"]
    assert ids == PROMPT_IDS  # windshield = winds ##hield
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
    positions = token_concepts(ids, [1012, 1013], specials, count=3)
    assert positions.tolist() == PROMPT_POSITIONS
    unknown = tokenizer(prompt_text(["zebra crossing", "road"]) + " [PAD]")["input_ids"]
    assert token_concepts(unknown, [1012], specials, 2).tolist() == [-1, 0, 0, -1, 1, -1, -1, -1]
    with pytest.raises(ValueError, match="3 phrases for 2 concepts"):
        token_concepts(ids, [1012], specials, count=2)


def test_boxes_keep_rule_labels_from_concept_tokens_and_pixels():
    positions = torch.tensor([*PROMPT_POSITIONS, -1, -1])  # logits are padded to max_text_len
    logits = torch.full((4, 12), -5.0)
    logits[0, 4] = 3.0  # `light`: traffic_light
    logits[0, 1] = 1.0  # and a little `wheel`
    logits[1, 2] = 4.0  # only the `.` separator: kept by the box rule, no concept above text
    logits[2, 6] = -1.0  # `winds` but below the box threshold
    logits[3, 1] = 2.0  # `wheel`, a box reaching out of the image
    boxes = torch.tensor(
        [[0.5, 0.5, 0.2, 0.4], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.4, 0.4]]
    )
    found = grounding_to_boxes(logits, boxes, positions, 3, (40, 60), 0.35, 0.25, max_boxes=5)
    assert [b.concept for b in found] == [1, 0]  # best first
    assert found[0].score == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert found[0].box == pytest.approx((24.0, 12.0, 36.0, 28.0))
    assert found[1].box == pytest.approx((42.0, 0.0, 60.0, 12.0))  # clipped to 60 x 40
    assert [b.concept for b in grounding_to_boxes(logits, boxes, positions, 3, (40, 60), 0.35,
                                                  0.25, max_boxes=1)] == [1]  # fmt: skip
    # a stricter text threshold drops `wheel` (0.881 < 0.9)
    strict = grounding_to_boxes(logits, boxes, positions, 3, (40, 60), 0.35, 0.9, max_boxes=5)
    assert [b.concept for b in strict] == [1]


def test_boxes_match_the_processors_post_processing(tmp_path):
    from types import SimpleNamespace

    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

    processor = GroundingDinoProcessor(GroundingDinoImageProcessor(), _tokenizer(tmp_path))
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 8, 12, generator=generator) * 3
    logits[..., 10:] = float("-inf")  # beyond the text, as the model pads
    pred = torch.rand(2, 8, 4, generator=generator) * 0.3 + torch.tensor([0.35, 0.35, 0.0, 0.0])
    outputs = SimpleNamespace(logits=logits, pred_boxes=pred)
    ids = torch.tensor([PROMPT_IDS, PROMPT_IDS])
    theirs = processor.post_process_grounded_object_detection(
        outputs, input_ids=ids, threshold=0.5, text_threshold=0.0, target_sizes=[(40, 60)] * 2
    )
    positions = torch.tensor(PROMPT_POSITIONS)
    for index, expected in enumerate(theirs):
        ours = grounding_to_boxes(logits[index], pred[index], positions, 3, (40, 60), 0.5, 0.0, 99)
        assert len(ours) == len(expected["boxes"]) > 0
        mine = sorted(b.box for b in ours)
        reference = sorted(tuple(row) for row in expected["boxes"].tolist())
        assert np.allclose(mine, reference, atol=1e-4)
        # the concept's probability never exceeds the best token's (the processor's score)
        assert max(b.score for b in ours) <= float(expected["scores"].max()) + 1e-6


def test_box_prompts_follow_the_sam_processor():
    from transformers import SamImageProcessor, SamProcessor

    boxes = [[6.0, 4.0, 30.0, 20.0], [0.0, 0.0, 60.0, 40.0]]
    ours = box_prompts(boxes, (40, 60), longest_edge=64)
    assert ours.shape == (1, 2, 4) and ours.dtype == torch.float32
    assert ours[0, 0].tolist() == pytest.approx([6.4, 4.3, 32.0, 21.5])  # 60 x 40 → 64 x 43
    processor = SamProcessor(SamImageProcessor(size={"longest_edge": 64}))
    theirs = processor(images=[IMAGES[0]], input_boxes=[boxes], return_tensors="pt")
    assert torch.allclose(ours, theirs["input_boxes"].float())


def test_a_box_mask_covers_that_region_and_scores_multiply():
    from transformers import SamImageProcessor

    processor = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    low_res = torch.full((1, 3, 1, 16, 16), -10.0)  # SAM's masks are 4x below its input
    low_res[0, 0, 0, 4:8, 4:12] = 10.0  # box (16, 16, 48, 32) in the 64 x 64 image
    low_res[0, 2] = 10.0  # the whole image
    masks = processor.post_process_masks(low_res, [(64, 64)], [(64, 64)])[0]
    boxes = [
        GroundedBox(0, 0.8, (16.0, 16.0, 48.0, 32.0)),
        GroundedBox(1, 0.9, (0.0, 0.0, 8.0, 8.0)),  # SAM found nothing: dropped
        GroundedBox(1, 0.6, (0.0, 0.0, 64.0, 64.0)),
    ]
    found = sam_to_detections(masks, torch.tensor([[0.5], [0.9], [1.7]]), boxes, ["wheel", "snow"])
    assert [(d.concept, d.score) for d in found] == [("wheel", 0.4), ("snow", 0.6)]  # IoU ≤ 1
    box = np.zeros((64, 64), dtype=bool)
    box[16:32, 16:48] = True
    mask = found[0].mask
    assert mask.dtype == bool and mask.shape == (64, 64) and not (mask & ~box).any()
    # the box, less its 4 corner pixels (bilinear upsampling rounds them off)
    assert int(mask.sum()) == 16 * 32 - 4 and mask[16, 17:47].all() and not mask[16, 16]
    assert found[1].mask.all()


# ------------------------------------------------------------------ real architectures


def _grounding_dino(folder, tokenizer):
    from transformers import (
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    config = GroundingDinoConfig(
        backbone_config={"model_type": "swin", "image_size": 32, "patch_size": 4, "embed_dim": 8,
                         "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 4,
                         "out_indices": [2, 3, 4]},
        text_config={"model_type": "bert", "vocab_size": tokenizer.vocab_size, "hidden_size": 16,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
                     "max_position_embeddings": 32},
        d_model=32, num_queries=6, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2,
        num_feature_levels=3, encoder_n_points=2, decoder_n_points=2, max_text_len=10,
    )  # fmt: skip
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 32, "longest_edge": 48})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        folder
    )


def _sam(folder):
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    config = SamConfig(
        vision_config={"hidden_size": 16, "output_channels": 8, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 64, "patch_size": 8,
                       "window_size": 2, "global_attn_indexes": [0], "mlp_dim": 16,
                       "num_pos_feats": 4},
        prompt_encoder_config={"hidden_size": 8, "image_size": 64, "patch_size": 8,
                               "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 8, "mlp_dim": 16, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "iou_head_hidden_dim": 8},
    )  # fmt: skip
    torch.manual_seed(1)
    SamModel(config).save_pretrained(folder)
    image_processor = SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}
    )
    SamProcessor(image_processor).save_pretrained(folder)


def test_grounded_sam_asks_for_any_concept_by_name(tmp_path):
    detector, sam = tmp_path / "dino", tmp_path / "sam"
    _grounding_dino(detector, _tokenizer(tmp_path / "tokenizer"))
    _sam(sam)
    segmenter = create_segmenter(
        "grounded-sam", concepts=["wheel", "traffic light", "Windshield", "snow"],
        detector=str(detector), sam=str(sam), box_threshold=0.0, text_threshold=0.0,
        max_boxes=4, device="cpu", batch_size=2,
    )  # fmt: skip
    assert segmenter.concepts == ("wheel", "traffic_light", "windshield", "snow")
    assert segmenter.prompts == ["wheel", "traffic light", "windshield", "snow"]
    # 10 tokens of text: "wheel. traffic light. windshield." fills one call, "snow." the next
    assert segmenter.groups == [[0, 1, 2], [3]]
    assert segmenter.id.startswith(f"grounded-sam@v1({detector}@")
    assert f",{sam}@" in segmenter.id and "box=0,text=0,max_boxes=4" in segmenter.id
    images = [*IMAGES, IMAGES[0][::-1].copy()]  # three images: batches of 2 and 1
    results = segmenter.segment(images, [None, 3, None])
    assert len(results) == 3
    for image, found in zip(images, results, strict=True):
        assert len(found) <= 4
        assert {d.concept for d in found} <= set(segmenter.concepts)
        for detection in found:
            assert detection.mask.shape == image.shape[:2] and detection.mask.dtype == bool
            assert detection.mask.any() and 0.0 <= detection.score <= 1.0
    assert sum(len(found) for found in results) > 0
    # results come back in image order across batches: the last image alone gives the same
    again = segmenter.segment(images[2:], [None])[0]
    assert [(d.concept, d.score, int(d.mask.sum())) for d in again] == [
        (d.concept, d.score, int(d.mask.sum())) for d in results[2]
    ]


def test_grounded_sam_refuses_bad_prompts_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match=r"has \. or \?"):
        create_segmenter("grounded-sam", concepts=["wheel"], prompts={"wheel": "a wheel. a tyre"})
    with pytest.raises(ValueError, match="box_threshold"):
        create_segmenter("grounded-sam", concepts=["wheel"], box_threshold=1.5)
    with pytest.raises(FileNotFoundError, match="grounded-sam: cannot load"):
        create_segmenter("grounded-sam", concepts=["wheel"], detector=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no-such-org/no-such-sam"):
        _grounding_dino(tmp_path / "dino", _tokenizer(tmp_path / "tokenizer"))
        create_segmenter(
            "grounded-sam", detector=str(tmp_path / "dino"), sam="no-such-org/no-such-sam"
        )
