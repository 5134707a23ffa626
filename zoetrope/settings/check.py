"""`check`: validate loop configs, scene scripts, film files and screenplays without loading a model.

A curator edits a YAML file on the gallery machine and wants to know it will load before the next restart,
in under a second and without torch. Each file yields every mistake pydantic found, each worded as the
loaders word it (`file:line: field: message`), so a file can be fixed in one pass. A mistake found by a
model validator (a rule across fields) only shows once the fields themselves are right: pydantic runs such
rules after the fields validate. Every kind of file `render` and `loop` read is read here by the loader they
use (a Fountain screenplay and its front file by settings.screenplay, as `render FILM.fountain` reads them), and
a film whose features need an optional extra that is not installed (scikit-image for `color_coherence:
match_first`) fails here with the install line `render` would print only after its models had loaded. Chain
folders (`loop --resume`, `render --from-chain`) are checked by the command line with the chain log's reader.

Torch-free on purpose: only the settings schemas are imported. Nothing here prints or exits; the command
line (zoetrope/cli/check.py) does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from zoetrope.base.errors import UserError
from zoetrope.base.extras import install_hint
from zoetrope.settings.loop import LoopConfig, load_loop_config
from zoetrope.settings.parsing import located_errors, read_yaml_mapping
from zoetrope.settings.scene import Film, FilmFile, SceneScript, load_film
from zoetrope.settings.screenplay import FRONT_SUFFIX, SCREENPLAY_SUFFIXES, read_options

LOOP_CONFIG = "loop config"
SCENE_SCRIPT = "scene script"
FILM_FILE = "film file"
SCREENPLAY = "screenplay"
FRONT_FILE = "screenplay front file"

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
    if path.is_dir():
        return FileCheck(path, None, [f"{path}: a folder, not a loop config, scene script, film file or screenplay"])
    if path.suffix.lower() in SCREENPLAY_SUFFIXES:
        return _check_loader(path, SCREENPLAY, lambda: load_film(path))
    screenplay = path.with_name(path.name.removesuffix(FRONT_SUFFIX))
    if path.name.endswith(FRONT_SUFFIX) and screenplay.suffix.lower() in SCREENPLAY_SUFFIXES:
        if screenplay.is_file():  # the front file as `render` reads it: under its screenplay
            return _check_loader(path, FRONT_FILE, lambda: load_film(screenplay, {"front": path}))
        return _check_loader(path, FRONT_FILE, lambda: read_options(screenplay, {"front": path}) and None)
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
    return _check_loader(path, kind, (lambda: load_loop_config(path) and None) if kind == LOOP_CONFIG
                         else (lambda: load_film(path)))


def _check_loader(path: Path, kind: str, load) -> FileCheck:
    """Run the loader `loop` or `render` runs; a film it returns is also checked for the extras it needs."""
    try:
        film = load()
    except UserError as exc:
        return FileCheck(path, kind, [str(exc)])
    return FileCheck(path, kind, [f"{path}: {need}" for need in missing_extras(film)] if film is not None else [])


def _installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (check stays fast and torch-free)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extras(film: Film) -> list[str]:
    """What the film uses that needs an optional extra this checkout lacks, each with its install line, in the
    words `render` uses when it finds out (after loading its models)."""
    needs: list[str] = []
    scripts = [script for _, script in film.scenes]
    if any(s.engine_of(i) == "drift" and s.color_coherence_of(i) == "match_first"
           for s in scripts for i in range(len(s.keyframes))) and not _installed("skimage"):
        needs.append(f"color_coherence: match_first needs scikit-image; install it with {install_hint('motion')}")
    spec = film.audio_spec
    if spec is not None and spec.sync != "none":
        for module, what in (("librosa", "audio sync needs librosa"), ("matplotlib", "the audio timing plot "
                                                                                     "needs matplotlib")):
            if not _installed(module):
                needs.append(f"audio.sync: {what}: {install_hint('audio')}")
    upscale = film.upscale
    if upscale is not None and Path(upscale.model_or_default()).suffix.lower() in UPSCALER_WEIGHTS \
            and not _installed("spandrel"):
        needs.append(f"upscale.model: ESRGAN-family upscalers need spandrel ({install_hint('esrgan')})")
    return needs


UPSCALER_WEIGHTS = (".pth", ".pt", ".ckpt", ".safetensors")  # stages/upscale.py WEIGHT_SUFFIXES: spandrel's files


def check_files(paths: Iterable[Path]) -> list[FileCheck]:
    """`check_file` for each path, in the order given."""
    return [check_file(Path(p)) for p in paths]
