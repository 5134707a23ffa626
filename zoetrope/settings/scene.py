"""Scene scripts (scenes/*.yaml): a film as a list of keyframes, validated before anything renders.

A file is either one scene script (top-level `keyframes`) or a film file (top-level `scenes`, each a scene
script with a `name`) whose scenes are concatenated into one film. Every mistake is one line naming the
file, line, and field path, e.g. `scenes/x.yaml:14: keyframes[2].hold: Input should be greater than 0`.

Durations: `hold` and `transition` must be > 0 (a zero is almost always a typo); a cut is written
`transition: cut` (0 frames). A duration under half a frame rounds to 0 frames under the frame-count rule
(docs/films.md).

Engines: `engine:` (top level) names what renders a scene's segments (a segment is a keyframe's hold and its
transition to the next); a keyframe's own `engine:` overrides it for the segment that starts at it. Left out
(or `null`), a segment is drifted where a `motion:` applies to it and walked otherwise; a scene that names an
engine and also has a scene-wide `motion:` is refused (which would win is not obvious). Which names exist and
the engines' own limits (LTX: sizes that are multiples of 32) come from the engines' specs
(settings/engines.py), checked here too, so no model loads for a script that cannot render.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zoetrope.base.errors import UserError
from zoetrope.settings import engines, scene_rules
from zoetrope.settings.loop import LoraSettings
from zoetrope.settings.media import AudioSpec, check_audio_field, check_image, field_error
from zoetrope.settings.params import MAX_ROWS, SCHEDULERS, UpscaleSpec
from zoetrope.settings.parsing import Strict, load_yaml_model
from zoetrope.settings.schedules import ColorCoherence, Guidance, Motion, check_keys, evaluate
from zoetrope.settings.timing import EASINGS, frame_count, transition_ts

SCHEMA_VERSION = 1
ANCESTRAL = {"euler_a"}  # add fresh noise every step: a walk through them flickers
Easing = Literal["linear", "ease-in", "ease-out", "ease-in-out", "smoothstep"]
Size = Annotated[int, Field(ge=32, le=2048, multiple_of=8, description="pixels; a multiple of 8 (VAE downsampling)")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="names the frame-cache folder")]
assert set(EASINGS) == set(Easing.__args__)  # one list of curves


class Keyframe(BaseModel):
    model_config = Strict
    prompt: str = Field(min_length=1)
    negative_prompt: str | None = Field(None, description="default: the scene's negative_prompt")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="default: the scene's seed + this keyframe's index")
    hold: float = Field(1.0, gt=0, le=3600, description="seconds on this keyframe")
    transition: float | str | None = Field(
        None, description="seconds to the next keyframe (0 < s <= 3600), or `cut` (0 frames); default: the scene's")
    easing: Easing | None = Field(None, description="default: the scene's easing")
    subtitle: str | None = Field(None, min_length=1, description="shown from this keyframe to the next; .srt text")
    intertitle: str | None = Field(None, min_length=1, description="a title card for the first half of the hold")
    engine: str | None = Field(None, description="renders the segment starting here (default: the scene's)")
    image: str | None = Field(None, description="a picture this keyframe is (ltx conditions its clips on it)")
    source: str | None = Field(None, description="where this keyframe came from (e.g. a screenplay line); "
                                                "recorded in the film's sidecar")
    motion: Motion | None = Field(None, description="a drift from this keyframe: zoom, angle, translate, strength")
    color_coherence: ColorCoherence | None = Field(None, description="drift: match_first (default: the scene's)")

    @field_validator("transition")
    @classmethod
    def _seconds_or_cut(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str) and value != "cut":
            raise ValueError("expected seconds or `cut`")
        if isinstance(value, float | int) and not 0 < value <= 3600:
            raise ValueError("Input should be greater than 0 and at most 3600 (write `cut` for 0 frames)")
        return value

    @field_validator("image")
    @classmethod
    def _image_readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_image(value, info)

    @field_validator("engine")
    @classmethod
    def _engine_known(cls, value: str | None) -> str | None:
        return known_engine(value)


def known_engine(value: str | None) -> str | None:
    """An engine name that some engine module registered (settings/engines.py)."""
    if value is not None and not engines.known(value):
        raise ValueError(f"expected one of {', '.join(engines.engine_names())} (got {value!r})")
    return value


class SceneScript(BaseModel):
    model_config = Strict
    schema_version: Literal[1] = SCHEMA_VERSION
    name: Name | None = Field(None, description="required in a film file; default: the script's file name")
    title: str = ""
    fps: int = Field(24, ge=1, le=120)
    width: Size = 256
    height: Size = 256
    model: str = Field("sd-turbo", description="painter preset, local folder or Hub id (--models overrides)")
    steps: int = Field(4, ge=1, le=150)
    rows: int | None = Field(None, ge=1, le=MAX_ROWS, description="rows per painter call of the walk (part of every "
                             "frame's key; --rows overrides); default: 8 at 256 px on CPU, 512 px on a GPU, fewer above")
    guidance: Guidance = Field(0.0, description="classifier-free guidance: a number, or a schedule over the scene "
                               "(walk and drift segments)")
    scheduler: str = Field("euler", description="non-ancestral only: ancestral samplers flicker")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="base seed: keyframe i without a seed uses seed + i")
    style: str = Field("", description="appended to every prompt, after a comma")
    negative_prompt: str = ""
    transition: float = Field(2.0, gt=0, le=3600, description="default seconds between keyframes")
    easing: Easing = "ease-in-out"
    burn_subtitles: bool = Field(False, description="draw subtitles on the frames (the .srt is always written)")
    audio: AudioSpec | None = Field(None, description="audio file, relative to the script; cut to the picture; "
                                    "or {file, sync, snap, start, end}")
    engine: str | None = Field(None, description="what renders the segments: walk (latent walk of the painter), "
                               "ltx, animatediff, drift...; default: drift where a motion applies, else walk")
    models: dict[str, str] = Field(default_factory=dict, description="role -> model, for an engine's roles that "
                                   "have no field of their own (--models ROLE= overrides)")
    ltx_model: str = Field("ltx-video", description="the ltx engine's model: preset, folder or Hub id (--models ltx=)")
    motion_adapter: str = Field("animatediff-v1-5-3", description="the animatediff engine's motion adapter, over "
                                "`model` (an SD 1.5-family painter); --models animatediff=")
    vae_tiling: bool = Field(False, description="video engines: decode in tiles (less memory; may change pixels)")
    cpu_offload: bool = Field(False, description="video engines on CUDA: keep idle submodels in RAM")
    loras: list[LoraSettings] = Field(default_factory=list, description="LoRA styles fused into the painter")
    upscale: UpscaleSpec | None = Field(None, description="every painted frame x2 or x4 before encoding")
    fps_out: int | None = Field(None, ge=2, le=240, description="interpolate the film to this rate (ffmpeg "
                                "minterpolate): above fps")
    motion: Motion | None = Field(None, description="drift every segment (schedules count from the scene's start)")
    color_coherence: ColorCoherence = Field("none", description="drift: match_first keeps each segment's palette")
    keyframes: list[Keyframe] = Field(min_length=1)

    @field_validator("scheduler")
    @classmethod
    def _non_ancestral(cls, value: str) -> str:
        if value not in SCHEDULERS:
            raise ValueError(f"must be one of {', '.join(sorted(set(SCHEDULERS) - ANCESTRAL))}")
        if value in ANCESTRAL:
            raise ValueError("ancestral samplers add fresh noise every step and make a walk flicker; use euler")
        return value

    @field_validator("audio", mode="before")
    @classmethod
    def _audio_exists(cls, value, info: ValidationInfo):
        return check_audio_field(value, info)

    @field_validator("engine")
    @classmethod
    def _engine_known(cls, value: str | None) -> str | None:
        return known_engine(value)

    # Frame counts and walk positions set by an audio-synced render (film/audio_sync.py): None follows the rule.
    _frames: list[tuple[int, int]] | None = PrivateAttr(None)
    _ts: dict[int, list[float]] | None = PrivateAttr(None)

    @field_validator("keyframes")
    @classmethod
    def _last_has_no_transition(cls, keyframes: list[Keyframe]) -> list[Keyframe]:
        last = keyframes[-1]
        if last.transition is not None:
            raise field_error((len(keyframes) - 1, "transition"),
                               "the last keyframe has no transition (nothing follows it)", last.transition)
        return keyframes

    @model_validator(mode="after")
    def _not_empty(self):
        if self.frame_count() == 0:
            raise ValueError(f"the script is 0 frames long at {self.fps} fps")
        return self

    @model_validator(mode="after")
    def _rules(self):
        """The cross-field rules (settings/scene_rules.py): schedules, motions, LoRAs, fps_out, engine sizes."""
        scene_rules.check(self)
        return self

    def guidance_peak(self) -> float:
        """The highest guidance of the scene: a constant's value, or a schedule's top (classifier-free guidance
        is on for every frame of a scene whose guidance ever exceeds 1, so no frame depends on its batch)."""
        return max(v for v in self.guidance.values()) if isinstance(self.guidance, dict) else float(self.guidance)

    def guidance_frames(self) -> list[float] | None:
        """Per scene frame, the guidance of a schedule (eased with the scene's easing); None for a constant."""
        if not isinstance(self.guidance, dict):
            return None
        return evaluate(self.guidance, self.frame_count(), self.fps, self.easing)

    # ------------------------------------------------------------------------------------ resolved

    def transition_of(self, i: int) -> float:
        """Seconds from keyframe i to i + 1 (0 after the last keyframe)."""
        if i == len(self.keyframes) - 1:
            return 0.0
        t = self.keyframes[i].transition
        return self.transition if t is None else 0.0 if t == "cut" else t

    def engine_of(self, i: int) -> str:
        """The engine of the segment that starts at keyframe i (its hold and its transition to i + 1): its own
        `engine:`, else the motion engine where a `motion:` applies (the keyframe's or the scene's), else the
        scene's `engine:`, else the default engine. `engine: null` and no `engine:` are the same."""
        keyframe = self.keyframes[i]
        if keyframe.engine:
            return keyframe.engine
        if keyframe.motion is not None or self.motion is not None:
            return engines.motion_engine() or self.engine or engines.default_engine()
        return self.engine or engines.default_engine()

    def color_coherence_of(self, i: int) -> str:
        return self.keyframes[i].color_coherence or self.color_coherence

    def engines(self) -> list[str]:
        """The engines this scene uses, in order of first use."""
        return list(dict.fromkeys(self.engine_of(i) for i in range(len(self.keyframes))))

    def easing_of(self, i: int) -> str:
        return self.keyframes[i].easing or self.easing

    def prompt_of(self, i: int) -> str:
        prompt = self.keyframes[i].prompt.strip()
        return f"{prompt}, {self.style.strip()}" if self.style.strip() else prompt

    def negative_of(self, i: int) -> str:
        negative = self.keyframes[i].negative_prompt
        return self.negative_prompt if negative is None else negative

    def seed_of(self, i: int) -> int:
        seed = self.keyframes[i].seed
        return (self.seed + i) % 2**31 if seed is None else seed

    def hold_frames(self, i: int) -> int:
        """Frames of keyframe i's hold: round(hold x fps), or what an audio-synced render set."""
        return self._frames[i][0] if self._frames else frame_count(self.keyframes[i].hold, self.fps)

    def transition_frames(self, i: int) -> int:
        return self._frames[i][1] if self._frames else frame_count(self.transition_of(i), self.fps)

    def transition_ts_of(self, i: int) -> list[float]:
        """The walk's t for each frame of transition i: the eased rule, or the audio-driven positions."""
        if self._ts and i in self._ts:
            return self._ts[i]
        return transition_ts(self.transition_frames(i), self.easing_of(i))

    def synced(self, frames: list[tuple[int, int]], ts: dict[int, list[float]]) -> SceneScript:
        """A copy whose frame counts and transition positions follow the audio (film/audio_sync.py)."""
        if len(frames) != len(self.keyframes) or frames[-1][1] != 0:
            raise ValueError(f"`frames` must have one (hold, transition) per keyframe, the last with no transition "
                             f"but is {frames}.")
        copy = self.model_copy()
        copy._frames, copy._ts = list(frames), dict(ts)
        return copy

    def frame_count(self) -> int:
        """The frame-count rule: sum of round(hold x fps) plus sum of round(transition x fps) (or the synced
        counts of an audio-synced render)."""
        return sum(self.hold_frames(i) + self.transition_frames(i) for i in range(len(self.keyframes)))


class FilmFile(BaseModel):
    """Several named scenes concatenated into one film; they must share fps, size, fps_out, upscale and LoRAs
    (one film, one painter)."""

    model_config = Strict
    schema_version: Literal[1] = SCHEMA_VERSION
    title: str = ""
    audio: AudioSpec | None = Field(None, description="audio for the whole film, relative to this file")
    scenes: list[SceneScript] = Field(min_length=1)

    @field_validator("audio", mode="before")
    @classmethod
    def _audio_exists(cls, value, info: ValidationInfo):
        return check_audio_field(value, info)

    @field_validator("scenes")
    @classmethod
    def _consistent(cls, scenes: list[SceneScript]) -> list[SceneScript]:
        seen: set[str] = set()
        first = scenes[0]
        for i, scene in enumerate(scenes):
            if scene.name is None:
                raise field_error((i, "name"), "a scene in a film file needs a name", None)
            if scene.name in seen:
                raise field_error((i, "name"), f"duplicate scene name {scene.name!r}", scene.name)
            seen.add(scene.name)
            for field in ("fps", "width", "height", "fps_out", "upscale", "loras"):
                if getattr(scene, field) != getattr(first, field):
                    raise field_error((i, field), f"every scene must have the first scene's {field} "
                                       f"({getattr(first, field)})", getattr(scene, field))
            if scene.audio is not None:
                raise field_error((i, "audio"), "in a film file, audio belongs to the film, not a scene", scene.audio)
        return scenes

    @model_validator(mode="after")
    def _audio_gain_keys(self):
        if self.audio is not None:
            synced = self.audio.sync != "none"
            check_keys(self.audio.gain, field=("audio", "gain"), fps=self.scenes[0].fps, within="film",
                       frames_total=10**9 if synced else sum(s.frame_count() for s in self.scenes))
        return self


@dataclass
class Film:
    """What `render` works from: one or more scenes sharing fps and size, and an optional audio file."""

    title: str
    scenes: list[tuple[str, SceneScript]]
    audio: Path | None
    audio_spec: AudioSpec | None = None  # `audio:` as a mapping (sync, snap, start, end), when it was one

    @property
    def fps(self) -> int:
        return self.scenes[0][1].fps

    @property
    def size(self) -> tuple[int, int]:
        first = self.scenes[0][1]
        return first.width, first.height

    def frame_count(self) -> int:
        return sum(s.frame_count() for _, s in self.scenes)

    @property
    def fps_out(self) -> int | None:
        return self.scenes[0][1].fps_out

    @property
    def upscale(self) -> UpscaleSpec | None:
        return self.scenes[0][1].upscale

    @property
    def loras(self) -> list:
        return self.scenes[0][1].loras


def load_film(path: Path, screenplay: dict | None = None) -> Film:
    """Read a scene script, a film file or a Fountain screenplay (`screenplay`: its film options from the command
    line, see settings/screenplay.py); any mistake is a UserError `file:line: field: message`."""
    path = Path(path)
    if path.suffix.lower() in (".fountain", ".spmd"):
        return screenplay_film(path, screenplay)[0]
    context = {"base": str(path.parent)}
    try:
        top = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        top = None  # load_yaml_model reports it with the line
    if isinstance(top, dict) and "scenes" in top:
        film = load_yaml_model(path, FilmFile, context)
        return Film(film.title, [(s.name, s) for s in film.scenes], *_audio_of(film.audio))
    script = load_yaml_model(path, SceneScript, context)
    name = script.name or path.stem
    if not _valid_name(name):
        raise UserError(f"{path}: the file name {path.stem!r} cannot name a cache folder; add a `name:` key")
    return Film(script.title, [(name, script)], *_audio_of(script.audio))


def _audio_of(audio: AudioSpec | None) -> tuple[Path | None, AudioSpec | None]:
    return (Path(audio.file), audio) if audio is not None else (None, None)


def screenplay_film(path: Path, flags: dict | None = None):
    """A screenplay as a Film, validated by the same FilmFile schema as the YAML `scene from-screenplay` writes
    of it, and the Screenplay it was mapped from (its film-file data, title page and where options came from)."""
    from zoetrope.settings.screenplay import read_screenplay

    path = Path(path)
    page = read_screenplay(path, flags)
    try:
        film = FilmFile.model_validate(page.data, context={"base": str(path.parent)})
    except ValidationError as exc:
        raise UserError(page.explain(exc)) from None
    return Film(film.title, [(s.name, s) for s in film.scenes], Path(film.audio) if film.audio else None), page


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) is not None
