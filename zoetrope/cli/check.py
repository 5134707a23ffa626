"""`check FILE...`: say whether loop configs, scene scripts and film files will load, before anything runs.

Printing and the exit code only; the checking is zoetrope/settings/check.py. `ok FILE (kind)` goes to
stdout; each mistake is one `error: FILE:LINE: field: message` line on stderr, worded as `loop` and
`render` would word it. Exit 0 when every file is right, 2 when any file has a mistake (as for any other
user mistake). No model, and no torch, is loaded: a check on the gallery machine takes well under a second.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("check", help="validate loop configs, scene scripts and film files (no models loaded)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="loops/*.yaml, scenes/*.yaml")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from zoetrope.settings.check import check_files

    failed = False
    for result in check_files(args.files):
        if result.ok:
            print(f"ok {result.path} ({result.kind})", flush=True)
            continue
        failed = True
        for line in result.errors:
            print(f"error: {line}", file=sys.stderr, flush=True)
    return 2 if failed else 0
