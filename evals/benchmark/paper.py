"""The published numbers (PAPER.md §2: mIoU, F-score on the AVSBench protocol) and which row a run compares to."""

from __future__ import annotations

from dataclasses import dataclass

ORACLE_ROW = "OpenAVS* (clip class names as prompts, no ALM/LLM)"
AUDIO_SAM2_ROW = "OpenAVS (GDINO + SAM2)"
AUDIO_SAM_ROW = "OpenAVS (GDINO + SAM)"

# method -> subset -> (mIoU, F-score); a subset a method did not report is absent.
PAPER_TABLE: dict[str, dict[str, tuple[float, float]]] = {
    "AT-GDINO-SAM (training-free)": {"s4": (0.380, 0.460), "ms3": (0.250, 0.290)},
    "Box-Prompt (SAM4AVS, training-free)": {"s4": (0.512, 0.615), "ms3": (0.418, 0.478)},
    "OWOD-BIND (training-free)": {"s4": (0.580, 0.670), "ms3": (0.340, 0.440)},
    AUDIO_SAM_ROW: {"s4": (0.582, 0.689), "ms3": (0.483, 0.565), "v3": (0.663, 0.736)},
    AUDIO_SAM2_ROW: {"s4": (0.638, 0.728), "ms3": (0.512, 0.587), "v3": (0.675, 0.741)},
    ORACLE_ROW: {"s4": (0.648, 0.748), "ms3": (0.536, 0.600), "v3": (0.656, 0.726)},
    "OpenAVS-ST (SAM2)": {"s4": (0.703, 0.823), "ms3": (0.561, 0.663)},
    "MoCA (unsupervised, trained)": {"s4": (0.680, 0.790), "ms3": (0.570, 0.620)},
    "GAVS (trained)": {"v3": (0.547, 0.722)},
    "AVSegFormer PVTv2 (supervised)": {"s4": (0.831, 0.905), "ms3": (0.613, 0.730)},
}


@dataclass(frozen=True)
class PaperRow:
    method: str
    miou: float
    fscore: float
    matches: bool  # the row of the same setting as the run


def matching_method(prompts: str | None, segmenter_family: str | None) -> str | None:
    """The paper row of the run's setting: oracle prompts -> OpenAVS*, audio prompts -> OpenAVS with the run's
    segmenter (SAM2; a SAM segmenter would compare to the GDINO + SAM row). None when unknown (scoring existing
    predictions) or for a segmenter the paper lacks."""
    if prompts is None:
        return None
    if prompts == "oracle":
        return ORACLE_ROW
    return {"sam2": AUDIO_SAM2_ROW, "sam": AUDIO_SAM_ROW}.get(segmenter_family or "")


def paper_rows(subset: str, prompts: str | None, segmenter_family: str | None) -> list[PaperRow]:
    """Every published row for `subset` (AVSS has none: the paper reports S4, MS3 and V3), the match flagged."""
    match = matching_method(prompts, segmenter_family)
    return [
        PaperRow(method, *scores[subset], matches=method == match)
        for method, scores in PAPER_TABLE.items()
        if subset in scores
    ]
