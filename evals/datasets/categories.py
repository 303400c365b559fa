"""Class vocabularies of the subsets, turned into nouns a text-prompted detector can ground (oracle prompts)."""

from __future__ import annotations

# The 23 S4 categories (folder names under s4_data/*/<split>/) -> the object that makes the sound. The category
# names describe events ("lawn_mowing"); a grounding model wants the object ("lawn mower"). Species / instrument
# kept specific where the word is common enough to ground; "mynah bird" reduced to "bird" because the
# species name rarely helps a detector.
S4_CATEGORY_NOUN: dict[str, str] = {
    "baby_laughter": "baby",
    "female_singing": "woman",
    "male_speech": "man",
    "dog_barking": "dog",
    "cat_meowing": "cat",
    "lions_roaring": "lion",
    "horse_clip-clop": "horse",
    "coyote_howling": "coyote",
    "mynah_bird_singing": "bird",
    "playing_acoustic_guitar": "guitar",
    "playing_tabla": "tabla",
    "playing_violin": "violin",
    "playing_piano": "piano",
    "playing_ukulele": "ukulele",
    "playing_glockenspiel": "glockenspiel",
    "helicopter": "helicopter",
    "race_car": "car",
    "driving_buses": "bus",
    "ambulance_siren": "ambulance",
    "typing_on_computer_keyboard": "keyboard",
    "chainsawing_trees": "chainsaw",
    "cap_gun_shooting": "gun",
    "lawn_mowing": "lawn mower",
}

S4_CATEGORIES: tuple[str, ...] = tuple(S4_CATEGORY_NOUN)

# The same 23 videos appear in AVSBench-semantic as label "v1s"; its metadata.csv names them with these AVSS
# classes (read off the real metadata.csv: note glockenspiel -> marimba, coyote -> wolf, ambulance -> emergency-car).
S4_CATEGORY_TO_AVSS: dict[str, str] = {
    "baby_laughter": "baby",
    "female_singing": "woman",
    "male_speech": "man",
    "dog_barking": "dog",
    "cat_meowing": "cat",
    "lions_roaring": "lion",
    "horse_clip-clop": "horse",
    "coyote_howling": "wolf",
    "mynah_bird_singing": "bird",
    "playing_acoustic_guitar": "guitar",
    "playing_tabla": "tabla",
    "playing_violin": "violin",
    "playing_piano": "piano",
    "playing_ukulele": "ukulele",
    "playing_glockenspiel": "marimba",
    "helicopter": "helicopter",
    "race_car": "car",
    "driving_buses": "bus",
    "ambulance_siren": "emergency-car",
    "typing_on_computer_keyboard": "keyboard",
    "chainsawing_trees": "saw",
    "cap_gun_shooting": "gun",
    "lawn_mowing": "mower",
}

# a_obj tokens that name no visible object: "background" (silent clip) and "off-the-screen" (source not visible).
NON_OBJECT_TOKENS: frozenset[str] = frozenset({"background", "off-the-screen"})


def s4_class_name(category: str) -> str:
    """Groundable noun for an S4 category; an unknown category falls back to its words ("a_b" -> "a b")."""
    return S4_CATEGORY_NOUN.get(category, category.replace("_", " "))


def split_a_obj(a_obj: str) -> tuple[str, ...]:
    """AVSS `a_obj` field -> class tokens. Classes are joined by "_" (names themselves use "-").

    Spaces inside a token are removed: the real metadata.csv has one typo, "h orse".
    """
    return tuple(tok.replace(" ", "") for tok in a_obj.split("_") if tok.strip())


def readable_classes(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Class tokens -> prompt nouns: non-objects dropped, "-" read as a space, duplicates removed, order kept."""
    nouns = (t.replace("-", " ") for t in tokens if t not in NON_OBJECT_TOKENS)
    return tuple(dict.fromkeys(nouns))
