"""Options shared by several subcommands (`--models`, `--device`, the speed flags) and their parsing.

They live here rather than in cli/main.py so that a subcommand module can use them without importing the
module that imports it (main -> render -> main would be a circle). Torch-free: `check` and `serve` import
this module too.
"""

from __future__ import annotations

import argparse

from zoetrope.base.errors import UserError


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """`--models`, `--device` and the speed group, worded the same for every command that loads a model."""
    parser.add_argument(
        "--models", metavar="SPEC",
        help="tiny | PAINTER | painter=X,captioner=Y,ltx=Z,animatediff=A (presets, local folders or Hub ids; "
             "tiny = every role's offline test model)",
    )
    parser.add_argument("--device", choices=["cuda", "mps", "cpu"], help="default: cuda > mps > cpu")
    speed = parser.add_argument_group("speed (override the config's speed section)")
    speed.add_argument("--attention", choices=["sdpa", "eager"], help="attention kernel (default sdpa)")
    speed.add_argument("--channels-last", action="store_true", default=None, help="channels_last memory layout")
    speed.add_argument("--compile", action="store_true", default=None, help="torch.compile the UNet (fixed shapes)")
    speed.add_argument("--vae", metavar="taesd|PATH", help="tiny autoencoder decoder (TAESD) for previews and fast films")


def speed_overrides(args: argparse.Namespace) -> dict:
    """The speed options given on the command line, as a partial `speed` config section."""
    given = {"attention": args.attention, "channels_last": args.channels_last, "compile": args.compile, "vae": args.vae}
    return {k: v for k, v in given.items() if v is not None}


LOOP_ROLES = ("painter", "captioner")


def film_roles() -> tuple[str, ...]:
    """The roles a film's `--models ROLE=...` may name: the registered engines' (film/engines/) and the upscaler."""
    from zoetrope.film.choices import film_roles as roles

    return roles()


def parse_models(spec: str | None, roles: tuple[str, ...] = LOOP_ROLES) -> dict[str, str]:
    """`--models` as {role: model} overrides for a command that uses `roles` (empty when not given). `tiny`
    alone means every role's tiny model; a bare name is the painter."""
    if not spec:
        return {}
    if spec == "tiny":
        return dict.fromkeys(roles, "tiny")
    if "=" not in spec:
        return {"painter": spec}
    out = {}
    for part in spec.split(","):
        role, _, name = part.partition("=")
        if role.strip() not in roles or not name.strip():
            raise UserError(f"--models: expected tiny, PAINTER or ROLE=MODEL,... with ROLE one of {', '.join(roles)}, "
                            f"got {spec!r}")
        out[role.strip()] = name.strip()
    return out
