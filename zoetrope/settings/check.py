"""`check`: validate loop configs, scene scripts and film files without loading a model.

A curator edits a YAML file on the gallery machine and wants to know it will load before the next restart,
in under a second and without torch. Each file yields every mistake pydantic found, each worded as the
loaders word it (`file:line: field: message`), so a file can be fixed in one pass. A mistake found by a
model validator (a rule across fields) only shows once the fields themselves are right: pydantic runs such
rules after the fields validate.

Torch-free on purpose: only the settings schemas are imported. Nothing here prints or exits; the command
line (zoetrope/cli/check.py) does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from zoetrope.base.errors import UserError
from zoetrope.settings.loop import LoopConfig, load_loop_config
from zoetrope.settings.parsing import located_errors, read_yaml_mapping
from zoetrope.settings.scene import FilmFile, SceneScript, load_film

LOOP_CONFIG = "loop config"
SCENE_SCRIPT = "scene script"
FILM_FILE = "film file"

# Keys only one kind of file has: they decide what a file without `scenes` or `keyframes` was meant to be.
_LOOP_ONLY = frozenset(LoopConfig.model_fields) - frozenset(SceneScript.model_fields)
_SCENE_ONLY = frozenset(SceneScript.model_fields) - frozenset(LoopConfig.model_fields)


@dataclass(frozen=True)
class FileCheck:
    """What `check` found in one file: its kind (None when it could not be read) and its mistakes."""

    path: Path
    kind: str | None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def kind_of(path: Path, data: dict) -> str:
    """Which schema a file is for, from its keys: the same `scenes` rule as `load_film`, then `keyframes`.

    A file with neither (say a scene script whose `keyframes` is misspelt) goes by which kind's own keys it
    has more of, and on a tie by its folder (scenes/ holds scripts, anything else a loop config), so the
    mistakes reported are about the file the curator meant to write.
    """
    if "scenes" in data:
        return FILM_FILE
    if "keyframes" in data:
        return SCENE_SCRIPT
    keys = {str(k) for k in data}
    scene, loop = len(keys & _SCENE_ONLY), len(keys & _LOOP_ONLY)
    if scene != loop:
        return SCENE_SCRIPT if scene > loop else LOOP_CONFIG
    return SCENE_SCRIPT if Path(path).parent.name == "scenes" else LOOP_CONFIG


def check_file(path: Path) -> FileCheck:
    """Every mistake in one file, or none; never raises for a user's mistake (a missing file is one)."""
    path = Path(path)
    try:
        root, data = read_yaml_mapping(path)
    except UserError as exc:
        return FileCheck(path, None, [str(exc)])
    kind = kind_of(path, data)
    model: type[BaseModel] = {LOOP_CONFIG: LoopConfig, SCENE_SCRIPT: SceneScript, FILM_FILE: FilmFile}[kind]
    context = None if kind == LOOP_CONFIG else {"base": str(path.parent)}  # audio paths are relative to the file
    try:
        model.model_validate(data, context=context)
    except ValidationError as exc:
        return FileCheck(path, kind, located_errors(path, root, exc, by_line=True))
    # The fields are right: now the very loader `loop`/`render` use, for any rule it adds on top
    # (a scene script's file name must name a cache folder), so `check` passes exactly what they accept.
    try:
        if kind == LOOP_CONFIG:
            load_loop_config(path)
        else:
            load_film(path)
    except UserError as exc:
        return FileCheck(path, kind, [str(exc)])
    return FileCheck(path, kind)


def check_files(paths: Iterable[Path]) -> list[FileCheck]:
    """`check_file` for each path, in the order given."""
    return [check_file(Path(p)) for p in paths]
