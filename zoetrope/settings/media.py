"""Media a scene script names (audio, keyframe images): checked when the script is read, relative to its folder
(the validation context's `base`), so a missing or unreadable file is one `file:line: field` line before any
model loads, never a failure mid-render. Torch-free (Pillow only, and only when an image is given)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from zoetrope.settings.parsing import Strict
from zoetrope.settings.schedules import Gain


def field_error(loc: tuple, message: str, value) -> ValidationError:
    """A validation error at a nested location, so the message names e.g. keyframes[3].transition."""
    return ValidationError.from_exception_data(
        "scene", [InitErrorDetails(type=PydanticCustomError("scene", message), loc=loc, input=value)]
    )


def check_audio(value: str | None, info: ValidationInfo) -> str | None:
    """The audio file must exist now, relative to the script's folder (context["base"]), not at encode time."""
    if value is None:
        return None
    base = Path((info.context or {}).get("base", "."))
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise ValueError(f"audio file not found: {path}")
    return str(path)


def check_image(value: str | None, info: ValidationInfo) -> str | None:
    """A keyframe's `image:` must be a readable picture now (relative to the script's folder), not at render time."""
    if value is None:
        return None
    base = Path((info.context or {}).get("base", "."))
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # Pillow's reasons vary by format; the line names the file either way
        raise ValueError(f"not a readable image: {path} ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None
    return str(path)


class AudioSpec(BaseModel):
    """`audio:` as a mapping: the file, and whether (and how) the picture follows it (docs/films.md)."""

    model_config = Strict
    file: str
    sync: Literal["none", "onsets", "energy"] = Field(
        "none", description="onsets: the walk moves on percussive onsets; energy: with RMS loudness; none: cut to picture")
    snap: Literal["beats"] | None = Field(None, description="move each keyframe's arrival to the nearest beat")
    start: float | None = Field(None, ge=0, description="seconds into the file where the film starts")
    end: float | None = Field(None, gt=0, description="seconds into the file where the film ends")
    smooth: float = Field(0.0, ge=0, le=1, description="blend the audio-driven motion toward linear (0: none)")
    gain: Gain = Field(1.0, description="a factor or a schedule over the film ({0: 0.0, 2s: 1.0}: a fade-in), "
                                        "eased with the scene's easing")

    @field_validator("file")
    @classmethod
    def _file_exists(cls, value: str, info: ValidationInfo) -> str:
        return check_audio(value, info)

    @model_validator(mode="after")
    def _span(self):
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise field_error(("end",), f"must be after start ({self.start})", self.end)
        if self.snap and self.sync == "none":
            raise field_error(("snap",), "snapping to beats needs `sync: onsets` or `sync: energy`", self.snap)
        return self


def check_audio_field(value, info: ValidationInfo):
    """`audio: FILE` is `audio: {file: FILE}` (no sync); a missing FILE is named at `audio`, as it always was."""
    return {"file": check_audio(value, info)} if isinstance(value, str) else value
