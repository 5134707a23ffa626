"""`check FILE...`: say whether loop configs, scene scripts, film files, screenplays and chain folders will
load, before anything runs.

Printing and the exit code only; the checking of files is zoetrope/settings/check.py, and a chain folder (what
`loop --resume` and `render --from-chain` read) is read here with the chain log's own reader, which lives in a
room above settings. `ok FILE (kind)` goes to stdout; each mistake is one `error: FILE:LINE: field: message`
line on stderr, worded as `loop` and `render` would word it. Exit 0 when every file is right, 2 when any file
has a mistake (as for any other user mistake). No model, and no torch, is loaded: a check on the gallery
machine takes well under a second.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("check", help="validate loop configs, scene scripts, screenplays and chain folders "
                                     "(no models loaded)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="loops/*.yaml, scenes/*.yaml, scenes/*.fountain, a chain folder")
    p.set_defaults(func=cmd_check)


def check_chain_folder(folder: Path):
    """A chain folder as `loop --resume` reads it: its log (read_chain) and the loop config in its header."""
    from pydantic import ValidationError

    from zoetrope.base.errors import UserError
    from zoetrope.loop.chainlog import read_chain
    from zoetrope.settings.check import FileCheck
    from zoetrope.settings.loop import LoopConfig
    from zoetrope.settings.parsing import first_error

    kind = "chain folder"
    try:
        chain = read_chain(folder)
        LoopConfig.model_validate(chain.header["config"])
    except UserError as exc:
        return FileCheck(folder, None, [str(exc)])
    except ValidationError as exc:
        return FileCheck(folder, kind, [f"{folder}: the config in its header: {first_error(exc)}"])
    return FileCheck(folder, f"{kind}, {len(chain.steps)} steps")


def cmd_check(args) -> int:
    import zoetrope.film.engines  # noqa: F401  (each engine registers the spec the schema reads; torch-free)
    from zoetrope.loop.chainlog import LOG_NAME
    from zoetrope.settings.check import check_file

    failed = False
    for path in args.files:
        result = check_chain_folder(path) if (path / LOG_NAME).is_file() else check_file(path)
        if result.ok:
            print(f"ok {result.path} ({result.kind})", flush=True)
            continue
        failed = True
        for line in result.errors:
            print(f"error: {line}", file=sys.stderr, flush=True)
    return 2 if failed else 0
