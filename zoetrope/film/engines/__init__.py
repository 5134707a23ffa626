"""Film engines: one module per engine (walk, ltx, animatediff, drift), each registering one base.Engine.

The registry is the only place the film code, `check`, the CLI, the film's record and Ray learn which
engines exist and what each needs: importing this package imports every module in it (so an engine added as
a new module here is found with nothing else edited), and each registers its Engine, whose spec the schema
reads (settings/engines.py). Torch-free at import: an engine imports its stage when it loads or paints.
"""

from __future__ import annotations

import importlib
import pkgutil

from zoetrope.film.engines.base import Engine, Part, SceneContext, Segment
from zoetrope.settings.engines import register_spec, unregister_spec

_ENGINES: dict[str, Engine] = {}
_INFRA = {"base", "clipbase", "clips", "run"}  # modules of this package that are not engines


def register(engine: Engine) -> Engine:
    """Make `engine` known to the schema, `check`, the CLI and the renderer (replacing one of the same name)."""
    register_spec(engine.spec)
    _ENGINES[engine.name] = engine
    return engine


def unregister(name: str) -> None:
    """Forget an engine (a test's throwaway one)."""
    _ENGINES.pop(name, None)
    unregister_spec(name)


def engine(name: str) -> Engine:
    return _ENGINES[name]


def registered() -> list[Engine]:
    return list(_ENGINES.values())


def _discover() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _INFRA:
            importlib.import_module(f"{__name__}.{module.name}")


_discover()

__all__ = ["Engine", "Part", "SceneContext", "Segment", "engine", "register", "registered", "unregister"]
