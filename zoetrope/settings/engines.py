"""What a scene script may say about its engines: each engine's spec, registered by the engine itself.

A scene names its engines by string (`engine: ltx`); whether the name exists, which sizes it takes, whether
it takes a guidance schedule, LoRA styles or a `motion:`, and which models it needs are facts of the engine,
not of the schema. The engine modules (zoetrope/film/engines/, one per engine) register their EngineSpec here
when `zoetrope.film.engines` is imported; the schema (settings/scene.py, settings/scene_rules.py) reads only
these specs, so an engine added as one new module is accepted by `check`, `render` and the record without
another edit. Torch-free: `check` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EngineSpec:
    """An engine's rules as the schema and the CLI need them (no model, no torch).

    `roles`: the model roles it loads (`--models ROLE=...`), each with the scene field that names its model
    (`model_fields`: role -> field; `models:` in a scene names a role with no field of its own) and, for roles
    of its own, a default (`defaults`). `frame_guidance`: a guidance schedule can reach each frame. `motion`: it
    renders `motion:` (a motion selects it where no engine is named). `default`: the engine of a scene that
    names none and has no motion (exactly one engine says so)."""

    name: str
    summary: str
    size_multiple: int = 8
    roles: tuple[str, ...] = ("painter",)
    model_fields: dict[str, str] = field(default_factory=lambda: {"painter": "model"})
    defaults: dict[str, str] = field(default_factory=dict)
    frame_guidance: bool = False
    loras: bool = True
    motion: bool = False
    default: bool = False


_SPECS: dict[str, EngineSpec] = {}


def register_spec(spec: EngineSpec) -> None:
    """Add (or replace, for the same name) an engine's spec; exactly one spec may be the default."""
    others = [s.name for s in _SPECS.values() if s.default and s.name != spec.name]
    if spec.default and others:
        raise ValueError(f"`spec.default` is already {others[0]}'s; only one engine may be the default.")
    _SPECS[spec.name] = spec


def unregister_spec(name: str) -> None:
    _SPECS.pop(name, None)


def spec_of(name: str) -> EngineSpec:
    return _SPECS[name]


def engine_names() -> list[str]:
    return sorted(_SPECS)


def known(name: str) -> bool:
    return name in _SPECS


def default_engine() -> str:
    for spec in _SPECS.values():
        if spec.default:
            return spec.name
    raise LookupError("no engine is registered as the default: import zoetrope.film.engines first")


def motion_engine() -> str | None:
    """The engine a `motion:` selects where no engine is named (None when none renders motions)."""
    return next((s.name for s in _SPECS.values() if s.motion), None)

