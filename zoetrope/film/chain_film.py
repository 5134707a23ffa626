"""A logged chain as a film: each step a keyframe (its prompt and logged seed), its caption the subtitle.

The chain's own painter (with its logged revision), size, steps, guidance and scheduler paint it, so the film
shows what the chain painted; `--fps`, `--hold` and `--transition` set the timing (defaults below).
"""

from __future__ import annotations

import re
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.settings.scene import Film

CHAIN_FILM_DEFAULTS = {"fps": 24, "hold": 1.0, "transition": 2.0}  # documented in docs/films.md


def film_from_chain(folder: Path, fps: int | None, hold: float | None,
                    transition: float | None) -> tuple[Film, tuple[str, str | None], list[str]]:
    """A chain log as a one-scene Film: each step a keyframe (its prompt and logged seed), its caption the
    subtitle; size, steps, guidance and scheduler from the logged config. Returns (film, (painter id, revision),
    notes)."""
    from pydantic import ValidationError

    from zoetrope.loop.chainlog import LOG_NAME, read_chain
    from zoetrope.settings.loop import LoopConfig
    from zoetrope.settings.parsing import first_error
    from zoetrope.settings.scene import ANCESTRAL, SceneScript

    chain = read_chain(folder)
    steps = [s for s in chain.steps if s.get("prompt")]
    if not steps:
        raise UserError(f"{folder}: the chain has no steps yet; nothing to film")
    logged = (chain.header.get("models") or {}).get("painter") or {}
    if not logged.get("id"):
        raise UserError(f"{folder / LOG_NAME}:1: models.painter.id: the header names no painter; "
                        "give one with --models")
    try:  # the logged config, not guessed defaults: the film is painted as the chain was
        paint = LoopConfig.model_validate(chain.header.get("config") or {}).paint
    except ValidationError as exc:
        raise UserError(f"{folder / LOG_NAME}:1: config.{first_error(exc)}") from None
    notes, scheduler = [], paint.scheduler
    if scheduler in ANCESTRAL:
        notes.append(f"the chain used the ancestral {scheduler}; the film walks with euler (ancestral samplers flicker)")
        scheduler = "euler"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", folder.resolve().name).lstrip("-._") or "chain"
    hold = CHAIN_FILM_DEFAULTS["hold"] if hold is None else hold
    data = {
        "name": name[:64], "title": f"chain {folder.name}", "fps": fps or CHAIN_FILM_DEFAULTS["fps"],
        "width": paint.width, "height": paint.height, "steps": paint.steps, "guidance": paint.guidance,
        "scheduler": scheduler, "model": logged["id"], "negative_prompt": steps[0].get("negative_prompt") or "",
        "transition": CHAIN_FILM_DEFAULTS["transition"] if transition is None else transition,
        "keyframes": [
            {"prompt": s["prompt"], "seed": s["seed"], "hold": hold,
             **({"subtitle": s["caption"]} if s.get("caption") else {})}
            for s in steps
        ],
    }
    try:
        script = SceneScript.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{folder}: cannot film this chain: {first_error(exc)}") from None
    film = Film(script.title, [(script.name, script)], None)
    return film, (logged["id"], logged.get("revision")), notes
