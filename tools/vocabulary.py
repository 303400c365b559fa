"""Sound-source vocabularies: the 70 AVSBench-semantic classes and groundable phrases for them.

The class names are those of AVSBench-semantic's label2idx.json (alphabetical, background excluded). Several are
dataset codes rather than words a detector knows ("utv", "sorna", "frying-food"); GROUNDABLE_PHRASE maps each class
to the noun phrase GroundingDINO is asked for.
"""

from __future__ import annotations

AVSS_CLASSES: tuple[str, ...] = (
    "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy", "bus", "car", "cat", "cello",
    "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck", "elephant", "emergency-car", "erhu", "flute",
    "frying-food", "girl", "goose", "guitar", "gun", "guzheng", "hair-dryer", "handpan", "harmonica", "harp",
    "helicopter", "hen", "horse", "keyboard", "leopard", "lion", "man", "marimba", "missile-rocket", "motorcycle",
    "mower", "parrot", "piano", "pig", "pipa", "saw", "saxophone", "sheep", "sitar", "sorna", "squirrel", "tabla",
    "tank", "tiger", "tractor", "train", "trombone", "truck", "trumpet", "tuba", "ukulele", "utv",
    "vacuum-cleaner", "violin", "wolf", "woman",
)  # fmt: skip

GROUNDABLE_PHRASE: dict[str, str] = {
    **{name: name.replace("-", " ") for name in AVSS_CLASSES},
    "clipper": "hair clipper",
    "emergency-car": "ambulance",
    "frying-food": "frying pan",
    "missile-rocket": "rocket",
    "mower": "lawn mower",
    "sorna": "suona horn",
    "utv": "utility vehicle",
}

# Sources heard often in real clips that AVSBench does not name as classes.
COMMON_SOURCES: tuple[str, ...] = (
    "person", "singer", "drummer", "speaker", "television", "radio", "phone", "engine", "fan", "water",
    "waterfall", "fire", "crowd", "chainsaw", "siren", "violinist", "guitarist", "pianist",
)  # fmt: skip

TAG_VOCABULARY: tuple[str, ...] = tuple(
    dict.fromkeys([GROUNDABLE_PHRASE[c] for c in AVSS_CLASSES] + list(COMMON_SOURCES))
)
"""The default zero-shot tagging vocabulary: groundable phrases of the 70 classes plus COMMON_SOURCES."""
