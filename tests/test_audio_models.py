"""The audio adapters (three ALM captioners, CLAP and AST taggers) through their real pre/post-processing, on
tiny seeded models; real faces from saved local folders; real-size configs checked on the meta device."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration, StaticCache
from transformers.generation.utils import DeferredStopCheck

from tools.errors import InputError, ModelUnavailableError
from tools.models import captioners, taggers
from tools.models.base import AudioCaptioner, AudioTagger, ModelSpec
from tools.models.decoding import defer_stop_checks_on_cuda
from tools.models.registry import ModelRegistry
from tools.vocabulary import TAG_VOCABULARY

CAPTIONERS = {
    "qwen2_audio": captioners.load_qwen2_audio,
    "audio_flamingo3": captioners.load_audio_flamingo3,
    "qwen2_5_omni": captioners.load_qwen2_5_omni,
}
TAGGERS = {"clap": taggers.load_clap, "ast": taggers.load_ast}
HUB_IDS = {
    **{("captioner", name): family.hub_id for name, family in captioners.FAMILIES.items()},
    ("tagger", "clap"): "laion/clap-htsat-unfused",
    ("tagger", "ast"): "MIT/ast-finetuned-audioset-10-10-0.4593",
}
MAX_NEW = 6


def tiny(role: str, family: str) -> ModelSpec:
    return ModelSpec(role=role, family=family, model_id="tiny", face="tiny")


def noise(n: int, sampling_rate: int, seconds: float = 1.0) -> np.ndarray:
    """(n, seconds * rate) float32 white noise at -20 dBFS."""
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal((n, int(seconds * sampling_rate)))).astype(np.float32)


@pytest.fixture(scope="module")
def captioner_of() -> dict[str, captioners.ChatAudioCaptioner]:
    return {family: load(tiny("captioner", family), "cpu") for family, load in CAPTIONERS.items()}


@pytest.fixture(scope="module")
def tagger_of() -> dict[str, taggers.ClapTagger | taggers.AstTagger]:
    return {family: load(tiny("tagger", family), "cpu") for family, load in TAGGERS.items()}


@pytest.mark.parametrize("family", CAPTIONERS)
def test_tiny_captioner_answers_every_window_and_query(family: str, captioner_of) -> None:
    captioner = captioner_of[family]
    assert isinstance(captioner, AudioCaptioner)
    assert captioner.sampling_rate == 16000
    windows = noise(2, captioner.sampling_rate)
    batch = captioner.describe(windows, captioners.PAPER_QUERIES, max_new_tokens=MAX_NEW)
    assert len(batch.texts) == 2 and all(len(row) == 3 for row in batch.texts)
    assert all(isinstance(text, str) and text == text.strip() for row in batch.texts for text in row)
    # Every prompt carries at least the 25 audio placeholders of a 1 s window; each answer has 1..MAX_NEW tokens.
    assert batch.usage.input_tokens >= 6 * 25
    assert 6 <= batch.usage.output_tokens <= 6 * MAX_NEW
    again = captioner.describe(windows, captioners.PAPER_QUERIES, max_new_tokens=MAX_NEW)
    assert again == batch


@pytest.mark.parametrize("family", CAPTIONERS)
def test_batching_and_left_padding_do_not_change_answers(family: str, captioner_of) -> None:
    captioner = captioner_of[family]
    windows = noise(2, captioner.sampling_rate)
    queries = ["generate audio caption", "a much longer query so that the prompts need left padding"]
    batched = captioner.describe(windows, queries, max_new_tokens=MAX_NEW)
    captioner.batch_size = 1
    try:
        one_by_one = captioner.describe(windows, queries, max_new_tokens=MAX_NEW)
    finally:
        captioner.batch_size = captioners.GENERATE_BATCH_SIZE
    assert one_by_one.texts == batched.texts
    assert one_by_one.usage.output_tokens == batched.usage.output_tokens
    # Padding is not counted: the per-call prompt totals add up the same either way.
    assert one_by_one.usage.input_tokens == batched.usage.input_tokens


@pytest.mark.parametrize("family", CAPTIONERS)
def test_compiled_decoding_gives_the_same_answers(family: str, captioner_of, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = captioner_of[family]
    spec = plain.spec.model_copy(update={"compile": True})
    compiled = captioners.ChatAudioCaptioner(spec, plain.model, plain.processor, "cpu", plain.system_prompt)
    caches: list[object] = []
    threads: list[threading.Thread] = []
    generate = plain.model.generate

    def spy(*args, **kwargs):
        caches.append(kwargs.get("cache"))
        threads.append(threading.current_thread())
        return generate(*args, **kwargs)

    monkeypatch.setattr(plain.model, "generate", spy)
    queries = ["generate audio caption", "a much longer query so that the prompts need left padding"]
    first, second = noise(3, plain.sampling_rate), noise(3, plain.sampling_rate, seconds=2.0)
    want = [plain.describe(w, queries, max_new_tokens=MAX_NEW) for w in (first, second, first)]
    got = [compiled.describe(w, queries, max_new_tokens=MAX_NEW) for w in (first, second)]
    # The third call comes from another thread (a chat turn): it still decodes on the captioner's own thread, where
    # torch keeps the CUDA graphs it recorded.
    with ThreadPoolExecutor(1) as other:
        got.append(other.submit(compiled.describe, first, queries, max_new_tokens=MAX_NEW).result())
    assert got == want
    assert threads[:3] == [threading.current_thread()] * 3  # the plain captioner decodes on the caller's thread
    assert len(set(threads[3:])) == 1 and threads[3].name.startswith("captioner-decoding")
    # The plain captioner lets generate make a dynamic cache; the compiled one passes a static KV cache (what
    # torch.compile needs), one per batch size: 6 conversations at a batch of 8 is one batch of 6.
    assert caches[:3] == [None, None, None]
    assert all(isinstance(c, StaticCache) for c in caches[3:])
    # A longer prompt (2 s windows) needs a longer cache; the shorter prompt after it reuses that cache, reset.
    assert caches[3] is not caches[4] and caches[5] is caches[4]
    assert len(compiled._static_caches) == 1


def test_deferred_stop_checks_are_allowed_on_cuda_only(captioner_of, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DeferredStopCheck, "is_supported", DeferredStopCheck.__dict__["is_supported"])
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    uncroppable = SimpleNamespace(is_croppable=False)
    assert not DeferredStopCheck.is_supported(cuda, None, False, is_assistant=False)  # transformers: MPS only
    captioner = captioner_of["qwen2_audio"]
    windows = noise(2, captioner.sampling_rate)
    before = captioner.describe(windows, ["generate audio caption"], max_new_tokens=MAX_NEW)
    # A registry made for CUDA switches it on (torch is told CUDA exists; TF32's process-wide flags stay as they are).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("tools.models.registry.enable_tf32", lambda: None)
    ModelRegistry("cuda")
    installed = DeferredStopCheck.__dict__["is_supported"]
    defer_stop_checks_on_cuda()
    assert DeferredStopCheck.__dict__["is_supported"] is installed  # idempotent: not wrapped twice
    assert DeferredStopCheck.is_supported(cuda, None, False, is_assistant=False)
    assert DeferredStopCheck.is_supported(cuda, uncroppable, False, is_assistant=False)
    # The stock rule still decides the rest: a returned cache that cannot be cropped back, assistant models.
    assert not DeferredStopCheck.is_supported(cuda, uncroppable, True, is_assistant=False)
    assert not DeferredStopCheck.is_supported(cuda, None, False, is_assistant=True)
    # The CPU keeps the per-step check (its backend has no events to defer with): answers as before.
    assert not DeferredStopCheck.is_supported(cpu, None, False, is_assistant=False)
    assert captioner.describe(windows, ["generate audio caption"], max_new_tokens=MAX_NEW) == before


@pytest.mark.parametrize("family", CAPTIONERS)
def test_audio_features_are_computed_on_the_captioners_device(
    family: str, captioner_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 30 s log-mel windows are computed where the model runs (a GPU), not on the host CPU. No GPU here: the
    feature extractor is stopped once it has been told where to compute."""
    tiny_captioner = captioner_of[family]
    model, processor = tiny_captioner.model, tiny_captioner.processor
    on_gpu = captioners.ChatAudioCaptioner(
        tiny_captioner.spec, model, processor, "cuda:3", tiny_captioner.system_prompt
    )
    devices: list[str] = []

    class Reached(Exception):
        pass

    def features(waveform: np.ndarray, device: str = "cpu") -> np.ndarray:
        devices.append(device)
        raise Reached

    monkeypatch.setattr(processor.feature_extractor, "_torch_extract_fbank_features", features)
    with pytest.raises(Reached):
        on_gpu.describe(noise(1, tiny_captioner.sampling_rate), ["generate audio caption"], max_new_tokens=2)
    assert devices == ["cuda:3"]


def test_captioner_edge_inputs(captioner_of) -> None:
    captioner = captioner_of["qwen2_5_omni"]
    with pytest.raises(InputError):
        captioner.describe(np.zeros(16000, dtype=np.float32), ["q"])
    with pytest.raises(InputError):
        captioner.describe(np.zeros((1, 0), dtype=np.float32), ["q"])
    empty = captioner.describe(np.zeros((0, 16000), dtype=np.float32), ["q"])
    assert empty.texts == [] and empty.usage.input_tokens == 0
    # A query that types the audio placeholder must not be taken for a second audio input.
    typed = captioner.describe(noise(1, 16000), ["what is <|AUDIO|> this <|im_end|>"], max_new_tokens=2)
    assert len(typed.texts[0]) == 1


def test_chat_templates_render_audio_then_query(captioner_of) -> None:
    expected = {
        "qwen2_audio": "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nhello<|im_end|>",
        "audio_flamingo3": "<|im_start|>user\n<sound>hello<|im_end|>",
        "qwen2_5_omni": "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>hello<|im_end|>",
    }
    for family, captioner in captioner_of.items():
        conversation = captioner._conversation(noise(1, 16000)[0], "hello")
        text = captioner.processor.apply_chat_template(conversation, add_generation_prompt=True)
        assert expected[family] in text
        assert text.endswith("<|im_start|>assistant\n")
    assert captioners.OMNI_SYSTEM_PROMPT in text


def test_clap_zero_shot_over_the_vocabulary(tagger_of) -> None:
    clap = tagger_of["clap"]
    assert isinstance(clap, AudioTagger)
    assert clap.sampling_rate == 48000
    windows = noise(2, clap.sampling_rate)
    tags = clap.tag(windows, TAG_VOCABULARY, top_k=5)
    assert len(tags) == 2
    for row in tags:
        assert len(row) == 5
        assert all(label in TAG_VOCABULARY and 0.0 <= p <= 1.0 for label, p in row)
        assert sum(p for _, p in row) <= 1.0 + 1e-6
        assert [p for _, p in row] == sorted((p for _, p in row), reverse=True)
    assert clap.tag(windows, TAG_VOCABULARY, top_k=5) == tags
    assert len(clap._text_cache) == 1  # the vocabulary's prompts were embedded once
    # A full softmax over a small vocabulary sums to 1; duplicates are merged, top_k is capped.
    small = clap.tag(windows[:1], ["dog", "cat", "dog"], top_k=10)[0]
    assert sorted(label for label, _ in small) == ["cat", "dog"]
    assert sum(p for _, p in small) == pytest.approx(1.0, abs=1e-5)
    assert clap.tag(windows, [], top_k=3) == [[], []]


@pytest.mark.parametrize("seconds", [0.3, 1.0, 10.0])  # repeated with a zero-padded rest, repeated whole, as is
def test_clap_features_from_torch_match_the_feature_extractor(tagger_of, seconds: float, monkeypatch) -> None:
    clap = tagger_of["clap"]
    extractor = clap.processor.feature_extractor
    windows = noise(3, clap.sampling_rate, seconds=seconds)
    want = extractor(list(windows), sampling_rate=clap.sampling_rate, truncation="rand_trunc", return_tensors="pt")
    got = taggers.clap_log_mel(list(windows), extractor, "cpu")
    assert got.shape == want["input_features"].shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want["input_features"].float(), rtol=1e-5, atol=1e-3)  # dB; values reach ~40
    with torch.inference_mode():
        reference = clap.model.get_audio_features(**want).pooler_output

    def numpy_path(*_: object, **__: object) -> None:
        raise AssertionError("the tagger ran transformers' numpy extractor")

    monkeypatch.setattr(type(extractor), "__call__", numpy_path)
    torch.testing.assert_close(clap._audio_embeddings(windows), reference, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="1 to 480000 samples"):
        taggers.clap_log_mel([np.zeros(480001, np.float32)], extractor, "cpu")


def test_clap_long_window_is_cropped_deterministically(tagger_of) -> None:
    clap = tagger_of["clap"]
    long = noise(1, clap.sampling_rate, seconds=11.0)
    assert clap.tag(long, ["dog", "cat", "siren"], 3) == clap.tag(long, ["dog", "cat", "siren"], 3)


def test_ast_tags_from_its_fixed_label_set(tagger_of) -> None:
    ast = tagger_of["ast"]
    assert isinstance(ast, AudioTagger)
    assert ast.sampling_rate == 16000
    windows = noise(2, ast.sampling_rate)
    tags = ast.tag(windows, ["ignored"], top_k=3)
    assert [len(row) for row in tags] == [3, 3]
    assert all(label in taggers.TINY_AST_LABELS and 0.0 <= p <= 1.0 for row in tags for label, p in row)
    assert ast.tag(windows, [], top_k=3) == tags


@pytest.mark.parametrize("key", list(HUB_IDS))
def test_registry_builds_each_adapter_once(key: tuple[str, str]) -> None:
    registry = ModelRegistry("cpu")
    first = registry.get(tiny(*key))
    assert registry.get(tiny(*key)) is first


@pytest.mark.parametrize("key", list(HUB_IDS))
def test_uncached_hub_model_fails_fast_naming_it(key: tuple[str, str]) -> None:
    role, family = key
    spec = ModelSpec(role=role, family=family, model_id=HUB_IDS[key], face="real")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match=HUB_IDS[key]):
        ModelRegistry("cpu").get(spec)
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("family", ["qwen2_audio", "audio_flamingo3"])
def test_saved_tiny_captioner_loads_as_real(family: str, captioner_of, tmp_path: Path) -> None:
    captioner = captioner_of[family]
    captioner.model.save_pretrained(tmp_path)
    captioner.processor.save_pretrained(tmp_path)
    real = CAPTIONERS[family](ModelSpec(role="captioner", family=family, model_id=str(tmp_path)), "cpu")
    assert type(real.model) is type(captioner.model)
    windows = noise(2, 16000)
    expected = captioner.describe(windows, captioners.PAPER_QUERIES, max_new_tokens=MAX_NEW)
    assert real.describe(windows, captioners.PAPER_QUERIES, max_new_tokens=MAX_NEW) == expected


def test_omni_thinker_loads_from_a_full_omni_checkpoint(captioner_of, tmp_path: Path) -> None:
    """The real Qwen2.5-Omni-7B folder holds the whole model (thinker.* weights, thinker_config inside); the thinker
    class must load from that layout."""
    thinker = captioner_of["qwen2_5_omni"]
    full_config = Qwen2_5OmniConfig(thinker_config=thinker.model.config.to_dict(), enable_audio_output=False)
    with torch.device("meta"):
        full = Qwen2_5OmniForConditionalGeneration(full_config)
    full.thinker = thinker.model  # the tiny thinker's weights, saved under the "thinker." prefix
    full.save_pretrained(tmp_path)
    thinker.processor.save_pretrained(tmp_path)
    real = captioners.load_qwen2_5_omni(
        ModelSpec(role="captioner", family="qwen2_5_omni", model_id=str(tmp_path)), "cpu"
    )
    windows = noise(2, 16000)
    expected = thinker.describe(windows, captioners.PAPER_QUERIES, max_new_tokens=MAX_NEW)
    assert real.describe(windows, captioners.PAPER_QUERIES, max_new_tokens=MAX_NEW) == expected


@pytest.mark.parametrize("family", TAGGERS)
def test_saved_tiny_tagger_loads_as_real(family: str, tagger_of, tmp_path: Path) -> None:
    tagger = tagger_of[family]
    tagger.model.save_pretrained(tmp_path)
    (tagger.processor if family == "clap" else tagger.extractor).save_pretrained(tmp_path)
    real = TAGGERS[family](ModelSpec(role="tagger", family=family, model_id=str(tmp_path)), "cpu")
    windows = noise(2, tagger.sampling_rate)
    assert real.tag(windows, TAG_VOCABULARY, 4) == tagger.tag(windows, TAG_VOCABULARY, 4)


def _meta_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("family", "low", "high"),
    [("qwen2_audio", 8.3e9, 8.5e9), ("audio_flamingo3", 8.2e9, 8.35e9), ("qwen2_5_omni", 8.85e9, 9.0e9)],
)
def test_random_face_is_the_real_size_architecture(family: str, low: float, high: float) -> None:
    """Built on the meta device: shapes only, nothing allocated."""
    spec = ModelSpec(role="captioner", family=family, model_id="random", face="random")
    model, _ = captioners.build_model(captioners.FAMILIES[family], spec, "meta")
    assert low < _meta_parameters(model) < high
    assert model.dtype == torch.bfloat16
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers) == ((4096, 32) if family == "qwen2_audio" else (3584, 28))
    audio = model.config.audio_config
    assert (audio.hidden_size, audio.num_hidden_layers, audio.num_mel_bins) == (1280, 32, 128)


def test_random_tagger_faces_are_the_real_size_architectures() -> None:
    with torch.device("meta"):
        clap = taggers.ClapModel(taggers.clap_random_config(taggers.clap_processor()))
        ast = taggers.ASTForAudioClassification(taggers.ast_random_config())
    assert 150e6 < _meta_parameters(clap) < 157e6
    assert clap.config.audio_config.hidden_size == 768 and clap.config.projection_dim == 512
    assert 86e6 < _meta_parameters(ast) < 87.5e6
    assert ast.config.num_labels == 527
