"""A screenplay's elements -> the scenes of a film file: the rules of docs/films.md, "Screenplays (Fountain)".

Pure data in, pure data out (no file is read here), so each rule is tested on its own and `render FILM.fountain`
and `scene from-screenplay` cannot disagree: both go through `map_screenplay`.

- A scene heading starts a scene; its slug is the scene's title and the intertitle of its first keyframe.
- An action paragraph is a keyframe (its text the prompt); one too long for the text encoder's 77 tokens is
  split at sentence boundaries into several (`source: FILM.fountain:12 (part 2 of 3)`).
- Dialogue is the subtitle of the keyframe it follows (`CHARACTER: line`); a second line of dialogue after the
  same action gets a keyframe of its own with the same prompt and seed (the same picture), cut to, so each line
  is its own subtitle cue for its own reading time.
- A hold is the reading time of the keyframe's text (action, dialogue, cards): words / 3 per second, 1 to 8 s.
- Transitions set the transition from the keyframe before them; a cut is 0 frames. Between scenes a film file
  cuts, so a dissolve or fade before a scene heading walks into the next scene's first picture through a
  waypoint keyframe held 0 frames.
- Seeds come from the prompt (base seed + CRC-32 of the prompt), not the keyframe's index, so inserting a line
  changes no other keyframe's seed and re-renders only the segments around it.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

WORDS_PER_SECOND = 3.0  # a comfortable subtitle reading speed (about 180 words a minute)
MIN_HOLD = 1.0  # seconds: a picture held for less is hardly seen
MAX_HOLD = 8.0  # seconds: a long speech is not an 8-second-plus still
STEP = 1.0  # default seconds from one keyframe to the next within a scene (the front file's `transition`)
WAYPOINT_HOLD = 0.001  # under half a frame at any fps up to 120: 0 frames, a point the walk passes through
TOKEN_BUDGET = 75  # CLIP's 77 tokens less its start and end tokens
DISSOLVE = (2.0, "ease-in-out")  # a dissolve: a long ease
FADE = (3.0, "smoothstep")  # a fade: longer still, flat at both ends
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "mt", "no", "prof", "capt", "lt", "sgt"}
_SLUG_PREFIX = re.compile(r"^\s*(?:INT\.?/EXT|EXT\.?/INT|I/E|INT|EXT|EST)[.\s]+", re.IGNORECASE)


@dataclass(frozen=True)
class Element:
    """One element of the page, in order: kind is heading, action, centered, dialogue or transition."""

    kind: str
    text: str
    line: int
    speaker: str | None = None


@dataclass
class Shot:
    """A keyframe being built: texts kept apart for the reading-time rule until `as_keyframe`."""

    prompt: str
    source: str
    reading: str = ""  # the action text this keyframe shows (for its hold)
    subtitle: str | None = None
    spoken: str = ""  # the dialogue's words without the speaker (for the hold)
    cards: list[str] = field(default_factory=list)
    transition: float | str | None = None
    easing: str | None = None
    hold: float | None = None  # set only for waypoints
    transition_at: str = ""  # `FILM.fountain:40 (DISSOLVE TO:)`: where the transition was written


# ----------------------------------------------------------------------------------------------- rules


def words(text: str) -> int:
    """Words for the reading-time rule: runs of letters or digits (don't, well-known: one word each)."""
    return len(re.findall(r"[^\W_]+(?:['’-][^\W_]+)*", text))


def reading_time(*texts: str, pace: tuple[float, float, float] = (WORDS_PER_SECOND, MIN_HOLD, MAX_HOLD)) -> float:
    """Seconds to read `texts`: words / words-per-second, rounded to 0.01 s, within min..max (`pace`)."""
    per_second, low, high = pace
    return min(high, max(low, round(sum(words(t) for t in texts) / per_second, 2)))


def estimate_tokens(text: str) -> int:
    """A conservative count of CLIP BPE tokens, the same for every model: CLIP's pre-tokenizer splits words,
    single digits and punctuation runs; a word is counted ceil(letters / 4) tokens (common words are one
    token in CLIP's 49k vocabulary, rarer ones split into pieces of 3 or more letters), each digit and each
    punctuation mark one."""
    count = 0
    for piece in re.findall(r"[^\W\d_]+|\d|[^\w\s]|_", text):
        count += math.ceil(len(piece) / 4) if piece[0].isalpha() else 1
    return count


def sentences(text: str) -> list[str]:
    """Split at . ! ? (with closing quotes or brackets) before a space, except after a known abbreviation."""
    out, start = [], 0
    for m in re.finditer(r"[.!?]+[\"'”’)\]]*\s+", text):
        before = re.search(r"(\w+)\W*$", text[start:m.start() + 1])
        if m.group().startswith(".") and before and before.group(1).lower() in _ABBREVIATIONS:
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def split_to_fit(text: str, fits: Callable[[str], bool]) -> list[str]:
    """`text` as few parts as the budget allows, each whole sentences where a sentence fits, else clauses (at
    , ; :), else words; greedy, in order. When not even one word fits (a style that fills the budget on its
    own), splitting cannot help and the text stays whole."""
    if fits(text) or not fits(text.split()[0]):
        return [text]
    units: list[str] = []
    for sentence in sentences(text):
        if fits(sentence):
            units.append(sentence)
            continue
        for clause in re.split(r"(?<=[,;:])\s+", sentence):
            units += [clause] if fits(clause) else clause.split()
    parts, current = [], ""
    for unit in units:
        candidate = f"{current} {unit}".strip()
        if not current or fits(candidate):
            current = candidate
        else:
            parts.append(current)
            current = unit
    return parts + [current]


def transition_of(text: str) -> tuple[float | str, str | None] | None:
    """(seconds or "cut", easing) for a transition's text; None for one that is no transition (FADE IN:)."""
    upper = text.upper()
    if "FADE IN" in upper:
        return None
    if "CUT" in upper:
        return "cut", None
    if "DISSOLVE" in upper:
        return DISSOLVE
    if "FADE" in upper:
        return FADE
    return STEP, None  # WIPE TO:, IRIS OUT. and the like: the scene's own step


def seed_of(prompt: str, base: int) -> int:
    """The base seed plus the prompt's CRC-32: the same line keeps its picture wherever it moves."""
    return (base + zlib.crc32(prompt.encode("utf-8"))) % 2**31


def setting_of(slug: str) -> str:
    """A prompt for a scene heading with no action before its dialogue: `INT. LAMP ROOM - NIGHT` -> `lamp room,
    night`."""
    place = _SLUG_PREFIX.sub("", slug).strip(" .-")
    return ", ".join(p.strip().lower() for p in re.split(r"\s+-+\s+", place) if p.strip()) or slug.lower()


def scene_name(stem: str, slug: str | None, taken: set[str]) -> str:
    """`<file stem>-<slug>` as a cache-folder name (letters, digits, . _ -, at most 64), unique in the film."""
    raw = f"{stem}-{setting_of(slug)}" if slug else stem
    base = re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9_.-]+", "-", raw.lower())).strip("-._")[:60] or "screenplay"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    taken.add(name)
    return name


# ---------------------------------------------------------------------------------------------- mapping


class PageError(ValueError):
    """A screenplay that cannot become a film; `line` is where (1-based)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


@dataclass
class _Scene:
    slug: str | None
    line: int
    shots: list[Shot] = field(default_factory=list)


def _character_styles(text: str, characters: dict[str, str]) -> list[str]:
    return [style for name, style in characters.items()
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)]


def map_screenplay(elements: list[Element], *, source: str, stem: str, title_card: str | None, style: str,
                   characters: dict[str, str], seed: int,
                   pace: tuple[float, float, float] = (WORDS_PER_SECOND, MIN_HOLD, MAX_HOLD)) -> list[dict]:
    """The page's elements -> a film file's scenes (keyframes only; the caller adds the film's options).

    `source` names the file in each keyframe's `source:`; `style` is the film's style (it counts against the
    token budget); `characters` maps a name to the style appended to prompts in which it appears; `pace` is
    (words per second, min hold, max hold).
    Raises PageError for a page that cannot become a film.
    """
    def prompt_of(text: str) -> str:
        styles = _character_styles(text, characters)
        return ", ".join([text.rstrip(" .") if styles else text, *styles])

    def fits(text: str) -> bool:
        return estimate_tokens(", ".join(p for p in (prompt_of(text), style) if p.strip())) <= TOKEN_BUDGET

    scenes: list[_Scene] = []
    cards: list[tuple[str, int]] = [(title_card, 1)] if title_card else []  # (text, line), for the next keyframe
    last: list[Shot] = []  # the last shot made, in any scene (a transition applies to it)

    def add(scene: _Scene, shot: Shot) -> Shot:
        shot.cards, cards[:] = [text for text, _ in cards], []
        scene.shots.append(shot)
        last[:] = [shot]
        return shot

    def hold_on(scene: _Scene, line: int) -> Shot:
        """A keyframe for text with no action of its own: the same picture as the scene's last keyframe, cut
        to; in a scene with none yet, its setting."""
        if scene.shots:
            previous = scene.shots[-1]
            previous.transition, previous.easing = "cut", None
            return add(scene, Shot(previous.prompt, f"{source}:{line}"))
        if scene.slug is None:
            raise PageError(line, "dialogue before any action or scene heading: there is no picture to show it over")
        return add(scene, Shot(prompt_of(setting_of(scene.slug)), f"{source}:{line} (the scene's setting)"))

    def close(scene: _Scene | None) -> None:
        """Cards left at a scene's end (`>THE END<`) get a keyframe; so does a heading with nothing under it."""
        if scene is not None and (cards or not scene.shots):
            hold_on(scene, cards[0][1] if cards else scene.line)

    current: _Scene | None = None
    for el in elements:
        if el.kind == "heading":
            close(current)
            current = _Scene(el.text, el.line)
            scenes.append(current)
            cards.append((el.text, el.line))
        elif el.kind == "centered":
            cards.append((el.text, el.line))
        elif el.kind == "transition":
            effect = transition_of(el.text)
            if effect is not None and last:
                last[0].transition, last[0].easing = effect
                last[0].transition_at = f"{source}:{el.line} ({el.text})"
        elif el.kind == "action":
            if current is None:
                current = _Scene(None, el.line)
                scenes.append(current)
            parts = split_to_fit(el.text, fits)
            for k, part in enumerate(parts):
                where = f"{source}:{el.line}" + (f" (part {k + 1} of {len(parts)})" if len(parts) > 1 else "")
                add(current, Shot(prompt_of(part), where, reading=part))
        elif el.kind == "dialogue":
            if current is None:
                raise PageError(el.line, "dialogue before any action or scene heading: there is no picture to "
                                         "show it over")
            target = current.shots[-1] if current.shots and not cards else None
            if target is None or target.subtitle is not None:
                target = hold_on(current, el.line)
            target.subtitle, target.spoken = f"{el.speaker}: {el.text}", el.text
    close(current)
    if not any(el.kind == "action" for el in elements):
        raise PageError(1, "no action lines: a film needs at least one action paragraph to picture")
    return _finish(scenes, stem, seed, pace)


def _finish(scenes: list[_Scene], stem: str, seed: int, pace: tuple[float, float, float]) -> list[dict]:
    """Waypoints into the next scene for dissolves and fades across a scene heading; keyframes as data."""
    for scene, following in zip(scenes, [*scenes[1:], None], strict=True):
        end = scene.shots[-1]
        if following is not None and end.transition not in (None, "cut"):
            first = following.shots[0]
            scene.shots.append(Shot(first.prompt, f"{end.transition_at} into the next scene", hold=WAYPOINT_HOLD))
        else:
            end.transition, end.easing = None, None
    taken: set[str] = set()
    out = []
    for scene in scenes:
        keyframes = [_keyframe(shot, seed, pace) for shot in scene.shots]
        out.append({"name": scene_name(stem, scene.slug, taken), "title": scene.slug or "",
                    "keyframes": keyframes})
    return out


def _keyframe(shot: Shot, seed: int, pace: tuple[float, float, float]) -> dict:
    intertitle = "\n".join(shot.cards) or None
    hold = shot.hold if shot.hold is not None else reading_time(shot.reading, shot.spoken, *shot.cards, pace=pace)
    keyframe = {"prompt": shot.prompt, "seed": seed_of(shot.prompt, seed), "hold": hold}
    if shot.transition is not None:
        keyframe["transition"] = shot.transition
    if shot.easing is not None:
        keyframe["easing"] = shot.easing
    if shot.subtitle is not None:
        keyframe["subtitle"] = shot.subtitle
    if intertitle:
        keyframe["intertitle"] = intertitle
    keyframe["source"] = shot.source
    return keyframe
