"""Which models render a film, and why: chosen and named before anything loads, so no model is taken silently.

Roles are the engines' (settings/engines.py EngineSpec.roles: `painter`, the still-image model of the walk and
the drift and what AnimateDiff animates; `ltx`; `animatediff`, the motion adapter; ...) plus `upscaler`. A role
is chosen only when a scene uses it. Its origin is "scene" (the scenes' own field, or the schema's default where
a scene names none), "--models" (the caller's override: `--models tiny` picks every role's tiny preset;
`ROLE=X` one each) or "chain log" (the film of a chain: the logged painter at its logged revision).
"""

from __future__ import annotations

from dataclasses import dataclass

from zoetrope.base.errors import UserError
from zoetrope.film.engines import engine, registered
from zoetrope.settings.scene import Film

UPSCALER = "upscaler"  # the one role that is not an engine's: the film's `upscale:`


@dataclass(frozen=True)
class ModelChoice:
    """A model a film uses and why (see the module docstring for `origin`)."""

    spec: str
    revision: str | None
    origin: str


PainterChoice = ModelChoice  # the name 0.3 used for the walk's painter


def film_engines(film: Film) -> list[str]:
    return list(dict.fromkeys(e for _, s in film.scenes for e in s.engines()))


def _roles_of(engines) -> list[str]:
    """The engines' roles, each once: the painter first, then the others in the engines' order."""
    return sorted(dict.fromkeys(r for e in engines for r in e.spec.roles), key=lambda r: r != "painter")


def roles_used(film: Film) -> list[str]:
    """The roles the film's engines need, and the upscaler's when the film has `upscale:`."""
    return _roles_of(engine(e) for e in film_engines(film)) + [UPSCALER] * (film.upscale is not None)


def film_roles() -> tuple[str, ...]:
    """Every role `--models ROLE=...` may name for a film (the registered engines' and the upscaler)."""
    return (*_roles_of(registered()), UPSCALER)


def _owner(role: str, script):
    """The engine of `script` whose role this is (the painter's: the first that paints with it)."""
    return next(engine(e) for e in script.engines() if role in engine(e).spec.roles)


def _field(role: str, script) -> str | None:
    """The scene field that names the role's model (None: the role is named under `models:`)."""
    return _owner(role, script).spec.model_fields.get(role) if role != "painter" else "model"


def _model_of(role: str, script) -> str:
    field = _field(role, script)
    if field is not None:
        return getattr(script, field)
    return script.models.get(role) or _owner(role, script).spec.defaults[role]


def scene_choice(film: Film, role: str, override: str | None) -> ModelChoice:
    """One model per role for the whole film: the override, else the common field of the scenes that use it."""
    if override:
        return ModelChoice(override, None, "--models")
    if role == UPSCALER:  # one for the film (its scenes agree on `upscale:`)
        return ModelChoice(film.upscale.model_or_default(), None, "scene")
    users = [s for _, s in film.scenes
             if role == "painter" or any(role in engine(e).spec.roles for e in s.engines())]
    models = {_model_of(role, s) for s in users}
    if len(models) > 1:
        field = _field(role, users[0]) or f"models.{role}"
        flag = "--models" if role == "painter" else f"--models {role}=..."
        raise UserError(f"the scenes use different {field} values ({', '.join(sorted(models))}); choose one with {flag}")
    return ModelChoice(models.pop(), None, "scene")


def film_choices(film: Film, overrides: dict[str, str], painter: ModelChoice | None = None) -> dict[str, ModelChoice]:
    """The choice for each role the film uses; `painter` when the caller already made it (a chain's log)."""
    choices = {}
    for role in roles_used(film):
        choices[role] = painter if role == "painter" and painter is not None else \
            scene_choice(film, role, overrides.get(role))
    return choices


def _named(role: str, choice: ModelChoice, film: Film) -> str:
    """`ID (revision REV)`: the id and revision the load will record (a preset's Hub id; the revision pinned
    in the local cache, else `none`)."""
    from zoetrope.stages.models import pin_revision, resolve

    if role == UPSCALER and choice.spec.endswith((".pth", ".pt", ".ckpt", ".safetensors")):
        return f"{choice.spec} (a weights file)"
    kind = role
    if role not in ("painter", UPSCALER):
        kind = next(engine(e).kind_of(role) for e in film_engines(film) if role in engine(e).spec.roles)
    ref = pin_revision(resolve(kind, choice.spec, choice.revision))
    return f"{ref.id} (revision {ref.revision or 'none'})"


def _why(role: str, choice: ModelChoice, script) -> str:
    why = {"--models": ", from --models", "chain log": ", as logged by the chain"}.get(choice.origin, "")
    if role == UPSCALER:
        return f", the default for x{script.upscale.scale}" if choice.origin == "scene" and \
            script.upscale.model is None else why
    field = _field(role, script)
    named = script.models.get(role) if field is None else (field in script.model_fields_set)
    if choice.origin == "scene" and not named:
        field = field or f"models: {{{role}: ...}}"
        why = f", the default: the scene names no {field} (set `{field}:` or --models)"
    return why


def model_lines(film: Film, choices: dict[str, ModelChoice]) -> list[str]:
    """`scene NAME: ENGINE with MODEL (revision REV)[, why]` per scene and engine, joined by `; `."""
    names = {role: _named(role, choice, film) for role, choice in choices.items()}
    lines = []
    for name, script in film.scenes:
        parts = [engine(e).describe(names, lambda role, s=script: _why(role, choices[role], s))
                 for e in script.engines()]
        if UPSCALER in choices:
            parts.append(f"upscaled x{script.upscale.scale} with {names[UPSCALER]}"
                         f"{_why(UPSCALER, choices[UPSCALER], script)}")
        lines.append(f"scene {name}: {'; '.join(parts)}")
    return lines


def load_models(film: Film, choices: dict[str, ModelChoice], device: str | None, speed: dict,
                ray: str | None = None):
    """Load every chosen model once (film.layout.FilmModels); an engine's options come from its scenes. With
    `ray`, every model loads on Ray workers instead (once each), and the driver keeps stand-ins that know
    what laying the film out needs (identities, frame counts)."""
    from zoetrope.film.layout import FilmModels
    from zoetrope.film.walk import painter_identity
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    engines = [engine(e) for e in film_engines(film)]
    for each in engines:
        each.check_film(film)  # an extra a scene needs is missing: one line before anything loads
    memory = {"vae_tiling": any(s.vae_tiling for _, s in film.scenes),
              "cpu_offload": any(s.cpu_offload for _, s in film.scenes)}
    options = SpeedOptions(**speed)
    painter = choices.get("painter")
    needs_painter = any(e.paints_with_painter for e in engines)
    loaders = {e.name: loader for e in engines if (loader := e.loader(choices, memory)) is not None}
    models = FilmModels()
    if ray is not None:
        from zoetrope.film.distributed import open_film_pool, pool_clips, pool_painter

        if film.loras and needs_painter:
            raise UserError("--ray: LoRA styles are not sent to Ray workers yet; render this film without --ray")
        models.pool = open_film_pool(ray, painter if needs_painter else None, device, options, loaders)
        models.clips = pool_clips(models.pool)
        if needs_painter:
            models.painter = pool_painter(models.pool)
    else:
        if needs_painter:
            models.painter = load_painter(painter.spec, pick_device(device), painter.revision, options,
                                          loras=film.loras)
        models.clips = {name: load(device, **kwargs) for name, (load, kwargs) in loaders.items()}
    if models.painter is not None:
        models.walk_identity = painter_identity(models.painter, options)
        models.speed = models.walk_identity["speed"]
    if film.upscale is not None:
        from zoetrope.stages.upscale import load_upscaler

        choice = choices[UPSCALER]
        models.upscaler = load_upscaler(choice.spec, film.upscale.scale, pick_device(device), choice.revision)
    return models
