"""Object phrases -> AVSS class indices, for writing semantic predictions.

The pipeline names each object with a phrase (the translator's output, or the oracle's class names); AVSS scores
class-index masks. The table inverts the project's class vocabulary:
- each class's own name, its name with "-" read as a space, and tools.vocabulary.GROUNDABLE_PHRASE[class]
  ("ambulance" -> emergency-car, "suona horn" -> sorna, "lawn mower" -> mower), so every phrase the lexicon
  (tools.lexicon) emits for a class maps back to it;
- the S4 nouns (evals.datasets.categories.S4_CATEGORY_NOUN) through S4_CATEGORY_TO_AVSS, the mapping read off the
  real metadata ("coyote" -> wolf, "glockenspiel" -> marimba, "chainsaw" -> saw).
A phrase is lower-cased and its spaces collapsed; a phrase not in the table is tried once more without a plural
"s"/"es" ("dogs" -> dog). Anything else ("person", "crowd", "water") is UNMAPPED: its mask is left as background,
and the runner counts it per phrase (metrics.json "phrase_mapping").
"""

from __future__ import annotations

from collections.abc import Sequence

from evals.datasets.categories import S4_CATEGORY_NOUN, S4_CATEGORY_TO_AVSS
from tools.vocabulary import GROUNDABLE_PHRASE


def normalise(phrase: str) -> str:
    """Lower case, single spaces, no surrounding blanks."""
    return " ".join(phrase.lower().split())


def phrase_class_table(class_names: Sequence[str]) -> dict[str, int]:
    """phrase -> class index for the classes of label2idx.json (index 0, background, is never a target)."""
    index = {name: i for i, name in enumerate(class_names) if i > 0}
    table: dict[str, int] = {}
    for name, i in index.items():
        for phrase in (name, name.replace("-", " "), GROUNDABLE_PHRASE.get(name, name)):
            table.setdefault(normalise(phrase), i)
    for category, noun in S4_CATEGORY_NOUN.items():
        target = S4_CATEGORY_TO_AVSS.get(category)
        if target in index:
            table.setdefault(normalise(noun), index[target])
    return table


def class_of(phrase: str, table: dict[str, int]) -> int | None:
    """The class index of `phrase`, or None when it names no class (see the module docstring)."""
    key = normalise(phrase)
    if key in table:
        return table[key]
    for suffix in ("es", "s"):
        if key.endswith(suffix) and key[: -len(suffix)] in table:
            return table[key[: -len(suffix)]]
    return None
