"""YAML to pydantic with one-line errors: `file:line: field: message`, the line found in the YAML node tree."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from zoetrope.base.errors import UserError

Strict = ConfigDict(extra="forbid", validate_default=True)


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


def _error_line(root: yaml.Node | None, err: dict) -> int | None:
    """The line of one pydantic error: an unknown key's own line (its value may be a block below it),
    else the line of the node at the error's location."""
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden" and loc:
        parent: yaml.Node | None = root
        for key in loc[:-1]:
            if isinstance(parent, yaml.MappingNode):
                parent = next((v for k, v in parent.value if k.value == key), None)
            elif isinstance(parent, yaml.SequenceNode) and isinstance(key, int) and key < len(parent.value):
                parent = parent.value[key]
            else:
                parent = None
        if isinstance(parent, yaml.MappingNode):
            key_node = next((k for k, _ in parent.value if k.value == loc[-1]), None)
            if key_node is not None:
                return key_node.start_mark.line + 1
    return _node_line(root, loc)


def _describe(loc: tuple) -> str:
    parts: list[str] = []
    for key in loc:
        parts.append(f"[{key}]" if isinstance(key, int) else ("." if parts else "") + str(key))
    return "".join(parts) or "(top level)"


def _message(err: dict) -> str:
    """`field.path[i]: message (got value)` for one pydantic error, worded the same for every caller."""
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in err and err["type"] != "missing" and not isinstance(err["input"], (dict, list)):
        message += f" (got {err['input']!r})"
    return f"{_describe(tuple(err['loc']))}: {message}"


def first_error(exc: ValidationError) -> str:
    """`field.path[i]: message (got value)` for the first error: one line, the same wherever settings come from."""
    return _message(exc.errors()[0])


def located_errors(path: Path, root: yaml.Node | None, exc: ValidationError, by_line: bool = False) -> list[str]:
    """Every mistake in `exc` as `file:line: field: message`, duplicates dropped.

    `check` reports them all (by_line: in the order they appear in the file) so a curator fixes a file in
    one pass; `load_yaml_model` keeps pydantic's first, so both word a mistake identically.
    """
    found: list[tuple[int | None, str]] = []
    for err in exc.errors():
        line = _error_line(root, err)
        entry = (line, f"{path}:{line or '?'}: {_message(err)}")
        if entry not in found:
            found.append(entry)
    if by_line:  # stable: mistakes on one line keep pydantic's order; unknown lines go last
        found.sort(key=lambda e: e[0] if e[0] is not None else float("inf"))
    return [text for _, text in found]


def read_yaml_mapping(path: Path) -> tuple[yaml.Node | None, dict]:
    """The YAML node tree (for line numbers) and the data of a settings file, or a one-line UserError.

    Split from `load_yaml_model` so `check` can validate the same data without stopping at the first mistake.
    """
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
    return root, data


def load_yaml_model(path: Path, model: type[M], context: dict | None = None) -> M:
    """Parse and validate a YAML file, or raise a UserError `file:line: field: message` for the first mistake."""
    path = Path(path)
    root, data = read_yaml_mapping(path)
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise UserError(located_errors(path, root, exc)[0]) from None
