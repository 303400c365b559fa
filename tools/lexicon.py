"""A lexicon from the words of audio captions to groundable names of the objects that make the sounds.

Used by the built-in translator (no LLM configured) and to map audio-tagger labels to detector phrases. It is
deliberately plain keyword matching, so it is pure, fast and explainable:

- Words are matched at word boundaries on a lower-cased token stream (hyphens count as spaces, "n't" as "not",
  possessive "'s" dropped), longest expression first, without overlap: "lawn mower" wins over "mower",
  "fire truck" over "fire", "female singer" over "singer".
- Each entry names a source phrase. For the 70 AVSBench-semantic classes the phrase is exactly
  `GROUNDABLE_PHRASE[class]`, so lexicon output and the class vocabulary agree; other sources (cow, frog,
  television, ...) get a plain noun GroundingDINO knows.
- Three kinds of entry: NOUNS name the source ("dog", "violinist" -> violin); SOUNDS imply exactly one source
  ("barking" -> dog, "meowing" -> cat, "clip clop" -> horse); WEAK words imply a default source only when the
  caption names no other source of the groups they list ("speech" -> person unless a man/woman/... is named;
  "engine" -> car unless a motorcycle/truck/... is named; "singing" -> person unless a human or a bird is named;
  "siren" -> ambulance unless a police car or fire truck is named).
- Some words are recognised but have no groundable source (wind, rain, thunder, insects): they yield nothing but
  still block weak words ("wind howling" is not a wolf, "crickets chirping" is not a bird).
- Negation: a match preceded within 4 words by no / not / without / never / nobody / absence / lack, with no
  punctuation or clause word (and, but, while, then, ...) in between, is dropped: "no dog", "without any speech",
  "there is no dog barking" (both words), but "no music, just a dog barking" keeps the dog.

Choices where captions are ambiguous:
- Speech or singing of unknown gender -> "person" (not "man"): an ALM's guess at gender is unreliable, and
  "person" grounds any human; a caption that says man / woman / boy / girl / baby / male / female gets that noun.
- A player is mapped to the instrument ("violinist" -> violin, "drummer" -> drum): the instrument makes the sound
  and AVSBench annotates it.
- Generic "music", "noise", "sound", "beat", "melody" map to nothing: music often comes from an off-screen source,
  and naming an instrument the caption does not name would fabricate one. An empty frame yields an empty mask.
- A human acting on a source is dropped for that source ("a person is playing a guitar" -> guitar, as in the
  paper; "someone is typing on a keyboard" -> keyboard; "a man is mowing the lawn" -> lawn mower), unless the
  same sentence has them speak or sing ("a man sings and plays guitar" -> man, guitar).
- The captions of one frame are judged together (`frame_sources`): a weak word in one caption is dropped when
  another caption names a more specific source ("speech" beside "a man is speaking" -> man, not man + person).
- Ambiguous words are left out rather than guessed: "bass", "crow", "bike", "keys", "recorder", "horn" alone is
  weak (car horn unless an instrument or vehicle is named), "fans" (plural: sports fans) is not a fan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from tools.vocabulary import AVSS_CLASSES, GROUNDABLE_PHRASE

LEXICON_VERSION = "lexicon-v1"

Kind = Literal["noun", "sound", "weak"]


@dataclass(frozen=True)
class Entry:
    """One source: the phrase to ground (None: recognised, not groundable) and the expressions that imply it."""

    phrase: str | None
    group: str
    kind: Kind
    patterns: tuple[str, ...]
    blocked_by: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Match:
    """One expression found in a text, and why it yields no source when it does not."""

    phrase: str | None
    expression: str
    start: int  # token index in the text
    kind: Kind
    group: str
    dropped: str | None = None  # "negated", "a specific source is named", "agent acting on the source"

    @property
    def kept(self) -> bool:
        """True when the match yields a source phrase."""
        return self.phrase is not None and self.dropped is None


_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "goose": "geese", "sheep": "sheep",
    "wolf": "wolves", "mouse": "mice", "fish": "fish", "deer": "deer", "ox": "oxen", "calf": "calves",
    "knife": "knives", "bus": "buses", "cattle": "cattle", "people": "people", "aircraft": "aircraft",
}  # fmt: skip


def _plural(word: str) -> str:
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _noun(phrase: str | None, group: str, *patterns: str, plural: bool = True) -> Entry:
    """Nouns naming the source; the phrase itself is a pattern too; plurals of the last word added."""
    base = ([phrase] if phrase else []) + list(patterns)
    forms = list(base)
    if plural:
        for pattern in base:
            *head, last = pattern.split(" ")
            forms.append(" ".join([*head, _plural(last)]))
    return Entry(phrase, group, "noun", tuple(dict.fromkeys(forms)))


def _sound(phrase: str, group: str, *patterns: str) -> Entry:
    """Sound words that imply exactly one source (listed with their inflections)."""
    return Entry(phrase, group, "sound", patterns)


def _weak(phrase: str, group: str, blocked_by: Iterable[str], *patterns: str) -> Entry:
    """Words implying a default source unless the caption names a source of a `blocked_by` group."""
    return Entry(phrase, group, "weak", patterns, frozenset(blocked_by))


_G = GROUNDABLE_PHRASE  # AVSS phrases, so outputs equal the class vocabulary exactly

ENTRIES: tuple[Entry, ...] = (
    # --- humans -------------------------------------------------------------------------------------------------
    _noun(_G["man"], "human", "male", "guy", "gentleman", "male voice", "male speech", "male speaker",
          "male singer", "male vocalist", "male vocal", "male vocals", "male singing", "father", "old man"),
    _noun(_G["woman"], "human", "female", "lady", "female voice", "female speech", "female speaker",
          "female singer", "female vocalist", "female vocal", "female vocals", "female singing", "mother"),
    _noun(_G["boy"], "human", "little boy", "young boy"),
    _noun(_G["girl"], "human", "little girl", "young girl"),
    _noun(_G["baby"], "human", "infant", "toddler", "newborn", "baby laughter", "baby crying"),
    _noun("child", "human", "kid"),
    _noun("person", "human", "people", "someone", "somebody", "human", "singer", "vocalist", "choir",
          "narrator", "announcer"),
    _noun("crowd", "human", "audience", "spectators"),
    _weak("person", "human", {"human"}, "speech", "speaking", "speak", "speaks", "spoke", "talking", "talk",
          "talks", "talked", "conversation", "narration", "voice", "voices", "laughing", "laugh", "laughs",
          "laughter", "giggling", "giggles", "shouting", "shouts", "yelling", "yells", "screaming", "screams",
          "whispering", "whispers", "coughing", "coughs", "sneezing", "sneezes", "snoring", "snores", "breathing",
          "clapping", "claps", "footsteps", "speaker", "speakers", "chanting"),
    # Birds sing too; humming and whistling are as often machines, wind or kettles as people.
    _weak("person", "human", {"human", "bird"}, "singing", "sing", "sings", "sang", "vocals"),
    _weak("person", "human", {"human", "bird", "nature", "vehicle", "device"}, "whistling", "whistles"),
    _weak(_G["baby"], "human", {"human", "animal", "bird"}, "crying", "cries", "cry", "sobbing", "babbling",
          "cooing", "wailing"),
    _weak("crowd", "human", {"human"}, "cheering", "cheers", "applause", "applauding"),
    # --- animals ------------------------------------------------------------------------------------------------
    _noun(_G["dog"], "animal", "puppy", "doggy", "hound", "canine"),
    _sound(_G["dog"], "animal", "bark", "barks", "barking", "barked", "woof", "woofing", "yap", "yapping",
           "yelp", "yelping", "yelps", "bow wow"),
    _noun(_G["cat"], "animal", "kitten", "kitty", "feline"),
    _sound(_G["cat"], "animal", "meow", "meows", "meowing", "meowed", "miaow", "mewing", "purr", "purring",
           "purrs"),
    _noun(_G["horse"], "animal", "pony", "stallion", "mare", "hoof", "hooves", "hoofbeats"),
    _sound(_G["horse"], "animal", "neigh", "neighs", "neighing", "whinny", "whinnies", "whinnying", "clip clop",
           "clip clops", "clip clopping", "clippity clop", "galloping", "gallops", "trotting", "trots"),
    _noun(_G["lion"], "animal", "lioness"),
    _noun(_G["tiger"], "animal"),
    _noun(_G["leopard"], "animal", "cheetah", "jaguar"),
    _noun(_G["wolf"], "animal"),
    _weak(_G["wolf"], "animal", {"animal", "nature", "human"}, "howl", "howls", "howling"),
    _noun("coyote", "animal"),
    _noun(_G["elephant"], "animal"),
    _weak(_G["elephant"], "animal", {"animal", "instrument"}, "trumpeting", "trumpets loudly"),
    _noun(_G["squirrel"], "animal", "chipmunk"),
    _noun(_G["donkey"], "animal", "mule"),
    _sound(_G["donkey"], "animal", "bray", "brays", "braying", "hee haw"),
    _noun(_G["pig"], "animal", "piglet", "hog", "swine", "boar"),
    _sound(_G["pig"], "animal", "oink", "oinks", "oinking"),
    _weak(_G["pig"], "animal", {"animal", "human"}, "grunting", "grunts", "squealing"),
    _noun(_G["sheep"], "animal", "lamb", "ewe"),
    _sound(_G["sheep"], "animal", "bleat", "bleats", "bleating", "baa", "baaing"),
    _noun("cow", "animal", "cattle", "calf", "bull"),
    _sound("cow", "animal", "moo", "moos", "mooing"),
    _noun("goat", "animal"),
    _noun("frog", "animal", "toad"),
    _sound("frog", "animal", "croak", "croaks", "croaking", "ribbit"),
    _noun(None, "insect", "insect", "cricket", "cicada", "bee", "mosquito", "wasp"),
    # --- birds --------------------------------------------------------------------------------------------------
    _noun(_G["bird"], "bird", "songbird", "mynah", "myna", "mynah bird", "myna bird", "sparrow", "robin",
          "pigeon", "dove", "owl", "seagull", "gull", "canary", "finch", "magpie", "blackbird", "bird song"),
    _noun("bird", "bird", "birdsong", "birdcall", plural=False),
    _weak(_G["bird"], "bird", {"bird", "insect"}, "chirp", "chirps", "chirping", "chirped", "tweet", "tweets",
          "tweeting", "warbling", "cawing", "hooting", "cooing bird"),
    _noun(_G["parrot"], "bird", "parakeet", "budgie", "cockatoo", "macaw", "cockatiel"),
    _noun(_G["duck"], "bird", "duckling", "mallard"),
    _sound(_G["duck"], "bird", "quack", "quacks", "quacking"),
    _noun(_G["goose"], "bird", "gander"),
    _noun(_G["hen"], "bird", "chicken", "chick"),
    _sound(_G["hen"], "bird", "cluck", "clucks", "clucking", "cackling", "cackle"),
    _noun("rooster", "bird", "cockerel"),
    _sound("rooster", "bird", "cock a doodle doo", "crowing"),
    # --- instruments --------------------------------------------------------------------------------------------
    _noun(_G["guitar"], "instrument", "guitarist", "acoustic guitar", "electric guitar", "bass guitar",
          "classical guitar"),
    _weak(_G["guitar"], "instrument", {"instrument"}, "strumming", "strummed", "strums", "strum"),
    _noun(_G["piano"], "instrument", "pianist", "grand piano", "upright piano", "pianoforte"),
    _noun(_G["violin"], "instrument", "violinist", "fiddle", "fiddler", "viola"),
    _sound(_G["violin"], "instrument", "fiddling"),
    _noun(_G["cello"], "instrument", "cellist", "violoncello"),
    _noun(_G["ukulele"], "instrument", "uke"),
    _noun(_G["drum"], "instrument", "drummer", "drum kit", "drum set", "drumkit", "snare", "snare drum",
          "bass drum", "kick drum", "cymbal", "hi hat", "timpani", "bongo", "conga", "percussion", "drumbeat"),
    _sound(_G["drum"], "instrument", "drumming", "drummed"),
    _noun(_G["tabla"], "instrument"),
    _noun(_G["accordion"], "instrument", "accordionist", "concertina"),
    _noun(_G["bassoon"], "instrument"),
    _noun(_G["clarinet"], "instrument", "clarinetist"),
    _noun(_G["flute"], "instrument", "flutist", "flautist", "piccolo", "pan flute"),
    _noun(_G["saxophone"], "instrument", "sax", "saxophonist"),
    _noun(_G["trumpet"], "instrument", "trumpeter", "bugle", "cornet"),
    _noun(_G["trombone"], "instrument", "trombonist"),
    _noun(_G["tuba"], "instrument"),
    _noun(_G["harp"], "instrument", "harpist"),
    _noun(_G["harmonica"], "instrument", "mouth organ"),
    _noun(_G["marimba"], "instrument"),
    _noun("xylophone", "instrument", "vibraphone"),
    _noun("glockenspiel", "instrument"),
    _noun(_G["erhu"], "instrument"),
    _noun(_G["guzheng"], "instrument", "zither", "chinese zither", "koto"),
    _noun(_G["pipa"], "instrument"),
    _noun(_G["sitar"], "instrument"),
    _noun(_G["sorna"], "instrument", "sorna", "suona", "shawm"),
    _noun(_G["handpan"], "instrument", "hang drum", "steel tongue drum", "tongue drum"),
    _noun(_G["bell"], "instrument", "church bell", "doorbell", "handbell", "chime", "wind chime", "bell tower"),
    _sound(_G["bell"], "instrument", "chiming", "dinging", "ding dong"),
    _weak(_G["bell"], "instrument", {"instrument", "device", "vehicle"}, "ringing", "rings", "ring"),
    _noun("banjo", "instrument"),
    _noun("mandolin", "instrument"),
    _noun("bagpipe", "instrument", "bagpiper"),
    _noun("organ", "instrument", "pipe organ", "organist"),
    _noun("double bass", "instrument", "contrabass", "upright bass", "bassist"),
    _noun("oboe", "instrument"),
    _noun("french horn", "instrument"),
    _noun("tambourine", "instrument"),
    _noun("gong", "instrument"),
    _noun("steel drum", "instrument", "steelpan"),
    _noun(_G["keyboard"], "device", "computer keyboard", "synthesizer", "synth", "electronic keyboard"),
    _weak(_G["keyboard"], "device", {"device"}, "typing", "typed", "keystrokes", "keystroke"),
    # --- vehicles -----------------------------------------------------------------------------------------------
    _noun(_G["car"], "vehicle", "automobile", "race car", "racing car", "racecar", "sports car", "car engine",
          "car horn", "car alarm"),
    _weak(_G["car"], "vehicle", {"vehicle"}, "engine", "engines", "motor", "revving", "revs", "revved",
          "accelerating", "accelerates", "vroom", "vehicle", "vehicles", "traffic", "tires screeching",
          "screeching tires", "skidding"),
    _weak(_G["car"], "vehicle", {"vehicle", "bird"}, "honk", "honks", "honking", "honked"),
    _weak(_G["car"], "vehicle", {"vehicle", "instrument"}, "horn", "horns"),
    _noun(_G["bus"], "vehicle", "busses", "school bus", "double decker"),
    _noun(_G["truck"], "vehicle", "lorry", "pickup truck", "semi truck", "dump truck", "garbage truck"),
    _noun(_G["emergency-car"], "vehicle", "emergency car", "emergency vehicle", "ambulance siren"),
    _weak(_G["emergency-car"], "vehicle", {"vehicle"}, "siren", "sirens", "wailing siren"),
    _noun("police car", "vehicle", "police siren", "police vehicle"),
    _noun("fire truck", "vehicle", "fire engine", "firetruck"),
    _noun(_G["helicopter"], "vehicle", "chopper", "copter", "helicopter blades", "rotor blades"),
    _noun(_G["airplane"], "vehicle", "aeroplane", "plane", "jet", "jet engine", "aircraft", "airliner",
          "jet plane", "propeller plane"),
    _noun(_G["motorcycle"], "vehicle", "motorbike", "dirt bike", "moped", "motor scooter"),
    _noun(_G["train"], "vehicle", "locomotive", "railway", "railroad", "subway", "tram", "train horn",
          "train whistle", "steam train", "choo choo"),
    _noun(_G["boat"], "vehicle", "ship", "motorboat", "speedboat", "ferry", "yacht", "jet ski", "boat engine"),
    _noun(_G["tractor"], "vehicle"),
    _noun(_G["tank"], "vehicle", "army tank"),
    _noun(_G["utv"], "vehicle", "utv", "atv", "all terrain vehicle", "quad bike", "off road vehicle",
          "golf cart"),
    _noun(_G["missile-rocket"], "vehicle", "missile rocket", "missile", "rocket launch", "rocket engine"),
    # --- tools and appliances -----------------------------------------------------------------------------------
    _noun("chainsaw", "tool", "chain saw"),
    _sound("chainsaw", "tool", "chainsawing"),
    _noun(_G["saw"], "tool", "handsaw", "circular saw", "table saw", "power saw", "electric saw"),
    _sound(_G["saw"], "tool", "sawing"),
    _noun(_G["axe"], "tool", "hatchet", "ax"),
    _sound(_G["axe"], "tool", "chopping wood"),
    _noun(_G["mower"], "tool", "lawnmower", "mower", "grass cutter"),
    _sound(_G["mower"], "tool", "mowing", "lawn mowing", "mowing the lawn", "mowing lawn"),
    _noun(_G["clipper"], "tool", "clipper", "electric clipper", "hair trimmer", "trimmer", "electric razor",
          "shaver"),
    _noun(_G["hair-dryer"], "device", "hairdryer", "blow dryer", "blowdryer", "hair drier"),
    _noun(_G["vacuum-cleaner"], "device", "vacuum", "hoover"),
    _sound(_G["vacuum-cleaner"], "device", "vacuuming"),
    _noun(_G["frying-food"], "device", "frying food", "frying pan", "fryer", "deep fryer", "skillet", "wok"),
    _weak(_G["frying-food"], "device", {"device"}, "frying", "sizzling", "sizzle", "sizzles"),
    _noun("drill", "tool", "power drill"),
    _sound("drill", "tool", "drilling"),
    _noun("hammer", "tool"),
    _sound("hammer", "tool", "hammering"),
    _noun(_G["gun"], "weapon", "gunshot", "gun shot", "gunfire", "rifle", "pistol", "shotgun", "cap gun",
          "handgun", "firearm", "machine gun", "revolver"),
    _weak(_G["gun"], "weapon", {"weapon"}, "shooting", "shots fired", "firing"),
    _noun("cannon", "weapon"),
    _noun("fireworks", "nature", "firework", plural=False),
    _noun(_G["clock"], "device", "alarm clock", "cuckoo clock", "grandfather clock", "wall clock"),
    _sound(_G["clock"], "device", "tick tock", "tick tocking"),
    _weak(_G["clock"], "device", {"device"}, "ticking", "ticks", "tick"),
    _noun("phone", "device", "telephone", "cell phone", "cellphone", "mobile phone", "smartphone"),
    _weak("phone", "device", {"device"}, "ringtone"),
    _noun("typewriter", "device"),
    _noun("television", "device", "tv", "television set"),
    _noun("radio", "device"),
    _noun("loudspeaker", "device"),
    _noun("fan", "device", "ceiling fan", "electric fan", plural=False),
    _noun("washing machine", "device"),
    _noun("blender", "device"),
    _noun("door", "device"),
    _weak("door", "device", {"device"}, "knocking", "knocks", "door slam"),
    # --- water, fire, weather -----------------------------------------------------------------------------------
    _noun("water", "nature", "running water", "stream", "river", "waves", "ocean", "sea", "surf", "faucet",
          plural=False),
    _sound("water", "nature", "splashing", "splash", "splashes", "dripping", "trickling", "gurgling"),
    _noun("waterfall", "nature"),
    _noun("fire", "nature", "campfire", "fireplace", "bonfire", "flames", plural=False),
    _weak("fire", "nature", {"nature", "device"}, "crackling", "crackles"),
    _noun(None, "nature", "wind", "rain", "thunder", "storm", "thunderstorm", "rainfall", "breeze", "gust"),
)  # fmt: skip


def _tokens(text: str) -> list[str]:
    """Lower-case word and punctuation tokens; hyphens split words, "n't" reads as "not", "'s" is dropped."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"n't\b", " not", text)
    text = re.sub(r"'s\b", "", text)
    return re.findall(r"[a-z0-9]+|[.,;:!?()\"]", text)


def _build_index(entries: Iterable[Entry]) -> dict[tuple[str, ...], Entry]:
    index: dict[tuple[str, ...], Entry] = {}
    for entry in entries:
        for pattern in entry.patterns:
            key = tuple(_tokens(pattern))
            # First entry wins: nouns are listed before the weak words that share a form (e.g. "speaker").
            index.setdefault(key, entry)
    return index


_INDEX = _build_index(ENTRIES)
_MAX_LEN = max(len(key) for key in _INDEX)
_NEGATORS = frozenset({"no", "not", "without", "never", "nobody", "nor", "absence", "absent", "lack", "lacking"})
# A negation does not reach across punctuation or into a new clause.
_CLAUSE_BREAKS = frozenset({"and", "but", "while", "then", "as", "followed", "only", "just", "except", "whereas"})
_NEGATION_WINDOW = 4
# Verbs of a human acting on a sound source: "a person is playing a guitar", "someone is typing on a keyboard",
# "a man is mowing the lawn". The human is the agent, the object is the source.
_AGENT_VERBS = frozenset({
    "play", "plays", "playing", "played", "typing", "types", "typed", "using", "uses", "operating", "operates",
    "driving", "drives", "riding", "rides", "strumming", "strums", "plucking", "plucks", "hitting", "hits",
    "beating", "beats", "banging", "bangs", "tapping", "taps", "mowing", "mows", "sawing", "saws", "cutting",
    "cuts", "chopping", "chops", "shooting", "shoots", "firing", "fires", "ringing", "rings", "blowing", "blows",
    "drumming", "vacuuming", "drilling", "hammering",
})  # fmt: skip
_AGENT_WINDOW = 4
_SENTENCE_ENDS = frozenset({".", "!", "?", ";"})


def _scan(tokens: list[str]) -> list[tuple[int, tuple[str, ...], Entry]]:
    """Longest-first, non-overlapping lexicon hits as (token index, expression tokens, entry)."""
    hits: list[tuple[int, tuple[str, ...], Entry]] = []
    i = 0
    while i < len(tokens):
        for length in range(min(_MAX_LEN, len(tokens) - i), 0, -1):
            key = tuple(tokens[i : i + length])
            if key in _INDEX:
                hits.append((i, key, _INDEX[key]))
                i += length
                break
        else:
            i += 1
    return hits


def find_matches(text: str, context_groups: Iterable[str] = ()) -> list[Match]:
    """Every lexicon expression in `text`, in order, with negation, weak-word blocking and agents decided.

    context_groups: groups of sources named elsewhere about the same audio (the frame's other captions); they
    block weak words like the caption's own nouns do.
    """
    tokens = _tokens(text)
    hits = _scan(tokens)
    negated = [_is_negated(tokens, start) for start, _, _ in hits]
    live = [hit for hit, neg in zip(hits, negated, strict=True) if not neg]
    present = {entry.group for _, _, entry in live if entry.kind != "weak"} | set(context_groups)
    sentence = _sentence_ids(tokens)
    # A human who also speaks or sings in the same sentence is a source even while playing something.
    voiced = {sentence[start] for start, _, entry in live if entry.kind == "weak" and entry.group == "human"}
    object_starts = {start for start, _, entry in live if entry.group != "human"}
    matches = []
    for (start, key, entry), neg in zip(hits, negated, strict=True):
        dropped = None
        if neg:
            dropped = "negated"
        elif entry.kind == "weak" and entry.blocked_by & present:
            dropped = "a specific source is named"
        elif (
            entry.group == "human"
            and entry.kind == "noun"
            and sentence[start] not in voiced
            and _acts_on_source(tokens, start + len(key), object_starts)
        ):
            dropped = "agent acting on the source"
        matches.append(Match(entry.phrase, " ".join(key), start, entry.kind, entry.group, dropped))
    return matches


def _is_negated(tokens: list[str], start: int) -> bool:
    for token in reversed(tokens[max(0, start - _NEGATION_WINDOW) : start]):
        if token in _NEGATORS:
            return True
        if _breaks_clause(token):
            return False
    return False


def _acts_on_source(tokens: list[str], after: int, object_starts: set[int]) -> bool:
    """True when, in the same clause, an agent verb follows position `after` and a non-human source starts at
    that verb ("typing", "mowing" are sources themselves) or within a few words after it."""
    for pos in range(after, min(len(tokens), after + _AGENT_WINDOW)):
        if _breaks_clause(tokens[pos]):
            return False
        if tokens[pos] in _AGENT_VERBS:
            if tokens[pos + 1 : pos + 2] in (["with"], ["around"], ["near"], ["outside"]):
                return False  # "a child is playing with a dog": company, not an instrument
            return any(pos <= start <= pos + _AGENT_WINDOW for start in object_starts)
    return False


def _breaks_clause(token: str) -> bool:
    return token in _CLAUSE_BREAKS or not token[0].isalnum()


def _sentence_ids(tokens: list[str]) -> list[int]:
    ids, current = [], 0
    for token in tokens:
        ids.append(current)
        current += token in _SENTENCE_ENDS
    return ids


def find_sources(text: str) -> list[str]:
    """Groundable source phrases named or implied by `text`, in order of first mention, without duplicates."""
    return list(dict.fromkeys(m.phrase for m in find_matches(text) if m.kept and m.phrase))


def frame_sources(captions: Iterable[str]) -> dict[str, int]:
    """Sources of one frame judged over all its captions: phrase -> number of captions naming it, in order of
    first mention. A weak word in one caption yields nothing when another caption names a source of a group
    that blocks it ("speech" + "a man is speaking" -> man only; "an engine runs" + "a motorcycle" -> motorcycle).
    """
    captions = list(captions)
    named: set[str] = set()
    for caption in captions:
        named |= {m.group for m in find_matches(caption) if m.kind != "weak" and m.dropped is None}
    evidence: dict[str, int] = {}
    for caption in captions:
        for phrase in dict.fromkeys(m.phrase for m in find_matches(caption, named) if m.kept and m.phrase):
            evidence[phrase] = evidence.get(phrase, 0) + 1
    return evidence


def phrase_for_label(label: str) -> str | None:
    """The groundable phrase for a tagger label: an AVSS class name via GROUNDABLE_PHRASE, else the lexicon's
    first source in the label ("Dog barking" -> dog, "engine" -> car); None when the label names no source
    ("Music", "Wind")."""
    key = label.strip().lower()
    if key in GROUNDABLE_PHRASE:
        return GROUNDABLE_PHRASE[key]
    sources = find_sources(label)
    return sources[0] if sources else None


def covered_avss_classes() -> set[str]:
    """AVSS classes whose groundable phrase the lexicon can produce (all 70; checked by the tests)."""
    produced = {entry.phrase for entry in ENTRIES}
    return {c for c in AVSS_CLASSES if GROUNDABLE_PHRASE[c] in produced}
