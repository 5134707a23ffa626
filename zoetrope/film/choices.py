"""Which models render a film, and why: chosen and named before anything loads, so no model is taken silently.

Roles: `painter` (the walk's and the drift's still-image model, and the base AnimateDiff animates), `ltx` (the ltx engine's
video model) and `animatediff` (the motion adapter). A role is chosen only when a scene uses it. Its origin is
"scene" (the scenes' own field, or the schema's default where a scene names none), "--models" (the caller's
override: `--models tiny` picks every engine's tiny preset; `ltx=X`, `animatediff=Y`, `painter=Z` one each) or
"chain log" (the film of a chain: the logged painter at its logged revision).
"""

from __future__ import annotations

from dataclasses import dataclass

from zoetrope.base.errors import UserError
from zoetrope.settings.scene import Film

ROLE_FIELD = {"painter": "model", "ltx": "ltx_model", "animatediff": "motion_adapter", "upscaler": "upscale"}


@dataclass(frozen=True)
class ModelChoice:
    """A model a film uses and why (see the module docstring for `origin`)."""

    spec: str
    revision: str | None
    origin: str


PainterChoice = ModelChoice  # the name 0.3 used for the walk's painter


def roles_used(film: Film) -> list[str]:
    """The roles the film's engines need, in a fixed order."""
    engines = {e for _, s in film.scenes for e in s.engines()}
    roles = ["painter"] if engines & {"walk", "animatediff", "drift"} else []
    return roles + [r for r in ("ltx", "animatediff") if r in engines] + ["upscaler"] * (film.upscale is not None)


def scene_choice(film: Film, role: str, override: str | None) -> ModelChoice:
    """One model per role for the whole film: the override, else the common field of the scenes that use it."""
    if override:
        return ModelChoice(override, None, "--models")
    if role == "upscaler":  # one for the film (its scenes agree on `upscale:`)
        return ModelChoice(film.upscale.model_or_default(), None, "scene")
    field = ROLE_FIELD[role]
    users = [s for _, s in film.scenes if role == "painter" or role in s.engines()]
    models = {getattr(s, field) for s in users}
    if len(models) > 1:
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


def _named(role: str, choice: ModelChoice) -> str:
    """`ID (revision REV)`: the id and revision the load will record (a preset's Hub id; the revision pinned
    in the local cache, else `none`)."""
    from zoetrope.stages.models import pin_revision, resolve

    if role == "upscaler" and choice.spec.endswith((".pth", ".pt", ".ckpt", ".safetensors")):
        return f"{choice.spec} (a weights file)"
    ref = pin_revision(resolve("motion" if role == "animatediff" else role, choice.spec, choice.revision))
    return f"{ref.id} (revision {ref.revision or 'none'})"


def _why(role: str, choice: ModelChoice, script) -> str:
    why = {"--models": ", from --models", "chain log": ", as logged by the chain"}.get(choice.origin, "")
    if role == "upscaler" and choice.origin == "scene" and script.upscale.model is None:
        return f", the default for x{script.upscale.scale}"
    if choice.origin == "scene" and ROLE_FIELD[role] not in script.model_fields_set:
        why = f", the default: the scene names no {ROLE_FIELD[role]} (set `{ROLE_FIELD[role]}:` or --models)"
    return why


def model_lines(film: Film, choices: dict[str, ModelChoice]) -> list[str]:
    """`scene NAME: ENGINE with MODEL (revision REV)[, why]` per scene and engine, joined by `; `."""
    names = {role: _named(role, choice) for role, choice in choices.items()}
    lines = []
    for name, script in film.scenes:
        parts = []
        for engine in script.engines():
            if engine == "walk":
                parts.append(f"walk with painter {names['painter']}{_why('painter', choices['painter'], script)}")
            elif engine == "drift":
                parts.append(f"drift with painter {names['painter']}{_why('painter', choices['painter'], script)}")
            elif engine == "ltx":
                parts.append(f"ltx with {names['ltx']}{_why('ltx', choices['ltx'], script)}")
            else:
                parts.append(f"animatediff with motion {names['animatediff']}"
                             f"{_why('animatediff', choices['animatediff'], script)} over painter {names['painter']}")
        if "upscaler" in choices:
            parts.append(f"upscaled x{script.upscale.scale} with {names['upscaler']}"
                         f"{_why('upscaler', choices['upscaler'], script)}")
        lines.append(f"scene {name}: {'; '.join(parts)}")
    return lines


def load_models(film: Film, choices: dict[str, ModelChoice], device: str | None, speed: dict,
                ray: str | None = None):
    """Load every chosen model once (film.layout.FilmModels); an engine's options come from its scenes. With
    `ray`, the walk's painter and the ltx and animatediff clip painters are loaded on Ray workers instead (once
    each; none on the driver unless a drift needs it: a drift paints each frame from the one before, on the
    driver)."""
    from zoetrope.film.layout import FilmModels
    from zoetrope.film.walk import painter_identity
    from zoetrope.settings.params import SpeedOptions
    from zoetrope.stages.device import pick_device
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    plan = pick_device(device)
    models = FilmModels()
    engines = {e for _, s in film.scenes for e in s.engines()}
    memory = {"vae_tiling": any(s.vae_tiling for _, s in film.scenes),
              "cpu_offload": any(s.cpu_offload for _, s in film.scenes)}
    options = SpeedOptions(**speed)
    painter = choices.get("painter")
    if ray is not None and engines & {"walk", "ltx", "animatediff"}:
        from zoetrope.film.distributed import open_walk_pool, pool_clips, pool_identity, pool_painter

        if film.loras and "walk" in engines:
            raise UserError("--ray: LoRA styles are not sent to Ray workers yet; render this film without --ray")
        clips = {"memory": memory}
        if "ltx" in engines:
            clips |= {"ltx": choices["ltx"].spec, "ltx_revision": choices["ltx"].revision}
        if "animatediff" in engines:
            clips |= {"motion": choices["animatediff"].spec, "motion_revision": choices["animatediff"].revision,
                      "motion_base": painter.spec, "motion_base_revision": painter.revision}
        walk = "walk" in engines
        models.pool = open_walk_pool(ray, painter.spec if walk else None, painter.revision if walk else None, device,
                                     options, **clips)
        models.clips.update(pool_clips(models.pool))
        if walk:
            models.painter, models.walk_identity = pool_painter(models.pool), pool_identity(models.pool, options)
        if "drift" in engines:
            models.local_painter = load_painter(painter.spec, plan, painter.revision, options)
            models.painter = models.painter or models.local_painter
    elif engines & {"walk", "drift"}:
        models.painter = load_painter(painter.spec, plan, painter.revision, options, loras=film.loras)
        models.walk_identity = painter_identity(models.painter, options)
    models.speed = painter_identity(models.painter, options)["speed"] if models.painter is not None else {}
    if any(s.color_coherence_of(i) == "match_first" for _, s in film.scenes for i in range(len(s.keyframes))):
        from zoetrope.stages.drift import require_skimage

        require_skimage()  # before the render, not at its first drift frame
    if "ltx" in engines and models.pool is None:
        from zoetrope.stages.ltx import load_ltx

        choice = choices["ltx"]  # bf16 on GPUs: LTX's transformer is not meant for fp16 (diffusers' advice)
        models.clips["ltx"] = load_ltx(choice.spec, pick_device(device, "bf16"), choice.revision, **memory)
    if "animatediff" in engines and models.pool is None:
        from zoetrope.stages.animatediff import load_animatediff

        adapter, painter = choices["animatediff"], choices["painter"]
        models.clips["animatediff"] = load_animatediff(
            adapter.spec, painter.spec, plan, adapter_revision=adapter.revision, painter_revision=painter.revision,
            **memory)
    if film.upscale is not None:
        from zoetrope.stages.upscale import load_upscaler

        choice = choices["upscaler"]
        models.upscaler = load_upscaler(choice.spec, film.upscale.scale, plan, choice.revision)
    return models
