"""The engine contract: what every film engine gives the film code, so no code outside its own module names it.

An engine renders segments of a scene (a keyframe's hold and its transition to the next). Its module in this
package defines one Engine and registers it (`zoetrope.film.engines.register`); the film code only ever asks
the registry. What an engine says:

- `spec` (settings.engines.EngineSpec): its name, sizes, the model roles it needs and what a scene may ask of
  it (guidance schedules, LoRAs, motions); the schema and `check` read it, torch-free.
- **models**: `loader` names the clip model it loads itself (a function and its arguments, called here or on a
  Ray worker alike), or None when it paints with the film's still painter (`paints_with_painter`);
  `planner` is what its chunks are planned against on this process (identity, frame counts), `worker_clip`
  what paints on whichever worker runs the unit.
- **layout**: `lay_out(ctx)` plans its segments of one scene into a Part: each segment's frames in film order
  (`Part.segment`), the keyframe picture it paints (`Part.still`, which the next engine may end on), and the
  units that paint them (`Part.units`: see engines/run.py). Keys are known before anything renders.
- **words and record**: `describe` (the line that names its models before anything loads) and `record` (its
  models in the film's FILM.json).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zoetrope.film.engines.clips import Chunk, Source
from zoetrope.settings.engines import EngineSpec


@dataclass
class Segment:
    """Segment i of a scene: its engine, its frames in film order, its hold's frame count and its chunks."""

    index: int
    engine: str
    paths: list[Path]
    hold: int
    chunks: list[Chunk] = field(default_factory=list)


@dataclass
class SceneContext:
    """What an engine plans one scene's segments against: the script, the loaded models (film.layout.FilmModels),
    the request's explicit settings (`rows`, `batch_size`), the frame size, the scene's cache and the segments
    this engine renders."""

    name: str
    script: object  # settings.scene.SceneScript
    models: object
    request: object
    width: int
    height: int
    cache: Path
    segments: list[int]


class Part:
    """An engine's share of one scene, planned (see the module docstring)."""

    def segment(self, i: int, previous: Source | None, next_still: Source | None, start_frame: int) -> Segment:
        """Segment i's frames: `previous` is the scene's frame before it (any engine's), `next_still` the next
        keyframe's picture when it has one, `start_frame` where the segment starts in the scene."""
        raise NotImplementedError

    def still(self, i: int) -> Source | None:
        """Keyframe i's picture when this part paints it as a frame of the film (a walk's held keyframe)."""
        return None

    def lanes(self) -> int:
        """Calls of this part that may run side by side in this process (CPU lanes); 1: one at a time."""
        return 1

    def keep(self, shown: set[Path]) -> None:
        """Only the frames in `shown` are needed (a preview); a part that renders whole calls keeps them all."""

    def units(self, batch_size: int | None) -> list:
        """The model calls that paint this part's frames (engines/run.py Unit), in film order."""
        raise NotImplementedError

    def calls(self) -> str | None:
        """The shape of this part's model calls in words, where the engine fixes one (`8 rows`); None if not."""
        return None

    def record(self) -> dict:
        """What FILM.json says of the part beyond its segments (e.g. the walk's call shape); {} for none."""
        return {}


class Engine:
    """One film engine; subclass it in a module of this package and `register` an instance (see the top)."""

    spec: EngineSpec
    paints_with_painter: bool = False  # paints with the film's still painter (the `painter` role's model)
    kinds: dict[str, str] = {}  # role -> the model kind stages.models resolves it as, where they differ

    @property
    def name(self) -> str:
        return self.spec.name

    def kind_of(self, role: str) -> str:
        return self.kinds.get(role, role)

    def describe(self, names: dict[str, str], why: Callable[[str], str]) -> str:
        """`ENGINE with ROLE MODEL (revision REV)[, why]`: `names[role]` is the model as the load records it."""
        return f"{self.name} with " + " over ".join(f"{role} {names[role]}{why(role)}" for role in self.spec.roles)

    def check_film(self, film) -> None:
        """What must hold before any model loads (an optional extra a scene's setting needs); raise UserError."""

    def loader(self, choices: dict, memory: dict) -> tuple[Callable, dict] | None:
        """(load, kwargs) of the clip model this engine loads itself, called as `load(device, **kwargs)` here
        or on a Ray worker; None when it paints with the film's painter. `choices`: role -> film.choices
        ModelChoice; `memory`: the scenes' vae_tiling and cpu_offload."""
        return None

    def planner(self, models, script):
        """The ClipPainterLike this engine's chunks are planned against here (identity, frame counts)."""
        return models.clips[self.name]

    def worker_clip(self, worker, script):
        """What paints this engine's chunks on `worker` (stages.protocols.Executor's worker)."""
        return worker.clips[self.name]

    def lay_out(self, ctx: SceneContext) -> Part:
        raise NotImplementedError

    def record(self, models, painter: dict | None) -> dict | None:
        """This engine's models in FILM.json's `models` (None: the film's painter says it all)."""
        clip = models.clips.get(self.name)
        return clip.identity if clip is not None else None
