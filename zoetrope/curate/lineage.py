"""`replay show`: a chain's family, its parents (each fork records its parent) and the forks next to it.

A parent is found by the relative folder its fork recorded, else by run id among the sibling folders, so a
family moved together keeps its lineage. Copied folders that share a run id cannot make it loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.loop.chainlog import LOG_NAME, ChainLog, read_chain


@dataclass
class Family:
    ancestors: list[tuple[dict, Path | None, ChainLog | None]]  # (parent entry, folder, chain), nearest first
    children: list[ChainLog]


def _try_read(folder: Path) -> ChainLog | None:
    try:
        return read_chain(folder) if (folder / LOG_NAME).is_file() else None
    except UserError:
        return None


def find_parent(chain: ChainLog, entry: dict) -> ChainLog | None:
    """The parent's folder: the recorded relative path, else a sibling folder holding that run id."""
    candidates = []
    if entry.get("folder"):
        candidates.append(chain.folder / entry["folder"])
    candidates.append(chain.folder.parent / str(entry.get("run")))
    if chain.folder.parent.is_dir():
        candidates += sorted(p for p in chain.folder.parent.iterdir() if p.is_dir())
    for folder in candidates:
        found = _try_read(folder) if folder.is_dir() else None
        if found is not None and found.header.get("run_id") == entry.get("run") and \
                found.folder.resolve() != chain.folder.resolve():
            return found
    return None


def lineage(chain: ChainLog) -> Family:
    ancestors = []
    seen = {chain.folder.resolve()}
    current = chain
    while current is not None and current.header.get("parent"):
        entry = current.header["parent"]
        found = find_parent(current, entry)
        if found is not None and found.folder.resolve() in seen:
            break  # a cycle (copied folders with the same run id): stop rather than loop
        ancestors.append((entry, found.folder if found else None, found))
        if found is not None:
            seen.add(found.folder.resolve())
        current = found
    children = []
    if chain.folder.parent.is_dir():
        for folder in sorted(p for p in chain.folder.parent.iterdir() if p.is_dir()):
            found = _try_read(folder) if folder.resolve() != chain.folder.resolve() else None
            parent = (found.header.get("parent") or {}) if found else {}
            if found is not None and parent.get("run") == chain.header.get("run_id"):
                children.append(found)
    return Family(ancestors, children)


def lineage_lines(chain: ChainLog) -> list[str]:
    def describe(c: ChainLog) -> str:
        return f"{c.header.get('run_id')}  ({c.last_step} steps)  {os.path.normpath(c.folder)}"

    family = lineage(chain)
    lines = ["lineage (oldest first):"]
    rows = list(reversed(family.ancestors))
    for depth, (entry, _, found) in enumerate(rows):
        indent = "  " * depth
        if depth == 0:
            lines.append(f"  {describe(found) if found else str(entry.get('run')) + '  (not found next to this chain)'}")
        else:
            lines.append(f"  {indent}step {rows[depth - 1][0]['step']} -> "
                         + (describe(found) if found else f"{entry.get('run')}  (not found next to this chain)"))
    this = f"{describe(chain)}  <- this chain"
    if rows:
        lines.append(f"  {'  ' * len(rows)}step {rows[-1][0]['step']} -> {this}")
    else:
        lines.append(f"  {this}")
    if family.children:
        lines.append("forks of this chain found next to it:")
        lines += [f"  step {c.header['parent']['step']} -> {describe(c)}" for c in family.children]
    return lines


def show_lineage(folder: Path) -> list[str]:
    """The lineage of the chain in `folder`, as lines for the terminal."""
    return lineage_lines(read_chain(folder))
