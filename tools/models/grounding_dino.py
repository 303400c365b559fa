"""GroundingDINO (transformers) as the project's Grounder: text phrases -> boxes, one Detections per image.

Faces: `real` loads IDEA-Research/grounding-dino-tiny or -base (or a local folder) with its processor; `tiny` builds a
small seeded model and an in-memory WordPiece tokenizer (tests, offline smoke runs); `random` builds the real
grounding-dino-tiny (or -base, when the model id names it) architecture with random weights, for cost measurements.

Captions follow GroundingDINO's own format (PAPER.md §1): lower-case phrases joined by " . " with a final ".".
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    SwinConfig,
)
from transformers.image_transforms import center_to_corners_format
from transformers.models.grounding_dino.processing_grounding_dino import get_phrases_from_posmap

from tools.datamodel import Detections
from tools.errors import InputError
from tools.models.base import ModelSpec
from tools.models.registry import model_for_face
from tools.models.text_features import cache_text_features

DEFAULT_BATCH_SIZE = 4  # images per forward pass; bounds activation memory (800x1333 px inputs on real faces)
ACCELERATOR_BATCH_SIZE = 8  # on a GPU one pass covers an AVSBench clip's 5 frames: a pass is launch-bound there
TINY_SEED = 0

# GroundingDINO's text encoder splits the caption into phrases at these token ids of bert-base-uncased
# ([CLS], [SEP], ".", "?"; SPECIAL_TOKENS in transformers' modeling_grounding_dino.py). They are hard-coded in the
# model, so every in-memory vocabulary here puts those tokens at the same ids.
_BERT_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
_BERT_BASE_VOCAB_SIZE = 30522  # bert-base-uncased, the text encoder of both IDEA-Research checkpoints
_TINY_VOCAB_SIZE = 1100  # > 1029 so the separator ids above exist in the tiny embedding table

# Words the in-memory vocabulary knows; anything else becomes [UNK] (harmless for random weights).
# fmt: off
TINY_WORDS = (
    "a", "an", "the", "of", "and", "with", "person", "man", "woman", "boy", "girl", "baby", "child", "people",
    "crowd", "dog", "cat", "bird", "horse", "cow", "lion", "tiger", "car", "bus", "truck", "train", "helicopter",
    "airplane", "motorcycle", "ambulance", "siren", "engine", "guitar", "acoustic", "electric", "piano", "violin",
    "cello", "drum", "drums", "tabla", "ukulele", "glockenspiel", "flute", "trumpet", "saxophone", "harp",
    "guzheng", "accordion", "keyboard", "computer", "typing", "singing", "playing", "barking", "speaking", "speech",
    "laughing", "clock", "bell", "phone", "television", "radio", "water", "bottle", "chair", "table", "tree",
    "chainsaw", "lawn", "mower", "gun", "leopard", "squirrel", "donkey", "hen", "rooster", "cap", "race"
)
# fmt: on

_STOPWORDS = frozenset(["a", "an", "the", "of", "and", "with", "in", "on", "at", "to", "for", "some"])
_SPECIAL_TOKEN_RE = re.compile(r"\[(?:cls|sep|pad|mask)\]", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------------------
# Phrases, captions, and label -> phrase mapping (pure functions, unit-tested on their own)


def normalize_phrase(text: str) -> str:
    """Lower-case, dots and "?" removed (they are GroundingDINO's phrase separators), whitespace collapsed."""
    return " ".join(re.sub(r"[.?]", " ", text.lower()).split())


def normalize_phrases(phrases: Sequence[str]) -> list[str]:
    """Normalised phrases, empty ones dropped, duplicates removed keeping the first occurrence's position."""
    out: list[str] = []
    for phrase in phrases:
        norm = normalize_phrase(phrase)
        if norm and norm not in out:
            out.append(norm)
    return out


def build_caption(phrases: Sequence[str]) -> str:
    """GroundingDINO caption: normalised phrases joined by " . " with a final "." ("" when there are none)."""
    norm = normalize_phrases(phrases)
    return " . ".join(norm) + " ." if norm else ""


def _words(text: str) -> list[str]:
    return normalize_phrase(_SPECIAL_TOKEN_RE.sub(" ", text)).split()


def _strip_leading_stopwords(words: list[str]) -> tuple[str, ...]:
    i = 0
    while i < len(words) and words[i] in _STOPWORDS:
        i += 1
    return tuple(words[i:])


def _contains(outer: list[str], inner: list[str]) -> bool:
    """True when `inner` occurs as a contiguous run of whole words in `outer`."""
    n = len(inner)
    return n > 0 and any(outer[i : i + n] == inner for i in range(len(outer) - n + 1))


def map_label_to_phrase(label: str, phrases: Sequence[str]) -> str | None:
    """The ONE requested phrase a detected label text answers, or None when it shares no content word with any.

    GroundingDINO labels are the caption tokens above text_threshold, so they can be a phrase ("dog"), a phrase
    with punctuation or special tokens ("dog. [SEP]"), a part of one ("guitar" of "acoustic guitar") or span two
    ("guitar piano"). Order of preference: exact match after normalisation; exact match ignoring leading articles;
    then the most shared content words (articles etc. ignored), a whole-word substring relation, the larger
    Jaccard overlap, the phrase whose shared word comes first in the label, and finally the earlier phrase.
    """
    label_words = _words(label)
    content = {w for w in label_words if w not in _STOPWORDS}
    if not content:
        return None
    phrase_words = [_words(p) for p in phrases]
    for phrase, words in zip(phrases, phrase_words, strict=True):
        if words == label_words:
            return phrase
    stripped = _strip_leading_stopwords(label_words)
    for phrase, words in zip(phrases, phrase_words, strict=True):
        if _strip_leading_stopwords(words) == stripped:
            return phrase
    best, best_key = None, None
    for index, (phrase, words) in enumerate(zip(phrases, phrase_words, strict=True)):
        phrase_content = {w for w in words if w not in _STOPWORDS}
        shared = content & phrase_content
        if not shared:
            continue
        first = min(label_words.index(w) for w in shared)
        key = (
            len(shared),
            _contains(label_words, words) or _contains(words, label_words),
            len(shared) / len(content | phrase_content),
            -first,
            -index,
        )
        if best_key is None or key > best_key:
            best, best_key = phrase, key
    return best


# ---------------------------------------------------------------------------------------------------------------
# Faces


def tiny_vocab(words: Sequence[str] = TINY_WORDS) -> dict[str, int]:
    """WordPiece vocabulary laid out like bert-base-uncased where it matters: [PAD] 0, [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103, "." 1012, "?" 1029; filler "[unusedN]" entries in between; `words` from 1030 on."""
    by_id = {i: t for t, i in _BERT_IDS.items()}
    vocab = {by_id.get(i, f"[unused{i}]"): i for i in range(max(by_id) + 1)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    return vocab


def tiny_tokenizer(words: Sequence[str] = TINY_WORDS) -> BertTokenizer:
    """Lower-casing BERT WordPiece tokenizer built in memory (no files); unknown words become [UNK]."""
    return BertTokenizer(vocab=tiny_vocab(words), do_lower_case=True)


def tiny_config() -> GroundingDinoConfig:
    """A small GroundingDINO: 4-stage Swin (16 ch), 1-layer BERT (32 wide), d_model 32, 1 encoder and 2 decoder
    layers (the decoder needs >= 2), 20 queries, max_text_len kept at the real 256."""
    return GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7, out_indices=[2, 3, 4]
        ),
        text_config=BertConfig(
            vocab_size=_TINY_VOCAB_SIZE,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_n_points=2,
        decoder_n_points=2,
        num_queries=20,
    )


def random_config(model_id: str = "IDEA-Research/grounding-dino-tiny") -> GroundingDinoConfig:
    """The published architecture, written out so no file is needed.

    Sources: transformers' convert_grounding_dino_to_hf.py (Swin-T: embed 96, depths 2-2-6-2, heads 3-6-12-24,
    window 7, image 224; Swin-B: embed 128, depths 2-2-18-2, heads 4-8-16-32, window 12, image 384; out_indices
    2-3-4), the checkpoints' config.json (text_config = bert-base-uncased: vocab 30522, 768 wide, 12 layers, 12
    heads, FFN 3072; d_model 256, 6+6 layers, 8 heads, FFN 2048, 900 queries, 4 feature levels, 4 points,
    max_text_len 256, two-stage), which are also GroundingDinoConfig's defaults in transformers 5.24.
    """
    if "base" in model_id.lower():
        swin = {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12}
        image_size = 384
    else:
        swin = {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}
        image_size = 224
    return GroundingDinoConfig(
        backbone_config=SwinConfig(**swin, image_size=image_size, out_indices=[2, 3, 4]),
        text_config=BertConfig(
            vocab_size=_BERT_BASE_VOCAB_SIZE,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
            type_vocab_size=2,
        ),
        d_model=256,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        num_queries=900,
        num_feature_levels=4,
        encoder_n_points=4,
        decoder_n_points=4,
        max_text_len=256,
        two_stage=True,
    )


def _seeded_model(config: GroundingDinoConfig, seed: int = TINY_SEED) -> GroundingDinoForObjectDetection:
    # fork_rng keeps the caller's global RNG untouched while making the weights reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GroundingDinoForObjectDetection(config)


def build_tiny() -> tuple[GroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """Tiny face: seeded tiny_config() model; real processor with images resized to 96-128 px.

    96 px keeps the coarsest feature level (stride 64) at >= 2x2 for square images: at 1x1 the input projection's
    GroupNorm (32 groups over d_model 32) would see one value per group and raise.
    """
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=tiny_tokenizer(),
    )
    return _seeded_model(tiny_config()), processor


def build_random(model_id: str) -> tuple[GroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """Random face: real architecture and real image preprocessing (shortest edge 800, longest 1333, ImageNet
    mean/std = GroundingDinoImageProcessor defaults); small in-memory vocabulary, real vocab_size."""
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333}),
        tokenizer=tiny_tokenizer(),
    )
    return _seeded_model(random_config(model_id)), processor


# ---------------------------------------------------------------------------------------------------------------
# Adapter


@dataclass
class GroundingStats:
    """What one detect() call did. captions[i]: the caption(s) sent for image i (empty when it had no phrases;
    more than one only when its phrases overflow max_text_len tokens)."""

    images: int = 0
    forward_passes: int = 0
    boxes: int = 0
    dropped_labels: int = 0  # boxes whose label shared no content word with any requested phrase
    remapped_labels: int = 0  # boxes whose label was not exactly a requested phrase but mapped to one
    degenerate_boxes: int = 0  # boxes with zero width or height after clipping to the image
    cached_items: int = 0  # captions answered from `output_cache` (no forward pass)
    seconds: float = 0.0
    captions: list[list[str]] = field(default_factory=list)


@dataclass
class _WorkItem:
    image_index: int
    caption: str
    phrases: list[str]  # normalised phrases in this caption
    originals: list[str]  # the caller's spelling of each, returned in Detections.phrases
    canonical: list[str]  # each phrase as the tokenizer gives it back (unknown words -> [UNK])


@dataclass(frozen=True)
class RawOutput:
    """The model's answer for one (image, caption), before thresholds: logits (Q, L) over the caption's L real
    tokens, boxes (Q, 4) cxcywh in [0, 1], input_ids (L,), and `width`, the logits' full text width (max_text_len).

    Logits past the caption's tokens are -inf in the model's output (its contrastive head masks them), so keeping
    the first L columns and padding back with -inf reproduces the post-processing input exactly, at ~L/256 of the
    memory (900 x 256 float32 = 0.9 MB per item untrimmed).
    """

    logits: torch.Tensor
    boxes: torch.Tensor
    input_ids: torch.Tensor
    width: int


class GroundingDinoGrounder:
    """Grounder over a GroundingDinoForObjectDetection and its processor on one device."""

    def __init__(
        self,
        spec: ModelSpec,
        model: GroundingDinoForObjectDetection,
        processor: GroundingDinoProcessor,
        device: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.spec = spec
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.max_text_len = int(model.config.max_text_len)
        self.last_stats = GroundingStats()
        self.total_forward_passes = 0
        # Optional LRU (tools.embedding_cache.LRUCache) of RawOutput per (image pixels, caption, input size):
        # refine rounds that change only thresholds then cost post-processing only. None: no caching.
        self.output_cache = None
        # BERT runs once per caption, not once per image and pass (tools/models/text_features.py).
        self.text_features = cache_text_features(self.model.model.text_backbone)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def detect(
        self,
        images: Sequence[Image.Image],
        phrases: Sequence[Sequence[str]],
        frame_indices: Sequence[int],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]:
        """One Detections per image: boxes float32 (N, 4) xyxy in that image's pixels (clipped to it), scores
        (N,) > box_threshold sorted high to low, each box labelled with one of that image's requested phrases
        (first spelling among duplicates). Images with no phrases are not run. Stats go to `last_stats`."""
        if not (len(images) == len(phrases) == len(frame_indices)):
            raise InputError(
                f"detect: {len(images)} images, {len(phrases)} phrase lists, {len(frame_indices)} frame indices"
            )
        start = time.perf_counter()
        stats = GroundingStats(images=len(images), captions=[[] for _ in images])
        items: list[_WorkItem] = []
        for index, image_phrases in enumerate(phrases):
            for item in self._plan(index, image_phrases):
                stats.captions[index].append(item.caption)
                items.append(item)

        found: list[list[tuple[np.ndarray, float, str]]] = [[] for _ in images]
        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        raw = self._raw_outputs(rgb, items, stats)
        for item, output in zip(items, raw, strict=True):
            width, height = rgb[item.image_index].size
            boxes, scores, labels = self._post_process(output, (height, width), box_threshold, text_threshold)
            clipped = np.clip(boxes.numpy(), 0, [width, height, width, height])
            degenerate = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
            phrases_of = {label: map_label_to_phrase(label, item.canonical) for label in set(labels)}
            for box, score, label, flat in zip(clipped, scores.tolist(), labels, degenerate.tolist(), strict=True):
                phrase = self._label_to_phrase(label, phrases_of[label], item, stats)
                if phrase is None:
                    continue
                if flat:
                    stats.degenerate_boxes += 1
                    continue
                found[item.image_index].append((box, float(score), phrase))

        out = []
        for index, hits in enumerate(found):
            hits.sort(key=lambda h: -h[1])  # stable: ties keep query order
            stats.boxes += len(hits)
            if not hits:
                out.append(Detections.empty(int(frame_indices[index])))
                continue
            out.append(
                Detections(
                    int(frame_indices[index]),
                    np.stack([h[0] for h in hits]),
                    np.array([h[1] for h in hits], dtype=np.float32),
                    tuple(h[2] for h in hits),
                )
            )
        self.total_forward_passes += stats.forward_passes
        stats.seconds = time.perf_counter() - start
        self.last_stats = stats
        return out

    def _plan(self, image_index: int, image_phrases: Sequence[str]) -> list[_WorkItem]:
        """Captions for one image: its phrases in order, split so that each caption fits max_text_len tokens."""
        originals: dict[str, str] = {}
        for phrase in image_phrases:
            originals.setdefault(normalize_phrase(phrase), phrase)
        originals.pop("", None)
        tokenizer = self.processor.tokenizer
        items: list[_WorkItem] = []
        current: list[str] = []
        used = 2  # [CLS] and [SEP]
        for phrase in originals:
            cost = len(tokenizer(phrase, add_special_tokens=False)["input_ids"]) + 1  # + its "."
            if current and used + cost > self.max_text_len:
                items.append(self._item(image_index, current, originals))
                current, used = [], 2
            current.append(phrase)
            used += cost
        if current:
            items.append(self._item(image_index, current, originals))
        return items

    def _item(self, image_index: int, phrases: list[str], originals: dict[str, str]) -> _WorkItem:
        tokenizer = self.processor.tokenizer
        canonical = [
            normalize_phrase(tokenizer.decode(tokenizer(p, add_special_tokens=False)["input_ids"])) for p in phrases
        ]
        return _WorkItem(image_index, build_caption(phrases), phrases, [originals[p] for p in phrases], canonical)

    def _raw_outputs(self, rgb: list[Image.Image], items: list[_WorkItem], stats: GroundingStats) -> list[RawOutput]:
        """One RawOutput per work item: from `output_cache` where present, the rest forwarded in batches of
        `batch_size` (in item order, so without a cache the batches are exactly those of an uncached run)."""
        cache = self.output_cache
        keys: list[tuple | None] = [None] * len(items)
        outputs: list[RawOutput | None] = [None] * len(items)
        if cache is not None:
            # Local import: tools.embedding_cache imports tools.frames, which this model module has no need of.
            from tools.embedding_cache import image_digest

            digests: dict[int, str] = {}
            size = tuple(sorted(dict(self.processor.image_processor.size).items()))
            for pos, item in enumerate(items):
                if item.image_index not in digests:
                    digests[item.image_index] = image_digest(rgb[item.image_index])
                keys[pos] = (digests[item.image_index], item.caption, size, str(self.dtype))
                outputs[pos] = cache.get(keys[pos])
            stats.cached_items = sum(o is not None for o in outputs)
        todo = [pos for pos, out in enumerate(outputs) if out is None]
        for lo in range(0, len(todo), self.batch_size):
            chunk = todo[lo : lo + self.batch_size]
            batch = [items[pos] for pos in chunk]
            fresh = self._forward([rgb[it.image_index] for it in batch], batch)
            stats.forward_passes += 1
            for pos, output in zip(chunk, fresh, strict=True):
                outputs[pos] = output
                if cache is not None:
                    cache.put(keys[pos], output)
        return outputs  # type: ignore[return-value]

    def _post_process(
        self, output: RawOutput, size_hw: tuple[int, int], box_threshold: float, text_threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """The processor's post_process_grounded_object_detection for one item: boxes float32 (n, 4) xyxy px of
        `size_hw`, scores (n,) and text labels, in query order.

        Equal to the processor's answer (tested), but each distinct set of caption tokens above `text_threshold` is
        decoded once rather than once per box: a caption has few such sets, and untrained weights pass hundreds of
        boxes."""
        height, width = size_hw
        probs = torch.sigmoid(output.logits)  # (Q, L): the padding columns the processor adds score 0
        scores = probs.max(dim=-1).values
        keep = scores > box_threshold
        scale = torch.tensor([[width, height, width, height]], dtype=torch.float32)
        boxes = center_to_corners_format(output.boxes[keep]) * scale
        posmaps = torch.zeros((int(keep.sum()), output.width), dtype=torch.bool)
        posmaps[:, : probs.shape[1]] = probs[keep] > text_threshold
        distinct, which = torch.unique(posmaps, dim=0, return_inverse=True)
        texts = self.processor.batch_decode(get_phrases_from_posmap(distinct, output.input_ids))
        return boxes, scores[keep], [texts[k] for k in which.tolist()]

    def _forward(self, images: list[Image.Image], batch: list[_WorkItem]) -> list[RawOutput]:
        """One forward pass over (images[i], batch[i].caption) pairs; the raw output of each, on CPU in float32."""
        inputs = self.processor(
            images=images,
            text=[it.caption for it in batch],
            return_tensors="pt",
            padding="longest",
            truncation=True,
            max_length=self.max_text_len,
            device=self.device,  # resize and normalise where the model runs: on a GPU 60 -> 10 ms for 5 frames
        )
        input_ids = inputs["input_ids"]
        lengths = inputs["attention_mask"].sum(dim=1).tolist()  # right padding: real tokens come first
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        # Post-process on CPU in float32 whatever the model's dtype; the processor reads only these two fields.
        logits, boxes = outputs.logits.float().cpu(), outputs.pred_boxes.float().cpu()
        # clone(): a row slice would keep the whole batch's tensor alive inside the cache.
        return [
            RawOutput(logits[i, :, :n].clone(), boxes[i].clone(), input_ids[i, :n].clone(), logits.shape[-1])
            for i, n in enumerate(lengths)
        ]

    @staticmethod
    def _label_to_phrase(label: str, mapped: str | None, item: _WorkItem, stats: GroundingStats) -> str | None:
        """The caller's spelling of `mapped` (map_label_to_phrase of `label`), counting dropped and remapped labels."""
        if mapped is None:
            stats.dropped_labels += 1
            return None
        if _words(label) != _words(mapped):
            stats.remapped_labels += 1
        return item.originals[item.canonical.index(mapped)]


def load_grounding_dino(spec: ModelSpec, device: str) -> GroundingDinoGrounder:
    """Build the Grounder for `spec` on `device`. GroundingDINO runs in float32 unless spec.dtype names another
    dtype (its deformable attention and box regression are sensitive to half precision)."""
    pretrained = (GroundingDinoForObjectDetection.from_pretrained, GroundingDinoProcessor.from_pretrained)
    model, processor, dtype = model_for_face(spec, device, pretrained, build_tiny, lambda: build_random(spec.model_id))
    model = model.to(device=device, dtype=dtype)
    return GroundingDinoGrounder(spec, model, processor, device, batch_size_for(device))


def batch_size_for(device: str) -> int:
    """Images per GroundingDINO forward pass on `device` (cpu, cuda, cuda:N, mps)."""
    return DEFAULT_BATCH_SIZE if device == "cpu" else ACCELERATOR_BATCH_SIZE
