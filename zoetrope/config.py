"""Loop configuration: pydantic schemas (unknown keys rejected, limits in the fields) and YAML loading that
reports every mistake as one line `file:line: field: what was expected`.

`load_yaml_model` is shared with the scene scripts so both report errors the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zoetrope.caption import CaptionParams
from zoetrope.errors import UserError
from zoetrope.paint import SCHEDULERS, PaintParams

SCHEMA_VERSION = 1
Strict = ConfigDict(extra="forbid", validate_default=True)
Multiple8 = Annotated[int, Field(ge=64, le=2048, multiple_of=8)]


class ModelSettings(BaseModel):
    model_config = Strict
    painter: str = Field("sd-turbo", description="preset, local folder, Hub id, or tiny")
    captioner: str = Field("blip-base", description="preset, local folder, Hub id, or tiny")
    painter_revision: str | None = None
    captioner_revision: str | None = None


class StartSettings(BaseModel):
    """Where the chain begins: an image file, or a prompt that paints the first image."""

    model_config = Strict
    image: str | None = None
    prompt: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.image is None) == (self.prompt is None):
            raise ValueError("give exactly one of `image` or `prompt`")
        return self


class CaptionSettings(BaseModel):
    model_config = Strict
    mode: Literal["beam", "sample"] = "beam"
    num_beams: int = Field(3, ge=1, le=16)
    min_length: int = Field(5, ge=0, le=100)
    max_length: int = Field(30, ge=2, le=200)
    repetition_penalty: float = Field(1.2, ge=1.0, le=10.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0, le=5.0)

    @model_validator(mode="after")
    def _lengths(self):
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})")
        return self

    def params(self, **changes) -> CaptionParams:
        return CaptionParams(**(self.model_dump() | changes))


class PaintSettings(BaseModel):
    model_config = Strict
    mode: Literal["text", "drift"] = Field("text", description="text-to-image (Counterfeits) or image-to-image drift")
    strength: float = Field(0.6, gt=0.0, le=1.0, description="drift mode: how far each image departs from the last")
    steps: int = Field(1, ge=1, le=150)
    guidance: float = Field(0.0, ge=0.0, le=30.0)
    width: Multiple8 = 512
    height: Multiple8 = 512
    scheduler: str = "euler"

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in SCHEDULERS:
            raise ValueError(f"must be one of {', '.join(sorted(SCHEDULERS))}")
        return value

    def params(self) -> PaintParams:
        return PaintParams(
            steps=self.steps, guidance=self.guidance, width=self.width, height=self.height,
            scheduler=self.scheduler, strength=self.strength if self.mode == "drift" else None,
        )


class PromptSettings(BaseModel):
    """How a caption becomes a prompt: `template` with {caption}, {prefix}, {suffix}."""

    model_config = Strict
    prefix: str = ""
    suffix: str = ""
    template: str = "{prefix}{caption}{suffix}"
    negative: str = ""

    @field_validator("template")
    @classmethod
    def _has_caption(cls, value: str) -> str:
        if "{caption}" not in value:
            raise ValueError("must contain {caption}")
        try:
            value.format(prefix="", caption="", suffix="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{prefix}}, {{caption}} and {{suffix}} may appear ({exc})") from None
        return value

    def build(self, caption: str) -> str:
        return self.template.format(prefix=self.prefix, caption=caption, suffix=self.suffix).strip()


class GuardSettings(BaseModel):
    """The repetition guard: loops fall into attractors; a near-repeat of a recent caption perturbs the step."""

    model_config = Strict
    enabled: bool = True
    window: int = Field(8, ge=1, le=1000, description="compare with the last K captions")
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="similarity at or above which a caption repeats")
    lexicon: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["dream", "ruin", "mirror", "storm", "garden", "machine", "ocean", "ghost", "glass",
                                 "fire", "map", "orchard", "tide", "archive", "lantern", "desert"],
        min_length=1,
    )


class LoopConfig(BaseModel):
    model_config = Strict
    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field("chain", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="names the run folder")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    steps: int | None = Field(None, ge=1, description="stop after this many steps; none = endless")
    start: StartSettings = Field(default_factory=lambda: StartSettings(prompt="a photograph of an empty gallery"))
    models: ModelSettings = Field(default_factory=ModelSettings)
    caption: CaptionSettings = Field(default_factory=CaptionSettings)
    paint: PaintSettings = Field(default_factory=PaintSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)


# ------------------------------------------------------------------------------------------- loading

M = TypeVar("M", bound=BaseModel)


def _node_line(root: yaml.Node | None, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at pydantic location `loc` (or of its deepest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                key_node = next((k for k, _ in node.value if k.value == key), None)
                return key_node.start_mark.line + 1 if key_node is not None else line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _describe(loc: tuple) -> str:
    parts: list[str] = []
    for key in loc:
        parts.append(f"[{key}]" if isinstance(key, int) else ("." if parts else "") + str(key))
    return "".join(parts) or "(top level)"


def load_yaml_model(path: Path, model: type[M], context: dict | None = None) -> M:
    """Parse and validate a YAML file, or raise a UserError `file:line: field: message` for the first mistake."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: expected a mapping of settings, got {type(data).__name__}")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = _node_line(root, loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], (dict, list)):
            message += f" (got {err['input']!r})"
        raise UserError(f"{path}:{line or '?'}: {_describe(loc)}: {message}") from None


def load_loop_config(path: Path | None) -> LoopConfig:
    return LoopConfig() if path is None else load_yaml_model(path, LoopConfig)
