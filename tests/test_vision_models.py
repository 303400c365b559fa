"""GroundingDINO and SAM2 adapters: tiny faces through the real transformers processors, offline."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fakes import BoxGrounder
from tools.datamodel import Detections
from tools.errors import InputError, ModelUnavailableError
from tools.frames import FrameRef
from tools.grounding import ground_frames
from tools.models import grounding_dino as gd
from tools.models import sam2 as sam
from tools.models.base import Grounder, ModelSpec, Segmenter
from tools.models.registry import ModelRegistry

GD_TINY = ModelSpec(role="grounder", family="grounding_dino", model_id="grounding-dino-tiny-test", face="tiny")
SAM_TINY = ModelSpec(role="segmenter", family="sam2", model_id="sam2-tiny-test", face="tiny")


def _image(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def grounder() -> gd.GroundingDinoGrounder:
    return gd.load_grounding_dino(GD_TINY, "cpu")


@pytest.fixture(scope="module")
def segmenter() -> sam.Sam2Segmenter:
    return sam.load_sam2(SAM_TINY, "cpu")


# ----------------------------------------------------------------------------------------------- phrases, labels


def test_phrase_normalisation_and_caption() -> None:
    assert gd.normalize_phrase("  Dog . ") == "dog"
    assert gd.normalize_phrase("Acoustic   Guitar?") == "acoustic guitar"
    assert gd.normalize_phrases(["Dog", "dog .", "", " . ", "a dog", "Cat"]) == ["dog", "a dog", "cat"]
    assert gd.build_caption(["Dog", "cat", "DOG"]) == "dog . cat ."
    assert gd.build_caption([]) == ""


@pytest.mark.parametrize("label", ["dog", "Dog", "a dog", "dog .", "dog. [SEP]", "[CLS] dog"])
def test_label_variants_map_to_the_phrase(label: str) -> None:
    assert gd.map_label_to_phrase(label, ["cat", "dog"]) == "dog"


def test_label_mapping_rules() -> None:
    # A label spanning two requested phrases goes to ONE: the one whose word comes first in the label.
    assert gd.map_label_to_phrase("guitar piano", ["piano", "guitar"]) == "guitar"
    # Exact match beats partial overlap; a partial label finds its phrase.
    assert gd.map_label_to_phrase("acoustic guitar", ["guitar", "acoustic guitar"]) == "acoustic guitar"
    assert gd.map_label_to_phrase("guitar", ["dog", "acoustic guitar"]) == "acoustic guitar"
    # More shared content words wins; articles do not count as overlap.
    assert gd.map_label_to_phrase("a man guitar", ["a dog", "man playing guitar"]) == "man playing guitar"
    # Nothing shared (or only separators / articles) -> None, the adapter drops the box.
    assert gd.map_label_to_phrase("xylophone", ["dog", "cat"]) is None
    assert gd.map_label_to_phrase(". [SEP]", ["dog"]) is None
    assert gd.map_label_to_phrase("a", ["a dog"]) is None


def test_tiny_tokenizer_keeps_grounding_dino_separator_ids() -> None:
    ids = gd.tiny_tokenizer()("dog . cat .")["input_ids"]
    # [CLS] 101, "." 1012, [SEP] 102: the ids GroundingDINO hard-codes to split phrases.
    assert ids[0] == 101 and ids[2] == 1012 and ids[4] == 1012 and ids[-1] == 102


# ----------------------------------------------------------------------------------------------- grounding


def test_detect_two_images_of_different_sizes(grounder: gd.GroundingDinoGrounder) -> None:
    assert isinstance(grounder, Grounder)
    images = [_image(75, 53, 0), _image(40, 90, 1)]
    phrases = [["Dog", "cat ."], ["guitar", "piano"]]
    out = grounder.detect(images, phrases, [3, 7], box_threshold=0.25, text_threshold=0.25)
    assert [d.frame_index for d in out] == [3, 7]
    assert sum(len(d) for d in out) > 0  # random weights still score many queries above 0.25
    for det, image, requested in zip(out, images, phrases, strict=True):
        assert isinstance(det, Detections)
        w, h = image.size
        assert np.all(det.boxes >= 0) and np.all(det.boxes[:, [0, 2]] <= w) and np.all(det.boxes[:, [1, 3]] <= h)
        assert np.all(det.boxes[:, 2] > det.boxes[:, 0]) and np.all(det.boxes[:, 3] > det.boxes[:, 1])
        assert np.all(det.scores >= 0.25) and np.all(np.diff(det.scores) <= 0)
        assert set(det.phrases) <= set(requested)
    stats = grounder.last_stats
    assert stats.forward_passes == 1 and stats.images == 2
    assert stats.captions == [["dog . cat ."], ["guitar . piano ."]]
    assert stats.boxes == sum(len(d) for d in out)


def test_threshold_one_gives_no_boxes(grounder: gd.GroundingDinoGrounder) -> None:
    out = grounder.detect([_image(64, 64, 2)], [["dog"]], [0], box_threshold=1.0, text_threshold=0.25)
    assert len(out) == 1 and len(out[0]) == 0


def test_empty_phrases_skip_the_model(grounder: gd.GroundingDinoGrounder) -> None:
    out = grounder.detect([_image(64, 48, 3), _image(30, 30, 4)], [[], [" . "]], [0, 1], 0.0, 0.0)
    assert [len(d) for d in out] == [0, 0] and [d.frame_index for d in out] == [0, 1]
    assert grounder.last_stats.forward_passes == 0 and grounder.last_stats.captions == [[], []]


def test_batching_and_caption_overflow(grounder: gd.GroundingDinoGrounder) -> None:
    images = [_image(50, 40, i) for i in range(3)]
    saved = grounder.batch_size, grounder.max_text_len
    try:
        grounder.batch_size = 2
        out = grounder.detect(images, [["dog"]] * 3, [0, 1, 2], 0.25, 0.25)
        assert len(out) == 3 and grounder.last_stats.forward_passes == 2
        # [CLS] + 4 x (word + ".") + [SEP] = 10 tokens; "man" no longer fits, so it goes into a second caption.
        grounder.max_text_len = 10
        phrases = ["dog", "cat", "guitar", "piano", "man"]
        out = grounder.detect(images[:1], [phrases], [0], 0.25, 0.25)
        assert grounder.last_stats.captions == [["dog . cat . guitar . piano .", "man ."]]
        assert grounder.last_stats.forward_passes == 1  # both captions of the image in one batch
        assert set(out[0].phrases) <= set(phrases)
    finally:
        grounder.batch_size, grounder.max_text_len = saved


@pytest.mark.parametrize(("box_threshold", "text_threshold"), [(0.0, 0.25), (0.25, 0.5), (0.3, 0.0), (1.0, 0.25)])
def test_post_processing_equals_the_processors(
    grounder: gd.GroundingDinoGrounder, box_threshold: float, text_threshold: float
) -> None:
    items = grounder._plan(0, ["dog", "acoustic guitar", "cat"])
    output = grounder._forward([_image(61, 47, 9)], items)[0]
    size = (47, 61)
    boxes, scores, labels = grounder._post_process(output, size, box_threshold, text_threshold)
    # The processor's own path: logits padded back to the full text width with -inf, one batch row.
    padded = torch.full((1, output.logits.shape[0], output.width), float("-inf"))
    padded[0, :, : output.logits.shape[1]] = output.logits
    raw = type("Raw", (), {"logits": padded, "pred_boxes": output.boxes[None]})
    want = grounder.processor.post_process_grounded_object_detection(
        raw, output.input_ids[None], threshold=box_threshold, text_threshold=text_threshold, target_sizes=[size]
    )[0]
    assert torch.equal(boxes, want["boxes"]) and torch.equal(scores, want["scores"])
    assert labels == want["text_labels"]
    if box_threshold < 1.0:
        assert len(set(labels)) < len(labels)  # many boxes share a few token selections


def test_detect_is_deterministic_across_builds(grounder: gd.GroundingDinoGrounder) -> None:
    other = gd.load_grounding_dino(GD_TINY, "cpu")
    args = ([_image(75, 53, 5)], [["dog", "cat"]], [0], 0.25, 0.25)
    a, b = grounder.detect(*args)[0], other.detect(*args)[0]
    assert a.to_dict() == b.to_dict()
    assert np.array_equal(a.boxes, b.boxes)


def test_detect_rejects_mismatched_lengths(grounder: gd.GroundingDinoGrounder) -> None:
    with pytest.raises(InputError):
        grounder.detect([_image(10, 10, 0)], [["dog"], ["cat"]], [0], 0.25, 0.25)


def test_random_config_is_the_real_architecture() -> None:
    config = gd.random_config()
    assert config.num_queries == 900 and config.d_model == 256 and config.decoder_layers == 6
    assert config.text_config.vocab_size == 30522 and config.text_config.hidden_size == 768
    assert config.backbone_config.embed_dim == 96 and list(config.backbone_config.depths) == [2, 2, 6, 2]
    with torch.device("meta"):  # no memory, no init cost: just count parameters
        model = gd.GroundingDinoForObjectDetection(config)
    assert 170e6 < sum(p.numel() for p in model.parameters()) < 175e6
    assert gd.random_config("IDEA-Research/grounding-dino-base").backbone_config.embed_dim == 128


# ----------------------------------------------------------------------------------------------- segmentation


def test_segment_masks_at_original_odd_size(segmenter: sam.Sam2Segmenter) -> None:
    assert isinstance(segmenter, Segmenter)
    image = _image(75, 53, 6)
    boxes = np.array([[2, 3, 40, 30], [10, 5, 74, 52], [0, 0, 75, 53]], dtype=np.float32)
    masks, scores = segmenter.segment(image, boxes)
    assert masks.shape == (3, 53, 75) and masks.dtype == bool
    assert scores.shape == (3,) and scores.dtype == np.float32 and np.all(np.isfinite(scores))
    assert segmenter.last_object_scores.shape == (3,)


def test_segment_no_boxes_skips_the_model(segmenter: sam.Sam2Segmenter) -> None:
    before = segmenter.stats.embed_calls
    masks, scores = segmenter.segment(_image(75, 53, 6), np.zeros((0, 4), np.float32))
    assert masks.shape == (0, 53, 75) and masks.dtype == bool and scores.shape == (0,)
    assert segmenter.stats.embed_calls == before


def test_segment_deterministic_and_separable(segmenter: sam.Sam2Segmenter) -> None:
    image = _image(75, 53, 7)
    boxes = np.array([[5, 5, 50, 40], [20, 10, 70, 50]], dtype=np.float32)
    m1, s1 = segmenter.segment(image, boxes)
    m2, s2 = segmenter.segment(image, boxes)
    embedding = segmenter.embed(image)
    m3, s3 = segmenter.segment_with_embedding(embedding, boxes)
    m4, s4 = segmenter.segment_with_embedding(embedding, boxes[1:])  # a cached embedding serves a later round
    assert np.array_equal(m1, m2) and np.array_equal(s1, s2)
    assert np.array_equal(m1, m3) and np.array_equal(s1, s3)
    assert np.array_equal(m1[1:], m4) and np.allclose(s1[1:], s4)
    other = sam.load_sam2(SAM_TINY, "cpu")
    with pytest.raises(ValueError):
        other.segment_with_embedding(embedding, boxes)


@pytest.mark.parametrize(
    ("model_id", "blocks", "millions"),
    [
        ("facebook/sam2.1-hiera-tiny", [1, 2, 7, 2], (30, 33)),
        ("facebook/sam2.1-hiera-small", [1, 2, 11, 2], (37, 40)),
        ("facebook/sam2.1-hiera-base-plus", [2, 3, 16, 3], (72, 75)),
        ("facebook/sam2.1-hiera-large", [2, 6, 36, 4], (215, 219)),
    ],
)
def test_sam2_random_config_sizes(model_id: str, blocks: list[int], millions: tuple[int, int]) -> None:
    """Image-model parameters: the published sam2.1 sizes (38.9 / 46 / 80.8 / 224.4 M) less the ~7.5 M of the video
    memory modules that Sam2Model does not have."""
    config = sam.random_config(model_id)
    assert config.vision_config.backbone_config.blocks_per_stage == blocks
    widths = config.vision_config.backbone_config.embed_dim_per_stage
    assert config.vision_config.backbone_channel_list == widths[::-1]
    assert config.vision_config.fpn_hidden_size == 256 and config.prompt_encoder_config.image_size == 1024
    with torch.device("meta"):
        model = sam.Sam2Model(config)
    assert millions[0] * 1e6 < sum(p.numel() for p in model.parameters()) < millions[1] * 1e6
    with pytest.raises(InputError):
        sam.random_config("facebook/sam-vit-huge")


# ----------------------------------------------------------------------------------------------- loading


def test_registry_builds_each_model_once() -> None:
    registry = ModelRegistry("cpu")
    assert registry.get(GD_TINY) is registry.get(GD_TINY)
    assert registry.get(SAM_TINY) is registry.get(SAM_TINY)


@pytest.mark.parametrize(
    ("role", "family", "model_id"),
    [
        ("grounder", "grounding_dino", "openavs-tests/no-such-grounding-dino"),
        ("segmenter", "sam2", "openavs-tests/no-such-sam2"),
    ],
)
def test_uncached_real_model_fails_fast(role: str, family: str, model_id: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=model_id):
        ModelRegistry("cpu").get(ModelSpec(role=role, family=family, model_id=model_id, face="real"))
    assert time.perf_counter() - start < 5


def test_grounding_dino_saved_tiny_loads_as_real(grounder: gd.GroundingDinoGrounder, tmp_path) -> None:
    grounder.model.save_pretrained(tmp_path)
    grounder.processor.save_pretrained(tmp_path)
    real = gd.load_grounding_dino(ModelSpec(role="grounder", family="grounding_dino", model_id=str(tmp_path)), "cpu")
    args = ([_image(75, 53, 8), _image(40, 60, 9)], [["dog", "cat"], ["piano"]], [0, 1], 0.25, 0.25)
    for a, b in zip(grounder.detect(*args), real.detect(*args), strict=True):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores) and a.phrases == b.phrases


def test_sam2_saved_tiny_loads_as_real(segmenter: sam.Sam2Segmenter, tmp_path) -> None:
    segmenter.model.save_pretrained(tmp_path)
    segmenter.processor.save_pretrained(tmp_path)
    real = sam.load_sam2(ModelSpec(role="segmenter", family="sam2", model_id=str(tmp_path)), "cpu")
    image, boxes = _image(75, 53, 10), np.array([[3, 4, 60, 50]], dtype=np.float32)
    (m1, s1), (m2, s2) = segmenter.segment(image, boxes), real.segment(image, boxes)
    assert np.array_equal(m1, m2) and np.array_equal(s1, s2)


@pytest.mark.parametrize("batch_size", [2, 8])
def test_ground_frames_hands_the_grounder_its_batch_size(batch_size: int, tmp_path) -> None:
    refs = []
    for k in range(5):
        path = tmp_path / f"frame{k}.png"
        _image(64, 48, k).save(path)
        refs.append(FrameRef(index=k, timestamp_s=float(k), path=str(path), width=64, height=48))
    grounder = BoxGrounder({"dog": ((0.1, 0.1, 0.5, 0.5), 0.9)})
    grounder.batch_size = batch_size
    found = ground_frames(grounder, refs, [["dog"]] * 5, 0.3, 0.25, max_side=64)
    # Frames go over in chunks of the grounder's own forward batch (8 on accelerators: one pass for 5 frames).
    assert [len(sizes) for sizes, _ in grounder.calls] == ([2, 2, 1] if batch_size == 2 else [5])
    assert [len(d) for d in found] == [1] * 5
    assert (gd.batch_size_for("cpu"), gd.batch_size_for("cuda")) == (gd.DEFAULT_BATCH_SIZE, gd.ACCELERATOR_BATCH_SIZE)
