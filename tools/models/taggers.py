"""Audio taggers: CLAP zero-shot over a vocabulary, and AST's fixed AudioSet classifier.

Faces as for every adapter (see ModelSpec): `real` loads a hub id or local folder, `tiny` builds a seeded small
model of the same architecture with an in-memory processor, `random` the real-size architecture with random weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    AutoFeatureExtractor,
    AutoProcessor,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapProcessor,
)

from tools.errors import InputError
from tools.models.base import ModelSpec
from tools.models.registry import load_pretrained, torch_dtype
from tools.models.tiny_text import roberta_byte_tokenizer, seeded_model

CLAP_PROMPT = "the sound of {label}"  # the prompt form of CLAP's zero-shot classification
AUDIO_BATCH_SIZE = 16  # windows per forward pass
TEXT_BATCH_SIZE = 64  # prompts per text-encoder pass
TEXT_CACHE_SIZE = 8  # vocabularies whose text embeddings are kept

# A few AudioSet display names for the tiny AST (the real model reads all 527 from its config.id2label).
TINY_AST_LABELS: tuple[str, ...] = ("Speech", "Music", "Dog", "Cat", "Guitar", "Piano", "Siren", "Engine")


def _as_windows(windows: np.ndarray) -> np.ndarray:
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 2 or (windows.shape[0] and not windows.shape[1]):
        raise InputError(f"audio windows must be a non-empty 2-D (n, samples) array, got shape {windows.shape}")
    return windows


def _top_k(probs: torch.Tensor, labels: Sequence[str], top_k: int) -> list[list[tuple[str, float]]]:
    """probs: (n, L) -> per row the min(top_k, L) best (label, probability) pairs, best first."""
    k = max(0, min(top_k, len(labels)))
    values, indices = probs.float().topk(k, dim=-1)
    return [
        [(labels[i], float(v)) for v, i in zip(row_v.tolist(), row_i.tolist(), strict=True)]
        for row_v, row_i in zip(values, indices, strict=True)
    ]


def clap_log_mel(windows: Sequence[np.ndarray], extractor: ClapFeatureExtractor, device: str) -> torch.Tensor:
    """CLAP's unfused input, float32 (b, 1, frames, mel bins) on `device`, from waveforms of at most
    extractor.nb_max_samples samples (10 s at 48 kHz): each repeated whole and zero-padded to that length
    ("repeatpad"), then its log-mel spectrogram in dB (periodic Hann window, centred reflect-padded frames, power 2,
    Slaney mel filters, floor 1e-10), as extractor(..., truncation="rand_trunc") computes it with numpy.

    The same features with torch.stft on the model's device: five 1 s windows take ~70 ms instead of ~110 ms on
    2 CPU cores, and move off the CPU where the model runs on a GPU. They agree with transformers' to ~1e-6 relative.
    """
    length = int(extractor.nb_max_samples)
    rows = []
    for window in windows:
        wave = torch.as_tensor(np.asarray(window, dtype=np.float32))
        if not 0 < len(wave) <= length:
            raise InputError(f"a CLAP window must hold 1 to {length} samples, got {len(wave)}")
        wave = wave.repeat(length // len(wave))
        rows.append(torch.nn.functional.pad(wave, (0, length - len(wave))))
    waves = torch.stack(rows).to(device)
    n_fft = int(extractor.fft_window_size)
    window = torch.hann_window(n_fft, periodic=True, device=device)
    spectrum = torch.stft(
        waves, n_fft, int(extractor.hop_length), window=window, center=True, pad_mode="reflect", return_complex=True
    )
    filters = torch.as_tensor(extractor.mel_filters_slaney, dtype=torch.float32, device=device)  # (bins, mels)
    mel = torch.einsum("bft,fm->btm", spectrum.abs().square(), filters)
    return (10.0 * torch.log10(mel.clamp(min=1e-10)))[:, None]


class ClapTagger:
    """Zero-shot tagging with CLAP: softmax over the vocabulary of audio-text similarity logits.

    Each label is prompted as CLAP_PROMPT; prompt embeddings are cached per vocabulary (as a tuple).
    """

    def __init__(self, spec: ModelSpec, model: ClapModel, processor: ClapProcessor, device: str) -> None:
        self.spec = spec
        self.model = model.eval()
        self.processor = processor
        self.device = device
        extractor = processor.feature_extractor
        self.sampling_rate: int = int(extractor.sampling_rate)
        self._max_samples = int(extractor.nb_max_samples)
        # The unfused checkpoints take one 10 s crop ("rand_trunc"); fused ones take a global view plus 3 crops.
        self._truncation = "fusion" if model.config.audio_config.enable_fusion else "rand_trunc"
        self._text_cache: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()

    def tag(self, windows: np.ndarray, vocabulary: Sequence[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """windows: float32 (n, samples) at `sampling_rate` (48 kHz for laion/clap-htsat-unfused); returns per window
        the top_k (label, probability) pairs, probabilities a softmax over the (deduplicated) vocabulary."""
        windows = _as_windows(windows)
        labels = tuple(dict.fromkeys(vocabulary))
        if not labels:
            return [[] for _ in range(windows.shape[0])]
        text = self._text_embeddings(labels)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, windows.shape[0], AUDIO_BATCH_SIZE):
            audio = self._audio_embeddings(windows[start : start + AUDIO_BATCH_SIZE])
            logits = audio @ text.T * self.model.logit_scale_a.exp()
            results.extend(_top_k(logits.softmax(dim=-1), labels, top_k))
        return results

    def _center_crop(self, window: np.ndarray) -> np.ndarray:
        # rand_trunc crops a window longer than 10 s at a random offset; a fixed centre crop keeps tags repeatable.
        extra = window.shape[0] - self._max_samples
        return window[extra // 2 : extra // 2 + self._max_samples] if extra > 0 else window

    @torch.inference_mode()
    def _audio_embeddings(self, windows: np.ndarray) -> torch.Tensor:
        """(b, samples) -> unit-norm audio embeddings (b, projection_dim)."""
        crops = [self._center_crop(w) for w in windows]
        extractor = self.processor.feature_extractor
        if self._truncation == "rand_trunc" and extractor.padding == "repeatpad":
            mel = clap_log_mel(crops, extractor, self.device)
            features = {"input_features": mel, "is_longer": torch.zeros((len(crops), 1), dtype=torch.bool)}
        else:
            features = extractor(
                crops, sampling_rate=self.sampling_rate, truncation=self._truncation, return_tensors="pt"
            )
        features = {
            k: v.to(self.device, dtype=self.model.dtype if v.is_floating_point() else v.dtype)
            for k, v in features.items()
        }
        return self.model.get_audio_features(**features).pooler_output.float()

    @torch.inference_mode()
    def _text_embeddings(self, labels: tuple[str, ...]) -> torch.Tensor:
        """Unit-norm prompt embeddings (len(labels), projection_dim), cached per vocabulary."""
        if labels in self._text_cache:
            self._text_cache.move_to_end(labels)
            return self._text_cache[labels]
        prompts = [CLAP_PROMPT.format(label=label) for label in labels]
        # RoBERTa's positions start after the pad id, so the longest prompt is max_position_embeddings - 2 tokens.
        max_length = self.model.config.text_config.max_position_embeddings - 2
        chunks = []
        for start in range(0, len(prompts), TEXT_BATCH_SIZE):
            tokens = self.processor.tokenizer(
                prompts[start : start + TEXT_BATCH_SIZE],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(self.device)
            chunks.append(self.model.get_text_features(**tokens).pooler_output.float())
        embeddings = torch.cat(chunks)
        self._text_cache[labels] = embeddings
        if len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return embeddings


class AstTagger:
    """AudioSet tagging with the Audio Spectrogram Transformer: independent sigmoid per label (multi-label)."""

    def __init__(self, spec: ModelSpec, model: ASTForAudioClassification, extractor: ASTFeatureExtractor, device: str):
        self.spec = spec
        self.model = model.eval()
        self.extractor = extractor
        self.device = device
        self.sampling_rate: int = int(extractor.sampling_rate)
        id2label = model.config.id2label
        self.labels: tuple[str, ...] = tuple(id2label[i] for i in range(len(id2label)))

    @torch.inference_mode()
    def tag(self, windows: np.ndarray, vocabulary: Sequence[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """windows: float32 (n, samples) at 16 kHz; returns per window the top_k AudioSet labels with their sigmoid
        probabilities. `vocabulary` is ignored: the label set is fixed. Windows past 10.24 s are cut by the
        feature extractor (1024 frames of 10 ms)."""
        windows = _as_windows(windows)
        results: list[list[tuple[str, float]]] = []
        for start in range(0, windows.shape[0], AUDIO_BATCH_SIZE):
            batch = list(windows[start : start + AUDIO_BATCH_SIZE])
            features = self.extractor(batch, sampling_rate=self.sampling_rate, return_tensors="pt")
            features = features.to(self.device, dtype=self.model.dtype)
            logits = self.model(**features).logits
            results.extend(_top_k(logits.sigmoid(), self.labels, top_k))
        return results


# --- CLAP faces --------------------------------------------------------------------------------------------------


def clap_processor() -> ClapProcessor:
    """laion/clap-htsat-unfused's preprocessing, in memory: 48 kHz, 64 mel bins, 10 ms hop, 10 s crops, repeat-pad;
    a byte-level RoBERTa tokenizer stands in for the 50265-token one (ids differ, sequences are longer)."""
    return ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=roberta_byte_tokenizer())


def clap_tiny_config(processor: ClapProcessor) -> ClapConfig:
    """A 2-stage, 16-wide HTSAT audio encoder and a 1-layer, 32-wide RoBERTa, projected to 16 dimensions.

    The spectrogram geometry (64 mel bins, spec_size 256, 4x4 patches, window 8) is the real one: HTSAT folds the
    1001 x 64 mel image into a 256 x 256 square, so these cannot shrink independently.
    """
    tok = processor.tokenizer
    audio = {
        "patch_embeds_hidden_size": 16,
        "depths": [1, 1],
        "num_attention_heads": [2, 2],
        "num_hidden_layers": 2,
        "hidden_size": 32,  # patch_embeds_hidden_size * 2 ** (stages - 1)
        "projection_dim": 16,
    }
    text = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 130,
        "projection_dim": 16,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


def clap_random_config(processor: ClapProcessor) -> ClapConfig:
    """laion/clap-htsat-unfused's architecture (ClapConfig's defaults are that checkpoint): HTSAT-tiny audio encoder
    (Swin stages of depth 2/2/6/2, heads 4/8/16/32, width 96 -> 768, no fusion), RoBERTa-base text encoder
    (12 layers, 768 wide, 12 heads, FFN 3072, 514 positions), both projected to 512; about 153 M parameters.
    The text vocabulary keeps the real 50265 rows; the in-memory tokenizer uses the first few hundred."""
    tok = processor.tokenizer
    text = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    return ClapConfig(text_config=text, audio_config={"enable_fusion": False}, projection_dim=512)


def load_clap(spec: ModelSpec, device: str) -> ClapTagger:
    """CLAP zero-shot tagger (e.g. laion/clap-htsat-unfused) or a face of its architecture."""
    if spec.face == "real":
        dtype = torch_dtype(spec.dtype, device)
        model = load_pretrained(ClapModel.from_pretrained, spec, dtype=dtype)
        processor = load_pretrained(AutoProcessor.from_pretrained, spec)
        return ClapTagger(spec, model.to(device), processor, device)
    processor = clap_processor()
    config = clap_tiny_config(processor) if spec.face == "tiny" else clap_random_config(processor)
    return ClapTagger(spec, _build(ClapModel, config, spec, device), processor, device)


# --- AST faces ---------------------------------------------------------------------------------------------------


def ast_extractor() -> ASTFeatureExtractor:
    """MIT/ast-finetuned-audioset-10-10-0.4593's preprocessing (the class defaults): 16 kHz Kaldi fbank, 128 mel
    bins, 1024 frames (10.24 s), normalised with AudioSet's mean -4.27 and std 4.57."""
    return ASTFeatureExtractor()


def ast_tiny_config() -> ASTConfig:
    """A 1-layer, 32-wide AST over the real 128 x 1024 spectrogram patching (16 x 16 patches, stride 10)."""
    labels = dict(enumerate(TINY_AST_LABELS))
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    return ASTConfig(**small, id2label=labels, label2id={v: k for k, v in labels.items()})


def ast_random_config() -> ASTConfig:
    """MIT/ast-finetuned-audioset-10-10-0.4593's architecture (ASTConfig's defaults are that checkpoint): ViT-Base
    (12 layers, 768 wide, 12 heads, FFN 3072) over 16 x 16 patches at stride 10 of 128 x 1024 fbanks, 527 AudioSet
    outputs; about 87 M parameters. Labels are LABEL_0..LABEL_526 (the names live in the checkpoint's config)."""
    return ASTConfig(num_labels=527)


def load_ast(spec: ModelSpec, device: str) -> AstTagger:
    """AST AudioSet tagger (e.g. MIT/ast-finetuned-audioset-10-10-0.4593) or a face of its architecture."""
    if spec.face == "real":
        dtype = torch_dtype(spec.dtype, device)
        model = load_pretrained(ASTForAudioClassification.from_pretrained, spec, dtype=dtype)
        extractor = load_pretrained(AutoFeatureExtractor.from_pretrained, spec)
        return AstTagger(spec, model.to(device), extractor, device)
    config = ast_tiny_config() if spec.face == "tiny" else ast_random_config()
    return AstTagger(spec, _build(ASTForAudioClassification, config, spec, device), ast_extractor(), device)


def _build(model_class: Any, config: Any, spec: ModelSpec, device: str) -> Any:
    """tiny: seeded float32 weights; random: unseeded weights in the spec's dtype (float32 on CPU by default)."""
    if spec.face == "tiny":
        return seeded_model(model_class, config).to(device)
    with torch.device(device):
        return model_class._from_config(config, dtype=torch_dtype(spec.dtype, device))
